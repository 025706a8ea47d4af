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

func newStore(t *testing.T) (*delivery.Store, *redistest.Server) {
	t.Helper()
	s := redistest.Start(t)
	return delivery.New(s.Client(t), delivery.Options{RecordTTL: time.Hour, CancelTTL: 30 * time.Minute}), s
}

func TestCancelOnlyCancelsOlderFollows(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	follow := tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: 1000}
	other := tasks.Follow{AppID: "1400000000", From: "alice", To: "carol", EventTime: 1000}

	if err := st.Cancel(ctx, "1400000000", "alice", []string{"bob"}, 999); err != nil {
		t.Fatal(err)
	}
	if rec, err := st.Load(ctx, follow); err != nil || rec.Cancelled {
		t.Fatalf("an unfollow older than the follow cancelled it: %+v, %v", rec, err)
	}
	if err := st.Cancel(ctx, "1400000000", "alice", []string{"bob"}, 1001); err != nil {
		t.Fatal(err)
	}
	// A late retry of an older unfollow must not undo the newer one.
	if err := st.Cancel(ctx, "1400000000", "alice", []string{"bob"}, 500); err != nil {
		t.Fatal(err)
	}
	if rec, err := st.Load(ctx, follow); err != nil || !rec.Cancelled {
		t.Fatalf("a newer unfollow did not cancel: %+v, %v", rec, err)
	}
	if rec, err := st.Load(ctx, other); err != nil || rec.Cancelled {
		t.Fatalf("unfollowing bob cancelled the follow of carol: %+v, %v", rec, err)
	}
	// All apps share one user namespace: alice unfollowed bob, whichever
	// app the follow came from.
	if rec, err := st.Load(ctx, tasks.Follow{AppID: "1400000001", From: "alice", To: "bob", EventTime: 1000}); err != nil || !rec.Cancelled {
		t.Fatalf("the unfollow did not cancel the same pair's follow from another app: %+v, %v", rec, err)
	}
}

// Settle records an attempt: the finished devices, whether any device
// accepted, the quota retries; a final attempt marks the record done,
// unless it failed for good (asynq archives the task: an operator may run
// it again).
func TestSettleRecordsAttempts(t *testing.T) {
	t.Parallel()
	st, srv := newStore(t)
	ctx := context.Background()
	now := time.Now()
	f := tasks.Follow{AppID: "1", From: "a", To: "b", EventTime: now.UnixMilli()}

	rec, err := st.Load(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(delivery.Record{Finished: map[string]bool{}}, rec); d != "" {
		t.Fatalf("fresh record (-want +got):\n%s", d)
	}
	for i, want := range []int{1, 2} {
		q, err := st.Settle(ctx, f, delivery.Attempt{Finished: []string{"tok-1"}, QuotaRetry: true}, now)
		if err != nil || q != want {
			t.Fatalf("quota retry %d: count %d, %v; want %d", i, q, err, want)
		}
	}
	if _, err := st.Settle(ctx, f, delivery.Attempt{Finished: []string{"tok-2"}, Accepted: true}, now); err != nil {
		t.Fatal(err)
	}
	rec, err = st.Load(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	want := delivery.Record{QuotaRetries: 2, Reached: true, Finished: map[string]bool{delivery.TokenKey("tok-1"): true, delivery.TokenKey("tok-2"): true}}
	if d := cmp.Diff(want, rec); d != "" {
		t.Fatalf("after two attempts (-want +got):\n%s", d)
	}
	if _, err := st.Settle(ctx, f, delivery.Attempt{Final: true}, now); err != nil {
		t.Fatal(err)
	}
	if rec, _ := st.Load(ctx, f); !rec.Done || !rec.Reached {
		t.Fatalf("final attempt: %+v, want done and reached", rec)
	}

	g := tasks.Follow{AppID: "1", From: "a", To: "c", EventTime: now.UnixMilli()}
	if _, err := st.Settle(ctx, g, delivery.Attempt{Final: true, FailedForGood: true}, now); err != nil {
		t.Fatal(err)
	}
	if rec, _ := st.Load(ctx, g); rec.Done {
		t.Fatal("an attempt that failed for good marked the record done: running the archived task again would do nothing")
	}
	if n := srv.Client(t).Exists(ctx, "followpush:{ag:c}:ev:"+g.ID()).Val(); n != 0 {
		t.Fatal("an attempt that failed for good with nothing sent left a record")
	}

	// Records expire: nothing is kept forever. The lifetime is the record
	// TTL plus the clock-skew margin.
	keys, err := srv.Client(t).Keys(ctx, "followpush:*:ev:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	life := time.Hour + delivery.ClockSkewMargin
	if ttl := srv.Client(t).PTTL(ctx, keys[0]).Val(); ttl <= life-time.Minute || ttl > life {
		t.Fatalf("record TTL = %s, want about %s", ttl, life)
	}
}

// A settle writes the record's fields in as few HSETs as Lua allows: more
// devices than a user can have (MAX_DEVICES_PER_USER is at most 1,000)
// finish in one attempt, and every one is recorded.
func TestSettleRecordsThousandsOfDevices(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	now := time.Now()
	f := tasks.Follow{AppID: "1", From: "a", To: "b", EventTime: now.UnixMilli()}
	const most = 5000
	tokens := make([]string, most)
	want := delivery.Record{Reached: true, Done: true, Finished: map[string]bool{}}
	for i := range tokens {
		tokens[i] = "tok-" + strconv.Itoa(i)
		want.Finished[delivery.TokenKey(tokens[i])] = true
	}
	if _, err := st.Settle(ctx, f, delivery.Attempt{Finished: tokens, Accepted: true, Final: true}, now); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Load(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, rec); d != "" {
		t.Fatalf("record after %d devices (-want +got):\n%s", most, d)
	}
}

// A record outlives its event's stale cutoff on every clock: it lives
// RecordTTL plus a margin from the later of the write and the event's own
// time, so an event stamped ahead of the worker's clock keeps it longer.
func TestRecordOutlivesItsEventUnderClockSkew(t *testing.T) {
	t.Parallel()
	st, srv := newStore(t)
	ctx := context.Background()
	now := time.Now()
	ahead := tasks.Follow{AppID: "1", From: "a", To: "b", EventTime: now.Add(3 * time.Minute).UnixMilli()}
	if _, err := st.Settle(ctx, ahead, delivery.Attempt{Final: true}, now); err != nil {
		t.Fatal(err)
	}
	keys, err := srv.Client(t).Keys(ctx, "followpush:*:ev:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	want := 3*time.Minute + time.Hour + delivery.ClockSkewMargin
	if ttl := srv.Client(t).PTTL(ctx, keys[0]).Val(); ttl <= want-time.Minute || ttl > want {
		t.Fatalf("record TTL = %s, want about %s", ttl, want)
	}
}

func TestTokenKeyIsStableAndDistinct(t *testing.T) {
	t.Parallel()
	if delivery.TokenKey("a") != delivery.TokenKey("a") || delivery.TokenKey("a") == delivery.TokenKey("b") {
		t.Fatal("TokenKey is not a stable, distinguishing hash")
	}
}
