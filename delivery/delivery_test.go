package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/internal/redistest"
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
	// Another app's identical pair is a different event.
	if rec, err := st.Load(ctx, tasks.Follow{AppID: "1400000001", From: "alice", To: "bob", EventTime: 1000}); err != nil || rec.Cancelled {
		t.Fatalf("cancel leaked across apps: %+v, %v", rec, err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	st, srv := newStore(t)
	ctx := context.Background()
	f := tasks.Follow{AppID: "1", From: "a", To: "b", EventTime: 42}

	rec, err := st.Load(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(delivery.Record{Finished: map[string]bool{}}, rec); d != "" {
		t.Fatalf("fresh record (-want +got):\n%s", d)
	}
	if err := st.MarkSent(ctx, f, []string{"tok-1", "tok-2"}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.AddQuotaRetry(ctx, f); err != nil || n != 1 {
		t.Fatalf("AddQuotaRetry = %d, %v", n, err)
	}
	if n, _ := st.AddQuotaRetry(ctx, f); n != 2 {
		t.Fatalf("second AddQuotaRetry = %d, want 2", n)
	}
	rec, err = st.Load(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	want := delivery.Record{QuotaRetries: 2, Finished: map[string]bool{delivery.TokenKey("tok-1"): true, delivery.TokenKey("tok-2"): true}}
	if d := cmp.Diff(want, rec); d != "" {
		t.Fatalf("after MarkSent (-want +got):\n%s", d)
	}
	if err := st.MarkDone(ctx, f); err != nil {
		t.Fatal(err)
	}
	if rec, _ := st.Load(ctx, f); !rec.Done {
		t.Fatal("MarkDone not visible")
	}
	// Records expire: nothing is kept forever.
	keys, err := srv.Client(t).Keys(ctx, "followpush:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	if ttl := srv.Client(t).PTTL(ctx, keys[0]).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("record TTL = %s, want about 1h", ttl)
	}
}

// Finish records the sent devices and the done flag together, with the
// record's expiry.
func TestFinish(t *testing.T) {
	t.Parallel()
	st, srv := newStore(t)
	ctx := context.Background()
	f := tasks.Follow{AppID: "1", From: "a", To: "b", EventTime: time.Now().UnixMilli()}
	if err := st.MarkSent(ctx, f, []string{"tok-1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Finish(ctx, f, []string{"tok-2"}); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Load(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	want := delivery.Record{Done: true, Finished: map[string]bool{delivery.TokenKey("tok-1"): true, delivery.TokenKey("tok-2"): true}}
	if d := cmp.Diff(want, rec); d != "" {
		t.Fatalf("after Finish (-want +got):\n%s", d)
	}
	keys, err := srv.Client(t).Keys(ctx, "followpush:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	if ttl := srv.Client(t).PTTL(ctx, keys[0]).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("record TTL = %s, want about 1h", ttl)
	}
	// Finishing with no devices (all dropped earlier) still marks done.
	g := tasks.Follow{AppID: "1", From: "a", To: "c", EventTime: f.EventTime}
	if err := st.Finish(ctx, g, nil); err != nil {
		t.Fatal(err)
	}
	if rec, err := st.Load(ctx, g); err != nil || !rec.Done || len(rec.Finished) != 0 {
		t.Fatalf("Finish without tokens: %+v, %v", rec, err)
	}
}

func TestTokenKeyIsStableAndDistinct(t *testing.T) {
	t.Parallel()
	if delivery.TokenKey("a") != delivery.TokenKey("a") || delivery.TokenKey("a") == delivery.TokenKey("b") {
		t.Fatal("TokenKey is not a stable, distinguishing hash")
	}
}
