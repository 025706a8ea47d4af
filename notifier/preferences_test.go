package notifier_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
)

// setPrefs stores user's preferences in the fixture's Redis.
func (f *policyFixture) setPrefs(t *testing.T, user string, p preferences.Preferences) {
	t.Helper()
	if err := preferences.NewStore(f.rdb, "").Put(context.Background(), user, p); err != nil {
		t.Fatal(err)
	}
}

// shanghai is a time zone without daylight saving time (UTC+8).
var shanghai = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return loc
}()

// nightly is the quiet hours 22:00 to 07:30 in Shanghai.
var nightly = &preferences.QuietHours{Start: "22:00", End: "07:30", TimeZone: "Asia/Shanghai"}

// morning is the end of the nightly quiet hours that begin on the
// evening of 2027-06-10.
var morning = time.Date(2027, 6, 11, 7, 30, 0, 0, shanghai)

// summaryAtMorning runs the one scheduled digest, which must be due at
// morning, and checks that its push named count followers.
func (f *policyFixture) summaryAtMorning(t *testing.T, count string) {
	t.Helper()
	d, err := f.runDigest(t)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Time().Equal(morning) {
		t.Errorf("summary due %v, want the end of the quiet hours %v", d.Time().In(shanghai), morning)
	}
	if data := f.lastData(t); data["count"] != count {
		t.Errorf("summary data %v, want %s follower(s)", data, count)
	}
}

// digestTask returns the one scheduled digest and its task, with the
// clock set to its due time.
func (f *policyFixture) digestTask(t *testing.T) (tasks.Summary, *asynq.Task) {
	t.Helper()
	ds := f.digests(t)
	if len(ds) != 1 {
		t.Fatalf("digests %v, want one", ds)
	}
	task, err := tasks.NewSummaryTask(ds[0])
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Set(ds[0].Time())
	return ds[0], task
}

// wantTasks checks followpush_tasks_total{result} is n.
func (f *policyFixture) wantTasks(t *testing.T, result string, n float64) {
	t.Helper()
	if got := counterValues(t, f.metrics, "followpush_tasks_total", "result"); got[result] != n {
		t.Errorf("tasks by result %v, want %s %v", got, result, n)
	}
}

// fixtureAt returns a fixture whose clock starts at the wall-clock time
// given in Shanghai.
func fixtureAt(t *testing.T, opts notifier.HandlerOptions, y int, m time.Month, d, hh, mm int) *policyFixture {
	t.Helper()
	f := newFixture(t, opts, true)
	f.start = time.Date(y, m, d, hh, mm, 0, 0, shanghai)
	f.clock.Set(f.start)
	return f
}

// nightlyFollow returns a fixture whose clock starts on 2027-06-10 at
// hh:mm in Shanghai, where bob has one device and the nightly quiet
// hours, and alice follows bob at that time.
func nightlyFollow(t *testing.T, opts notifier.HandlerOptions, hh, mm int) *policyFixture {
	t.Helper()
	f := fixtureAt(t, opts, 2027, 6, 10, hh, mm)
	f.register(t, "bob", "tok-bob", "android", "")
	f.setPrefs(t, "bob", preferences.Preferences{QuietHours: nightly})
	f.at(0)
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	return f
}

// "off": nothing is sent, the follow is counted as preference_off, and no
// cooldown starts: once the user turns pushes back on, the same pair's
// next follow within the cooldown is pushed.
func TestPreferenceOffSendsNothingAndStartsNoCooldown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notifier.HandlerOptions{Policy: delivery.Policy{Cooldown: time.Hour}}, true)
	f.register(t, "bob", "tok-bob", "android", "")
	f.setPrefs(t, "bob", preferences.Preferences{FollowPushes: preferences.ModeOff})

	f.at(0)
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	if got := f.pushes(); len(got) != 0 {
		t.Fatalf("pushes with follower pushes off: %v", got)
	}
	if got := counterValues(t, f.metrics, "followpush_tasks_total", "result"); got["preference_off"] != 1 {
		t.Errorf("tasks by result %v, want preference_off 1", got)
	}

	f.setPrefs(t, "bob", preferences.Preferences{})
	f.at(time.Minute)
	f.unfollow(t, "alice", "bob")
	f.at(2 * time.Minute)
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"tok-bob: New follower / alice started following you"}, f.pushes()); d != "" {
		t.Errorf("pushes after turning pushes on again (-want +got):\n%s", d)
	}
}

