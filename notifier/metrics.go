package notifier

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the worker's own Prometheus metrics.
type Metrics struct {
	tasks         *prometheus.CounterVec
	pushes        *prometheus.CounterVec
	tokensDeleted *prometheus.CounterVec
	tokensKept    *prometheus.CounterVec
	delay         prometheus.Histogram
	digests       *prometheus.CounterVec
	digestSize    prometheus.Histogram
	rateLimited   prometheus.Counter
}

// NewMetrics registers the worker's metrics with reg (nil: a private
// registry, i.e. not exported):
//
//	followpush_tasks_total{result}          follow tasks by result: sent, no_devices, duplicate, cancelled, stale, retry, invalid, error,
//	                                        and with notification policies cooldown, aggregated (folded into a summary), capped (over the per-recipient cap, folded)
//	followpush_pushes_total{outcome}        FCM sends by outcome (sent, unregistered, quota_exceeded, ...)
//	followpush_tokens_deleted_total{reason} dead tokens removed from the registry
//	followpush_tokens_kept_total{reason}    tokens not deleted because of a SENDER_ID_MISMATCH spike
//	followpush_push_delay_seconds           follow EventTime to FCM accepting the push (single-follow pushes)
//	followpush_digests_total{result}        digest (summary push) tasks by result: sent, empty, deferred, superseded, stale, no_devices, duplicate, retry, invalid, error
//	followpush_digest_followers             followers per summary push sent
//	followpush_rate_limited_total           pushes put off by the global send rate limit (FCM_RATE_LIMIT)
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	return &Metrics{
		tasks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "followpush_tasks_total", Help: "Follow tasks processed, by result.",
		}, []string{"result"}),
		pushes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "followpush_pushes_total", Help: "FCM sends, by outcome.",
		}, []string{"outcome"}),
		tokensDeleted: f.NewCounterVec(prometheus.CounterOpts{
			Name: "followpush_tokens_deleted_total", Help: "Device tokens deleted after FCM called them dead, by reason.",
		}, []string{"reason"}),
		tokensKept: f.NewCounterVec(prometheus.CounterOpts{
			Name: "followpush_tokens_kept_total", Help: "Tokens FCM rejected but kept because the rejections looked like a credentials problem.",
		}, []string{"reason"}),
		delay: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "followpush_push_delay_seconds",
			Help:    "Time from the follow's EventTime to FCM accepting the push.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
		digests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "followpush_digests_total", Help: "Digest (summary push) tasks processed, by result.",
		}, []string{"result"}),
		digestSize: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "followpush_digest_followers",
			Help:    "Followers named or counted by each summary push sent.",
			Buckets: []float64{1, 2, 5, 10, 50, 100, 1000, 10000, 100000},
		}),
		rateLimited: f.NewCounter(prometheus.CounterOpts{
			Name: "followpush_rate_limited_total", Help: "Pushes put off by the global send rate limit shared by all workers.",
		}),
	}
}
