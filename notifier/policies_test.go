package notifier_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/fcmtest"
	"github.com/followpush/followpush/internal/redistest"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/tasks"
)

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
}

func newPolicyFixture(t *testing.T, opts notifier.HandlerOptions) *policyFixture {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	fcm := fcmtest.NewServer(t)
	sender, err := notifier.NewFCMSender(context.Background(), notifier.FCMConfig{ProjectID: "p", Endpoint: fcm.URL()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Truncate(time.Second)
	f := &policyFixture{rdb: rdb, fcm: fcm, clock: &clock{t: start}, start: start,
		reg: devices.NewRegistry(rdb, devices.Options{}), records: delivery.New(rdb, delivery.Options{}),
		insp: asynq.NewInspectorFromRedisClient(rdb)}
	opts.SendTimeout = 3 * time.Second
	opts.Now = f.clock.Now
	opts.Scheduler = asynq.NewClientFromRedisClient(rdb)
	f.h, err = notifier.NewHandler(slog.New(slog.DiscardHandler), f.reg, f.records, sender, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
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
	task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: from, To: to, EventTime: f.clock.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	return f.h.ProcessTask(context.Background(), task)
}

func (f *policyFixture) unfollow(t *testing.T, from, to string) {
	t.Helper()
	if err := f.records.Cancel(context.Background(), "1400000000", from, []string{to}, f.clock.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
}

// digests returns the digest tasks scheduled in the queue.
func (f *policyFixture) digests(t *testing.T) []tasks.Digest {
	t.Helper()
	infos, err := f.insp.ListScheduledTasks(tasks.QueueFollow)
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Fatal(err)
	}
	var out []tasks.Digest
	for _, info := range infos {
		d, err := tasks.ParseDigest(asynq.NewTask(info.Type, info.Payload))
		if err != nil {
			t.Fatalf("scheduled task %s: %v", info.ID, err)
		}
		out = append(out, d)
	}
	return out
}

// runDigest runs the one scheduled digest task, as asynq would at its due
// time, and removes it from the queue as asynq does when it succeeds.
func (f *policyFixture) runDigest(t *testing.T) (tasks.Digest, error) {
	t.Helper()
	ds := f.digests(t)
	if len(ds) != 1 {
		t.Fatalf("scheduled digests = %+v, want exactly one", ds)
	}
	d := ds[0]
	f.clock.Set(d.Time())
	task, err := tasks.NewDigestTask(d)
	if err != nil {
		t.Fatal(err)
	}
	err = f.h.ProcessDigest(context.Background(), task)
	if err == nil {
		if derr := f.insp.DeleteTask(tasks.QueueFollow, d.TaskID()); derr != nil {
			t.Fatal(derr)
		}
	}
	return d, err
}

// pushes returns, per FCM request so far, "token: title / body".
func (f *policyFixture) pushes() []string {
	var out []string
	for _, r := range f.fcm.Requests() {
		n, _ := r.Message["notification"].(map[string]any)
		out = append(out, r.Token+": "+str(n["title"])+" / "+str(n["body"]))
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

func (f *policyFixture) lastData(t *testing.T) map[string]any {
	t.Helper()
	reqs := f.fcm.Requests()
	if len(reqs) == 0 {
		t.Fatal("no FCM request")
	}
	data, _ := reqs[len(reqs)-1].Message["data"].(map[string]any)
	return data
}

func TestHandlerCooldown(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Cooldown: 24 * time.Hour}})
	f.register(t, "bob", "tok-bob", "android", "")

	f.at(0)
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	f.at(time.Minute)
	f.unfollow(t, "alice", "bob")
	f.at(2 * time.Minute)
	if err := f.follow(t, "alice", "bob"); err != nil { // follows again: no second push
		t.Fatal(err)
	}
	if err := f.follow(t, "carol", "bob"); err != nil { // another pair: pushed
		t.Fatal(err)
	}
	want := []string{
		"tok-bob: New follower / alice started following you",
		"tok-bob: New follower / carol started following you",
	}
	if d := cmp.Diff(want, f.pushes()); d != "" {
		t.Errorf("pushes (-want +got):\n%s", d)
	}
}

// A follow that failed to reach a device is retried and sent, although it
// now looks like a repeat to the cooldown.
func TestHandlerCooldownLetsRetriesThrough(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Cooldown: time.Hour}})
	var mu sync.Mutex
	calls := 0
	f.fcm.SetResponder(func(fcmtest.Request) fcmtest.Response {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls == 1 {
			return fcmtest.Internal()
		}
		return fcmtest.Response{}
	})
	f.register(t, "bob", "tok-bob", "android", "")
	task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: f.at(0).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	var re *notifier.RetryError
	if err := f.h.ProcessTask(context.Background(), task); !errors.As(err, &re) {
		t.Fatalf("first attempt: %v, want a retry", err)
	}
	if err := f.h.ProcessTask(context.Background(), task); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := len(f.fcm.Requests()); n != 2 {
		t.Errorf("FCM requests = %d, want 2 (the failure and the retry)", n)
	}
}

