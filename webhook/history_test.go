package webhook_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/webhook"
)

// With a Journal, every follow's history entry rides on the pipeline of
// its task (one round trip, 250 follows in three pipelines), and a history
// write Redis refuses neither fails nor loses the enqueue: it is counted.
func TestAsynqEnqueuerWritesHistory(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	hist := history.New(rdb, history.Options{}, history.NewMetrics(reg))
	enq := webhook.NewAsynqEnqueuer(rdb, 4)
	enq.Journal = hist

	follows := followsTo(250)
	if err := rdb.Set(ctx, hist.Key(follows[7].To), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := enq.EnqueueFollows(ctx, follows)
	if err != nil || res != (webhook.EnqueueResult{Enqueued: 250}) {
		t.Fatalf("EnqueueFollows = %+v, %v; want 250 enqueued despite the refused history write", res, err)
	}
	for i, f := range follows {
		if i == 7 {
			continue
		}
		ans, err := hist.Read(ctx, f.To, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ans.Notifications) != 1 || ans.Notifications[0].TaskID != f.TaskID() || ans.Notifications[0].Events[0].Event != history.EventReceived {
			t.Fatalf("%s's history = %+v, want its follow received", f.To, ans)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if n := mfs[0].GetMetric()[0].GetCounter().GetValue(); mfs[0].GetName() != "followpush_history_write_failures_total" || n != 1 {
		t.Errorf("%s = %v, want 1", mfs[0].GetName(), n)
	}
}
