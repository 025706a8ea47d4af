package notifier_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
)

// The FCM error table of docs/fcm-errors.md, through the real
// firebase-admin-go client and the handler: what happens to the task and
// to the token.
func TestHandlerFCMErrorTable(t *testing.T) {
	t.Parallel()
	type want struct {
		retry      bool // the task is retried
		quota      bool // ... without counting as a failure
		tokenKept  bool
		retryAfter time.Duration
	}
	tests := []struct {
		name string
		resp fcmtest.Response
		want want
	}{
		{"success", fcmtest.Response{}, want{tokenKept: true}},
		{"UNREGISTERED", fcmtest.Unregistered(), want{}},
		{"INVALID_ARGUMENT token", fcmtest.InvalidToken(), want{}},
		{"INVALID_ARGUMENT message", fcmtest.InvalidMessage(), want{tokenKept: true}},
		{"SENDER_ID_MISMATCH", fcmtest.SenderIDMismatch(), want{}},
		{"QUOTA_EXCEEDED", fcmtest.QuotaExceeded(7 * time.Second), want{retry: true, quota: true, tokenKept: true, retryAfter: 7 * time.Second}},
		{"INTERNAL", fcmtest.Internal(), want{retry: true, tokenKept: true}},
		{"THIRD_PARTY_AUTH_ERROR", fcmtest.ThirdPartyAuth(), want{tokenKept: true}},
		{"UNSPECIFIED_ERROR", fcmtest.Unspecified(), want{retry: true, tokenKept: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newHandlerFixture(t, notifier.HandlerOptions{})
			f.fcm.SetResponder(fcmtest.Always(tt.resp))
			f.register(t, "bob", "tok-bob")
			err := f.run(t, f.follow("bob"))

			var re *notifier.RetryError
			if got := errors.As(err, &re); got != tt.want.retry {
				t.Fatalf("retry = %v (err %v), want %v", got, err, tt.want.retry)
			}
			if err != nil && !tt.want.retry {
				t.Fatalf("err = %v, want nil", err)
			}
			if tt.want.retry {
				if notifier.IsFailure(err) == tt.want.quota {
					t.Errorf("IsFailure = %v, want %v", notifier.IsFailure(err), !tt.want.quota)
				}
				if re.After != tt.want.retryAfter {
					t.Errorf("RetryAfter = %s, want %s", re.After, tt.want.retryAfter)
				}
			}
			kept := len(f.tokens(t, "bob")) == 1
			if kept != tt.want.tokenKept {
				t.Errorf("token kept = %v, want %v", kept, tt.want.tokenKept)
			}
			if n := len(f.fcm.Requests()); n != 1 {
				t.Errorf("FCM saw %d requests, want 1 (the SDK retries only 503 and network errors)", n)
			}
		})
	}
}

// A task whose devices failed with QUOTA_EXCEEDED and with another
// retryable error: the retry counts against the budget (not every failure
// was a quota one) but still waits as long as a quota retry, so the device
// over its quota is not tried again within seconds.
func TestHandlerMixedQuotaFailureWaitsForTheQuota(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, notifier.HandlerOptions{})
	f.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		if r.Token == "tok-quota" {
			return fcmtest.QuotaExceeded(0)
		}
		return fcmtest.Internal()
	})
	f.register(t, "bob", "tok-quota")
	f.register(t, "bob", "tok-internal")
	err := f.run(t, f.follow("bob"))
	var re *notifier.RetryError
	if !errors.As(err, &re) || re.Devices != 2 {
		t.Fatalf("err = %v, want a RetryError for 2 devices", err)
	}
	if !notifier.IsFailure(err) {
		t.Error("IsFailure = false, want true: the INTERNAL failure uses up the budget")
	}
	for n := range 4 {
		if d := notifier.RetryDelay(n, err, nil); d < time.Minute {
			t.Errorf("RetryDelay(%d) = %s, want at least the 60 s of a quota retry", n, d)
		}
	}
}