// Over the per-recipient cap, follows are folded into one summary push
// sent when the hour allows; follows within the cap go out on their own.
func TestHandlerCapFoldsIntoNextSummary(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{MaxPerHour: 2}})
	f.register(t, "bob", "tok-bob", "android", "")
	for i, from := range []string{"a1", "a2", "a3", "a4", "a5"} {
		f.at(time.Duration(i) * time.Minute)
		if err := f.follow(t, from, "bob"); err != nil {
			t.Fatalf("%s: %v", from, err)
		}
	}
	want := []string{
		"tok-bob: New follower / a1 started following you",
		"tok-bob: New follower / a2 started following you",
	}
	if d := cmp.Diff(want, f.pushes()); d != "" {
		t.Fatalf("pushes within the cap (-want +got):\n%s", d)
	}
	d, err := f.runDigest(t)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Time(), f.start.Add(time.Hour); !got.Equal(want) {
		t.Errorf("summary due %s, want %s (when a1's push leaves the hour)", got, want)
	}
	want = append(want, "tok-bob: 3 new followers / a3, a4 and 1 other started following you")
	if d := cmp.Diff(want, f.pushes()); d != "" {
		t.Errorf("pushes after the summary (-want +got):\n%s", d)
	}
	wantData := map[string]any{
		"type": "follow", "from_account": "a3", "to_account": "bob", "event_time": itoa(f.start.Add(4 * time.Minute).UnixMilli()),
		"count": "3", "from_accounts": `["a3","a4","a5"]`, "digest_id": d.ID(),
	}
	if diff := cmp.Diff(wantData, f.lastData(t)); diff != "" {
		t.Errorf("summary data (-want +got):\n%s", diff)
	}
	if left := f.digests(t); len(left) != 0 {
		t.Errorf("digests left: %+v", left)
	}
}

// With aggregation, a burst of follows to one user becomes the first
// follow's push and one summary naming the next followers and counting the
// rest; the summary replaces any older summary on the device.
func TestHandlerAggregationWindow(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: 10 * time.Minute, FirstImmediate: true}})
	f.register(t, "star", "tok-star", "ios", "")
	const burst = 1000
	for i := range burst {
		f.at(time.Duration(i) * 500 * time.Millisecond)
		if err := f.follow(t, "fan"+itoa(int64(i)), "star"); err != nil {
			t.Fatalf("follow %d: %v", i, err)
		}
	}
	if got := f.pushes(); len(got) != 1 || got[0] != "tok-star: New follower / fan0 started following you" {
		t.Fatalf("pushes during the window = %v, want only fan0's", got)
	}
	d, err := f.runDigest(t)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Time(), f.start.Add(10*time.Minute); !got.Equal(want) {
		t.Errorf("summary due %s, want the window's end %s", got, want)
	}
	want := []string{
		"tok-star: New follower / fan0 started following you",
		"tok-star: 999 new followers / fan1, fan2 and 997 others started following you",
	}
	if diff := cmp.Diff(want, f.pushes()); diff != "" {
		t.Errorf("pushes (-want +got):\n%s", diff)
	}
	data := f.lastData(t)
	var listed []string
	if err := json.Unmarshal([]byte(str(data["from_accounts"])), &listed); err != nil {
		t.Fatal(err)
	}
	if data["count"] != "999" || len(listed) != notifier.DigestListMax || listed[0] != "fan1" {
		t.Errorf("data count %v, from_accounts %v: want 999 and the first %d", data["count"], listed, notifier.DigestListMax)
	}
	req := f.fcm.Requests()[1].Message
	apns, _ := req["apns"].(map[string]any)
	headers, _ := apns["headers"].(map[string]any)
	if got := headers["apns-collapse-id"]; got != notifier.DigestCollapseID("star") {
		t.Errorf("apns-collapse-id = %v, want the followee's %s", got, notifier.DigestCollapseID("star"))
	}

	// The summary opened the next window: a follow a minute later waits
	// for the next summary, which goes out one window after the first.
	f.at(11 * time.Minute)
	if err := f.follow(t, "late", "star"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.fcm.Requests()); n != 2 {
		t.Fatalf("a follow inside the new window was pushed at once (%d requests)", n)
	}
	if d, err := f.runDigest(t); err != nil || !d.Time().Equal(f.start.Add(20*time.Minute)) {
		t.Fatalf("second summary %+v, %v; want it due at +20m", d, err)
	}
	if got := f.pushes()[2]; got != "tok-star: New follower / late started following you" {
		t.Errorf("second summary = %q", got)
	}
}

