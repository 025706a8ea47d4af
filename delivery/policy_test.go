package delivery_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
)

// t0 is the tests' clock origin (ms): a fixed, recent instant.
var t0 = time.UnixMilli(1_790_000_000_000)

func follow(from, to string, at time.Time) tasks.Follow {
	return tasks.Follow{AppID: "1400000000", From: from, To: to, EventTime: at.UnixMilli()}
}

// lease is how long the tests' admissions keep a push in flight.
const lease = 30 * time.Second

// step is one follow through Admit at a time, with the verdict wanted.
// A follow admitted to be sent then reaches a device (its attempt is
// settled accepted and final) unless end says otherwise.
type step struct {
	from    string
	at      time.Duration // event time and "now", from t0
	want    delivery.Verdict
	wantDue time.Duration // from t0; for folded verdicts
	end     end
}

// end is how a push admitted in a step ends.
type end int

const (
	reached  end = iota // settled: a device accepted it; done
	inFlight            // not settled: still being sent
	retried             // settled: no device accepted it, to be retried
	failed              // settled: no device accepted it; done
)

func runSteps(t *testing.T, st *delivery.Store, p delivery.Policy, to string, steps []step) {
	t.Helper()
	for i, s := range steps {
		at := t0.Add(s.at)
		f := follow(s.from, to, at)
		got, err := st.Admit(context.Background(), f, p, at, lease)
		if err != nil {
			t.Fatalf("step %d (%s at %s): %v", i, s.from, s.at, err)
		}
		want := delivery.Admission{Verdict: s.want}
		switch s.want {
		case delivery.VerdictAggregated, delivery.VerdictCapped:
			want.Due = t0.Add(s.wantDue).UnixMilli()
		case delivery.VerdictWait:
			want.Until = got.Until
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("step %d (%s at %s) (-want +got):\n%s", i, s.from, s.at, d)
		}
		if got.Verdict == delivery.VerdictSend && s.end != inFlight {
			a := map[end]delivery.Attempt{
				reached: {Accepted: true, Final: true},
				retried: {},
				failed:  {Final: true},
			}[s.end]
			if _, err := st.Settle(context.Background(), f, a, at); err != nil {
				t.Fatalf("step %d: settle: %v", i, err)
			}
		}
	}
}

// An inactive policy only checks for a later unfollow (and whether the
// follow holds its pair's claim from an attempt admitted under policies,
// see TestRetryOfAFoldedFollowUnderNoPolicyIsDecidedByItsClaim): two
// reads on the caller's pipeline, no policy key written.
func TestAdmitInactivePolicyOnlyChecksUnfollows(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := delivery.New(rdb, delivery.Options{})
	ctx := context.Background()
	pipe := rdb.Pipeline()
	q := st.QueueAdmit(ctx, pipe, follow("a", "b", t0), delivery.Policy{}, t0, lease)
	if n := pipe.Len(); n != 2 {
		t.Fatalf("inactive policy queued %d commands, want the unfollow and claim reads alone", n)
	}
	_, _ = pipe.Exec(ctx)
	if a, err := q.Result(ctx); err != nil || a.Verdict != delivery.VerdictSend {
		t.Fatalf("inactive policy: %+v, %v; want send", a, err)
	}
	if err := st.Cancel(ctx, "1400000000", "a", []string{"b"}, t0.Add(time.Second).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if a, err := st.Admit(ctx, follow("a", "b", t0), delivery.Policy{}, t0, lease); err != nil || a.Verdict != delivery.VerdictCancelled {
		t.Fatalf("inactive policy after a later unfollow: %+v, %v; want cancelled", a, err)
	}
	keys, err := rdb.Keys(ctx, "followpush:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v; want the unfollow alone", keys, err)
	}
}

