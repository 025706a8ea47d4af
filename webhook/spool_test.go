package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/internal/spool"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
	"github.com/followpush/followpush/webhook"
)

// With Redis down and a spool configured, a follow is answered 200 (stored
// on disk), and once Redis is back the drainer turns
// the spooled follow into the same tasks a direct enqueue would have made,
// and the spooled unfollow into a cancellation.
func TestSpoolWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t, redistest.AOF("always"))
	rdb := red.Client(t)
	sp, err := spool.Open(spool.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	enq := webhook.NewAsynqEnqueuer(rdb, 4)
	records := delivery.New(rdb, delivery.Options{})
	h := webhook.NewHandler(webhook.Options{AppIDs: []string{testApp}, SpoolAfter: 100 * time.Millisecond}, webhook.Deps{
		Enqueuer: enq, Canceller: records, Spool: sp,
	})
	srv := newHTTPServer(t, serveWebhook(h))

	red.Stop()
	q := url.Values{"SdkAppid": {testApp}, "CallbackCommand": {tencent.CommandFollowAdd}}
	status, answer := post(t, srv, q, goodFollow)
	if status != 200 || answer["ActionStatus"] != "OK" {
		t.Fatalf("follow with Redis down and a spool: %d %v", status, answer)
	}
	q.Set("CallbackCommand", tencent.CommandFollowDelete)
	if status, answer := post(t, srv, q, `{"From_Account":"UserID_001","To_Account":["UserID_009"],"EventTime":1702018343679}`); status != 200 {
		t.Fatalf("unfollow with Redis down and a spool: %d %v", status, answer)
	}
	if sp.Len() != 2 {
		t.Fatalf("spool holds %d events, want 2", sp.Len())
	}

	red.Restart()
	ctx, cancel := context.WithCancel(context.Background())
	drained := make(chan struct{})
	d := &webhook.Drainer{Spool: sp, Enqueuer: enq, Canceller: records, Logger: slog.New(slog.DiscardHandler), Metrics: webhook.NewMetrics(nil), Idle: 10 * time.Millisecond}
	go func() { defer close(drained); d.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for sp.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the spool against a deadline
	}
	cancel()
	<-drained
	if sp.Len() != 0 {
		t.Fatalf("spool not drained: %d left", sp.Len())
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	pending, err := insp.ListPendingTasks(tasks.QueueFollow)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ti := range pending {
		ids = append(ids, ti.ID)
	}
	var want []string
	for _, to := range []string{"UserID_002", "UserID_003"} {
		want = append(want, tasks.Follow{AppID: testApp, From: "UserID_001", To: to, EventTime: 1702018343678}.TaskID())
	}
	if d := cmp.Diff(want, ids, sortStrings); d != "" {
		t.Errorf("tasks after draining (-want +got):\n%s", d)
	}
	rec, err := records.Load(context.Background(), tasks.Follow{AppID: testApp, From: "UserID_001", To: "UserID_009", EventTime: 1702018343678})
	if err != nil || !rec.Cancelled {
		t.Errorf("spooled unfollow not applied: %+v %v", rec, err)
	}
}

// Without a spool, or with the spool full, a follow Redis cannot take gets a
// 5xx.
func TestSpoolFullAnswers5xx(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	rdb := red.Client(t)
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), MaxBytes: 1 << 20, SegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	filler := make([]byte, 1<<20-64)
	if err := sp.Append(filler[:len(filler)-8]); err != nil {
		t.Fatal(err)
	}
	h := webhook.NewHandler(webhook.Options{AppIDs: []string{testApp}, SpoolAfter: 50 * time.Millisecond}, webhook.Deps{
		Enqueuer: webhook.NewAsynqEnqueuer(rdb, 4), Canceller: delivery.New(rdb, delivery.Options{}), Spool: sp,
	})
	srv := newHTTPServer(t, serveWebhook(h))
	red.Stop()
	status, answer := post(t, srv, url.Values{"SdkAppid": {testApp}, "CallbackCommand": {tencent.CommandFollowAdd}}, goodFollow)
	if status/100 != 5 || answer["ActionStatus"] != "FAIL" {
		t.Errorf("Redis down and spool full: %d %v, want 5xx FAIL", status, answer)
	}
}

