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

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/tasks"
)

// followEachSecond has each of froms follow to, one a second from the
// fixture's start (0 s, 1 s, ...), failing the test on an error.
func (f *policyFixture) followEachSecond(t *testing.T, to string, froms ...string) {
	t.Helper()
	for i, from := range froms {
		f.at(time.Duration(i) * time.Second)
		if err := f.follow(t, from, to); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *policyFixture) unfollow(t *testing.T, from, to string) {
	t.Helper()
	if err := f.records.Cancel(context.Background(), "1400000000", from, []string{to}, f.clock.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
}

// digests returns the digest tasks scheduled in the queue.
func (f *policyFixture) digests(t *testing.T) []tasks.Summary {
	t.Helper()
	infos, err := f.insp.ListScheduledTasks(tasks.QueueFollow)
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Fatal(err)
	}
	var out []tasks.Summary
	for _, info := range infos {
		d, err := tasks.ParseSummary(asynq.NewTask(info.Type, info.Payload))
		if err != nil {
			t.Fatalf("scheduled task %s: %v", info.ID, err)
		}
		out = append(out, d)
	}
	return out
}

// runDigest runs the one scheduled digest task, as asynq would at its due
// time, and removes it from the queue as asynq does when it succeeds.
func (f *policyFixture) runDigest(t *testing.T) (tasks.Summary, error) {
	t.Helper()
	ds := f.digests(t)
	if len(ds) != 1 {
		t.Fatalf("scheduled digests = %+v, want exactly one", ds)
	}
	d := ds[0]
	f.clock.Set(d.Time())
	task, err := tasks.NewSummaryTask(d)
	if err != nil {
		t.Fatal(err)
	}
	err = f.h.ProcessTask(context.Background(), task)
	if err == nil {
		if derr := f.insp.DeleteTask(tasks.QueueFollow, d.TaskID()); derr != nil {
			t.Fatal(derr)
		}
	}
	return d, err
}

// digestResults returns followpush_digests_total by result.
func (f *policyFixture) digestResults(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := f.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != "followpush_digests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// runAllDigests runs every digest task in the queue, scheduled or already
// due (pending), as asynq would, and returns how many it ran.
func (f *policyFixture) runAllDigests(t *testing.T) int {
	t.Helper()
	var infos []*asynq.TaskInfo
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){f.insp.ListScheduledTasks, f.insp.ListPendingTasks} {
		got, err := list(tasks.QueueFollow)
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			t.Fatal(err)
		}
		infos = append(infos, got...)
	}
	n := 0
	for _, info := range infos {
		if info.Type != tasks.TypeSummary {
			continue
		}
		if err := f.h.ProcessTask(context.Background(), asynq.NewTask(info.Type, info.Payload)); err != nil {
			t.Fatalf("digest %s: %v", info.ID, err)
		}
		if err := f.insp.DeleteTask(tasks.QueueFollow, info.ID); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// failFirstSendPerToken makes FCM answer INTERNAL to the first push to
// each device, and accept the rest.
func (f *policyFixture) failFirstSendPerToken() {
	var mu sync.Mutex
	seen := map[string]bool{}
	f.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		mu.Lock()
		defer mu.Unlock()
		if !seen[r.Token] {
			seen[r.Token] = true
			return fcmtest.Internal()
		}
		return fcmtest.Response{}
	})
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
	task := f.failedFirstAttempt(t, "first attempt")
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
	if data["count"] != "999" || len(listed) != fcm.SummaryListMax || listed[0] != "fan1" {
		t.Errorf("data count %v, from_accounts %v: want 999 and the first %d", data["count"], listed, fcm.SummaryListMax)
	}
	req := f.fcm.Requests()[1].Message
	apns, _ := req["apns"].(map[string]any)
	headers, _ := apns["headers"].(map[string]any)
	if got := headers["apns-collapse-id"]; got != fcm.SummaryCollapseID("star") {
		t.Errorf("apns-collapse-id = %v, want the followee's %s", got, fcm.SummaryCollapseID("star"))
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
	f.followEachSecond(t, "bob", "alice", "carol", "dave")
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

// An unfollow during a summary's retries (FCM 5xx here) takes the
// follower out of the retry, and the count with it; when everyone in it
// unfollowed, the retry sends nothing.
func TestHandlerUndoDuringSummaryRetries(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: time.Minute}})
	f.failFirstSendPerToken()
	f.register(t, "bob", "tok-bob", "android", "")
	f.register(t, "dan", "tok-dan", "android", "")
	f.followEachSecond(t, "bob", "alice", "carol")
	var re *notifier.RetryError
	if _, err := f.runDigest(t); !errors.As(err, &re) {
		t.Fatalf("first attempt: %v, want a retry", err)
	}
	f.at(time.Minute + 5*time.Second)
	f.unfollow(t, "carol", "bob")
	if _, err := f.runDigest(t); err != nil {
		t.Fatalf("retry: %v", err)
	}
	want := []string{
		"tok-bob: 2 new followers / alice and carol started following you", // failed
		"tok-bob: New follower / alice started following you",
	}
	if d := cmp.Diff(want, f.pushes()); d != "" {
		t.Errorf("pushes (-want +got):\n%s", d)
	}
	if data := f.lastData(t); data["count"] != "1" || data["from_accounts"] != `["alice"]` {
		t.Errorf("retry data count %v, from_accounts %v; want 1, alice", data["count"], data["from_accounts"])
	}

	// Everyone in the summary unfollows before the retry: nothing is sent.
	for i, from := range []string{"erin", "fay"} {
		f.at(10*time.Minute + time.Duration(i)*time.Second)
		if err := f.follow(t, from, "dan"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.runDigest(t); !errors.As(err, &re) {
		t.Fatalf("first attempt for dan: %v, want a retry", err)
	}
	f.at(11*time.Minute + 5*time.Second)
	f.unfollow(t, "erin", "dan")
	f.unfollow(t, "fay", "dan")
	if _, err := f.runDigest(t); err != nil {
		t.Fatalf("retry for dan: %v", err)
	}
	if n := len(f.fcm.Requests()); n != 3 {
		t.Errorf("FCM requests = %d (%v), want 3: the retry of a summary of nobody sends nothing", n, f.pushes())
	}
	if got := f.digestResults(t); got["empty"] != 1 || got["sent"] != 1 {
		t.Errorf("digest results = %v, want sent 1 and empty 1", got)
	}
}

// hookNames is a NameResolver naming users by UserID that first runs hook
// once: something that happens while the names are resolved.
type hookNames struct {
	once sync.Once
	hook func()
}

func (n *hookNames) DisplayNames(_ context.Context, _ string, users []string) map[string]string {
	n.once.Do(n.hook)
	out := map[string]string{}
	for _, u := range users {
		out[u] = u
	}
	return out
}

// An unfollow that arrives while a summary's first attempt reads the
// devices and the display names (up to seconds with a slow Tencent API)
// still takes the follower out of it.
func TestHandlerUndoWhileSummaryIsPrepared(t *testing.T) {
	t.Parallel()
	names := &hookNames{}
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: time.Minute}, Names: names})
	names.hook = func() { f.unfollow(t, "carol", "bob") }
	f.register(t, "bob", "tok-bob", "android", "")
	f.followEachSecond(t, "bob", "alice", "carol", "dave")
	if _, err := f.runDigest(t); err != nil {
		t.Fatal(err)
	}
	want := []string{"tok-bob: 2 new followers / alice and dave started following you"}
	if d := cmp.Diff(want, f.pushes()); d != "" {
		t.Errorf("pushes (-want +got):\n%s", d)
	}
	if data := f.lastData(t); data["count"] != "2" {
		t.Errorf("data count = %v, want 2", data["count"])
	}
}

