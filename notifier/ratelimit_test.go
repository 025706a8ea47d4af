package notifier_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/redistest"
	"github.com/followpush/followpush/notifier"
)

// scriptCounter counts the Lua script calls a client sends (redis_rate is
// one script call per AllowN).
type scriptCounter struct{ n atomic.Int64 }

func (c *scriptCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *scriptCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if name := cmd.Name(); (name == "evalsha" || name == "eval") && !redis.HasErrorPrefix(err, "NOSCRIPT") {
			c.n.Add(1)
		}
		return err
	}
}

func (c *scriptCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A RateLimit takes sends from Redis in batches of 1 % of the rate and
// hands them out locally: 100 sends of a 10,000-per-period budget cost one
// Redis call, not 100.
func TestRateLimitTakesSendsInBatches(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	var calls scriptCounter
	rdb.AddHook(&calls)
	rl := notifier.NewRateLimit(rdb, "followpush:fcm", 10000, time.Hour, -1)
	ctx := context.Background()
	for i := range 100 {
		if wait, err := rl.Wait(ctx, 1); err != nil || wait != 0 {
			t.Fatalf("send %d: wait %s, err %v", i, wait, err)
		}
	}
	if n := calls.n.Load(); n != 1 {
		t.Fatalf("100 sends took %d Redis calls, want 1 (one batch of 100)", n)
	}
	if wait, err := rl.Wait(ctx, 1); err != nil || wait != 0 {
		t.Fatalf("send 101: wait %s, err %v", wait, err)
	}
	if n := calls.n.Load(); n != 2 {
		t.Fatalf("the 101st send took %d Redis calls in all, want 2 (a second batch)", n)
	}
}

// Batching never grants more than the shared budget, and the last sends
// of the budget are granted even when less than a batch is left: two
// limiters sharing a key of 301 sends per hour (batches of 3) grant
// exactly 301 sends between them.
func TestRateLimitBatchesKeepTheSharedBudget(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	limiters := []*notifier.RateLimit{
		notifier.NewRateLimit(srv.Client(t), "followpush:fcm", 301, time.Hour, -1),
		notifier.NewRateLimit(srv.Client(t), "followpush:fcm", 301, time.Hour, -1),
	}
	granted, refused := 0, 0
	for i := 0; refused < 10 && i < 1000; i++ {
		wait, err := limiters[i%2].Wait(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if wait == 0 {
			granted++
		} else {
			refused++
		}
	}
	if granted != 301 {
		t.Fatalf("granted %d sends of a 301-send budget", granted)
	}
}
