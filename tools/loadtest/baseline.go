package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/followpush/followpush/internal/testrig/asynqlog"
	"github.com/followpush/followpush/tasks"
)

// benchQueue holds the baselines' tasks, apart from the follow queue.
const benchQueue = "loadtest-bench"

// benchPayload is the size of a follow task's payload.
var benchPayload = []byte(`{"app":"1400000000","from":"f1234567","to":"u1234","t":1767225600123}`)

// enqueueAll enqueues n tasks made by mk from goroutines goroutines with
// one asynq client and returns the rate (tasks/s).
func enqueueAll(ctx context.Context, r *redisTarget, n, goroutines int, mk func(i int) (*asynq.Task, error)) (float64, error) {
	client := asynq.NewClient(r.asynqOpt())
	defer client.Close()
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range goroutines {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return nil
				}
				t, err := mk(i)
				if err != nil {
					return err
				}
				if _, err := client.EnqueueContext(ctx, t); err != nil {
					return fmt.Errorf("enqueue: %w", err)
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// bareEnqueue is the ingest baseline: asynq's client alone storing n small
// tasks from goroutines goroutines.
func bareEnqueue(ctx context.Context, r *redisTarget, n, goroutines int) (float64, error) {
	return enqueueAll(ctx, r, n, goroutines, func(int) (*asynq.Task, error) {
		return asynq.NewTask("loadtest:noop", benchPayload, asynq.Queue(benchQueue)), nil
	})
}

// preloadFollows stores n follow tasks, built by tasks.NewFollowTask as the
// receiver builds them, for followees drawn from pop (each has one device),
// and returns them keyed for matching.
func preloadFollows(ctx context.Context, r *redisTarget, gen *generator, n int) (map[followKey]time.Time, float64, error) {
	now := time.Now().UnixMilli()
	sample := gen.pop.sampler(gen.seed + gen.runs.Add(1)<<20)
	follows := make([]tasks.Follow, n)
	var to []int
	for i := range follows {
		to = sample(1, to)
		follows[i] = tasks.Follow{AppID: appID, From: "f" + strconv.FormatInt(gen.nextID.Add(1), 10), To: userID(to[0]), EventTime: now}
	}
	rate, err := enqueueAll(ctx, r, n, 64, func(i int) (*asynq.Task, error) { return tasks.NewFollowTask(follows[i]) })
	if err != nil {
		return nil, 0, err
	}
	expected := make(map[followKey]time.Time, n)
	for _, f := range follows {
		expected[keyOf(f)] = time.Time{}
	}
	return expected, rate, nil
}

// bareProcess is the processing baseline: an asynq server in this process
// with a no-op handler, concurrency and poll interval as a worker's,
// draining n preloaded small tasks. The queue is paused while the server
// starts; the rate is measured from unpausing to the last task.
// measuring, when not nil, is called right before the queue is unpaused.
func bareProcess(ctx context.Context, r *redisTarget, n, concurrency int, poll time.Duration, measuring func()) (float64, error) {
	if _, err := enqueueAll(ctx, r, n, 64, func(int) (*asynq.Task, error) {
		return asynq.NewTask("loadtest:noop", benchPayload, asynq.Queue(benchQueue)), nil
	}); err != nil {
		return 0, err
	}
	insp := asynq.NewInspector(r.asynqOpt())
	defer insp.Close()
	if err := insp.PauseQueue(benchQueue); err != nil {
		return 0, fmt.Errorf("pause: %w", err)
	}
	var (
		done    atomic.Int64
		mu      sync.Mutex
		last    time.Time
		allDone = make(chan struct{})
	)
	srv := asynq.NewServer(r.asynqOpt(), asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{benchQueue: 1},
		TaskCheckInterval:        poll,
		DelayedTaskCheckInterval: time.Second,
		ShutdownTimeout:          5 * time.Second,
		Logger:                   asynqlog.Discard{}, // its errors reach the harness as returned errors or a stalled count
		LogLevel:                 asynq.ErrorLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		if done.Add(1) == int64(n) {
			mu.Lock()
			last = time.Now()
			mu.Unlock()
			close(allDone)
		}
		return nil
	})); err != nil {
		return 0, fmt.Errorf("start asynq server: %w", err)
	}
	defer srv.Shutdown()
	if measuring != nil {
		measuring()
	}
	start := time.Now()
	if err := insp.UnpauseQueue(benchQueue); err != nil {
		return 0, fmt.Errorf("unpause: %w", err)
	}
	select {
	case <-allDone:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(5*time.Minute + time.Duration(n)*time.Millisecond):
		return 0, fmt.Errorf("bare processing: %d of %d tasks after the timeout", done.Load(), n)
	}
	mu.Lock()
	defer mu.Unlock()
	return float64(n) / last.Sub(start).Seconds(), nil
}
