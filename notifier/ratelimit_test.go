package notifier_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/redistest"
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

// A RateLimit fetches grants from Redis several at a time, more while
// demand keeps up: 1,000 sends of a 10,000-per-period budget cost 16 Redis
// calls (fetches of 1, 2, 4, ... 64, then 100 each), not 1,000.
func TestRateLimitTakesSendsInBatches(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	var calls scriptCounter
	rdb.AddHook(&calls)
	rl := notifier.NewRateLimit(rdb, "followpush:fcm", 10000, time.Hour, -1)
	ctx := context.Background()
	for i := range 1000 {
		if wait, err := rl.Wait(ctx, 1); err != nil || wait != 0 {
			t.Fatalf("send %d: wait %s, err %v", i, wait, err)
		}
	}
	if n := calls.n.Load(); n != 16 {
		t.Fatalf("1,000 sends took %d Redis calls, want 16", n)
	}
}

// A burst of concurrent calls fetches once at a time and takes little
// more than it uses: after 100 concurrent sends on one worker, another
// worker sharing the key still gets all but a batch of the rest.
func TestRateLimitConcurrentBurstWastesLittle(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	a := notifier.NewRateLimit(srv.Client(t), "followpush:fcm", 10000, time.Hour, -1)
	b := notifier.NewRateLimit(srv.Client(t), "followpush:fcm", 10000, time.Hour, -1)
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if wait, err := a.Wait(ctx, 1); err != nil || wait != 0 {
				t.Errorf("burst send: wait %s, err %v", wait, err)
			}
		}()
	}
	wg.Wait()
	granted := 0
	for {
		wait, err := b.Wait(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if wait != 0 {
			break
		}
		granted++
	}
	// 10,000 - 100 sent - at most one fetch (100) left in a's spares.
	if granted < 9800 {
		t.Fatalf("the other worker got %d of the 9,900 sends left: the burst took %d", granted, 10000-granted)
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
