package history_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
)

// BenchmarkMemoryPerEvent measures the Redis memory of a followee's
// history (MEMORY USAGE of the key, all samples) holding n entries of a
// typical mix: per follow, the receiver's entry and the worker's "sent"
// with one device (masked token, FCM message name of Google's length).
// It reports bytes/event and bytes/key:
//
//	go test -run '^$' -bench MemoryPerEvent -benchtime 1x ./history
func BenchmarkMemoryPerEvent(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	ctx := context.Background()
	for _, n := range []int{10, history.DefaultMaxEvents, 1000} {
		b.Run("events="+strconv.Itoa(n), func(b *testing.B) {
			s := history.New(rdb, history.Options{MaxEvents: n}, nil)
			to := "UserID_" + strconv.Itoa(n)
			base := time.Now().UnixMilli()
			for i := 0; i < n; i += 2 {
				f := tasks.Follow{AppID: "1400000000", From: fmt.Sprintf("UserID_%06d", i), To: to, EventTime: base + int64(i)}
				p := rdb.Pipeline()
				s.QueueFollows(ctx, p, []tasks.Follow{f})
				if _, err := p.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				if err := s.Write(ctx, history.Entry{To: to, Event: "sent", From: f.From, TaskID: f.TaskID(), Detail: history.Detail{
					Devices: []history.Device{{Token: "fGw3kQ…9xZc", Outcome: "sent", Message: fmt.Sprintf("projects/my-app-4f2a1/messages/0:%d%%31bd1c9631bd1c96", 1700000000000000+i)}}}}); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
			}
			used, err := rdb.MemoryUsage(ctx, s.Key(to), 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			kept, err := rdb.XLen(ctx, s.Key(to)).Result()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(used)/float64(kept), "bytes/event")
			b.ReportMetric(float64(used), "bytes/key")
			b.ReportMetric(float64(kept), "entries")
		})
	}
}