func TestAdmit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		name   string
		policy delivery.Policy
		steps  []step
	}{
		{"cooldown: the same pair notifies once", delivery.Policy{Cooldown: 24 * time.Hour}, []step{
			{"alice", 0, delivery.VerdictSend, 0, 0},
			{"alice", 0, delivery.VerdictSend, 0, 0}, // a retry of the same follow
			{"alice", time.Minute, delivery.VerdictCooldown, 0, 0},
			{"carol", time.Minute, delivery.VerdictSend, 0, 0},
			{"alice", 23 * time.Hour, delivery.VerdictCooldown, 0, 0},
			{"alice", 24*time.Hour + time.Millisecond, delivery.VerdictSend, 0, 0},
		}},
		{"cap: over it folds until the oldest push leaves the hour", delivery.Policy{MaxPerHour: 2}, []step{
			{"a", 0, delivery.VerdictSend, 0, 0},
			{"b", 10 * time.Minute, delivery.VerdictSend, 0, 0},
			{"c", 20 * time.Minute, delivery.VerdictCapped, time.Hour, 0},
			{"d", 30 * time.Minute, delivery.VerdictCapped, time.Hour, 0},
			{"a", 40 * time.Minute, delivery.VerdictCapped, time.Hour, 0}, // no cooldown: folded again
		}},
		{"aggregation, first immediate", delivery.Policy{Window: 10 * time.Minute, FirstImmediate: true}, []step{
			{"a", 0, delivery.VerdictSend, 0, 0},
			{"b", time.Minute, delivery.VerdictAggregated, 10 * time.Minute, 0},
			{"c", 9 * time.Minute, delivery.VerdictAggregated, 10 * time.Minute, 0},
			{"a", 0, delivery.VerdictSend, 0, 0}, // a retry of the window's opener
		}},
		{"aggregation, quiet period ends the window", delivery.Policy{Window: 10 * time.Minute, FirstImmediate: true}, []step{
			{"a", 0, delivery.VerdictSend, 0, 0},
			{"b", 11 * time.Minute, delivery.VerdictSend, 0, 0},
		}},
		{"aggregation, first waits too", delivery.Policy{Window: 10 * time.Minute}, []step{
			{"a", 0, delivery.VerdictAggregated, 10 * time.Minute, 0},
			{"b", 5 * time.Minute, delivery.VerdictAggregated, 10 * time.Minute, 0},
		}},
		{"a pair folded twice is named once", delivery.Policy{Window: 10 * time.Minute, Cooldown: time.Hour}, []step{
			{"a", 0, delivery.VerdictAggregated, 10 * time.Minute, 0},
			{"a", time.Minute, delivery.VerdictAggregated, 10 * time.Minute, 0},
		}},
		{"cooldown counts from a push that reached a device", delivery.Policy{Cooldown: time.Hour}, []step{
			{"a", 0, delivery.VerdictSend, 0, failed}, // every device dead: no cooldown
			{"a", time.Minute, delivery.VerdictSend, 0, inFlight},
			{"a", time.Minute + 10*time.Second, delivery.VerdictWait, 0, 0}, // the push in flight decides
		}},
		{"cap and aggregation: the summary waits for the cap", delivery.Policy{Window: time.Minute, FirstImmediate: true, MaxPerHour: 1}, []step{
			{"a", 0, delivery.VerdictSend, 0, 0},
			{"b", 2 * time.Minute, delivery.VerdictCapped, time.Hour, 0},
			{"c", 3 * time.Minute, delivery.VerdictCapped, time.Hour, 0},
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := delivery.New(srv.Client(t), delivery.Options{})
			runSteps(t, st, tt.policy, "followee"+string(rune('a'+i)), tt.steps)
		})
	}
}