// A summary whose snapshot is gone when its retry comes (expired, or lost
// by Redis) is counted as stale, not as undone or superseded, and nothing
// is sent.
func TestHandlerSummaryWithLostSnapshotIsStale(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: time.Minute, MaxPerHour: 10}})
	f.failFirstSendPerToken()
	f.register(t, "bob", "tok-bob", "android", "")
	f.followEachSecond(t, "bob", "alice", "carol")
	var re *notifier.RetryError
	d, err := f.runDigest(t)
	if !errors.As(err, &re) {
		t.Fatalf("first attempt: %v, want a retry", err)
	}
	snap := "followpush:{ag:bob}:snap:" + itoa(d.Due)
	if n, err := f.rdb.Del(context.Background(), snap).Result(); err != nil || n != 1 {
		t.Fatalf("delete snapshot %s: %d, %v", snap, n, err)
	}
	if _, err := f.runDigest(t); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := len(f.fcm.Requests()); n != 1 {
		t.Errorf("FCM requests = %d, want only the failed first attempt", n)
	}
	if got := f.digestResults(t); got["stale"] != 1 || got["empty"] != 0 || got["superseded"] != 0 {
		t.Errorf("digest results = %v, want stale 1", got)
	}
	if rec, err := f.records.LoadSummary(context.Background(), d); err != nil || !rec.Done {
		t.Errorf("digest record = %+v, %v; want done", rec, err)
	}
}

// When scheduling the summary fails after the follow was folded into it,
// the retry schedules that summary again instead of asking the policies:
// the follower is not named by a second summary.
func TestHandlerFoldRetryDoesNotNotifyTwice(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: time.Minute}})
	f.register(t, "bob", "tok-bob", "android", "")
	alice, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: f.at(0).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	f.sched.fail.Store(1)
	if err := f.h.ProcessTask(context.Background(), alice); err == nil {
		t.Fatal("first attempt succeeded although scheduling the summary failed")
	}
	f.at(time.Second)
	if err := f.follow(t, "carol", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.runDigest(t); err != nil {
		t.Fatal(err)
	}
	// alice's retry comes after the summary went out.
	f.at(time.Minute + 5*time.Second)
	if err := f.h.ProcessTask(context.Background(), alice); err != nil {
		t.Fatalf("retry: %v", err)
	}
	f.at(5 * time.Minute)
	f.runAllDigests(t)
	want := []string{"tok-bob: 2 new followers / alice and carol started following you"}
	if d := cmp.Diff(want, f.pushes()); d != "" {
		t.Errorf("pushes (-want +got):\n%s", d)
	}
}