// A follow template that passes the start-up check but fails on a
// follower's name at run time does not lose the push: the built-in text of
// the locale goes out instead.
func TestHandlerFollowTemplateFailureFallsBackToBuiltin(t *testing.T) {
	t.Parallel()
	tmpl, err := pushtext.NewLocalizedTemplates(map[string]pushtext.Texts{
		"en": {Title: "{{slice .From 0 3}} is here"}, // fine for "alice", not for "ed"
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newHandlerFixture(t, notifier.HandlerOptions{Content: tmpl})
	f.register(t, "bob", "tok-bob")
	fl := f.follow("bob")
	fl.From = "ed"
	if err := f.run(t, fl); err != nil {
		t.Fatalf("ProcessTask: %v", err)
	}
	reqs := f.fcm.Requests()
	if len(reqs) != 1 {
		t.Fatalf("FCM got %d requests, want 1", len(reqs))
	}
	n, _ := reqs[0].Message["notification"].(map[string]any)
	if n["title"] != pushtext.DefaultTitle || n["body"] != "ed started following you" {
		t.Errorf("notification = %v, want the built-in English text", n)
	}
}

// Redis goes away while FCM carries the push and comes back 4 s later:
// the worker keeps trying to record the send, so the task ends done and
// running it again sends nothing (without the retries the record fails,
// the task is retried and the device gets the push twice).
func TestHandlerRecordsSendAcrossRedisRestart(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, notifier.HandlerOptions{})
	f.register(t, "bob", "tok-bob")
	restarted := make(chan struct{})
	var once sync.Once
	f.fcm.SetResponder(func(fcmtest.Request) fcmtest.Response {
		once.Do(func() {
			f.redis.Stop()
			go func() {
				defer close(restarted)
				time.Sleep(4 * time.Second) // the fault: Redis is down for 4 s, past go-redis's own retries
				f.redis.Restart()
			}()
		})
		return fcmtest.Response{}
	})
	fl := f.follow("bob")
	err := f.run(t, fl)
	<-restarted
	if err != nil {
		t.Fatalf("ProcessTask: %v, want the send recorded once Redis is back", err)
	}
	if err := f.run(t, fl); err != nil {
		t.Fatalf("second ProcessTask: %v", err)
	}
	if n := len(f.fcm.Requests()); n != 1 {
		t.Errorf("FCM got %d requests, want 1: the send was not recorded", n)
	}
}

// A retry after one device failed sends only to that device.
func TestHandlerRetrySendsOnlyToFailedDevices(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, notifier.HandlerOptions{})
	var mu sync.Mutex
	calls := map[string]int{}
	f.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		mu.Lock()
		defer mu.Unlock()
		calls[r.Token]++
		if r.Token == "tok-flaky" && calls[r.Token] == 1 {
			return fcmtest.Internal()
		}
		return fcmtest.Response{}
	})
	f.register(t, "bob", "tok-ok-1", "tok-flaky", "tok-ok-2")
	fl := f.follow("bob")
	var re *notifier.RetryError
	if err := f.run(t, fl); !errors.As(err, &re) || re.Devices != 1 {
		t.Fatalf("first attempt: %v, want a retry for 1 device", err)
	}
	if err := f.run(t, fl); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	if err := f.run(t, fl); err != nil { // a duplicate task after success
		t.Fatalf("third attempt: %v", err)
	}
	want := map[string]int{"tok-ok-1": 1, "tok-ok-2": 1, "tok-flaky": 2}
	if d := cmp.Diff(want, calls); d != "" {
		t.Errorf("sends per device (-want +got):\n%s", d)
	}
}

func TestHandlerDropsStaleAndCancelled(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, notifier.HandlerOptions{MaxEventAge: time.Minute})
	f.register(t, "bob", "tok-bob")
	stale := f.follow("bob")
	stale.EventTime = f.now.Add(-2 * time.Minute).UnixMilli()
	if err := f.run(t, stale); err != nil {
		t.Fatalf("stale: %v", err)
	}
	cancelled := f.follow("bob")
	if err := f.records.Cancel(context.Background(), cancelled.AppID, cancelled.From, []string{"bob"}, cancelled.EventTime+1); err != nil {
		t.Fatal(err)
	}
	if err := f.run(t, cancelled); err != nil {
		t.Fatalf("cancelled: %v", err)
	}
	if n := len(f.fcm.Requests()); n != 0 {
		t.Errorf("stale/cancelled follows caused %d FCM requests", n)
	}
}

func TestHandlerNoDevicesIsQuietSuccess(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, notifier.HandlerOptions{})
	fl := f.follow("nobody")
	if err := f.run(t, fl); err != nil {
		t.Fatal(err)
	}
	rec, err := f.records.Load(context.Background(), fl)
	if err != nil || !rec.Done {
		t.Fatalf("record = %+v, %v; want done", rec, err)
	}
}

