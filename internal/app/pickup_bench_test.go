package app

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/internal/testrig/redistest"
)

// BenchmarkPickupLatency measures how long an idle worker takes to start a
// task after it was enqueued, for several TaskCheckInterval values
// (WORKER_POLL_INTERVAL), against a real redis-server, one task at a time.
// It reports p50 and p99 in milliseconds and the Redis commands per second
// an idle worker costs.
//
//	go test -run '^$' -bench PickupLatency -benchtime 100x ./internal/app
func BenchmarkPickupLatency(b *testing.B) {
	for _, interval := range []time.Duration{time.Second, 100 * time.Millisecond, 20 * time.Millisecond, 10 * time.Millisecond, 5 * time.Millisecond} {
		b.Run(fmt.Sprintf("interval=%s", interval), func(b *testing.B) {
			red := redistest.Start(b)
			rdb := red.Client(b)
			started := make(chan time.Time, 1)
			srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
				Concurrency: 10, Queues: map[string]int{"q": 1}, TaskCheckInterval: interval,
				LogLevel: asynq.ErrorLevel,
			})
			if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
				started <- time.Now()
				return nil
			})); err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			client := asynq.NewClientFromRedisClient(rdb)

			// Idle cost: Redis commands per second while nothing is queued.
			before, _ := rdb.InfoMap(context.Background(), "stats").Result()
			idleStart := time.Now()
			time.Sleep(2 * time.Second) // measuring a rate over a fixed window, not waiting for an event
			after, _ := rdb.InfoMap(context.Background(), "stats").Result()
			var c0, c1 int
			fmt.Sscan(before["Stats"]["total_commands_processed"], &c0)
			fmt.Sscan(after["Stats"]["total_commands_processed"], &c1)
			idleOps := float64(c1-c0) / time.Since(idleStart).Seconds()

			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := client.Enqueue(asynq.NewTask("t", nil, asynq.Queue("q"))); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, (<-started).Sub(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
			b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99_ms")
			b.ReportMetric(idleOps, "idle_redis_ops/s")
		})
	}
}
