package queuemetrics

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/tasks"
)

// The worker's registry (Go and process collectors, followpush's worker
// metrics, the queue metrics) passes the lint `promtool check metrics`
// runs (promlint, in-process), with a queue holding tasks in several
// states and paused; the lint-clean twins carry the values of asynq's
// *_total gauges, which are kept, untyped.
func TestQueueMetricsLintClean(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	client := asynq.NewClientFromRedisClient(rdb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	for i, opts := range [][]asynq.Option{nil, nil, {asynq.ProcessIn(time.Hour)}} {
		task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: now.UnixMilli() + int64(i)}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.EnqueueContext(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := insp.PauseQueue(tasks.QueueFollow); err != nil {
		t.Fatal(err)
	}

	// The worker's registry: the Go and process collectors, the worker's
	// own metrics and the queue metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	notifier.NewMetrics(reg)
	Register(reg, rdb)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	value := func(name string, labels map[string]string) (float64, dto.MetricType, bool) {
		mf := byName[name]
		for _, m := range mf.GetMetric() {
			match := true
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					match = false
				}
			}
			if !match {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), mf.GetType(), true
			case m.GetUntyped() != nil:
				return m.GetUntyped().GetValue(), mf.GetType(), true
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), mf.GetType(), true
			}
		}
		return 0, 0, false
	}
	follow := map[string]string{"queue": tasks.QueueFollow}
	tests := []struct {
		name, old string
		labels    map[string]string
		want      float64
	}{
		{"asynq_queue_tasks", "asynq_tasks_enqueued_total", map[string]string{"queue": tasks.QueueFollow, "state": "pending"}, 2},
		{"asynq_queue_tasks", "asynq_tasks_enqueued_total", map[string]string{"queue": tasks.QueueFollow, "state": "scheduled"}, 1},
		{"asynq_queue_tasks", "asynq_tasks_enqueued_total", map[string]string{"queue": tasks.QueueFollow, "state": "archived"}, 0},
		{"asynq_queue_paused", "asynq_queue_paused_total", follow, 1},
	}
	for _, tt := range tests {
		got, typ, ok := value(tt.name, tt.labels)
		if !ok || typ != dto.MetricType_GAUGE || got != tt.want {
			t.Errorf("%s%v = %v (%v, found %v), want gauge %v", tt.name, tt.labels, got, typ, ok, tt.want)
		}
		got, typ, ok = value(tt.old, tt.labels)
		if !ok || typ != dto.MetricType_UNTYPED || got != tt.want {
			t.Errorf("%s%v = %v (%v, found %v), want untyped %v", tt.old, tt.labels, got, typ, ok, tt.want)
		}
	}
	for _, name := range []string{"asynq_queue_size", "asynq_queue_latency_seconds", "asynq_queue_memory_usage_approx_bytes"} {
		if _, typ, ok := value(name, follow); !ok || typ != dto.MetricType_GAUGE {
			t.Errorf("%s: found %v, type %v; want a gauge", name, ok, typ)
		}
	}
	for _, name := range []string{"asynq_tasks_processed_total", "asynq_tasks_failed_total"} {
		if _, typ, ok := value(name, follow); !ok || typ != dto.MetricType_COUNTER {
			t.Errorf("%s: found %v, type %v; want a counter", name, ok, typ)
		}
	}
	var _ prometheus.Collector = (*QueueMetrics)(nil)
}