// A digest takes the pending followers once; its retries get the same
// ones; a summary sent opens the next window; a stale duplicate does
// nothing.
func TestTakeDigest(t *testing.T) {
	t.Parallel()
	st := delivery.New(redistest.Start(t).Client(t), delivery.Options{})
	ctx := context.Background()
	p := delivery.Policy{Window: 10 * time.Minute, FirstImmediate: true}
	runSteps(t, st, p, "bob", []step{
		{"a", 0, delivery.VerdictSend, 0, 0},
		{"c", 2 * time.Minute, delivery.VerdictAggregated, 10 * time.Minute, 0},
		{"b", time.Minute, delivery.VerdictAggregated, 10 * time.Minute, 0},
	})
	d := tasks.Summary{AppID: "1400000000", To: "bob", Due: t0.Add(10 * time.Minute).UnixMilli()}
	at := t0.Add(10*time.Minute + time.Second)
	want := delivery.Take{Verdict: delivery.TakeSend, Followers: []delivery.Follower{
		{ID: "b", EventTime: t0.Add(time.Minute).UnixMilli()},
		{ID: "c", EventTime: t0.Add(2 * time.Minute).UnixMilli()},
	}}
	for attempt := range 2 {
		got, err := st.TakeSummary(ctx, d, p, at, 0)
		if err != nil {
			t.Fatal(err)
		}
		want.Retake = attempt > 0
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("attempt %d (-want +got):\n%s", attempt, diff)
		}
	}
	// The summary opened the next window: a follow within it is folded
	// into the next summary, due one window after the first was taken.
	runSteps(t, st, p, "bob", []step{{"e", 15 * time.Minute, delivery.VerdictAggregated, 20*time.Minute + time.Second, 0}})
	// A duplicate of an older digest is superseded and names the current one.
	old := tasks.Summary{AppID: "1400000000", To: "bob", Due: t0.Add(5 * time.Minute).UnixMilli()}
	got, err := st.TakeSummary(ctx, old, p, at, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(delivery.Take{Verdict: delivery.TakeSuperseded, Next: t0.Add(20*time.Minute + time.Second).UnixMilli()}, got); diff != "" {
		t.Errorf("stale digest (-want +got):\n%s", diff)
	}
}

