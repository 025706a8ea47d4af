package notifier_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/delivery"
	fhistory "github.com/followpush/followpush/history"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
)

// historyFixture is a policyFixture whose handler writes the follow
// fhistory.
type historyFixture struct {
	*policyFixture
	hist    *fhistory.Store
	async   *fhistory.Async
	histReg *prometheus.Registry
	retried int // the retry count the handler sees
	budget  int
}

func newHistoryFixture(t *testing.T, opts notifier.HandlerOptions) *historyFixture {
	t.Helper()
	f := &historyFixture{policyFixture: newPolicyStores(t), histReg: prometheus.NewRegistry(), budget: 25}
	f.hist = fhistory.New(f.rdb, fhistory.Options{}, fhistory.NewMetrics(f.histReg))
	f.async = f.hist.Async(0)
	t.Cleanup(func() { _ = f.async.Close(context.Background()) })
	opts.History = f.async
	opts.Preferences = preferences.NewStore(f.rdb, "") // as the worker has
	f.startHandler(t, opts)
	notifier.SetTestHooks(f.h, nil, func(context.Context) (int, int, bool) { return f.retried, f.budget, true })
	return f
}

// received writes the receiver's entry of fl, as the receiver does.
func (f *historyFixture) received(t *testing.T, fl tasks.Follow) {
	t.Helper()
	p := f.rdb.Pipeline()
	done := f.hist.QueueFollows(context.Background(), p, []tasks.Follow{fl})
	if _, err := p.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	done()
}

func (f *historyFixture) run(t *testing.T, fl tasks.Follow) error {
	t.Helper()
	return runFollow(t, f.h, fl)
}

