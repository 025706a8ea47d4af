package app

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/internal/testrig/syncbuf"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/webhook"
)

// Changing FOLLOW_QUEUE_SHARDS while tasks are queued loses none: follows
// and scheduled digests stored under 6 shards are processed by a worker
// restarted with 3, and what receivers then store under 3 (and an old
// receiver still under 6) by a worker restarted with 1. Every follow is
// pushed exactly once and every queue ends empty (no task archived).
func TestReshardingLosesNoTask(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	workerCfg := func(shards int) config.Worker {
		cfg, err := config.LoadWorker(func(k string) string {
			return map[string]string{
				"REDIS_URL":           red.URL(0),
				"FCM_PROJECT_ID":      "test",
				"FOLLOW_QUEUE_SHARDS": strconv.Itoa(shards),
				"AGGREGATION_WINDOW":  "1s", // digest tasks are then handled, not refused
				"SHUTDOWN_TIMEOUT":    "5s",
				"LOG_LEVEL":           "error",
			}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	rdb := workerCfg(1).Redis.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	reg := devices.NewRegistry(rdb, devices.Options{Prefix: config.DefaultKeyPrefix})
	sent := make(chan string, 1000)

	user := 0
	// store enqueues n follows of new followees (each with a device) as a
	// receiver with the given shard count does, and digests of two more
	// followees due in a second as a worker with that count schedules
	// them; it returns the followees' tokens.
	store := func(shards, n int) []string {
		t.Helper()
		s, err := tasks.NewShards(shards)
		if err != nil {
			t.Fatal(err)
		}
		enq := webhook.NewAsynqEnqueuer(rdb, 4)
		enq.Shards = s
		var follows []tasks.Follow
		var tokens []string
		for range n {
			user++
			to := fmt.Sprintf("u%04d", user)
			if err := reg.Register(ctx, to, "tok-"+to, devices.Registration{}); err != nil {
				t.Fatal(err)
			}
			follows = append(follows, tasks.Follow{AppID: "1400000000", From: "fan", To: to, EventTime: time.Now().UnixMilli()})
			tokens = append(tokens, "tok-"+to)
		}
		if res, err := enq.EnqueueFollows(ctx, follows); err != nil || res.Enqueued != n {
			t.Fatalf("enqueue under %d shards: %+v, %v", shards, res, err)
		}
		client := asynq.NewClientFromRedisClient(rdb)
		for range 2 {
			user++
			d := tasks.Summary{AppID: "1400000000", To: fmt.Sprintf("u%04d", user), Due: time.Now().Add(time.Second).UnixMilli()}
			task, err := tasks.NewSummaryTask(d, asynq.Queue(s.Queue(d.To)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.EnqueueContext(ctx, task); err != nil {
				t.Fatal(err)
			}
		}
		return tokens
	}
	// drain runs a worker with the given shard count until every token of
	// want was sent and every follow queue in Redis is empty.
	got := map[string]int{}
	drain := func(shards int, want []string) []string {
		t.Helper()
		w, err := NewWorker(workerCfg(shards), rdb, &recordingSender{sent: sent}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Shutdown()
		pending := map[string]bool{}
		for _, tok := range want {
			pending[tok] = true
		}
		for {
			for len(pending) > 0 {
				select {
				case tok := <-sent:
					got[tok]++
					delete(pending, tok)
				case <-ctx.Done():
					t.Fatalf("worker with %d shards (queues %v): %d follows never pushed, e.g. %v", shards, w.Queues, len(pending), slices.Sorted(maps.Keys(pending))[:1])
				}
			}
			left := queued(t, insp)
			if left == "" {
				return w.Queues
			}
			select {
			case tok := <-sent:
				got[tok]++
			case <-ctx.Done():
				t.Fatalf("worker with %d shards (queues %v) left tasks: %s", shards, w.Queues, left)
			case <-time.After(50 * time.Millisecond): // poll the queues again
			}
		}
	}

	var all []string
	first := store(6, 60)
	all = append(all, first...)
	queues := drain(3, first)
	six, _ := tasks.NewShards(6)
	three, _ := tasks.NewShards(3)
	if want := append(three.Names(), slices.Sorted(slices.Values(six.Names()))...); !slices.Equal(queues, want) {
		t.Errorf("worker with 3 shards consumed %v, want %v", queues, want)
	}

	second := append(store(3, 30), store(6, 30)...)
	all = append(all, second...)
	queues = drain(1, second)
	if len(queues) != 1+3+6 || queues[0] != tasks.QueueFollow {
		t.Errorf("worker with 1 shard consumed %v, want %s and the 9 queues of 3 and 6 shards", queues, tasks.QueueFollow)
	}
	for _, tok := range all {
		if got[tok] != 1 {
			t.Errorf("%s pushed %d times, want once", tok, got[tok])
		}
	}
	if len(got) != len(all) {
		t.Errorf("%d tokens pushed, want %d", len(got), len(all))
	}
}

// queued describes the tasks left in any follow queue, "" when none.
func queued(t *testing.T, insp *asynq.Inspector) string {
	t.Helper()
	names, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, q := range names {
		qi, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		if n := qi.Pending + qi.Active + qi.Scheduled + qi.Retry + qi.Archived; n > 0 {
			out += fmt.Sprintf("%s: %d pending, %d active, %d scheduled, %d retry, %d archived; ", q, qi.Pending, qi.Active, qi.Scheduled, qi.Retry, qi.Archived)
		}
	}
	return out
}

// fakeQueues lists queues, or fails.
type fakeQueues struct {
	names []string
	err   error
}

func (f fakeQueues) Queues() ([]string, error) { return f.names, f.err }

// ConsumedQueues: the worker's own shards first, then the other follow
// queues Redis lists, sorted; other queues are not consumed; when Redis
// cannot list them, the own shards alone, with the error.
func TestConsumedQueues(t *testing.T) {
	t.Parallel()
	three, _ := tasks.NewShards(3)
	listed := []string{"default", "follow-5of6-1", tasks.QueueFollow, "follow-1of3-1", "follow-0of6-2", "follow-0of6-0", "critical"}
	got, others, err := ConsumedQueues(fakeQueues{names: listed}, three)
	want := append(three.Names(), tasks.QueueFollow, "follow-0of6-2", "follow-5of6-1")
	if err != nil || !slices.Equal(got, want) || !slices.Equal(others, want[3:]) {
		t.Errorf("ConsumedQueues = %v, %v, %v; want %v, %v", got, others, err, want, want[3:])
	}
	got, others, err = ConsumedQueues(fakeQueues{err: fmt.Errorf("connection refused")}, three)
	if err == nil || !slices.Equal(got, three.Names()) || others != nil {
		t.Errorf("ConsumedQueues with Redis down = %v, %v, %v; want %v and the error", got, others, err, three.Names())
	}
}

// A follow queue that appears after the worker started (a receiver with
// another FOLLOW_QUEUE_SHARDS) is reported once, as an error naming it;
// the worker's own queues and other queues are not.
func TestWorkerReportsFollowQueuesItDoesNotConsume(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	cfg, err := config.LoadWorker(func(k string) string {
		return map[string]string{"REDIS_URL": red.URL(0), "FCM_PROJECT_ID": "test", "FOLLOW_QUEUE_SHARDS": "3", "LOG_LEVEL": "error"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	rdb := cfg.Redis.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	var buf syncbuf.Buffer
	w, err := NewWorker(cfg, rdb, &recordingSender{sent: make(chan string, 10)}, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	w.checkEvery = 10 * time.Millisecond
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := asynq.NewClientFromRedisClient(rdb)
	stranger := tasks.ShardQueue(1, 2)
	for _, q := range []string{w.Queues[0], "default", stranger} {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask("other", nil), asynq.Queue(q), asynq.ProcessIn(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	reported := func() (queues []any) {
		for _, l := range logLines(&buf) {
			if strings.HasPrefix(fmt.Sprint(l["msg"]), "a follow queue this worker does not consume") {
				queues = append(queues, l["queue"])
			}
		}
		return queues
	}
	for len(reported()) == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("no report of queue %s; log: %v", stranger, logLines(&buf))
		case <-time.After(10 * time.Millisecond): // poll the log again
		}
	}
	// Many more checks, still one report.
	for range 3 {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask("other", nil), asynq.Queue(stranger), asynq.ProcessIn(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for done := w.checks.Load(); w.checks.Load() < done+5; {
		select {
		case <-ctx.Done():
			t.Fatal("the watcher stopped checking")
		case <-time.After(10 * time.Millisecond): // poll the counter again
		}
	}
	w.Shutdown() // waits for the watcher: no check runs after this
	if got := reported(); len(got) != 1 || got[0] != stranger {
		t.Errorf("reported queues %v, want [%s] once", got, stranger)
	}
}