// flakyEnqueuer is an Enqueuer that fails while down, fails its failOn-th
// successful-looking call once, and records the follows of every call.
type flakyEnqueuer struct {
	mu     sync.Mutex
	down   bool
	failOn int // 1-based call number (counted while up) that fails once; 0 = none
	upCall int
	calls  [][]tasks.Follow
}

func (e *flakyEnqueuer) EnqueueFollows(_ context.Context, follows []tasks.Follow) (webhook.EnqueueResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return webhook.EnqueueResult{}, errors.New("redis down")
	}
	e.upCall++
	e.calls = append(e.calls, follows)
	if e.upCall == e.failOn {
		return webhook.EnqueueResult{}, errors.New("redis hiccup")
	}
	return webhook.EnqueueResult{Enqueued: len(follows)}, nil
}

type nopCanceller struct{}

func (nopCanceller) Cancel(context.Context, string, string, []string, int64) error { return nil }

// The drainer moves spooled events in steps of Batch and re-offers a step
// whose enqueue failed: 25 spooled webhooks with Batch 10 are stored as
// 10, 10 (failed), 10 again, 5.
func TestDrainerMovesInBatches(t *testing.T) {
	t.Parallel()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	enq := &flakyEnqueuer{down: true, failOn: 2}
	h := webhook.NewHandler(webhook.Options{AppIDs: []string{testApp}, SpoolAfter: time.Millisecond}, webhook.Deps{
		Enqueuer: enq, Canceller: nopCanceller{}, Spool: sp,
	})
	srv := newHTTPServer(t, serveWebhook(h))
	q := url.Values{"SdkAppid": {testApp}, "CallbackCommand": {tencent.CommandFollowAdd}}
	const n = 25
	for i := range n {
		body := fmt.Sprintf(`{"From_Account":"fan-%02d","FollowList":[{"To_Account":"star"}],"EventTime":1702018343678}`, i)
		if status, answer := post(t, srv, q, body); status != 200 {
			t.Fatalf("webhook %d with the enqueuer down: %d %v", i, status, answer)
		}
	}
	if sp.Len() != n {
		t.Fatalf("spool holds %d events, want %d", sp.Len(), n)
	}

	enq.mu.Lock()
	enq.down = false
	enq.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d := &webhook.Drainer{Spool: sp, Enqueuer: enq, Canceller: nopCanceller{}, Logger: slog.New(slog.DiscardHandler),
		Metrics: webhook.NewMetrics(nil), Batch: 10, Idle: time.Millisecond}
	go func() { defer close(done); d.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for sp.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling the spool against a deadline
	}
	cancel()
	<-done
	if sp.Len() != 0 {
		t.Fatalf("spool not drained: %d left", sp.Len())
	}

	enq.mu.Lock()
	defer enq.mu.Unlock()
	var sizes []int
	var froms [][]string
	for _, c := range enq.calls {
		sizes = append(sizes, len(c))
		var f []string
		for _, x := range c {
			f = append(f, x.From)
		}
		froms = append(froms, f)
	}
	if d := cmp.Diff([]int{10, 10, 10, 5}, sizes); d != "" {
		t.Fatalf("follows per enqueue call (-want +got):\n%s", d)
	}
	if d := cmp.Diff(froms[1], froms[2]); d != "" {
		t.Errorf("the failed step was not offered again as it was (-failed +next):\n%s", d)
	}
	seen := map[string]bool{}
	for _, c := range froms {
		for _, f := range c {
			seen[f] = true
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct followers drained, want %d", len(seen), n)
	}
}
