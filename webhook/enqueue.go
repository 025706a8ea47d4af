package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/followpush/followpush/internal/asynqbatch"
	"github.com/followpush/followpush/tasks"
)

// enqueueBatch is the most follow tasks stored in one Redis pipeline. A
// FollowList is normally at most 20 followees, so one webhook is usually one
// pipeline; a 1000-followee one is 10.
const enqueueBatch = 100

// AsynqEnqueuer is the [Enqueuer] that stores follows as the asynq tasks
// described by tasks.FollowSpec, many per Redis round trip
// (internal/asynqbatch; asynq's own client has no batch enqueue). A task
// whose id already exists (the same event, still queued, running, or
// retrying) counts as a duplicate, not an error.
type AsynqEnqueuer struct {
	// Retention keeps each task as completed for this long after it
	// succeeded (asynq.Retention; COMPLETED_TASK_RETENTION), so that
	// asynqmon's Completed tab shows it; 0 (the default) deletes it at
	// once. Set it before the first call.
	Retention time.Duration
	// Journal, when set, writes a history entry of each follow in the
	// pipeline that stores its task (a *history.Store); its failures are
	// its own, never the enqueue's. Set it before the first call.
	Journal Journal
	// Shards routes each follow to its followee's queue
	// (FOLLOW_QUEUE_SHARDS); the zero Shards is the single queue
	// tasks.QueueFollow. Set it before the first call.
	Shards tasks.Shards

	batch       *asynqbatch.Client
	concurrency int
}

// Journal writes entries about follows on a pipeline of the caller's:
// [*history.Store] implements it. done is called once the pipeline ran.
type Journal interface {
	QueueFollows(ctx context.Context, p redis.Pipeliner, follows []tasks.Follow) (done func())
}

// DefaultEnqueueConcurrency is how many pipelines [NewAsynqEnqueuer] runs
// at once when not told.
const DefaultEnqueueConcurrency = 16

// NewAsynqEnqueuer returns an AsynqEnqueuer over rdb that stores the follows
// of one call in pipelines of up to 100 tasks, at most concurrency
// pipelines at once ([DefaultEnqueueConcurrency] when concurrency < 1).
func NewAsynqEnqueuer(rdb redis.UniversalClient, concurrency int) *AsynqEnqueuer {
	if concurrency < 1 {
		concurrency = DefaultEnqueueConcurrency
	}
	return &AsynqEnqueuer{batch: asynqbatch.New(rdb), concurrency: concurrency}
}

// EnqueueFollows stores one task per follow and returns once every
// pipeline has answered, with the first error if any failed; the result
// counts what is known to be stored either way. An invalid follow is an
// error before anything is stored.
func (e *AsynqEnqueuer) EnqueueFollows(ctx context.Context, follows []tasks.Follow) (EnqueueResult, error) {
	ts := make([]asynqbatch.Task, len(follows))
	for i, f := range follows {
		s, err := tasks.FollowSpec(f)
		if err != nil {
			return EnqueueResult{}, err
		}
		s.Retention = e.Retention
		s.Queue = e.Shards.Queue(f.To)
		ts[i] = asynqbatch.Task(s)
	}
	if len(ts) <= enqueueBatch {
		return e.store(ctx, ts, follows)
	}
	var (
		mu  sync.Mutex
		res EnqueueResult
		g   errgroup.Group
	)
	g.SetLimit(e.concurrency)
	for start := 0; start < len(ts); start += enqueueBatch {
		end := min(start+enqueueBatch, len(ts))
		chunk, fs := ts[start:end], follows[start:end]
		g.Go(func() error {
			r, err := e.store(ctx, chunk, fs)
			mu.Lock()
			res.Enqueued += r.Enqueued
			res.Duplicate += r.Duplicate
			mu.Unlock()
			return err
		})
	}
	err := g.Wait()
	return res, err
}

// store enqueues ts, the tasks of follows, in one pipeline, with their
// history entries when there is a Journal. On error only the tasks known
// to be created are counted.
func (e *AsynqEnqueuer) store(ctx context.Context, ts []asynqbatch.Task, follows []tasks.Follow) (EnqueueResult, error) {
	var res EnqueueResult
	var also func(redis.Pipeliner)
	done := func() {}
	if e.Journal != nil {
		also = func(p redis.Pipeliner) { done = e.Journal.QueueFollows(ctx, p, follows) }
	}
	created, err := e.batch.EnqueueAlso(ctx, ts, also)
	done()
	for _, c := range created {
		if c {
			res.Enqueued++
		} else if err == nil {
			res.Duplicate++
		}
	}
	if err != nil {
		return res, fmt.Errorf("enqueue %d follow tasks: %w", len(ts), err)
	}
	return res, nil
}
