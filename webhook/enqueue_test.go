package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/webhook"
)

func followsTo(n int) []tasks.Follow {
	out := make([]tasks.Follow, n)
	for i := range out {
		out[i] = tasks.Follow{AppID: testApp, From: "UserID_001", To: fmt.Sprintf("UserID_%04d", i+2), EventTime: 1767225600123}
	}
	return out
}

// A follow stored by AsynqEnqueuer (batched) is the task asynq's client
// stores for tasks.NewFollowTask: the same message bytes, state and queue.
func TestAsynqEnqueuerWritesAsynqsTask(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	ctx := context.Background()
	viaEnq := red.Client(t)
	viaAsynq := redis.NewClient(&redis.Options{Addr: red.Addr(), DB: 1})
	t.Cleanup(func() { viaAsynq.Close() })

	follows := followsTo(3)
	res, err := webhook.NewAsynqEnqueuer(viaEnq, 4).EnqueueFollows(ctx, follows)
	if err != nil || res != (webhook.EnqueueResult{Enqueued: 3}) {
		t.Fatalf("EnqueueFollows = %+v, %v", res, err)
	}
	client := asynq.NewClientFromRedisClient(viaAsynq)
	for _, f := range follows {
		tk, err := tasks.NewFollowTask(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.EnqueueContext(ctx, tk); err != nil {
			t.Fatal(err)
		}
		key := "asynq:{" + tasks.QueueFollow + "}:t:" + f.TaskID()
		for _, field := range []string{"msg", "state"} {
			want, err := viaAsynq.HGet(ctx, key, field).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got, err := viaEnq.HGet(ctx, key, field).Result(); err != nil || got != want {
				t.Errorf("%s %s = %x (%v), asynq wrote %x", key, field, got, err, want)
			}
		}
	}
	for _, key := range []string{"asynq:queues", "asynq:{" + tasks.QueueFollow + "}:pending"} {
		want, got := viaAsynq.Sort(ctx, key, &redis.Sort{Alpha: true}).Val(), viaEnq.Sort(ctx, key, &redis.Sort{Alpha: true}).Val()
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Errorf("%s = %v, asynq wrote %v", key, got, want)
		}
	}
}

// A webhook with more follows than one pipeline takes is stored in several
// (some concurrently); repeating it counts every follow as a duplicate.
func TestAsynqEnqueuerManyFollows(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	enq := webhook.NewAsynqEnqueuer(rdb, 2)
	follows := followsTo(1000)
	res, err := enq.EnqueueFollows(ctx, follows[:250])
	if err != nil || res != (webhook.EnqueueResult{Enqueued: 250}) {
		t.Fatalf("EnqueueFollows(250) = %+v, %v", res, err)
	}
	res, err = enq.EnqueueFollows(ctx, follows)
	if err != nil || res != (webhook.EnqueueResult{Enqueued: 750, Duplicate: 250}) {
		t.Fatalf("EnqueueFollows(1000) = %+v, %v", res, err)
	}
	if n, err := rdb.LLen(ctx, "asynq:{"+tasks.QueueFollow+"}:pending").Result(); err != nil || n != 1000 {
		t.Errorf("pending = %d, %v; want 1000", n, err)
	}
}

// An invalid follow fails the call before anything is stored; a Redis that
// is gone is an error.
func TestAsynqEnqueuerErrors(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	rdb := red.Client(t)
	ctx := context.Background()
	enq := webhook.NewAsynqEnqueuer(rdb, 4)
	follows := followsTo(150)
	follows[120].To = follows[120].From
	res, err := enq.EnqueueFollows(ctx, follows)
	if !errors.Is(err, tasks.ErrInvalidFollow) || res != (webhook.EnqueueResult{}) {
		t.Errorf("EnqueueFollows with a self-follow = %+v, %v", res, err)
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("Redis holds %d keys (%v), want 0", n, err)
	}
	red.Stop()
	if res, err := enq.EnqueueFollows(ctx, followsTo(2)); err == nil || res != (webhook.EnqueueResult{}) {
		t.Errorf("EnqueueFollows with Redis stopped = %+v, %v", res, err)
	}
}

// With Shards set, each follow is stored in its followee's queue (the
// whole task, by its id), and every queue used is listed in asynq:queues.
func TestAsynqEnqueuerRoutesByFollowee(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	shards, err := tasks.NewShards(6)
	if err != nil {
		t.Fatal(err)
	}
	enq := webhook.NewAsynqEnqueuer(rdb, 4)
	enq.Shards = shards
	follows := followsTo(250) // three pipelines
	if res, err := enq.EnqueueFollows(ctx, follows); err != nil || res.Enqueued != len(follows) {
		t.Fatalf("EnqueueFollows = %+v, %v", res, err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	perQueue := map[string]int{}
	for _, f := range follows {
		q := shards.Queue(f.To)
		if _, err := insp.GetTaskInfo(q, f.TaskID()); err != nil {
			t.Errorf("follow to %s not in queue %s: %v", f.To, q, err)
		}
		perQueue[q]++
	}
	queues, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	if len(queues) != len(perQueue) || len(perQueue) != 6 {
		t.Errorf("asynq:queues lists %v, want the 6 shards %v", queues, shards.Names())
	}
	for _, q := range queues {
		if n, err := rdb.LLen(ctx, "asynq:{"+q+"}:pending").Result(); err != nil || int(n) != perQueue[q] {
			t.Errorf("queue %s holds %d pending (%v), want %d", q, n, err, perQueue[q])
		}
	}
}
