package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
)

// claimFixture drives one followee's policy state through the store's
// steps, as the handler does.
type claimFixture struct {
	t  *testing.T
	st *delivery.Store
	p  delivery.Policy
	to string
}

func newClaimFixture(t *testing.T, p delivery.Policy) *claimFixture {
	t.Helper()
	return &claimFixture{t: t, st: delivery.New(redistest.Start(t).Client(t), delivery.Options{}), p: p, to: "star"}
}

func (c *claimFixture) admit(from string, et, now time.Duration) delivery.Admission {
	c.t.Helper()
	a, err := c.st.Admit(context.Background(), follow(from, c.to, t0.Add(et)), c.p, t0.Add(now), lease)
	if err != nil {
		c.t.Fatal(err)
	}
	return a
}

func (c *claimFixture) want(from string, et, now time.Duration, want delivery.Verdict) {
	c.t.Helper()
	if got := c.admit(from, et, now); got.Verdict != want {
		c.t.Fatalf("%s's follow at %s, admitted at %s: %s, want %s", from, et, now, got.Verdict, want)
	}
}

func (c *claimFixture) settle(from string, et, now time.Duration, a delivery.Attempt) {
	c.t.Helper()
	if _, err := c.st.Settle(context.Background(), follow(from, c.to, t0.Add(et)), a, t0.Add(now)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *claimFixture) unfollow(from string, at time.Duration) {
	c.t.Helper()
	if err := c.st.Cancel(context.Background(), "1400000000", from, []string{c.to}, t0.Add(at).UnixMilli()); err != nil {
		c.t.Fatal(err)
	}
}

func (c *claimFixture) take(due, now, lease time.Duration) delivery.Take {
	c.t.Helper()
	b, err := c.st.TakeSummary(context.Background(), c.digest(due), c.p, t0.Add(now), lease)
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

func (c *claimFixture) digest(due time.Duration) tasks.Summary {
	return tasks.Summary{AppID: "1400000000", To: c.to, Due: t0.Add(due).UnixMilli()}
}

func (c *claimFixture) settleDigest(due, cutoff, now time.Duration, a delivery.Attempt) {
	c.t.Helper()
	if _, err := c.st.SettleSummary(context.Background(), c.digest(due), a, t0.Add(cutoff).UnixMilli(), t0.Add(now)); err != nil {
		c.t.Fatal(err)
	}
}

// takeAlone takes the summary due at due at now and fails unless it names
// exactly follower.
func (c *claimFixture) takeAlone(due, now, lease time.Duration, follower string) {
	c.t.Helper()
	if b := c.take(due, now, lease); len(b.Followers) != 1 || b.Followers[0].ID != follower {
		c.t.Fatalf("summary due at %s, taken at %s = %v, want %s alone", due, now, names(b), follower)
	}
}

func names(b delivery.Take) []string {
	var out []string
	for _, f := range b.Followers {
		out = append(out, f.ID)
	}
	return out
}

// The issue's own case: alice follows while FCM fails, unfollows and
// follows again; the first follow's claim never reached anyone, so the
// second is pushed, and only a push that reached a device starts the
// cooldown.
func TestUnfollowDuringRetryLetsTheRefollowNotify(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{Cooldown: time.Hour})
	c.want("alice", 0, 0, delivery.VerdictSend)
	c.settle("alice", 0, time.Second, delivery.Attempt{}) // FCM 503: retried later
	c.unfollow("alice", 2*time.Second)
	c.want("alice", 3*time.Second, 3*time.Second, delivery.VerdictSend)
	c.want("alice", 0, 4*time.Second, delivery.VerdictCancelled) // the first follow's retry
	c.settle("alice", 3*time.Second, 4*time.Second, delivery.Attempt{Accepted: true, Final: true})
	c.unfollow("alice", 5*time.Second)
	c.want("alice", 6*time.Second, 6*time.Second, delivery.VerdictCooldown)
}

// A follow of a pair whose older follow is still being retried (no
// unfollow between: the webhooks crossed) takes the claim over; the older
// one, when retried, sends nothing, and its cap slot was given back at
// once.
func TestNewerFollowSupersedesARetryingOne(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{MaxPerHour: 1})
	c.want("alice", 0, 0, delivery.VerdictSend)
	c.settle("alice", 0, time.Second, delivery.Attempt{})
	c.want("alice", 2*time.Second, 2*time.Second, delivery.VerdictSend) // not capped: the slot came back
	c.want("alice", 0, 3*time.Second, delivery.VerdictSuperseded)
}