// story returns the history of to, once the worker's entries are written.
func (f *historyFixture) story(t *testing.T, to, from string) []fhistory.Item {
	t.Helper()
	if err := f.async.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ans, err := f.hist.Read(context.Background(), to, from, fhistory.MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	return ans.Notifications
}

// events lists an item's events as "event" or "event:outcome,..." for
// comparison.
func events(it fhistory.Item) []string {
	var out []string
	for _, e := range it.Events {
		var devs []string
		for _, d := range e.Devices {
			if d.Removed {
				d.Outcome += "(removed)"
			}
			devs = append(devs, " "+d.Outcome)
		}
		slices.Sort(devs)
		out = append(out, e.Event+strings.Join(devs, ""))
	}
	return out
}

func (f *historyFixture) followOf(from, to string) tasks.Follow {
	return tasks.Follow{AppID: "1400000000", From: from, To: to, EventTime: f.clock.Now().UnixMilli()}
}

// Every follow's fate lands in its followee's history, linked by task id:
// sent (with the devices, masked, and FCM's message names), failed with
// FCM's outcome and the next retry, a dead token removed, repeated, stale,
// unfollowed, and the retries used up.
func TestHistoryRecordsEachFate(t *testing.T) {
	t.Parallel()
	f := newHistoryFixture(t, notifier.HandlerOptions{})
	const good, dead = "tok-good-0123456789abcdef", "tok-dead-0123456789abcdef"
	f.register(t, "bob", good, "android", "")
	f.register(t, "bob", dead, "android", "")

	// alice → bob: FCM is down, then up; bob's dead token goes.
	down, broken := true, false
	f.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		switch {
		case broken:
			return fcmtest.Internal() // a failure: uses up the retry budget
		case down:
			return fcmtest.QuotaExceeded(time.Second) // the SDK does not retry it itself
		case r.Token == dead:
			return fcmtest.Unregistered()
		}
		return fcmtest.Response{}
	})
	fa := f.followOf("alice", "bob")
	f.received(t, fa)
	if err := f.run(t, fa); err == nil {
		t.Fatal("the first attempt succeeded while FCM was down")
	}
	down = false
	f.retried = 1
	if err := f.run(t, fa); err != nil {
		t.Fatal(err)
	}
	f.retried = 0
	if err := f.run(t, fa); err != nil { // a repeat of the task
		t.Fatal(err)
	}

	items := f.story(t, "bob", "alice")
	if len(items) != 1 {
		t.Fatalf("alice's items = %+v, want one follow", items)
	}
	it := items[0]
	want := []string{"received", "retry quota_exceeded quota_exceeded", "sent sent unregistered(removed)", "duplicate"}
	if d := cmp.Diff(want, events(it)); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if it.Kind != fhistory.KindFollow || it.TaskID != fa.TaskID() || it.Fate != "sent" || it.From != "alice" ||
		it.EventTime == nil || !it.EventTime.Equal(fa.Time()) {
		t.Errorf("item = %+v", it)
	}
	if len(it.Events) == 4 {
		retry, sent := it.Events[1], it.Events[2]
		if retry.NextRetry == nil || !retry.NextRetry.After(retry.At.Add(-time.Second)) {
			t.Errorf("retry next_retry = %v, want a time after the attempt (%v)", retry.NextRetry, retry.At)
		}
		if sent.Attempt != 1 {
			t.Errorf("sent attempt = %d, want 1", sent.Attempt)
		}
		for _, d := range sent.Devices {
			if strings.Contains(d.Token, "0123456789") || !strings.Contains(d.Token, "…") {
				t.Errorf("token %q is not masked", d.Token)
			}
			if (d.Outcome == "sent") != strings.HasPrefix(d.Message, "projects/p/messages/") {
				t.Errorf("device %+v: want FCM's message name exactly when it was sent", d)
			}
		}
	}
	if left, err := f.reg.List(context.Background(), "bob"); err != nil || len(left) != 1 || left[0].Token != good {
		t.Errorf("bob's devices = %v, want only the good one", left)
	}

	// carol → bob, too old; dave → bob, unfollowed first; erin → bob, out
	// of retries.
	f.at(3 * time.Hour)
	old := tasks.Follow{AppID: "1400000000", From: "carol", To: "bob", EventTime: f.start.UnixMilli()}
	if err := f.run(t, old); err != nil {
		t.Fatal(err)
	}
	fd := f.followOf("dave", "bob")
	f.at(3*time.Hour + time.Second)
	f.unfollow(t, "dave", "bob")
	if err := f.run(t, fd); err != nil {
		t.Fatal(err)
	}
	broken = true
	f.retried, f.budget = 25, 25
	if err := f.run(t, f.followOf("erin", "bob")); err == nil {
		t.Fatal("erin's follow succeeded while FCM was down")
	}
	got := map[string]string{}
	for _, it := range f.story(t, "bob", "") {
		got[it.From] = it.Fate
	}
	if d := cmp.Diff(map[string]string{"alice": "sent", "carol": "stale", "dave": "cancelled", "erin": "exhausted"}, got); d != "" {
		t.Errorf("fates (-want +got):\n%s", d)
	}
	if n := counterValue(t, f.histReg, "followpush_history_write_failures_total"); n != 0 {
		t.Errorf("history write failures = %v, want 0", n)
	}
}

// Policies' fates: cooldown, folded into a summary (named by its task id),
// and the summary with its followers.
func TestHistoryRecordsPolicyFates(t *testing.T) {
	t.Parallel()
	f := newHistoryFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Cooldown: time.Hour, Window: time.Minute}})
	f.register(t, "bob", "tok-bob-0123456789abcdef", "android", "")
	f.followEachSecond(t, "bob", "alice", "carol")
	d, err := f.runDigest(t)
	if err != nil {
		t.Fatal(err)
	}
	f.at(time.Hour - time.Minute)
	f.unfollow(t, "alice", "bob")
	f.at(time.Hour - time.Minute + time.Second)
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}

	var fates []string
	var summary fhistory.Item
	for _, it := range f.story(t, "bob", "") {
		fates = append(fates, it.Kind+" "+it.From+" "+it.Fate+" "+it.Summary)
		if it.Kind == fhistory.KindSummary {
			summary = it
		}
	}
	want := []string{
		"follow alice cooldown ",
		"summary  sent ",
		"follow carol aggregated " + d.TaskID(),
		"follow alice aggregated " + d.TaskID(),
	}
	if diff := cmp.Diff(want, fates); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"alice", "carol"}, summary.Followers); diff != "" || summary.TaskID != d.TaskID() {
		t.Errorf("summary %s followers (-want +got):\n%s", summary.TaskID, diff)
	}
	// from= keeps alice's follows and the summary that took them.
	var only []string
	for _, it := range f.story(t, "bob", "alice") {
		only = append(only, it.Kind+" "+it.From)
	}
	if diff := cmp.Diff([]string{"follow alice", "summary ", "follow alice"}, only); diff != "" {
		t.Errorf("from=alice (-want +got):\n%s", diff)
	}
}