// A template that passed the checks at start but fails on a summary's
// followers does not lose the summary: the built-in text of the locale
// goes out instead.
func TestHandlerSummaryTemplateFailureFallsBackToBuiltin(t *testing.T) {
	t.Parallel()
	tmpl, err := pushtext.NewLocalizedTemplates(map[string]pushtext.Texts{
		"ja": {SummaryTitle: "{{slice .From 0 3}}さんたち"}, // fine for "alice", not for "ed"
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: time.Minute}, Content: tmpl})
	f.register(t, "bob", "tok-bob", "ios", "ja-JP")
	f.followEachSecond(t, "bob", "ed", "fay")
	if _, err := f.runDigest(t); err != nil {
		t.Fatalf("summary: %v", err)
	}
	want := []string{"tok-bob: 2人の新しいフォロワー / edさん、fayさんにフォローされました"}
	if d := cmp.Diff(want, f.pushes()); d != "" {
		t.Errorf("pushes (-want +got):\n%s", d)
	}
}

// Summary templates are tried on every shape of summary at start: one
// follower, two, and many. One that works only for some is refused.
func TestTemplatesAreTriedOnEverySummaryShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		ok         bool
	}{
		{"second name always", `{{index .Names 0}}, {{index .Names 1}}`, false},
		{"others always", `{{.From}} and {{len (slice .Names 0 2)}} more`, false},
		{"second name when there is one", `{{index .Names 0}}{{if gt .Count 1}}, {{index .Names 1}}{{end}}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := pushtext.NewLocalizedTemplates(map[string]pushtext.Texts{"fr": {SummaryBody: tt.body}})
			if (err == nil) != tt.ok {
				t.Errorf("NewLocalizedTemplates(%q) error = %v, want ok %v", tt.body, err, tt.ok)
			}
		})
	}
}

// The global send rate limit is shared by every worker: past it, a push
// is put off (a retry that is not a failure) whichever worker sends it.
func TestHandlerGlobalRateLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	fakeFCM := fcmtest.NewServer(t)
	sender := senderTo(t, fakeFCM, "p")
	reg := devices.NewRegistry(srv.Client(t), devices.Options{})
	workers := make([]*notifier.Handler, 2)
	for i := range workers {
		rdb := srv.Client(t) // each worker its own connection pool
		var err error
		workers[i], err = notifier.NewHandler(slog.New(slog.DiscardHandler), devices.NewRegistry(rdb, devices.Options{}),
			delivery.New(rdb, delivery.Options{}), sender, nil, notifier.HandlerOptions{
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
	if n := len(fakeFCM.Requests()); n != 2 {
		t.Errorf("FCM requests = %d, want 2", n)
	}
}

// Each device gets the text of its own locale: en, zh, ja built in, a
// configured locale, English for anything else.
func TestHandlerPicksDeviceLocale(t *testing.T) {
	t.Parallel()
	tmpl, err := pushtext.NewLocalizedTemplates(map[string]pushtext.Texts{"pt-BR": {Title: "Novo seguidor", Body: "{{.From}} começou a seguir você"}})
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

// With several follow queues a followee's digest goes to its own queue,
// the one its follows go to (tasks.Shards.Queue), not to the others.
func TestHandlerSchedulesDigestsInTheFolloweesShard(t *testing.T) {
	t.Parallel()
	shards, err := tasks.NewShards(6)
	if err != nil {
		t.Fatal(err)
	}
	f := newPolicyFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: time.Minute}, Shards: shards})
	for i, to := range []string{"alice", "bob", "u0001", "carol"} {
		f.register(t, to, "tok-"+to, "android", "")
		if err := f.follow(t, "fan"+strconv.Itoa(i), to); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range shards.Names() {
		infos, err := f.insp.ListScheduledTasks(q)
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			t.Fatal(err)
		}
		for _, info := range infos {
			var d tasks.Summary
			if err := json.Unmarshal(info.Payload, &d); err != nil {
				t.Fatal(err)
			}
			if want := shards.Queue(d.To); q != want {
				t.Errorf("digest of %s in queue %s, want %s", d.To, q, want)
			}
		}
	}
	total := 0
	for _, q := range shards.Names() {
		infos, _ := f.insp.ListScheduledTasks(q)
		total += len(infos)
	}
	if total != 4 {
		t.Errorf("%d digests scheduled over the shards, want 4 (one per followee)", total)
	}
}
