package delivery_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
)

// benchFollowees is how many followees have a summary pending at once in
// BenchmarkAggregationIdle (FOLLOWPUSH_BENCH_FOLLOWEES, default 100,000).
func benchFollowees(b *testing.B) int {
	if v := os.Getenv("FOLLOWPUSH_BENCH_FOLLOWEES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("FOLLOWPUSH_BENCH_FOLLOWEES=%q", v)
		}
		return n
	}
	return 100_000
}

// redisStats are the counters of INFO that the benchmark compares.
type redisStats struct {
	at       time.Time
	cpu      float64 // used_cpu_user + used_cpu_sys, seconds
	commands int64   // total_commands_processed
	evalsha  int64   // cmdstat_evalsha calls
	memory   int64   // used_memory, bytes
}

func readStats(b *testing.B, rdb *redis.Client) redisStats {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu", "stats", "commandstats", "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	s := redisStats{at: time.Now()}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "used_cpu_user", "used_cpu_sys":
			f, _ := strconv.ParseFloat(v, 64)
			s.cpu += f
		case "total_commands_processed":
			s.commands, _ = strconv.ParseInt(v, 10, 64)
		case "used_memory":
			s.memory, _ = strconv.ParseInt(v, 10, 64)
		case "cmdstat_evalsha":
			for _, kv := range strings.Split(v, ",") {
				if n, ok := strings.CutPrefix(kv, "calls="); ok {
					s.evalsha, _ = strconv.ParseInt(n, 10, 64)
				}
			}
		}
	}
	return s
}

// parallel runs fn(i) for i in [0, n) on 8 goroutines.
func parallel(b *testing.B, n int, fn func(i int) error) {
	b.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
}

func quietAsynqLogger() asynq.Config {
	return asynq.Config{LogLevel: asynq.FatalLevel, ShutdownTimeout: time.Second}
}

// BenchmarkAggregationIdle measures what N followees with a summary
// pending at once cost while nothing is due, on a real redis-server, with
// asynq's group aggregation and with followpush's own digests:
//
//   - asynq-groups: one task in each of N groups (asynq.Group(followee)) and
//     an asynq.Server with a GroupAggregator whose grace period is an hour.
//     Every aggregation tick (every min(GroupGracePeriod, 7 s)), every
//     worker process lists all groups and runs one aggregation-check script
//     per group. Reported: one tick's wall time, Redis CPU and commands.
//   - followpush-digests: N followees each with an open window, a pending
//     follower and a scheduled digest task, and an asynq.Server as the
//     worker runs it (no aggregator; DelayedTaskCheckInterval 1 s).
//     Reported: Redis CPU and commands over the same 7 s.
//
// Both report the Redis memory per followee. Run it alone (it takes a few
// minutes at 100,000):
//
//	go test -run '^$' -bench AggregationIdle -benchtime 1x ./delivery
//
// FOLLOWPUSH_BENCH_FOLLOWEES sets N (default 100,000).
func BenchmarkAggregationIdle(b *testing.B) {
	n := benchFollowees(b)
	b.Run("asynq-groups", func(b *testing.B) {
		for b.Loop() {
			srv := redistest.Start(b)
			rdb := srv.Client(b)
			before := readStats(b, rdb)
			client := asynq.NewClientFromRedisClient(rdb)
			parallel(b, n, func(i int) error {
				t := asynq.NewTask("follow:notify", []byte(`{"app":"1400000000","from":"fan","to":"u`+strconv.Itoa(i)+`","t":1}`))
				_, err := client.Enqueue(t, asynq.Queue("follow"), asynq.Group("u"+strconv.Itoa(i)))
				return err
			})
			loaded := readStats(b, rdb)
			cfg := quietAsynqLogger()
			cfg.Queues = map[string]int{"follow": 1}
			cfg.GroupAggregator = asynq.GroupAggregatorFunc(func(string, []*asynq.Task) *asynq.Task { return asynq.NewTask("follow:digest", nil) })
			cfg.GroupGracePeriod = time.Hour // nothing is due: only the scan is measured
			server := asynq.NewServerFromRedisClient(rdb, cfg)
			if err := server.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
				b.Fatal(err)
			}
			// Wait for a tick to start (evalsha calls jump), then for it to
			// have checked every group.
			var start, end redisStats
			deadline := time.Now().Add(10 * time.Minute)
			poll := time.NewTicker(20 * time.Millisecond)
			idle := readStats(b, rdb)
			for range poll.C {
				s := readStats(b, rdb)
				if start.at.IsZero() && s.evalsha-idle.evalsha >= 50 {
					start = s
				}
				if !start.at.IsZero() && s.evalsha-idle.evalsha >= int64(n) {
					end = s
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("no full aggregation pass within 10 minutes (%d checks)", s.evalsha-idle.evalsha)
				}
			}
			poll.Stop()
			server.Shutdown()
			reportIdle(b, n, before, loaded, start, end, "tick-ms")
		}
	})
	b.Run("followpush-digests", func(b *testing.B) {
		for b.Loop() {
			srv := redistest.Start(b)
			rdb := srv.Client(b)
			before := readStats(b, rdb)
			st := delivery.New(rdb, delivery.Options{})
			client := asynq.NewClientFromRedisClient(rdb)
			p := delivery.Policy{Window: 10 * time.Minute, Cooldown: 24 * time.Hour}
			now := time.Now()
			parallel(b, n, func(i int) error {
				f := tasks.Follow{AppID: "1400000000", From: "fan", To: "u" + strconv.Itoa(i), EventTime: now.UnixMilli()}
				adm, err := st.Admit(context.Background(), f, p, now, time.Minute)
				if err != nil {
					return err
				}
				t, err := tasks.NewSummaryTask(tasks.Summary{AppID: f.AppID, To: f.To, Due: adm.Due})
				if err != nil {
					return err
				}
				_, err = client.Enqueue(t)
				return err
			})
			loaded := readStats(b, rdb)
			cfg := quietAsynqLogger()
			cfg.Queues = map[string]int{tasks.QueueFollow: 1}
			cfg.DelayedTaskCheckInterval = time.Second
			server := asynq.NewServerFromRedisClient(rdb, cfg)
			if err := server.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
				b.Fatal(err)
			}
			start := readStats(b, rdb)
			<-time.After(7 * time.Second) // a measurement window the length of asynq's aggregation tick
			end := readStats(b, rdb)
			server.Shutdown()
			reportIdle(b, n, before, loaded, start, end, "window-ms")
		}
	})
}