// The cap and quiet hours in the story: a follow over the cap is
// "capped", one inside the followee's quiet hours "quiet_hours", each with
// the summary it waits for and when that is due.
func TestHistoryRecordsCappedAndQuietFates(t *testing.T) {
	t.Parallel()
	f := newHistoryFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{MaxPerHour: 1}})
	f.register(t, "bob", "tok-bob-0123456789abcdef", "android", "")
	f.register(t, "dan", "tok-dan-0123456789abcdef", "android", "")
	now := f.clock.Now().UTC()
	q := &preferences.QuietHours{Start: now.Add(-time.Hour).Format("15:04"), End: now.Add(2 * time.Hour).Format("15:04"), TimeZone: "UTC"}
	if err := preferences.NewStore(f.rdb, "").Put(context.Background(), "dan", preferences.Preferences{QuietHours: q}); err != nil {
		t.Fatal(err)
	}
	_, _, quietEnd := q.At(now)
	f.followEachSecond(t, "bob", "alice", "carol") // alice takes bob's one push of the hour
	if err := f.follow(t, "erin", "dan"); err != nil {
		t.Fatal(err)
	}
	due := map[string]tasks.Summary{}
	for _, d := range f.digests(t) {
		due[d.To] = d
	}
	for _, c := range []struct {
		to, from, fate string
		due            time.Time
	}{
		{"bob", "carol", "capped", f.start.Add(delivery.CapWindow)},
		{"dan", "erin", "quiet_hours", quietEnd},
	} {
		d, ok := due[c.to]
		if !ok || !d.Time().Equal(c.due) {
			t.Errorf("%s's summary %+v, want one due %v", c.to, d, c.due)
			continue
		}
		var it *fhistory.Item
		for _, x := range f.story(t, c.to, c.from) {
			if x.Kind == fhistory.KindFollow {
				it = &x
			}
		}
		if it == nil || it.Fate != c.fate || it.Summary != d.TaskID() {
			t.Errorf("%s → %s: %+v, want fate %s folded into %s", c.from, c.to, it, c.fate, d.TaskID())
			continue
		}
		last := it.Events[len(it.Events)-1]
		if last.Event != c.fate || last.Summary != d.TaskID() || last.Due == nil || !last.Due.Equal(c.due) {
			t.Errorf("%s → %s: last event %+v, want %s with the summary and its due time %v", c.from, c.to, last, c.fate, c.due)
		}
	}
}

// A history write that Redis refuses (the key is of the wrong type) fails
// nothing: the push goes out, the task completes, the failure is counted.
func TestHistoryWriteFailureDoesNotFailThePush(t *testing.T) {
	t.Parallel()
	f := newHistoryFixture(t, notifier.HandlerOptions{})
	f.register(t, "bob", "tok-bob-0123456789abcdef", "android", "")
	if err := f.rdb.Set(context.Background(), f.hist.Key("bob"), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.run(t, f.followOf("alice", "bob")); err != nil {
		t.Fatalf("push failed: %v", err)
	}
	if err := f.async.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.fcm.Requests()); n != 1 {
		t.Errorf("FCM requests = %d, want 1", n)
	}
	if n := counterValue(t, f.histReg, "followpush_history_write_failures_total"); n != 1 {
		t.Errorf("history write failures = %v, want 1", n)
	}
}

// counterValue returns the value of the unlabelled counter name of reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not exported", name)
	return 0
}
