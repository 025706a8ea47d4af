package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/followpush/followpush/tasks"
)

// AsynqEnqueuer is the [Enqueuer] that stores follows as asynq tasks built by
// tasks.NewFollowTask. A task whose id already exists (the same event, still
// queued, running, or retrying) counts as a duplicate, not an error.
type AsynqEnqueuer struct {
	client      *asynq.Client
	concurrency int
}

// NewAsynqEnqueuer returns an AsynqEnqueuer that enqueues up to concurrency
// tasks of one call at once (default 16 when concurrency < 1).
func NewAsynqEnqueuer(client *asynq.Client, concurrency int) *AsynqEnqueuer {
	if concurrency < 1 {
		concurrency = 16
	}
	return &AsynqEnqueuer{client: client, concurrency: concurrency}
}

// EnqueueFollows stores one task per follow, concurrently (bounded), and
// returns when all are stored or one failed; the result counts what was
// stored either way.
func (e *AsynqEnqueuer) EnqueueFollows(ctx context.Context, follows []tasks.Follow) (EnqueueResult, error) {
	if len(follows) == 1 {
		dup, err := e.enqueue(ctx, follows[0])
		switch {
		case err != nil:
			return EnqueueResult{}, err
		case dup:
			return EnqueueResult{Duplicate: 1}, nil
		}
		return EnqueueResult{Enqueued: 1}, nil
	}
	var (
		mu  sync.Mutex
		res EnqueueResult
		g   errgroup.Group
	)
	g.SetLimit(e.concurrency)
	for _, f := range follows {
		g.Go(func() error {
			dup, err := e.enqueue(ctx, f)
			if err != nil {
				return err
			}
			mu.Lock()
			if dup {
				res.Duplicate++
			} else {
				res.Enqueued++
			}
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	return res, err
}

func (e *AsynqEnqueuer) enqueue(ctx context.Context, f tasks.Follow) (duplicate bool, err error) {
	t, err := tasks.NewFollowTask(f)
	if err != nil {
		return false, err
	}
	_, err = e.client.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("enqueue follow task %s: %w", f.TaskID(), err)
	}
	return false, nil
}