func TestHandlerInvalidPayloadIsNotRetried(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, notifier.HandlerOptions{})
	err := f.h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeFollow, []byte(`{"from":"a"}`)))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("err = %v, want SkipRetry", err)
	}
}

// A burst of SENDER_ID_MISMATCH is a credentials problem: past the
// breaker's limit no worker deletes tokens for it (two handlers share one
// breaker through Redis, as two worker processes do), until a send
// succeeds, which closes the breaker; deleting then resumes.
func TestHandlerSenderIDMismatchBreaker(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	breaker := func() *notifier.MismatchBreaker {
		return notifier.NewMismatchBreaker(srv.Client(t), "followpush:breaker:sender_id_mismatch", notifier.MismatchBreakerOptions{Limit: 2})
	}
	opts := func() notifier.HandlerOptions { return notifier.HandlerOptions{MismatchBreaker: breaker()} }
	a := newHandlerFixture(t, opts())
	b := newHandlerFixture(t, opts()) // another worker, with a registry of its own
	for _, f := range []*handlerFixture{a, b} {
		f.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
			if strings.HasPrefix(r.Token, "good") {
				return fcmtest.Response{}
			}
			return fcmtest.SenderIDMismatch()
		})
	}
	a.register(t, "bob", "t1", "t2", "t3", "t4", "t5")
	if err := a.run(t, a.follow("bob")); err != nil {
		t.Fatal(err)
	}
	if left := a.tokens(t, "bob"); len(left) != 3 {
		t.Errorf("worker a: tokens left = %v, want 3 of 5 (the limit is 2)", left)
	}
	b.register(t, "carol", "c1", "c2")
	if err := b.run(t, b.follow("carol")); err != nil {
		t.Fatal(err)
	}
	if left := b.tokens(t, "carol"); len(left) != 2 {
		t.Errorf("worker b: tokens left = %v, want both: the breaker a opened holds for b too", left)
	}
	if !breaker().Open(context.Background()) {
		t.Error("breaker not open")
	}

	// A success (on worker b) closes the breaker for everyone.
	b.register(t, "dan", "good-dan", "d1")
	if err := b.run(t, b.follow("dan")); err != nil {
		t.Fatal(err)
	}
	if breaker().Open(context.Background()) {
		t.Error("breaker still open after a successful send")
	}
	if left := b.tokens(t, "dan"); !slices.Equal(left, []string{"good-dan"}) {
		t.Errorf("worker b: dan's tokens = %v, want only good-dan (d1 deleted: sent in the same task as the success)", left)
	}
	a.register(t, "erin", "e1")
	if err := a.run(t, a.follow("erin")); err != nil {
		t.Fatal(err)
	}
	if left := a.tokens(t, "erin"); len(left) != 0 {
		t.Errorf("worker a: erin's tokens = %v, want none: deleting resumed", left)
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	between := func(t *testing.T, name string, d, lo, hi time.Duration) {
		t.Helper()
		if d < lo || d > hi {
			t.Errorf("%s: delay %s not in [%s, %s]", name, d, lo, hi)
		}
	}
	for i := 0; i < 50; i++ {
		between(t, "n=0 plain error", notifier.RetryDelay(0, errors.New("x"), nil), 500*time.Millisecond, time.Second)
		between(t, "n=3 plain error", notifier.RetryDelay(3, errors.New("x"), nil), 4*time.Second, 8*time.Second)
		between(t, "n=30 capped", notifier.RetryDelay(30, errors.New("x"), nil), 5*time.Minute, 10*time.Minute)
		between(t, "Retry-After wins, plus up to 25 % jitter", notifier.RetryDelay(0, &notifier.RetryError{After: 42 * time.Second}, nil), 42*time.Second, 42*time.Second+42*time.Second/4)
		between(t, "quota first", notifier.RetryDelay(0, &notifier.RetryError{Quota: true, QuotaRetries: 1}, nil), 60*time.Second, 75*time.Second)
		between(t, "quota grows without n", notifier.RetryDelay(0, &notifier.RetryError{Quota: true, QuotaRetries: 3}, nil), 4*time.Minute, 5*time.Minute)
		between(t, "quota Retry-After", notifier.RetryDelay(0, &notifier.RetryError{Quota: true, QuotaRetries: 1, After: 5 * time.Minute}, nil), 5*time.Minute, 375*time.Second)
	}
	if notifier.IsFailure(&notifier.RetryError{Quota: true}) || !notifier.IsFailure(&notifier.RetryError{}) || !notifier.IsFailure(errors.New("x")) {
		t.Error("IsFailure: only quota retries are not failures")
	}
}

