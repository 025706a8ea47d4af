package app

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/hibiken/asynq/x/metrics"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/hibiken/asynq"
)

// MonitoringPath is where asynqmon is mounted on the receiver and standalone.
const MonitoringPath = "/monitoring"

// sharedConn hands an existing go-redis client to asynq/asynqmon, which take
// a RedisConnOpt. Whoever receives it must not close it.
type sharedConn struct{ c redis.UniversalClient }

func (s sharedConn) MakeRedisClient() any { return s.c }

// Monitoring returns asynqmon's UI and API rooted at [MonitoringPath] over
// rdb, behind HTTP basic authentication when user is not empty. Writes
// from other sites are refused (403): an unsafe method (POST, DELETE...)
// whose Origin or Sec-Fetch-Site header says a page of another site sent
// it, as a form that pauses the queue would (see refuseCrossSiteWrites).
// Without a user (standalone on loopback) there is no authentication, so
// every request must also name a loopback Host (see [RefuseForeignHosts]).
// Refusals are logged to log.
func Monitoring(rdb redis.UniversalClient, user, password string, log *slog.Logger) http.Handler {
	ui := asynqmon.New(asynqmon.Options{RootPath: MonitoringPath, RedisConnOpt: sharedConn{rdb}})
	if user == "" {
		return RefuseForeignHosts(refuseCrossSiteWrites(ui, log), "")
	}
	guarded := refuseCrossSiteWrites(ui, log)
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="followpush monitoring", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// RegisterQueueMetrics adds asynq's queue metrics (asynq_queue_size,
// asynq_queue_latency_seconds, asynq_tasks_processed_total, ...; see
// [QueueMetrics]) to reg. Only workers do this: N receivers must not each
// run asynq's queue statistics scripts on every scrape.
func RegisterQueueMetrics(reg prometheus.Registerer, rdb redis.UniversalClient) {
	reg.MustRegister(NewQueueMetrics(rdb))
}

// QueueMetrics exports the queue metrics of asynq's own collector
// (github.com/hibiken/asynq/x/metrics) so that a scrape passes `promtool
// check metrics`. That collector exports two gauges whose names end in
// _total, which the lint reserves for counters:
//
//	asynq_tasks_enqueued_total{queue,state}  tasks of the queue per state
//	asynq_queue_paused_total{queue}          1 while the queue is paused
//
// QueueMetrics adds the same values under lint-clean names,
// asynq_queue_tasks{queue,state} and asynq_queue_paused{queue} (gauges),
// and keeps the two old names, with the same values, for dashboards and
// rules written against them, but exports them untyped: the lint holds
// only typed non-counters to the _total rule. Every other family passes
// through unchanged.
//
// It is an unchecked collector (it describes nothing up front): the
// families are whatever asynq's collector gathers on each scrape.
type QueueMetrics struct {
	inner *prometheus.Registry
}

// NewQueueMetrics returns the queue metrics of the asynq queues in rdb.
func NewQueueMetrics(rdb redis.UniversalClient) *QueueMetrics {
	inner := prometheus.NewRegistry()
	inner.MustRegister(metrics.NewQueueMetricsCollector(asynq.NewInspectorFromRedisClient(rdb)))
	return &QueueMetrics{inner: inner}
}

// lintCleanTwins maps asynq's gauges named *_total to the name and help of
// their lint-clean twins.
var lintCleanTwins = map[string]struct{ name, help string }{
	"asynq_tasks_enqueued_total": {"asynq_queue_tasks", "Tasks of the queue, by state (active, pending, scheduled, retry, archived, completed)."},
	"asynq_queue_paused_total":   {"asynq_queue_paused", "1 while the queue is paused, else 0."},
}

// DeprecatedQueueMetrics maps the names of asynq's gauges that QueueMetrics
// keeps only for existing rules and dashboards (untyped) to the lint-clean
// names to use instead.
func DeprecatedQueueMetrics() map[string]string {
	out := make(map[string]string, len(lintCleanTwins))
	for old, twin := range lintCleanTwins {
		out[old] = twin.name
	}
	return out
}

// Describe sends nothing: QueueMetrics is an unchecked collector.
func (q *QueueMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect gathers asynq's queue metrics and sends them, with the
// lint-clean twins and the old *_total gauges untyped.
func (q *QueueMetrics) Collect(ch chan<- prometheus.Metric) {
	mfs, err := q.inner.Gather()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(prometheus.NewInvalidDesc(err), fmt.Errorf("gather asynq queue metrics: %w", err))
	}
	for _, mf := range mfs {
		twin, ok := lintCleanTwins[mf.GetName()]
		if !ok {
			sendFamily(ch, mf, mf.GetName(), mf.GetHelp(), mf.GetType())
			continue
		}
		sendFamily(ch, mf, twin.name, twin.help, dto.MetricType_GAUGE)
		sendFamily(ch, mf, mf.GetName(), mf.GetHelp()+" Deprecated: use "+twin.name+" (same values); untyped so that scrapes lint clean.", dto.MetricType_UNTYPED)
	}
}

// valueTypes are the sample types [sendFamily] sends.
var valueTypes = map[dto.MetricType]prometheus.ValueType{
	dto.MetricType_COUNTER: prometheus.CounterValue,
	dto.MetricType_GAUGE:   prometheus.GaugeValue,
	dto.MetricType_UNTYPED: prometheus.UntypedValue,
}

// sendFamily sends the samples of mf (counters, gauges and untyped ones:
// all asynq's collector exports) as constant metrics named name.
func sendFamily(ch chan<- prometheus.Metric, mf *dto.MetricFamily, name, help string, typ dto.MetricType) {
	vt, ok := valueTypes[typ]
	if !ok {
		return
	}
	for _, m := range mf.GetMetric() {
		var labels, values []string
		for _, lp := range m.GetLabel() {
			labels = append(labels, lp.GetName())
			values = append(values, lp.GetValue())
		}
		var v float64
		switch {
		case m.GetCounter() != nil:
			v = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			v = m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			v = m.GetUntyped().GetValue()
		default:
			continue
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, help, labels, nil), vt, v, values...)
	}
}
