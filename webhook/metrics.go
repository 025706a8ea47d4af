package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/followpush/followpush/tencent"
)

// Metrics are the webhook's and the spool's Prometheus metrics (the
// receiver's; the device API counts its own requests). asynq's queue
// metrics are exported by the worker only.
type Metrics struct {
	webhooks        *prometheus.CounterVec
	webhookDuration *prometheus.HistogramVec
	follows         *prometheus.CounterVec
	enqueueDuration prometheus.Histogram
	spoolDepth      prometheus.Gauge
	spoolBytes      prometheus.Gauge
}

// NewMetrics registers the receiver's metrics with reg:
//
//	followpush_webhooks_total{command,result}            webhooks answered, by command and result
//	followpush_webhook_duration_seconds{command}         time to answer a webhook
//	followpush_follows_total{result}                     followees of follow callbacks: enqueued, duplicate, skipped (self-follows and repeats within a list), skipped_invalid, cancelled (unfollows)
//	followpush_enqueue_duration_seconds                  time to store one webhook's tasks
//	followpush_spool_depth                               events waiting in the local spool
//	followpush_spool_bytes                               bytes of the local spool on disk
//
// command is the callback command for the two follow commands and "other"
// for the rest, so the label's values stay bounded.
//
// Every label value of the counters (and of the webhook latency's command)
// is exported at 0 from the start: a series that first appears at 1 has no earlier
// sample, so increase() and rate() over it see no change, and an alert on
// the first event of a new receiver would never fire.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		webhooks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "followpush_webhooks_total",
			Help: "Webhooks answered, by callback command and result.",
		}, []string{"command", "result"}),
		webhookDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "followpush_webhook_duration_seconds",
			Help:    "Time from receiving a webhook to answering it.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2},
		}, []string{"command"}),
		follows: f.NewCounterVec(prometheus.CounterOpts{
			Name: "followpush_follows_total",
			Help: "Followees named by follow and unfollow callbacks, by what was done with them.",
		}, []string{"result"}),
		enqueueDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "followpush_enqueue_duration_seconds",
			Help:    "Time to durably store the tasks of one follow callback.",
			Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2},
		}),
		spoolDepth: f.NewGauge(prometheus.GaugeOpts{
			Name: "followpush_spool_depth",
			Help: "Events waiting in the receiver's local spool for Redis.",
		}),
		spoolBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "followpush_spool_bytes",
			Help: "Bytes of the receiver's local spool on disk.",
		}),
	}
	m.initLabels()
	return m
}

// initLabels creates the labelled series of the receiver's counters and
// of the webhook latency at 0.
func (m *Metrics) initLabels() {
	for _, cmd := range []string{tencent.CommandFollowAdd, tencent.CommandFollowDelete, commandLabel("")} {
		m.webhookDuration.WithLabelValues(cmd)
		for _, r := range []string{resultOK, resultIgnored, resultSpooled, resultUnauthorized, resultForbidden, resultBadRequest, resultTooLarge, resultUnavailable} {
			m.webhooks.WithLabelValues(cmd, r)
		}
	}
	for _, r := range []string{"enqueued", "duplicate", "skipped", "skipped_invalid", "cancelled"} {
		m.follows.WithLabelValues(r)
	}
}

// ObserveSpool sets the spool gauges from s (nil: nothing).
func (m *Metrics) ObserveSpool(s Spool) {
	if m == nil || s == nil {
		return
	}
	m.spoolDepth.Set(float64(s.Len()))
	m.spoolBytes.Set(float64(s.Bytes()))
}

func commandLabel(cmd string) string {
	switch cmd {
	case tencent.CommandFollowAdd, tencent.CommandFollowDelete:
		return cmd
	}
	return "other"
}