// roundTrips counts a client's Redis round trips: a command or a pipeline.
// A new pooled connection's handshake (HELLO, CLIENT SETINFO) is not
// counted: it is not paid per push.
type roundTrips struct{ n atomic.Int64 }

func (c *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !handshake(cmds[0]) {
			c.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

func handshake(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

// A follow pushed to a followee's devices costs the handler three Redis
// round trips (the worker's throughput is bound by them): the record and
// the device list in one; the tokens' owners, with the notification
// policies' verdict when they are on; and the record of what was sent
// together with the done flag. Reading the followee's preferences rides
// on the first. A repeat costs one and sends nothing.
func TestHandlerRedisRoundTripsPerPush(t *testing.T) {
	t.Parallel()
	for _, sc := range []struct {
		name   string
		policy delivery.Policy
		prefs  bool
	}{{"no policies", delivery.Policy{}, false}, {"cooldown", delivery.Policy{Cooldown: time.Hour}, false},
		{"cooldown and preferences", delivery.Policy{Cooldown: time.Hour}, true}} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			f := newHandlerFixture(t, notifier.HandlerOptions{Policy: sc.policy})
			if sc.prefs {
				var err error
				f.h, err = notifier.NewHandler(slog.New(slog.DiscardHandler), f.reg, f.records, senderTo(t, f.fcm, "p"), nil, notifier.HandlerOptions{
					Policy: sc.policy, Preferences: preferences.NewStore(f.rdb, ""), Scheduler: asynq.NewClientFromRedisClient(f.rdb)})
				if err != nil {
					t.Fatal(err)
				}
			}
			f.register(t, "bob", "tok-1", "tok-2")
			// Warm up: the first use of a script loads it into Redis.
			f.register(t, "carol", "tok-3")
			if err := f.run(t, f.follow("carol")); err != nil {
				t.Fatal(err)
			}
			f.fcm.Reset()
			var rt roundTrips
			f.rdb.AddHook(&rt)
			fl := f.follow("bob")
			if err := f.run(t, fl); err != nil {
				t.Fatal(err)
			}
			if n := len(f.fcm.Requests()); n != 2 {
				t.Fatalf("%d FCM requests, want 2", n)
			}
			if n := rt.n.Load(); n != 3 {
				t.Errorf("a push to 2 devices took %d Redis round trips, want 3", n)
			}
			rt.n.Store(0)
			if err := f.run(t, fl); err != nil {
				t.Fatal(err)
			}
			if n := len(f.fcm.Requests()); n != 2 {
				t.Fatalf("the repeat sent again: %d FCM requests in all", n)
			}
			if n := rt.n.Load(); n != 1 {
				t.Errorf("a repeat took %d Redis round trips, want 1", n)
			}
		})
	}
}

// failDeviceReads makes the device-list read of a pipeline fail while on,
// as a timeout or a failing-over cluster node would.
type failDeviceReads struct{ on atomic.Bool }

func (h *failDeviceReads) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *failDeviceReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *failDeviceReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if h.on.Load() {
			for _, c := range cmds {
				if c.Name() == "zrevrange" {
					c.SetErr(errors.New("i/o timeout (injected)"))
				}
			}
		}
		return err
	}
}

// A failed read of the followee's devices is an error (the task is
// retried), not "no devices": the retry sends the push.
func TestHandlerDeviceReadFailureIsRetried(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Cooldown: time.Hour}})
	f.register(t, "bob", "tok-1")
	var fail failDeviceReads
	f.rdb.AddHook(&fail)
	fail.on.Store(true)
	fl := f.follow("bob")
	if err := f.run(t, fl); err == nil {
		t.Fatal("device read failed, yet the task succeeded")
	}
	if n := len(f.fcm.Requests()); n != 0 {
		t.Fatalf("%d FCM requests without a device list", n)
	}
	fail.on.Store(false)
	if err := f.run(t, fl); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := len(f.fcm.Requests()); n != 1 {
		t.Fatalf("retry sent %d pushes, want 1", n)
	}
}