// reportIdle reports what BenchmarkAggregationIdle measured for n
// followees: Redis's memory per followee (before and after loading them),
// and over one measurement from start to end, its length (in ms, as
// lengthUnit), Redis's CPU time and its commands.
func reportIdle(b *testing.B, n int, before, loaded, start, end redisStats, lengthUnit string) {
	b.ReportMetric(float64(n), "followees")
	b.ReportMetric(float64(end.at.Sub(start.at).Milliseconds()), lengthUnit)
	b.ReportMetric((end.cpu-start.cpu)*1000, "redis-cpu-ms/tick")
	b.ReportMetric(float64(end.commands-start.commands), "redis-cmds/tick")
	b.ReportMetric(float64(loaded.memory-before.memory)/float64(n), "redis-bytes/followee")
}

// BenchmarkAggregationPerFollow is what one follow folded into a pending
// summary costs: asynq's group enqueue, or followpush's Admit plus the
// (idempotent) digest enqueue, each against a real redis-server with 1,000
// followees in rotation.
//
//	go test -run '^$' -bench AggregationPerFollow ./delivery
func BenchmarkAggregationPerFollow(b *testing.B) {
	const followees = 1000
	b.Run("asynq-group-enqueue", func(b *testing.B) {
		rdb := redistest.Start(b).Client(b)
		client := asynq.NewClientFromRedisClient(rdb)
		i := 0
		for b.Loop() {
			i++
			t := asynq.NewTask("follow:notify", []byte(`{"app":"1400000000","from":"f`+strconv.Itoa(i)+`","to":"u","t":1}`))
			if _, err := client.Enqueue(t, asynq.Queue("follow"), asynq.Group("u"+strconv.Itoa(i%followees))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("followpush-admit-and-schedule", func(b *testing.B) {
		rdb := redistest.Start(b).Client(b)
		st := delivery.New(rdb, delivery.Options{})
		client := asynq.NewClientFromRedisClient(rdb)
		p := delivery.Policy{Window: 10 * time.Minute, FirstImmediate: true, Cooldown: 24 * time.Hour}
		now := time.Now()
		i := 0
		for b.Loop() {
			i++
			f := tasks.Follow{AppID: "1400000000", From: "f" + strconv.Itoa(i), To: "u" + strconv.Itoa(i%followees), EventTime: now.UnixMilli()}
			adm, err := st.Admit(context.Background(), f, p, now, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if adm.Verdict != delivery.VerdictAggregated {
				continue
			}
			t, err := tasks.NewSummaryTask(tasks.Summary{AppID: f.AppID, To: f.To, Due: adm.Due})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := client.Enqueue(t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
				b.Fatal(err)
			}
		}
	})
}
