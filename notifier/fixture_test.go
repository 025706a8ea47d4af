package notifier_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
)

// The handler fixtures the package's tests share: a real redis-server, a
// local FCM server and firebase-admin-go posting to it, the device
// registry and the delivery records over that Redis, and the handler.

// senderTo returns a firebase-admin-go sender posting to the local FCM
// server srv for project.
func senderTo(tb testing.TB, srv *fcmtest.Server, project string) *fcm.Sender {
	tb.Helper()
	sender, err := fcm.NewSender(context.Background(), fcm.Config{ProjectID: project, Endpoint: srv.URL()})
	if err != nil {
		tb.Fatal(err)
	}
	return sender
}

// runFollow runs the follow task of fl through h.
func runFollow(t *testing.T, h *notifier.Handler, fl tasks.Follow) error {
	t.Helper()
	task, err := tasks.NewFollowTask(fl)
	if err != nil {
		t.Fatal(err)
	}
	return h.ProcessTask(context.Background(), task)
}

// handlerFixture is a handler without a clock or scheduler of its own over
// a real redis-server and a local FCM server.
type handlerFixture struct {
	h       *notifier.Handler
	redis   *redistest.Server
	rdb     *redis.Client
	fcm     *fcmtest.Server
	reg     *devices.Registry
	records *delivery.Store
	now     time.Time
}

func newHandlerFixture(t *testing.T, opts notifier.HandlerOptions) *handlerFixture {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	fakeFCM := fcmtest.NewServer(t)
	f := &handlerFixture{redis: srv, rdb: rdb, fcm: fakeFCM, now: time.Now(),
		reg: devices.NewRegistry(rdb, devices.Options{}), records: delivery.New(rdb, delivery.Options{})}
	var err error
	f.h, err = notifier.NewHandler(slog.New(slog.DiscardHandler), f.reg, f.records, senderTo(t, fakeFCM, "p"), nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *handlerFixture) follow(to string) tasks.Follow {
	return tasks.Follow{AppID: "1400000000", From: "alice", To: to, EventTime: f.now.UnixMilli()}
}

func (f *handlerFixture) run(t *testing.T, fl tasks.Follow) error {
	t.Helper()
	return runFollow(t, f.h, fl)
}

func (f *handlerFixture) register(t *testing.T, user string, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		if err := f.reg.Register(context.Background(), user, tok, devices.Registration{Platform: "android"}); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *handlerFixture) tokens(t *testing.T, user string) []string {
	t.Helper()
	list, err := f.reg.List(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range list {
		out = append(out, d.Token)
	}
	return out
}

// clock is a controllable HandlerOptions.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// policyFixture is a handler with notification policies over a real
// redis-server, a real asynq client scheduling digests into it, and a
// local FCM server.
type policyFixture struct {
	h       *notifier.Handler
	rdb     *redis.Client
	fcm     *fcmtest.Server
	reg     *devices.Registry
	records *delivery.Store
	insp    *asynq.Inspector
	clock   *clock
	start   time.Time
	metrics *prometheus.Registry
	sched   *flakyScheduler
}

// flakyScheduler is an asynq client whose next fail enqueues fail.
type flakyScheduler struct {
	next notifier.Scheduler
	fail atomic.Int32
}

func (s *flakyScheduler) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	if s.fail.Add(-1) >= 0 {
		return nil, errors.New("redis: connection refused")
	}
	return s.next.EnqueueContext(ctx, t, opts...)
}

func newPolicyFixture(t *testing.T, opts notifier.HandlerOptions) *policyFixture {
	t.Helper()
	return newFixture(t, opts, false)
}

// newFixture is newPolicyFixture, with the users' preferences read from
// the same Redis when prefs is true.
func newFixture(t *testing.T, opts notifier.HandlerOptions, prefs bool) *policyFixture {
	t.Helper()
	f := newPolicyStores(t)
	if prefs {
		opts.Preferences = preferences.NewStore(f.rdb, "")
	}
	f.startHandler(t, opts)
	return f
}

// newPolicyStores returns a policyFixture without its handler: its Redis,
// FCM server, stores, clock and scheduler.
func newPolicyStores(t *testing.T) *policyFixture {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	start := time.Now().Truncate(time.Second)
	return &policyFixture{rdb: rdb, fcm: fcmtest.NewServer(t), clock: &clock{t: start}, start: start,
		reg: devices.NewRegistry(rdb, devices.Options{}), records: delivery.New(rdb, delivery.Options{}),
		insp: asynq.NewInspectorFromRedisClient(rdb), metrics: prometheus.NewRegistry(),
		sched: &flakyScheduler{next: asynq.NewClientFromRedisClient(rdb)}}
}

// startHandler makes f's handler with opts, on f's clock and scheduler.
func (f *policyFixture) startHandler(t *testing.T, opts notifier.HandlerOptions) {
	t.Helper()
	opts.Now = f.clock.Now
	opts.Scheduler = f.sched
	var err error
	f.h, err = notifier.NewHandler(slog.New(slog.DiscardHandler), f.reg, f.records, senderTo(t, f.fcm, "p"), notifier.NewMetrics(f.metrics), opts)
	if err != nil {
		t.Fatal(err)
	}
}

// at sets the clock to start+d.
func (f *policyFixture) at(d time.Duration) time.Time {
	f.clock.Set(f.start.Add(d))
	return f.start.Add(d)
}

func (f *policyFixture) register(t *testing.T, user, token, platform, locale string) {
	t.Helper()
	if err := f.reg.Register(context.Background(), user, token, devices.Registration{Platform: platform, Locale: locale}); err != nil {
		t.Fatal(err)
	}
}

// follow runs the follow task of from following to, stamped now.
func (f *policyFixture) follow(t *testing.T, from, to string) error {
	t.Helper()
	return runFollow(t, f.h, tasks.Follow{AppID: "1400000000", From: from, To: to, EventTime: f.clock.Now().UnixMilli()})
}

// failedFirstAttempt registers bob's Android device, has FCM fail, runs
// alice's follow of bob stamped at the fixture's start (which it sets the
// clock to), checks that the attempt asks for a retry, lets FCM accept
// again and returns the task for the retry; what names the attempt in a
// failure.
func (f *policyFixture) failedFirstAttempt(t *testing.T, what string) *asynq.Task {
	t.Helper()
	f.register(t, "bob", "tok-bob", "android", "")
	f.fcm.SetResponder(fcmtest.Always(fcmtest.Internal()))
	task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: f.at(0).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	var re *notifier.RetryError
	if err := f.h.ProcessTask(context.Background(), task); !errors.As(err, &re) {
		t.Fatalf("%s: %v, want a retry", what, err)
	}
	f.fcm.SetResponder(fcmtest.Always(fcmtest.Response{}))
	return task
}
