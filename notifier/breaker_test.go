package notifier

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/redistest"
)

// The Redis script keeps exactly the state of the in-memory model (which
// reads as the breaker's definition): random sequences of mismatches,
// successes and clock jumps get the same answers from both, on a real
// redis-server and on miniredis (standalone's embedded Redis). A failing
// seed replays exactly.
func TestMismatchBreakerRedisMatchesModel(t *testing.T) {
	t.Parallel()
	mini := miniredis.RunT(t)
	backends := map[string]redis.UniversalClient{
		"redis-server": redistest.Start(t).Client(t),
		"miniredis":    redis.NewClient(&redis.Options{Addr: mini.Addr()}),
	}
	for name, rdb := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			compareWithModel(t, rdb)
		})
	}
}

func compareWithModel(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		limit := 1 + rng.IntN(5)
		window := time.Duration(1+rng.IntN(20)) * time.Second
		red := redisBreaker{rdb: rdb, key: "breaker-model-" + time.Duration(seed).String()}
		mem := &memBreaker{}
		now := time.UnixMilli(1_700_000_000_000)
		for step := 0; step < 200; step++ {
			switch op := rng.IntN(10); {
			case op < 6:
				ra, ro, rerr := red.mismatch(ctx, now, limit, window)
				ma, mo, _ := mem.mismatch(ctx, now, limit, window)
				if rerr != nil || ra != ma || ro != mo {
					t.Fatalf("seed %d step %d: mismatch: redis (%v, %v, %v), model (%v, %v)", seed, step, ra, ro, rerr, ma, mo)
				}
			case op < 7:
				rc, rerr := red.succeeded(ctx)
				mc, _ := mem.succeeded(ctx)
				if rerr != nil || rc != mc {
					t.Fatalf("seed %d step %d: succeeded: redis (%v, %v), model %v", seed, step, rc, rerr, mc)
				}
			default:
				// Jumps around the window's length, in whole ms.
				now = now.Add(time.Duration(rng.Int64N(int64(window/time.Millisecond)/2+1)) * time.Millisecond)
			}
			ro, rerr := red.isOpen(ctx)
			mo, _ := mem.isOpen(ctx)
			if rerr != nil || ro != mo {
				t.Fatalf("seed %d step %d: open: redis (%v, %v), model %v", seed, step, ro, rerr, mo)
			}
		}
	}
}

// Breakers of many workers over one key let exactly Limit deletions
// through between them, and exactly one of them reports opening it.
func TestMismatchBreakerSharedLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const workers, each, limit = 8, 40, 25
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		deleted, opens int
	)
	for range workers {
		b := NewMismatchBreaker(srv.Client(t), "followpush:breaker:sender_id_mismatch", MismatchBreakerOptions{Limit: limit})
		wg.Go(func() {
			for range each {
				del, opened, err := b.Mismatch(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if del {
					deleted++
				}
				if opened {
					opens++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if deleted != limit || opens != 1 {
		t.Errorf("%d workers × %d mismatches: %d deletions allowed, %d opened it; want %d and 1", workers, each, deleted, opens, limit)
	}
	b := NewMismatchBreaker(srv.Client(t), "followpush:breaker:sender_id_mismatch", MismatchBreakerOptions{Limit: limit})
	if !b.Open(context.Background()) {
		t.Error("a new worker does not see the breaker open")
	}
	closed, err := b.Succeeded(context.Background())
	if err != nil || !closed {
		t.Errorf("Succeeded = %v, %v; want it to close the breaker", closed, err)
	}
	if closed, _ := b.Succeeded(context.Background()); closed {
		t.Error("a second success within a second closed it again")
	}
}