// At its cap, a due summary is put off until the cap allows it, and then
// counts against the cap itself.
func TestTakeDigestWaitsForTheCap(t *testing.T) {
	t.Parallel()
	st := delivery.New(redistest.Start(t).Client(t), delivery.Options{})
	ctx := context.Background()
	p := delivery.Policy{Window: time.Minute, FirstImmediate: true, MaxPerHour: 2}
	runSteps(t, st, p, "bob", []step{
		{"a", 0, delivery.VerdictSend, 0, 0},
		{"b", 30 * time.Second, delivery.VerdictAggregated, time.Minute, 0},
	})
	d1 := tasks.Summary{AppID: "1", To: "bob", Due: t0.Add(time.Minute).UnixMilli()}
	if got, err := st.TakeSummary(ctx, d1, p, t0.Add(time.Minute), 0); err != nil || len(got.Followers) != 1 {
		t.Fatalf("first summary = %+v, %v; want b", got, err)
	}
	// Two pushes in the hour now: the next summary waits for the first to
	// leave it, at t0 + 1h.
	runSteps(t, st, p, "bob", []step{{"c", 90 * time.Second, delivery.VerdictAggregated, 2 * time.Minute, 0}})
	d2 := tasks.Summary{AppID: "1", To: "bob", Due: t0.Add(2 * time.Minute).UnixMilli()}
	got, err := st.TakeSummary(ctx, d2, p, t0.Add(2*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(delivery.Take{Verdict: delivery.TakeLater, Next: t0.Add(time.Hour).UnixMilli()}, got); diff != "" {
		t.Fatalf("summary at the cap (-want +got):\n%s", diff)
	}
	runSteps(t, st, p, "bob", []step{{"d", 3 * time.Minute, delivery.VerdictCapped, time.Hour, 0}})
	d3 := tasks.Summary{AppID: "1", To: "bob", Due: got.Next}
	got, err = st.TakeSummary(ctx, d3, p, t0.Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Followers) != 2 || got.Followers[0].ID != "c" || got.Followers[1].ID != "d" {
		t.Errorf("summary after the cap freed = %+v, want c and d", got)
	}
}

// An unfollow removes the follower from the pending summary when its
// follow is older, and lifts the cooldown that follow started; a summary
// left with nobody sends nothing.
func TestCancelUndoesPendingFollow(t *testing.T) {
	t.Parallel()
	st := delivery.New(redistest.Start(t).Client(t), delivery.Options{})
	ctx := context.Background()
	p := delivery.Policy{Window: 10 * time.Minute, Cooldown: time.Hour}
	runSteps(t, st, p, "bob", []step{
		{"alice", 0, delivery.VerdictAggregated, 10 * time.Minute, 0},
		{"carol", time.Minute, delivery.VerdictAggregated, 10 * time.Minute, 0},
	})
	// An unfollow older than carol's follow (a late retry) changes nothing.
	if err := st.Cancel(ctx, "1400000000", "carol", []string{"bob"}, t0.Add(30*time.Second).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if err := st.Cancel(ctx, "1400000000", "alice", []string{"bob", "dave"}, t0.Add(2*time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	d := tasks.Summary{AppID: "1400000000", To: "bob", Due: t0.Add(10 * time.Minute).UnixMilli()}
	got, err := st.TakeSummary(ctx, d, p, t0.Add(10*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := delivery.Take{Verdict: delivery.TakeSend, Followers: []delivery.Follower{{ID: "carol", EventTime: t0.Add(time.Minute).UnixMilli()}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summary after alice unfollowed (-want +got):\n%s", diff)
	}
	// The summary reaches a device.
	if _, err := st.SettleSummary(ctx, d, delivery.Attempt{Accepted: true, Final: true}, t0.UnixMilli(), t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// alice's folded follow notified nobody: following again is not held
	// back by the cooldown; carol's is.
	runSteps(t, st, p, "bob", []step{
		{"alice", 11 * time.Minute, delivery.VerdictAggregated, 20 * time.Minute, 0},
		{"carol", 12 * time.Minute, delivery.VerdictCooldown, 0, 0},
	})
	// Undoing the only pending follow leaves nothing to send.
	if err := st.Cancel(ctx, "1400000000", "alice", []string{"bob"}, t0.Add(13*time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	d2 := tasks.Summary{AppID: "1400000000", To: "bob", Due: t0.Add(20 * time.Minute).UnixMilli()}
	if got, err := st.TakeSummary(ctx, d2, p, t0.Add(20*time.Minute), 0); err != nil || got.Verdict != delivery.TakeEmpty {
		t.Errorf("summary with everyone undone = %+v, %v; want empty", got, err)
	}
}

// An unfollow is honoured until the summary goes out: a retry of a digest
// whose followers were taken leaves out those who unfollowed since (the
// count shrinks with them), and answers empty when nobody is left. An
// unfollow older than the follow (an earlier one, delivered late) leaves
// the follower in.
func TestTakeDigestRetryLeavesOutLaterUnfollows(t *testing.T) {
	t.Parallel()
	st := delivery.New(redistest.Start(t).Client(t), delivery.Options{})
	ctx := context.Background()
	p := delivery.Policy{Window: 10 * time.Minute}
	runSteps(t, st, p, "bob", []step{
		{"alice", 0, delivery.VerdictAggregated, 10 * time.Minute, 0},
		{"carol", time.Minute, delivery.VerdictAggregated, 10 * time.Minute, 0},
		{"dave", 2 * time.Minute, delivery.VerdictAggregated, 10 * time.Minute, 0},
	})
	d := tasks.Summary{AppID: "1400000000", To: "bob", Due: t0.Add(10 * time.Minute).UnixMilli()}
	take := func(at time.Duration) delivery.Take {
		t.Helper()
		b, err := st.TakeSummary(ctx, d, p, t0.Add(at), 0)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	unfollow := func(from string, at time.Duration) {
		t.Helper()
		if err := st.Cancel(ctx, "1400000000", from, []string{"bob"}, t0.Add(at).UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	fl := func(id string, at time.Duration) delivery.Follower {
		return delivery.Follower{ID: id, EventTime: t0.Add(at).UnixMilli()}
	}
	if got := take(10 * time.Minute); len(got.Followers) != 3 || got.Retake {
		t.Fatalf("first take = %+v, want alice, carol and dave", got)
	}
	// The first attempt failed (FCM 5xx, rate limit); carol unfollows
	// before the retry, and dave's unfollow from before his follow arrives
	// late.
	unfollow("carol", 11*time.Minute)
	unfollow("dave", time.Minute)
	want := delivery.Take{Verdict: delivery.TakeSend, Retake: true, Followers: []delivery.Follower{fl("alice", 0), fl("dave", 2*time.Minute)}}
	if diff := cmp.Diff(want, take(12*time.Minute)); diff != "" {
		t.Errorf("retry after carol unfollowed (-want +got):\n%s", diff)
	}
	unfollow("alice", 13*time.Minute)
	unfollow("dave", 13*time.Minute)
	if diff := cmp.Diff(delivery.Take{Verdict: delivery.TakeEmpty, Retake: true}, take(14*time.Minute)); diff != "" {
		t.Errorf("retry after everyone unfollowed (-want +got):\n%s", diff)
	}
}

// A digest's snapshot outlives the stale cutoff of its followers (window +
// cap hour + MaxEventAge, at most the record TTL) counted from the take,
// and each retry renews it: a summary retried for long is not lost.
func TestTakeDigestSnapshotOutlivesRetries(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := delivery.New(rdb, delivery.Options{RecordTTL: time.Hour})
	ctx := context.Background()
	p := delivery.Policy{Window: 10 * time.Minute, MaxPerHour: 5}
	runSteps(t, st, p, "bob", []step{{"alice", 0, delivery.VerdictAggregated, 10 * time.Minute, 0}})
	d := tasks.Summary{AppID: "1400000000", To: "bob", Due: t0.Add(10 * time.Minute).UnixMilli()}
	snap := "followpush:{ag:bob}:snap:" + itoa(d.Due)
	atLeast := p.Window + delivery.CapWindow + time.Hour - time.Minute
	for attempt := range 2 {
		if attempt > 0 {
			// Most of the snapshot's life is gone: the retry renews it.
			if err := rdb.PExpire(ctx, snap, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
		}
		b, err := st.TakeSummary(ctx, d, p, t0.Add(10*time.Minute), 0)
		if err != nil || b.Verdict != delivery.TakeSend {
			t.Fatalf("attempt %d: %+v, %v", attempt, b, err)
		}
		if ttl := rdb.PTTL(ctx, snap).Val(); ttl < atLeast {
			t.Errorf("attempt %d: snapshot TTL %s, want at least %s", attempt, ttl, atLeast)
		}
	}
}

// A follow folded under a Policy.Hold records it with the pending
// summary, and Hold records its own and keeps a summary's followers (taken
// or not) until the time it is put off to and a summary's life after it;
// the take answers the largest hold, also on a retake.
func TestHoldIsRecordedAndKeepsTheSummary(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := delivery.New(rdb, delivery.Options{RecordTTL: time.Hour})
	ctx := context.Background()
	p := delivery.Policy{Window: 10 * time.Minute}
	held := p
	held.Hold = 2 * time.Hour
	runSteps(t, st, held, "bob", []step{{"alice", 0, delivery.VerdictAggregated, 10 * time.Minute, 0}})
	runSteps(t, st, p, "bob", []step{{"carol", time.Second, delivery.VerdictAggregated, 10 * time.Minute, 0}})
	d := tasks.Summary{AppID: "1400000000", To: "bob", Due: t0.Add(10 * time.Minute).UnixMilli()}
	now := t0.Add(10 * time.Minute)
	b, err := st.TakeSummary(ctx, d, p, now, 0)
	if err != nil || b.Verdict != delivery.TakeSend || b.Hold != held.Hold {
		t.Fatalf("take: %+v, %v; want send with hold %v (alice's)", b, err, held.Hold)
	}

	// Put off for 9 hours by a longer hold: the taken followers are kept.
	longer := p
	longer.Hold = 10 * time.Hour
	until := now.Add(9 * time.Hour)
	if err := st.Hold(ctx, d, longer, until, now); err != nil {
		t.Fatal(err)
	}
	snap := "followpush:{ag:bob}:snap:" + itoa(d.Due)
	if ttl := rdb.PTTL(ctx, snap).Val(); ttl < 9*time.Hour {
		t.Errorf("snapshot TTL %s after Hold until 9 h later", ttl)
	}
	b, err = st.TakeSummary(ctx, d, p, until, 0)
	if err != nil || b.Verdict != delivery.TakeSend || !b.Retake || b.Hold != longer.Hold || len(b.Followers) != 2 {
		t.Fatalf("retake 9 h later: %+v, %v; want both followers with hold %v", b, err, longer.Hold)
	}

	// The next window starts without a hold.
	runSteps(t, st, p, "bob", []step{{"dan", 10*time.Minute + time.Second, delivery.VerdictAggregated, 20 * time.Minute, 0}})
	d2 := tasks.Summary{AppID: "1400000000", To: "bob", Due: t0.Add(20 * time.Minute).UnixMilli()}
	if b, err := st.TakeSummary(ctx, d2, p, t0.Add(20*time.Minute), 0); err != nil || b.Hold != 0 {
		t.Fatalf("next window's take: %+v, %v; want hold 0", b, err)
	}
}

// Follows folded later under a smaller hold (the followee removed their
// quiet hours) neither shorten the life of the summary that holds earlier
// follows nor prune those follows' claims: alice, held for 8 hours, is
// still in the summary at its end, with her claim.
func TestALaterFoldKeepsAHeldSummary(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := delivery.New(rdb, delivery.Options{RecordTTL: time.Hour})
	ctx := context.Background()
	quiet := delivery.Policy{Cooldown: time.Hour, Window: 8 * time.Hour, Quiet: true, Hold: 10 * time.Hour}
	plain := delivery.Policy{Cooldown: time.Hour}
	due := t0.Add(8 * time.Hour).UnixMilli()
	for _, s := range []struct {
		from string
		at   time.Duration
		p    delivery.Policy
		want delivery.Verdict
	}{
		{"alice", 0, quiet, delivery.VerdictQuiet},
		{"carol", 30 * time.Minute, plain, delivery.VerdictAggregated},
		{"dan", 150 * time.Minute, plain, delivery.VerdictAggregated},
	} {
		at := t0.Add(s.at)
		got, err := st.Admit(ctx, follow(s.from, "bob", at), s.p, at, lease)
		if err != nil || got.Verdict != s.want || got.Due != due {
			t.Fatalf("%s: %+v, %v; want %s due %d", s.from, got, err, s.want, due)
		}
	}
	// dan's admission (at 2:30) set the expiries: the keys must outlive
	// the summary (due at 8:00) by at least the 2 h a summary is kept
	// after its due time under plain (an hour of cap, and the record's).
	for _, k := range []string{"followpush:{ag:bob}", "followpush:{ag:bob}:win", "followpush:{ag:bob}:cd", "followpush:{ag:bob}:cl"} {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl < 8*time.Hour-150*time.Minute+2*time.Hour {
			t.Errorf("%s expires in %s: before the held summary is done with it", k, ttl)
		}
	}
	if _, err := rdb.ZScore(ctx, "followpush:{ag:bob}:cd", "alice").Result(); err != nil {
		t.Errorf("alice's claim: %v (pruned by dan's admission?)", err)
	}
	d := tasks.Summary{AppID: "1400000000", To: "bob", Due: due}
	b, err := st.TakeSummary(ctx, d, plain, time.UnixMilli(due), 0)
	if err != nil || b.Verdict != delivery.TakeSend || len(b.Followers) != 3 || b.Hold != quiet.Hold {
		t.Fatalf("take at the end: %+v, %v; want alice, carol and dan, hold %s", b, err, quiet.Hold)
	}
}

// Every script touches the keys of one followee only, under one hash tag:
// they run on a real Redis Cluster without CROSSSLOT errors.
func TestPoliciesOnRedisCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a 3-node Redis Cluster")
	}
	rdb := redistest.StartCluster(t, 3).Client(t)
	st := delivery.New(rdb, delivery.Options{})
	ctx := context.Background()
	p := delivery.Policy{Window: time.Minute, FirstImmediate: true, MaxPerHour: 5, Cooldown: time.Hour}
	for i, to := range []string{"bob", "carol", "dave", "erin"} {
		runSteps(t, st, p, to, []step{
			{"a", 0, delivery.VerdictSend, 0, 0},
			{"b", time.Second, delivery.VerdictAggregated, time.Minute, 0},
			{"c", 2 * time.Second, delivery.VerdictAggregated, time.Minute, 0},
		})
		if err := st.Cancel(ctx, "1", "c", []string{to}, t0.Add(3*time.Second).UnixMilli()); err != nil {
			t.Fatalf("%d: cancel: %v", i, err)
		}
		d := tasks.Summary{AppID: "1", To: to, Due: t0.Add(time.Minute).UnixMilli()}
		if err := st.Hold(ctx, d, p, t0.Add(2*time.Minute), t0.Add(30*time.Second)); err != nil {
			t.Fatalf("%s: hold: %v", to, err)
		}
		got, err := st.TakeSummary(ctx, d, p, t0.Add(time.Minute), 0)
		if err != nil {
			t.Fatalf("%s: %v", to, err)
		}
		if len(got.Followers) != 1 || got.Followers[0].ID != "b" {
			t.Errorf("%s: summary = %+v, want b alone", to, got)
		}
	}
}

// A follow task that loaded its record before the unfollow arrived and asks
// the policies after it is refused: the unfollow and the folding are
// serialized on the followee's keys, so the follower cannot slip into the
// summary behind the unfollow's back. An older unfollow refuses nothing.
func TestAdmitAfterUnfollowIsCancelled(t *testing.T) {
	t.Parallel()
	st := delivery.New(redistest.Start(t).Client(t), delivery.Options{})
	ctx := context.Background()
	p := delivery.Policy{Window: time.Minute, Cooldown: time.Hour}
	if err := st.Cancel(ctx, "1400000000", "fan5", []string{"star"}, t0.Add(time.Second).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if err := st.Cancel(ctx, "1400000000", "fan6", []string{"star"}, t0.Add(-time.Second).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	runSteps(t, st, p, "star", []step{
		{"fan5", 0, delivery.VerdictCancelled, 0, 0},
		{"fan6", 0, delivery.VerdictAggregated, time.Minute, 0},
		{"fan5", 2 * time.Second, delivery.VerdictAggregated, time.Minute, 0}, // follows again later
	})
}

// QueueAdmit decides like Admit, in the caller's pipeline; when Redis has
// lost its script cache (a restart) the queued script did not run, and
// Result runs the admission itself, once.
func TestQueueAdmitMatchesAdmitAndSurvivesScriptFlush(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := delivery.New(rdb, delivery.Options{})
	ctx := context.Background()
	p := delivery.Policy{Cooldown: time.Hour}
	queued := func(f tasks.Follow, now time.Time) delivery.Verdict {
		t.Helper()
		pipe := rdb.Pipeline()
		q := st.QueueAdmit(ctx, pipe, f, p, now, lease)
		_, _ = pipe.Exec(ctx)
		a, err := q.Result(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return a.Verdict
	}
	for i, flush := range []bool{true, false} {
		if flush {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		to := "bob" + string(rune('0'+i))
		first := follow("alice", to, t0)
		if v := queued(first, t0); v != delivery.VerdictSend {
			t.Fatalf("flush=%v: first follow: %s, want send", flush, v)
		}
		if _, err := st.Settle(ctx, first, delivery.Attempt{Accepted: true, Final: true}, t0); err != nil {
			t.Fatal(err)
		}
		// The same pair again within the hour: the first admission counted once.
		if v := queued(follow("alice", to, t0.Add(time.Minute)), t0.Add(time.Minute)); v != delivery.VerdictCooldown {
			t.Fatalf("flush=%v: second follow: %s, want cooldown", flush, v)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