// A push that ends without reaching any device (every token dead) gives
// its cap slot back and starts no cooldown.
func TestPushThatReachedNobodyGivesBackCapAndCooldown(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{MaxPerHour: 1, Cooldown: time.Hour})
	c.want("alice", 0, 0, delivery.VerdictSend)
	c.settle("alice", 0, time.Second, delivery.Attempt{Final: true})
	c.want("bob", 2*time.Second, 2*time.Second, delivery.VerdictSend)
	c.settle("bob", 2*time.Second, 2*time.Second, delivery.Attempt{Accepted: true, Final: true})
	c.unfollow("alice", 3*time.Second)
	c.want("alice", 4*time.Second, 4*time.Second, delivery.VerdictCapped) // no cooldown; bob's push holds the slot
}

// A follow is folded into one summary only, however often its task runs:
// a retry after the summary took it is told so.
func TestFoldHappensOnce(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{Window: 10 * time.Minute})
	c.want("alice", 0, 0, delivery.VerdictAggregated)
	c.want("alice", 0, time.Second, delivery.VerdictAggregated) // a crash before MarkDone: same summary
	if b := c.take(10*time.Minute, 10*time.Minute, 0); b.Verdict != delivery.TakeSend || len(b.Followers) != 1 {
		t.Fatalf("take = %+v", b)
	}
	c.want("bob", 11*time.Minute, 11*time.Minute, delivery.VerdictAggregated)
	c.want("alice", 0, 12*time.Minute, delivery.VerdictSummarized)
	c.takeAlone(20*time.Minute, 20*time.Minute, 0, "bob")
}

// A follower who unfollows and follows again while the summary naming
// them is retried moves to the next summary; the retried one leaves them
// out.
func TestRefollowDuringSummaryRetryMovesToTheNextSummary(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{Window: 10 * time.Minute, Cooldown: time.Hour})
	c.want("alice", 0, 0, delivery.VerdictAggregated)
	c.want("carol", time.Second, time.Second, delivery.VerdictAggregated)
	c.take(10*time.Minute, 10*time.Minute, time.Second)
	c.settleDigest(10*time.Minute, 0, 10*time.Minute, delivery.Attempt{}) // FCM 503
	c.unfollow("alice", 10*time.Minute+time.Second)
	c.want("alice", 10*time.Minute+2*time.Second, 10*time.Minute+2*time.Second, delivery.VerdictAggregated)
	c.takeAlone(10*time.Minute, 11*time.Minute, time.Second, "carol")
	c.settleDigest(10*time.Minute, 0, 11*time.Minute, delivery.Attempt{Accepted: true, Final: true})
	c.takeAlone(20*time.Minute, 20*time.Minute, 0, "alice")
}

// While a summary naming a follower is in flight, their new follow waits
// for its outcome: a summary that reached a device starts the cooldown.
func TestSummaryInFlightMakesTheRefollowWait(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{Window: 10 * time.Minute, Cooldown: time.Hour})
	c.want("alice", 0, 0, delivery.VerdictAggregated)
	c.take(10*time.Minute, 10*time.Minute, lease)
	c.unfollow("alice", 10*time.Minute+time.Second)
	c.want("alice", 10*time.Minute+2*time.Second, 10*time.Minute+2*time.Second, delivery.VerdictWait)
	c.settleDigest(10*time.Minute, 0, 10*time.Minute+3*time.Second, delivery.Attempt{Accepted: true, Final: true})
	c.want("alice", 10*time.Minute+2*time.Second, 10*time.Minute+4*time.Second, delivery.VerdictCooldown)
}

