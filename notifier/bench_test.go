package notifier_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	fhistory "github.com/followpush/followpush/history"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// The worker's hot paths, for `go test -bench . -cpuprofile`:
//
//	go test -run '^$' -bench . -benchmem ./notifier
//
// BenchmarkProcessTask needs redis-server on PATH.

func BenchmarkBuildMessage(b *testing.B) {
	f := tasks.Follow{AppID: "1400000000", From: "UserID_001", To: "UserID_002", EventTime: 1767225600123}
	content := pushtext.DefaultContent(f)
	for _, platform := range []string{devices.PlatformAndroid, devices.PlatformIOS, ""} {
		name := platform
		if name == "" {
			name = "unknown"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := fcm.BuildMessage(f, "device-token-0123456789", platform, content)
				if m.Token == "" {
					b.Fatal("no token")
				}
			}
		})
	}
}

func BenchmarkTemplatesRender(b *testing.B) {
	t, err := pushtext.NewTemplates("", "")
	if err != nil {
		b.Fatal(err)
	}
	f := tasks.Follow{AppID: "1400000000", From: "UserID_001", To: "UserID_002", EventTime: 1767225600123}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Render(f); err != nil {
			b.Fatal(err)
		}
	}
}

// nopSender accepts every message without sending it.
type nopSender struct{}

func (nopSender) Send(_ context.Context, msgs []*messaging.Message) []error {
	return make([]error, len(msgs))
}

// users is how many followees the process-task benchmarks push to, one
// device each.
const users = 1000

// benchStores starts a real redis-server with users followees u0, u1, ...
// registered, each with one Android token ending in suffix, and a local
// FCM server with a sender posting to it.
func benchStores(b *testing.B, suffix string) (*redis.Client, *devices.Registry, *fcmtest.Server, notifier.Sender) {
	b.Helper()
	rdb := redistest.Start(b).Client(b)
	reg := devices.NewRegistry(rdb, devices.Options{})
	fakeFCM := fcmtest.NewServer(b)
	sender := senderTo(b, fakeFCM, "bench")
	for i := range users {
		if err := reg.Register(context.Background(), "u"+strconv.Itoa(i), "token-"+strconv.Itoa(i)+suffix, devices.Registration{Platform: "android"}); err != nil {
			b.Fatal(err)
		}
	}
	return rdb, reg, fakeFCM, sender
}

// BenchmarkProcessTask is one follow task through the worker's handler
// against a real redis-server, for a followee with one device: with a no-op
// sender ("nop": the handler's own work and its Redis round trips) and with
// firebase-admin-go posting to a local FCM server ("fcm": what a worker
// process adds per push); "nop-prefs" is "nop" with the users' preferences
// read (none set: the cost every follow pays for the feature).
func BenchmarkProcessTask(b *testing.B) {
	rdb, reg, fakeFCM, fcmSender := benchStores(b, "")
	ctx := context.Background()
	for _, sc := range []struct {
		name   string
		sender notifier.Sender
		prefs  bool
	}{{"nop", nopSender{}, false}, {"nop-prefs", nopSender{}, true}, {"fcm", fcmSender, false}} {
		b.Run(sc.name, func(b *testing.B) {
			opts := notifier.HandlerOptions{SendTimeout: 3 * time.Second}
			if sc.prefs {
				opts.Preferences = preferences.NewStore(rdb, "")
				opts.Scheduler = asynq.NewClientFromRedisClient(rdb)
			}
			h, err := notifier.NewHandler(slog.New(slog.DiscardHandler), reg, delivery.New(rdb, delivery.Options{}), sc.sender, nil, opts)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now().UnixMilli()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: "f" + strconv.Itoa(i) + "-" + sc.name,
					To: "u" + strconv.Itoa(i%users), EventTime: now})
				if err != nil {
					b.Fatal(err)
				}
				if err := h.ProcessTask(ctx, task); err != nil {
					b.Fatal(err)
				}
			}
			fakeFCM.Reset() // the fake keeps every request; do not let it grow across runs
		})
	}
}

// BenchmarkProcessTaskHistory is BenchmarkProcessTask with the follow
// history off and on, alternating in one run (4 rounds of off then on),
// so that the machine's state weighs on both alike:
//
//	go test -run '^$' -bench ProcessTaskHistory ./notifier
//
// With the history on, each task's entry is written by the background
// writer; the timing includes waiting for the last of them (Flush).
func BenchmarkProcessTaskHistory(b *testing.B) {
	rdb, reg, fakeFCM, fcmSender := benchStores(b, "-0123456789abcdef")
	ctx := context.Background()
	run := 0
	for _, sc := range []struct {
		name   string
		sender notifier.Sender
	}{{"nop", nopSender{}}, {"fcm", fcmSender}} {
		for round := range 4 {
			for _, on := range []bool{false, true} {
				name := sc.name + "/history=off/round=" + strconv.Itoa(round)
				if on {
					name = sc.name + "/history=on/round=" + strconv.Itoa(round)
				}
				b.Run(name, func(b *testing.B) {
					run++
					var async *fhistory.Async
					opts := notifier.HandlerOptions{SendTimeout: 3 * time.Second}
					if on {
						async = fhistory.New(rdb, fhistory.Options{}, nil).Async(0)
						defer async.Close(ctx)
						opts.History = async
					}
					h, err := notifier.NewHandler(slog.New(slog.DiscardHandler), reg, delivery.New(rdb, delivery.Options{}), sc.sender, nil, opts)
					if err != nil {
						b.Fatal(err)
					}
					now := time.Now().UnixMilli()
					b.ReportAllocs()
					b.ResetTimer()
					for i := range b.N {
						task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: "f" + strconv.Itoa(i) + "-" + strconv.Itoa(run),
							To: "u" + strconv.Itoa(i%users), EventTime: now})
						if err != nil {
							b.Fatal(err)
						}
						if err := h.ProcessTask(ctx, task); err != nil {
							b.Fatal(err)
						}
					}
					if async != nil {
						if err := async.Flush(ctx); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					fakeFCM.Reset()
				})
			}
		}
	}
}
