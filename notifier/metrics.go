package notifier

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/notifier/fcm"
)

// Metrics are the worker's own Prometheus metrics.
type Metrics struct {
	tasks         *prometheus.CounterVec
	pushes        *prometheus.CounterVec
	tokensDeleted *prometheus.CounterVec
	tokensKept    *prometheus.CounterVec
	delay         prometheus.Histogram
	summaries     *prometheus.CounterVec
	summarySize   prometheus.Histogram
	rateLimited   prometheus.Counter
	breaker       atomic.Pointer[MismatchBreaker] // read by the breaker gauge
}

// NewMetrics registers the worker's metrics with reg (nil: a private
// registry, i.e. not exported):
//
//	followpush_tasks_total{result}          follow tasks by result: sent (a device accepted the push), undelivered (tried, no device
//	                                        accepted it: dead tokens or a refusal for good), no_devices, duplicate, cancelled, stale,
//	                                        retry, exhausted (the last retry failed: archived), invalid, error, and with notification
//	                                        policies cooldown, superseded (a newer follow of the pair notifies), aggregated (folded
//	                                        into a summary), capped (over the per-recipient cap, folded); with the followee's own
//	                                        preferences preference_off (pushes off: nothing sent) and quiet_hours (held for the
//	                                        summary at the end of their quiet hours)
//	followpush_pushes_total{outcome}        FCM sends by outcome (sent, unregistered, quota_exceeded, ...)
//	followpush_tokens_deleted_total{reason} dead tokens removed from the registry
//	followpush_tokens_kept_total{reason}    tokens not deleted because the SENDER_ID_MISMATCH breaker is open
//	followpush_sender_id_mismatch_breaker_open  1 while the SENDER_ID_MISMATCH breaker (shared by all workers) is open, else 0
//	followpush_push_delay_seconds           follow EventTime to FCM accepting the push (single-follow pushes)
//	followpush_digests_total{result}        digest (summary push) tasks by result: sent, undelivered, empty, deferred, superseded, stale,
//	                                        no_devices, duplicate, preference_off, retry, exhausted, invalid, error
//	followpush_digest_followers             followers per summary push sent
//	followpush_rate_limited_total           pushes put off by the global send rate limit (FCM_RATE_LIMIT)
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	m := &Metrics{
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
		summaries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "followpush_digests_total", Help: "Digest (summary push) tasks processed, by result.",
		}, []string{"result"}),
		summarySize: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "followpush_digest_followers",
			Help:    "Followers named or counted by each summary push sent.",
			Buckets: []float64{1, 2, 5, 10, 50, 100, 1000, 10000, 100000},
		}),
		rateLimited: f.NewCounter(prometheus.CounterOpts{
			Name: "followpush_rate_limited_total", Help: "Pushes put off by the global send rate limit shared by all workers.",
		}),
	}
	m.initLabels()
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "followpush_sender_id_mismatch_breaker_open",
		Help: "1 while the SENDER_ID_MISMATCH breaker shared by all workers is open (tokens kept, not deleted, until a send succeeds), else 0.",
	}, m.breakerOpen)
	return m
}

// Label values of the worker's counters. Every one is exported at 0 from
// the start ([Metrics.initLabels]): a series that first appears at 1 has
// no earlier sample, so increase() and rate() over it see no change, and
// an alert on the first event of a new worker would never fire.
var (
	taskResults = []string{"sent", "undelivered", "no_devices", "duplicate", "cancelled", "stale", "retry", "exhausted", "invalid", "error",
		string(delivery.VerdictCooldown), string(delivery.VerdictSuperseded), string(delivery.VerdictAggregated), string(delivery.VerdictCapped),
		resultPreferenceOff, string(delivery.VerdictQuiet)}
	summaryResults = []string{"sent", "undelivered", "empty", "deferred", "superseded", "stale", "no_devices", "duplicate", resultPreferenceOff, "retry", "exhausted", "invalid", "error"}
	pushOutcomes   = []fcm.Outcome{fcm.OutcomeSent, fcm.OutcomeUnregistered, fcm.OutcomeInvalidToken, fcm.OutcomeInvalidMessage, fcm.OutcomeSenderIDMismatch,
		fcm.OutcomeThirdPartyAuth, fcm.OutcomeQuota, fcm.OutcomeUnavailable, fcm.OutcomeInternal, fcm.OutcomeUnknown, fcm.OutcomeTransport}
)

// initLabels creates every labelled series of the worker's counters at 0.
func (m *Metrics) initLabels() {
	for _, r := range taskResults {
		m.tasks.WithLabelValues(r)
	}
	for _, r := range summaryResults {
		m.summaries.WithLabelValues(r)
	}
	for _, o := range pushOutcomes {
		m.pushes.WithLabelValues(string(o))
		if o.DropsToken() {
			m.tokensDeleted.WithLabelValues(string(o))
		}
	}
	m.tokensKept.WithLabelValues(string(fcm.OutcomeSenderIDMismatch))
}

// watchBreaker makes b the breaker the gauge reports.
func (m *Metrics) watchBreaker(b *MismatchBreaker) { m.breaker.Store(b) }

// breakerOpen is the value of followpush_sender_id_mismatch_breaker_open:
// the shared state, read from Redis at most once a second.
func (m *Metrics) breakerOpen() float64 {
	b := m.breaker.Load()
	if b == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if b.Open(ctx) {
		return 1
	}
	return 0
}