// "summary": with every policy off for everyone, the user's follows are
// folded into one summary push, due one SummaryWindow after the first.
func TestPreferenceSummaryFoldsEveryFollow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notifier.HandlerOptions{SummaryWindow: 5 * time.Minute}, true)
	f.register(t, "bob", "tok-bob", "android", "")
	f.register(t, "dan", "tok-dan", "android", "")
	f.setPrefs(t, "bob", preferences.Preferences{FollowPushes: preferences.ModeSummary})

	f.followEachSecond(t, "bob", "alice", "carol")
	if err := f.follow(t, "erin", "dan"); err != nil { // dan has the defaults: pushed at once
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"tok-dan: New follower / erin started following you"}, f.pushes()); d != "" {
		t.Fatalf("pushes before the summary (-want +got):\n%s", d)
	}
	d, err := f.runDigest(t)
	if err != nil {
		t.Fatal(err)
	}
	if want := f.start.Add(5 * time.Minute); !d.Time().Equal(want) {
		t.Errorf("summary due %v, want %v (the first follow + SummaryWindow)", d.Time(), want)
	}
	if got := len(f.pushes()); got != 2 {
		t.Fatalf("pushes = %v, want dan's and one summary for bob", f.pushes())
	}
	if data := f.lastData(t); data["count"] != "2" || data["to_account"] != "bob" {
		t.Errorf("summary data %v, want bob's summary of 2 followers", data)
	}
}

// Quiet hours across midnight: follows arriving inside them are held and
// sent as one summary when they end, although they are older than
// MaxEventAge by then.
func TestQuietHoursHoldFollowsForOneSummary(t *testing.T) {
	t.Parallel()
	f := fixtureAt(t, notifier.HandlerOptions{MaxEventAge: time.Hour, Policy: delivery.Policy{Cooldown: time.Hour}}, 2027, 6, 10, 23, 0)
	f.register(t, "bob", "tok-bob", "android", "")
	f.setPrefs(t, "bob", preferences.Preferences{QuietHours: nightly})

	f.at(0) // 23:00
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	f.at(3 * time.Hour) // 02:00 the next day
	if err := f.follow(t, "carol", "bob"); err != nil {
		t.Fatal(err)
	}
	if got := f.pushes(); len(got) != 0 {
		t.Fatalf("pushes inside quiet hours: %v", got)
	}
	f.wantTasks(t, "quiet_hours", 2)
	// Both followers, although 8.5 h old: the stale cutoff extends by the
	// quiet period.
	f.summaryAtMorning(t, "2")
	if got := len(f.pushes()); got != 1 {
		t.Fatalf("pushes = %v, want one summary", f.pushes())
	}
}

// A summary due inside the quiet hours (aggregation opened it just
// before) waits for their end, and keeps its followers that long.
func TestQuietHoursPutOffASummaryDueInside(t *testing.T) {
	t.Parallel()
	// 21:58: not quiet yet, folded into a window due 22:03
	f := nightlyFollow(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: 5 * time.Minute}}, 21, 58)
	d, task := f.digestTask(t) // 22:03
	var re *notifier.RetryError
	err := f.h.ProcessTask(context.Background(), task)
	if !errors.As(err, &re) || !re.Throttled {
		t.Fatalf("summary inside quiet hours: %v, want a throttled retry", err)
	}
	end := morning
	if want := end.Sub(d.Time()); re.After != want {
		t.Errorf("retry after %v, want %v (the end of the quiet hours)", re.After, want)
	}
	if got := f.pushes(); len(got) != 0 {
		t.Fatalf("pushes inside quiet hours: %v", got)
	}
	// The pending summary is kept past the end of the quiet hours.
	ttl, err := f.rdb.PTTL(context.Background(), "followpush:{ag:bob}").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl < re.After {
		t.Errorf("pending followers expire in %v, before the quiet hours end (%v)", ttl, re.After)
	}

	f.clock.Set(end)
	if err := f.h.ProcessTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	if data := f.lastData(t); data["count"] != "1" || data["from_accounts"] != `["alice"]` {
		t.Errorf("summary data %v, want alice's follow", data)
	}
}