// A summary push speaks each device's locale (zh, ja built in), for many
// followers and for one.
func TestHandlerSummaryInDeviceLocale(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: time.Minute}})
	f.register(t, "bob", "tok-zh", "android", "zh-CN")
	f.register(t, "bob", "tok-ja", "ios", "ja-JP")
	f.followEachSecond(t, "bob", "alice", "carol", "dave")
	if _, err := f.runDigest(t); err != nil {
		t.Fatal(err)
	}
	// The summary opened the next window: erin alone is its summary.
	f.at(90 * time.Second)
	if err := f.follow(t, "erin", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.runDigest(t); err != nil {
		t.Fatal(err)
	}
	got := f.pushes()
	slices.Sort(got[:2])
	slices.Sort(got[2:])
	want := []string{
		"tok-ja: 3人の新しいフォロワー / aliceさん、carolさんほか1人にフォローされました",
		"tok-zh: 3 位新粉丝 / alice、carol 等 3 人关注了你",
		"tok-ja: 新しいフォロワー / erinさんにフォローされました",
		"tok-zh: 新粉丝 / erin 关注了你",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("pushes (-want +got):\n%s", d)
	}
}

// The counters tell the truth (the contract's I4): a follow is counted
// sent only when FCM accepted its push for at least one device, in any
// attempt; one whose every device answered UNREGISTERED is undelivered,
// and its claim is released, so the pair is not held by the cooldown.
func TestHandlerCountsSentOnlyWhenADeviceAccepted(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	fakeFCM := fcmtest.NewServer(t)
	var flaky atomic.Int32
	fakeFCM.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		switch r.Token {
		case "dead-1", "dead-2":
			return fcmtest.Unregistered()
		case "flaky":
			if flaky.Add(1) == 1 {
				return fcmtest.Unavailable(time.Hour) // beyond the SDK's own retries
			}
		}
		return fcmtest.Response{}
	})
	sender := senderTo(t, fakeFCM, "p")
	reg := prometheus.NewRegistry()
	devs := devices.NewRegistry(rdb, devices.Options{})
	h, err := notifier.NewHandler(slog.New(slog.DiscardHandler), devs, delivery.New(rdb, delivery.Options{}), sender,
		notifier.NewMetrics(reg), notifier.HandlerOptions{Policy: delivery.Policy{Cooldown: time.Hour}}) // the default 10 s send deadline: no send here waits for it
	if err != nil {
		t.Fatal(err)
	}
	for user, toks := range map[string][]string{"dora": {"dead-1", "dead-2"}, "fred": {"flaky"}} {
		for _, tok := range toks {
			if err := devs.Register(context.Background(), user, tok, devices.Registration{Platform: "android"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(f tasks.Follow) error {
		task, err := tasks.NewFollowTask(f)
		if err != nil {
			t.Fatal(err)
		}
		return h.ProcessTask(context.Background(), task)
	}
	now := time.Now().UnixMilli()
	if err := run(tasks.Follow{AppID: "1", From: "alice", To: "dora", EventTime: now}); err != nil {
		t.Fatalf("every device dead: %v, want the task done", err)
	}
	fl := tasks.Follow{AppID: "1", From: "alice", To: "fred", EventTime: now}
	if err := run(fl); err == nil {
		t.Fatal("a 503 did not ask for a retry")
	}
	if err := run(fl); err != nil {
		t.Fatalf("retry: %v", err)
	}
	got := counterValues(t, reg, "followpush_tasks_total", "result")
	want := map[string]float64{"undelivered": 1, "retry": 1, "sent": 1}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("followpush_tasks_total (-want +got):\n%s", d)
	}
	// dora's follow notified nobody: a refollow is not held back.
	if err := devs.Register(context.Background(), "dora", "alive", devices.Registration{Platform: "android"}); err != nil {
		t.Fatal(err)
	}
	if err := run(tasks.Follow{AppID: "1", From: "alice", To: "dora", EventTime: now + 1000}); err != nil {
		t.Fatal(err)
	}
	if got := counterValues(t, reg, "followpush_tasks_total", "result")["sent"]; got != 2 {
		t.Errorf("the refollow after a push that reached nobody: sent = %v, want 2 (not cooldown)", got)
	}
}

// counterValues returns the non-zero values of a counter family by the
// given label.
func counterValues(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && m.GetCounter().GetValue() > 0 {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
