package app

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/asynqbatch"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
)

// BenchmarkCompletedTaskMemory measures what COMPLETED_TASK_RETENTION
// costs in Redis: follow tasks stored as the receiver stores them
// (tasks.FollowSpec through asynqbatch, UserIDs of 11 bytes) are processed
// by an asynq server with a handler that succeeds, with and without a
// retention, against a real redis-server. It reports the used_memory of
// Redis per task kept as completed (the difference between the two runs,
// divided by the number of tasks) and MEMORY USAGE of one completed
// task's hash.
//
//	go test -run '^$' -bench CompletedTaskMemory -benchtime 20000x ./internal/app
func BenchmarkCompletedTaskMemory(b *testing.B) {
	n := b.N
	if n < 1000 {
		n = 1000 // per-task figures need many tasks
	}
	used := func(retention time.Duration) (int64, int64) {
		red := redistest.Start(b)
		rdb := red.Client(b)
		ctx := context.Background()
		base := usedMemory(b, rdb)
		batch := asynqbatch.New(rdb)
		ev := time.Now().UnixMilli()
		for start := 0; start < n; start += 100 {
			var ts []asynqbatch.Task
			for i := start; i < min(start+100, n); i++ {
				s, err := tasks.FollowSpec(tasks.Follow{AppID: "1400000000", From: fmt.Sprintf("user_%06d", i), To: fmt.Sprintf("user_%06d", i+1), EventTime: ev})
				if err != nil {
					b.Fatal(err)
				}
				s.Retention = retention
				ts = append(ts, asynqbatch.Task(s))
			}
			if _, err := batch.Enqueue(ctx, ts); err != nil {
				b.Fatal(err)
			}
		}
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency: 50, Queues: map[string]int{tasks.QueueFollow: 1}, TaskCheckInterval: time.Millisecond,
			LogLevel: asynq.ErrorLevel,
		})
		if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
			b.Fatal(err)
		}
		insp := asynq.NewInspectorFromRedisClient(rdb)
		deadline := time.Now().Add(5 * time.Minute)
		tick := time.NewTicker(50 * time.Millisecond)
		for {
			qi, err := insp.GetQueueInfo(tasks.QueueFollow)
			if err == nil && qi.Pending+qi.Active == 0 && int(qi.Processed) >= n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("tasks not processed after 5 minutes: %+v (%v)", qi, err)
			}
			<-tick.C
		}
		tick.Stop()
		srv.Shutdown() // its heartbeat keys go with it
		var one int64
		if retention > 0 {
			qi, err := insp.GetQueueInfo(tasks.QueueFollow)
			if err != nil || qi.Completed != n {
				b.Fatalf("completed tasks: %+v (%v), want %d", qi, err, n)
			}
			ids, err := rdb.ZRange(ctx, "asynq:{follow}:completed", 0, 0).Result()
			if err != nil || len(ids) != 1 {
				b.Fatalf("completed set: %v (%v)", ids, err)
			}
			one, err = rdb.MemoryUsage(ctx, "asynq:{follow}:t:"+ids[0]).Result()
			if err != nil {
				b.Fatal(err)
			}
		}
		return usedMemory(b, rdb) - base, one
	}
	b.ResetTimer()
	without, _ := used(0)
	with, hash := used(time.Hour)
	b.StopTimer()
	b.ReportMetric(float64(with-without)/float64(n), "redis_bytes/retained_task")
	b.ReportMetric(float64(hash), "task_hash_bytes")
	b.ReportMetric(float64(without)/float64(n), "redis_bytes/task_after_completion_without_retention")
}

// usedMemory is Redis's INFO memory used_memory.
func usedMemory(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	m, err := rdb.InfoMap(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	v, err := strconv.ParseInt(m["Memory"]["used_memory"], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return v
}