// A preference change applies to follows not pushed yet: a follow whose
// push failed is not retried once the user turned pushes off, nor is a
// summary held for the end of the quiet hours.
func TestPreferenceChangedWhileFollowPending(t *testing.T) {
	t.Parallel()
	f := fixtureAt(t, notifier.HandlerOptions{Policy: delivery.Policy{Cooldown: time.Hour}}, 2027, 6, 10, 12, 0)
	task := f.failedFirstAttempt(t, "first attempt")
	f.setPrefs(t, "bob", preferences.Preferences{FollowPushes: preferences.ModeOff})
	if err := f.h.ProcessTask(context.Background(), task); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := len(f.fcm.Requests()); n != 1 {
		t.Errorf("FCM requests = %d, want only the failed first attempt", n)
	}

	// Held for the quiet hours, then turned off: the summary is not sent.
	f.setPrefs(t, "bob", preferences.Preferences{QuietHours: nightly})
	f.at(11 * time.Hour) // 23:00
	if err := f.follow(t, "carol", "bob"); err != nil {
		t.Fatal(err)
	}
	f.setPrefs(t, "bob", preferences.Preferences{FollowPushes: preferences.ModeOff, QuietHours: nightly})
	if _, err := f.runDigest(t); err != nil {
		t.Fatal(err)
	}
	if n := len(f.fcm.Requests()); n != 1 {
		t.Errorf("FCM requests = %d, want no summary after pushes were turned off", n)
	}
	if got := f.digestResults(t); got["preference_off"] != 1 {
		t.Errorf("digests by result %v, want preference_off 1", got)
	}
	// Turned on again: the pair alice → bob has no cooldown (nothing
	// reached bob), so a new follow is pushed.
	f.setPrefs(t, "bob", preferences.Preferences{})
	f.at(20 * time.Hour)
	f.unfollow(t, "alice", "bob")
	f.at(20*time.Hour + time.Minute)
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.fcm.Requests()); n != 2 {
		t.Errorf("FCM requests = %d, want the new follow pushed", n)
	}
}

// The retry that puts a summary off until the end of the quiet hours
// comes back at their end: no jitter is added to a wait for a time of day.
func TestQuietHoursSummaryRetryIsExact(t *testing.T) {
	t.Parallel()
	f := nightlyFollow(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: 5 * time.Minute}}, 21, 58)
	_, err := f.runDigest(t) // 22:03
	var re *notifier.RetryError
	if !errors.As(err, &re) {
		t.Fatalf("summary inside quiet hours: %v, want a retry", err)
	}
	for n := range 5 {
		if got := notifier.RetryDelay(n, &notifier.RetryError{Reason: re.Reason, After: re.After, Throttled: re.Throttled, Exact: re.Exact}, nil); got != re.After {
			t.Errorf("retry %d comes %v later, want exactly %v (the end of the quiet hours)", n, got, re.After)
		}
	}
}

// The followers held for the end of the quiet hours stay in the summary
// when the followee removes their quiet hours before it is sent: the
// stale cutoff of a held follow is the one it was held under.
func TestQuietHoursRemovedBeforeTheSummaryKeepsHeldFollowers(t *testing.T) {
	t.Parallel()
	f := nightlyFollow(t, notifier.HandlerOptions{MaxEventAge: time.Hour}, 23, 0) // 23:00
	f.setPrefs(t, "bob", preferences.Preferences{})                               // at 07:00, say
	if _, err := f.runDigest(t); err != nil {                                     // 07:30
		t.Fatal(err)
	}
	if got := f.pushes(); len(got) != 1 {
		t.Fatalf("pushes %v, want the summary of the follow held at 23:00 (digests by result %v)", got, f.digestResults(t))
	}
}

// A follow whose first push failed before the quiet hours began is not
// retried inside them: the retry folds it into the summary at their end.
func TestQuietHoursHoldTheRetryOfAFailedPush(t *testing.T) {
	t.Parallel()
	f := fixtureAt(t, notifier.HandlerOptions{Policy: delivery.Policy{Cooldown: time.Hour}}, 2027, 6, 10, 21, 59)
	f.setPrefs(t, "bob", preferences.Preferences{QuietHours: nightly})
	task := f.failedFirstAttempt(t, "first attempt (21:59)")
	f.at(2 * time.Minute) // 22:01
	if err := f.h.ProcessTask(context.Background(), task); err != nil {
		t.Fatalf("retry inside quiet hours: %v", err)
	}
	if n := len(f.fcm.Requests()); n != 1 {
		t.Fatalf("FCM requests = %d, want only the failed attempt before the quiet hours", n)
	}
	f.wantTasks(t, "quiet_hours", 1)
	f.summaryAtMorning(t, "1")
	if n := len(f.fcm.Requests()); n != 2 {
		t.Errorf("FCM requests %d, want the failed attempt and the summary", n)
	}
}