// A summary that reached a device confirms the claims of the followers it
// named; those it left out as stale are free to notify again.
func TestSettledSummaryConfirmsOnlyNamedFollowers(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{Window: 10 * time.Minute, Cooldown: time.Hour})
	c.want("alice", 0, 0, delivery.VerdictAggregated)
	c.want("bob", 5*time.Minute, 5*time.Minute, delivery.VerdictAggregated)
	c.take(10*time.Minute, 10*time.Minute, lease)
	c.settleDigest(10*time.Minute, time.Minute, 10*time.Minute, delivery.Attempt{Accepted: true, Final: true})
	c.unfollow("alice", 11*time.Minute)
	c.unfollow("bob", 11*time.Minute)
	c.want("bob", 12*time.Minute, 12*time.Minute, delivery.VerdictCooldown)
	c.want("alice", 12*time.Minute, 12*time.Minute, delivery.VerdictAggregated)
}

// A follow admitted under policies holds its pair's claim; when a retry
// of it is admitted with no policy active (the followee's preferences or
// the configuration changed in between), the rules still decide it: while
// its summary is pending it stays folded, once the summary named it
// nothing more is sent. Other follows with no policy active are sent.
func TestRetryOfAFoldedFollowUnderNoPolicyIsDecidedByItsClaim(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{Window: 10 * time.Minute})
	c.want("alice", 0, 0, delivery.VerdictAggregated)
	c.p = delivery.Policy{}
	if a := c.admit("alice", 0, time.Minute); a.Verdict != delivery.VerdictAggregated || a.Due != t0.Add(10*time.Minute).UnixMilli() {
		t.Fatalf("retry while the summary is pending: %+v, want folded into the summary due at 10m", a)
	}
	c.p = delivery.Policy{Window: 10 * time.Minute}
	c.take(10*time.Minute, 10*time.Minute, lease)
	c.settleDigest(10*time.Minute, 0, 10*time.Minute, delivery.Attempt{Accepted: true, Final: true})
	c.p = delivery.Policy{}
	c.want("alice", 0, 11*time.Minute, delivery.VerdictSummarized)
	c.want("bob", 11*time.Minute, 11*time.Minute, delivery.VerdictSend)
}

// With no policy active, a follow whose pair's claim a newer follow
// holds (admitted under policies) is superseded, not sent: the newer
// follow notifies, and an older one already named by a summary is not
// named again on its own.
func TestFollowSupersededUnderNoPolicyIsNotSent(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{Window: 10 * time.Minute})
	c.want("alice", 0, 0, delivery.VerdictAggregated)
	c.takeAlone(10*time.Minute, 10*time.Minute, lease, "alice")
	c.settleDigest(10*time.Minute, 0, 10*time.Minute, delivery.Attempt{Accepted: true, Final: true})
	c.want("alice", 12*time.Minute, 12*time.Minute, delivery.VerdictAggregated) // a refollow takes the claim
	c.p = delivery.Policy{}
	c.want("alice", 0, 13*time.Minute, delivery.VerdictSuperseded)
	c.want("bob", 13*time.Minute, 13*time.Minute, delivery.VerdictSend)
}

// An admission with no policy active, run because the pair holds a claim
// from an admission under policies, prunes no other pair's claim: how
// long those are kept is the policies' business (a deploy may still run
// them on other workers).
func TestAdmissionUnderNoPolicyPrunesNoClaim(t *testing.T) {
	t.Parallel()
	c := newClaimFixture(t, delivery.Policy{Window: 10 * time.Minute, Cooldown: 6 * time.Hour})
	c.want("bob", 0, 0, delivery.VerdictAggregated)
	c.want("alice", time.Second, time.Second, delivery.VerdictAggregated)
	c.p = delivery.Policy{}
	c.want("alice", time.Second, 3*time.Hour, delivery.VerdictAggregated)
	if _, err := c.st.Redis().ZScore(context.Background(), "followpush:{ag:star}:cd", "bob").Result(); err != nil {
		t.Fatalf("bob's claim after an admission under no policy: %v, want it kept", err)
	}
}