// An unfollow before the summary went out takes the follower out of it; a
// summary whose followers all unfollowed is not sent.
func TestHandlerUndoBeforeSummary(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: time.Minute}})
	f.register(t, "bob", "tok-bob", "web", "")
	for i, from := range []string{"alice", "carol", "dave"} {
		f.at(time.Duration(i) * time.Second)
		if err := f.follow(t, from, "bob"); err != nil {
			t.Fatal(err)
		}
	}
	f.at(10 * time.Second)
	f.unfollow(t, "carol", "bob")
	if _, err := f.runDigest(t); err != nil {
		t.Fatal(err)
	}
	want := []string{"tok-bob: 2 new followers / alice and dave started following you"}
	if d := cmp.Diff(want, f.pushes()); d != "" {
		t.Errorf("pushes (-want +got):\n%s", d)
	}

	// The only pending follower unfollows: nothing is sent.
	f.at(2 * time.Minute)
	if err := f.follow(t, "erin", "bob"); err != nil {
		t.Fatal(err)
	}
	f.at(2*time.Minute + time.Second)
	f.unfollow(t, "erin", "bob")
	if _, err := f.runDigest(t); err != nil {
		t.Fatal(err)
	}
	if n := len(f.fcm.Requests()); n != 1 {
		t.Errorf("a summary of nobody was sent: %v", f.pushes())
	}
}

// The global send rate limit is shared by every worker: past it, a push
// is put off (a retry that is not a failure) whichever worker sends it.
func TestHandlerGlobalRateLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	fcm := fcmtest.NewServer(t)
	sender, err := notifier.NewFCMSender(context.Background(), notifier.FCMConfig{ProjectID: "p", Endpoint: fcm.URL()})
	if err != nil {
		t.Fatal(err)
	}
	reg := devices.NewRegistry(srv.Client(t), devices.Options{})
	workers := make([]*notifier.Handler, 2)
	for i := range workers {
		rdb := srv.Client(t) // each worker its own connection pool
		workers[i], err = notifier.NewHandler(slog.New(slog.DiscardHandler), devices.NewRegistry(rdb, devices.Options{}),
			delivery.New(rdb, delivery.Options{}), sender, nil, notifier.HandlerOptions{
				SendTimeout: 3 * time.Second,
				// Two sends an hour, no waiting: deterministic.
				Limiter: notifier.NewRateLimit(rdb, "followpush:fcm", 2, time.Hour, -1),
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UnixMilli()
	var results []string
	for i, to := range []string{"u1", "u2", "u3", "u4"} {
		if err := reg.Register(context.Background(), to, "tok-"+to, devices.Registration{Platform: "android"}); err != nil {
			t.Fatal(err)
		}
		task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1", From: "fan", To: to, EventTime: now})
		if err != nil {
			t.Fatal(err)
		}
		err = workers[i%2].ProcessTask(context.Background(), task)
		var re *notifier.RetryError
		switch {
		case err == nil:
			results = append(results, "sent")
		case errors.As(err, &re) && re.Throttled && !notifier.IsFailure(err) && re.After > 29*time.Minute:
			results = append(results, "put off")
		default:
			results = append(results, err.Error())
		}
	}
	if d := cmp.Diff([]string{"sent", "sent", "put off", "put off"}, results); d != "" {
		t.Errorf("results (-want +got):\n%s", d)
	}
	if n := len(fcm.Requests()); n != 2 {
		t.Errorf("FCM requests = %d, want 2", n)
	}
}

// Each device gets the text of its own locale: en, zh, ja built in, a
// configured locale, English for anything else.
func TestHandlerPicksDeviceLocale(t *testing.T) {
	t.Parallel()
	tmpl, err := notifier.NewLocalizedTemplates(map[string]notifier.Texts{"pt-BR": {Title: "Novo seguidor", Body: "{{.From}} começou a seguir você"}})
	if err != nil {
		t.Fatal(err)
	}
	f := newPolicyFixture(t, notifier.HandlerOptions{Content: tmpl})
	for tok, loc := range map[string]string{"t-none": "", "t-zh": "zh-CN", "t-ja": "ja-JP", "t-pt": "pt-BR", "t-fr": "fr-FR", "t-hant": "zh-Hant-TW"} {
		f.register(t, "bob", tok, "android", loc)
	}
	f.at(0)
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range f.fcm.Requests() {
		n, _ := r.Message["notification"].(map[string]any)
		got[r.Token] = str(n["title"]) + " / " + str(n["body"])
	}
	want := map[string]string{
		"t-none": "New follower / alice started following you",
		"t-fr":   "New follower / alice started following you",
		"t-zh":   "新粉丝 / alice 关注了你",
		"t-hant": "新粉丝 / alice 关注了你",
		"t-ja":   "新しいフォロワー / aliceさんにフォローされました",
		"t-pt":   "Novo seguidor / alice começou a seguir você",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("texts per device (-want +got):\n%s", d)
	}
}

func TestNewHandlerRefusesIncompletePolicies(t *testing.T) {
	t.Parallel()
	_, err := notifier.NewHandler(slog.New(slog.DiscardHandler), nil, delivery.New(nil, delivery.Options{}), nil, nil,
		notifier.HandlerOptions{Policy: delivery.Policy{Window: time.Minute}})
	if err == nil {
		t.Error("aggregation without a Scheduler was accepted")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