// A summary that reached one of the followee's devices before the quiet
// hours began goes on to the others when retried inside them: the rest of
// a push that was delivered in part is not held.
func TestQuietHoursLetAPartlyDeliveredSummaryFinish(t *testing.T) {
	t.Parallel()
	f := fixtureAt(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: 5 * time.Minute}}, 2027, 6, 10, 21, 50)
	f.register(t, "bob", "tok-a", "android", "")
	f.register(t, "bob", "tok-b", "android", "")
	f.setPrefs(t, "bob", preferences.Preferences{QuietHours: nightly})
	f.at(0) // 21:50
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	f.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		if r.Token == "tok-b" {
			return fcmtest.Internal()
		}
		return fcmtest.Response{}
	})
	_, task := f.digestTask(t) // 21:55
	var re *notifier.RetryError
	if err := f.h.ProcessTask(context.Background(), task); !errors.As(err, &re) {
		t.Fatalf("summary with one device failing: %v, want a retry", err)
	}
	f.fcm.SetResponder(fcmtest.Always(fcmtest.Response{}))
	f.at(15 * time.Minute) // 22:05
	if err := f.h.ProcessTask(context.Background(), task); err != nil {
		t.Fatalf("retry inside quiet hours: %v, want the rest sent", err)
	}
	if d := cmp.Diff([]string{"tok-a", "tok-b", "tok-b"}, tokens(f.fcm.Requests())); d != "" {
		t.Errorf("FCM requests by token, sorted (-want +got):\n%s", d)
	}
}

func tokens(rs []fcmtest.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Token)
	}
	slices.Sort(out)
	return out
}

// A follow is counted by why it waits: inside quiet hours "quiet_hours",
// also when it joins a summary aggregation opened before; after them
// "aggregated", also when it joins the summary the quiet hours held.
func TestQuietHoursResultNamesTheFollowsOwnReason(t *testing.T) {
	t.Parallel()
	f := nightlyFollow(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: 10 * time.Minute}}, 21, 55) // 21:55: opens a window due 22:05
	f.at(7 * time.Minute)                                                                                     // 22:02: quiet, joins that window
	if err := f.follow(t, "carol", "bob"); err != nil {
		t.Fatal(err)
	}
	if got := counterValues(t, f.metrics, "followpush_tasks_total", "result"); got["aggregated"] != 1 || got["quiet_hours"] != 1 {
		t.Errorf("tasks by result %v, want aggregated 1 (21:55) and quiet_hours 1 (22:02)", got)
	}
}

// Quiet hours that begin while a summary's attempt reads the devices and
// the display names stop it before it commits: it is put off to their end
// with the followers it took, and sent then.
func TestQuietHoursBeginningWhileASummaryIsPrepared(t *testing.T) {
	t.Parallel()
	names := &hookNames{}
	f := nightlyFollow(t, notifier.HandlerOptions{Policy: delivery.Policy{Window: 5 * time.Minute}, Names: names}, 21, 54)
	d, task := f.digestTask(t)                                     // 21:59
	names.hook = func() { f.clock.Set(d.Time().Add(time.Minute)) } // 22:00
	var re *notifier.RetryError
	if err := f.h.ProcessTask(context.Background(), task); !errors.As(err, &re) || !re.Exact {
		t.Fatalf("summary whose quiet hours began while it was prepared: %v, want an exact retry at their end", err)
	}
	if got := f.pushes(); len(got) != 0 {
		t.Fatalf("pushes inside quiet hours: %v", got)
	}
	f.clock.Set(morning)
	if err := f.h.ProcessTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	if data := f.lastData(t); data["count"] != "1" {
		t.Errorf("summary data %v, want alice's follow", data)
	}
}

// Quiet hours follow the user's wall clock across daylight-saving
// changes, through the worker on real Redis: in New York, the summary of a
// follow held at 23:00 is due at 07:00 the next morning: 7 hours later on
// the night clocks spring forward and 9 on the night they fall back (8 on
// other nights), and it still names the follow, older than MaxEventAge by
// then.
func TestQuietHoursFollowTheWallClockAcrossDST(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		evening time.Time
		wait    time.Duration
	}{
		{"spring forward", time.Date(2027, 3, 13, 23, 0, 0, 0, ny), 7 * time.Hour},
		{"fall back", time.Date(2027, 11, 6, 23, 0, 0, 0, ny), 9 * time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, notifier.HandlerOptions{MaxEventAge: time.Hour}, true)
			f.start = c.evening
			f.clock.Set(c.evening)
			f.register(t, "bob", "tok-bob", "android", "")
			f.setPrefs(t, "bob", preferences.Preferences{QuietHours: &preferences.QuietHours{Start: "22:00", End: "07:00", TimeZone: "America/New_York"}})
			if err := f.follow(t, "alice", "bob"); err != nil {
				t.Fatal(err)
			}
			d, err := f.runDigest(t)
			if err != nil {
				t.Fatal(err)
			}
			morning := time.Date(c.evening.Year(), c.evening.Month(), c.evening.Day()+1, 7, 0, 0, 0, ny)
			if !d.Time().Equal(morning) || d.Time().Sub(c.evening) != c.wait {
				t.Errorf("summary due %v (%v after the follow), want 07:00 local, %v later", d.Time().In(ny), d.Time().Sub(c.evening), c.wait)
			}
			if data := f.lastData(t); data["count"] != "1" {
				t.Errorf("summary data %v, want alice's follow", data)
			}
		})
	}
}
