package delivery_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
)

// BenchmarkPushCost measures the parts a push's Redis work is made of, each
// as CPU per operation of the redis-server and of the calling process, so
// that the cost of a push can be told apart into round trips and script
// work (BENCHMARKS.md, "Cost per push"):
//
//   - roundtrip: one PING, the cost of a round trip with no work in it;
//   - admit: the admission of a new follow under the default cooldown (the
//     script a push runs before it is sent), one round trip each;
//   - settle: the settle of an admitted follow whose push one device
//     accepted (the script a push runs after it is sent), one round trip
//     each.
//
// Operations run on 16 goroutines per GOMAXPROCS, as a worker's
// concurrent tasks do.
// Reported: redis-µs/op (used_cpu_user + used_cpu_sys of INFO) and
// client-µs/op (this process's CPU time, the benchmark's own loop
// included). Run it as
//
//	go test -run '^$' -bench PushCost -benchtime 20000x ./delivery
func BenchmarkPushCost(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
	b.Cleanup(func() { _ = rdb.Close() })
	st := delivery.New(rdb, delivery.Options{})
	ctx := context.Background()
	pol := delivery.Policy{Cooldown: delivery.DefaultCooldown}
	now := time.Now()
	follow := func(i int) tasks.Follow {
		return tasks.Follow{AppID: "1400000000", From: "f" + strconv.Itoa(i), To: "u" + strconv.Itoa(i%10_000), EventTime: now.UnixMilli()}
	}
	admit := func(f tasks.Follow) error {
		pipe := rdb.Pipeline()
		q := st.QueueAdmit(ctx, pipe, f, pol, now, 30*time.Second)
		_, _ = pipe.Exec(ctx)
		adm, err := q.Result(ctx)
		if err == nil && adm.Verdict != delivery.VerdictSend {
			err = fmt.Errorf("admission of %v: %s, want send", f, adm.Verdict)
		}
		return err
	}

	measure := func(b *testing.B, op func(i int) error) {
		b.Helper()
		var next atomic.Int64
		r0, c0 := readStats(b, rdb).cpu, processCPU()
		b.ResetTimer()
		b.SetParallelism(16) // 16 goroutines per GOMAXPROCS
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(int(next.Add(1))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		r1, c1 := readStats(b, rdb).cpu, processCPU()
		b.ReportMetric((r1-r0)*1e6/float64(b.N), "redis-µs/op")
		b.ReportMetric((c1-c0)*1e6/float64(b.N), "client-µs/op")
	}

	b.Run("roundtrip", func(b *testing.B) {
		measure(b, func(int) error { return rdb.Ping(ctx).Err() })
	})
	base := 0
	b.Run("admit", func(b *testing.B) {
		base += 1_000_000 // a new follower per operation, in every run of b
		off := base
		measure(b, func(i int) error { return admit(follow(off + i)) })
	})
	b.Run("settle", func(b *testing.B) {
		base += 1_000_000
		off := base
		for i := 1; i <= b.N; i++ {
			if err := admit(follow(off + i)); err != nil {
				b.Fatal(err)
			}
		}
		measure(b, func(i int) error {
			_, err := st.Settle(ctx, follow(off+i), delivery.Attempt{Finished: []string{"token-" + strconv.Itoa(i)}, Accepted: true, Final: true}, now)
			return err
		})
	})
}

// processCPU is this process's user and system CPU time so far, seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
