package devices

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/redistest"
)

func TestKeyLayout(t *testing.T) {
	t.Parallel()
	// sha256("x") = 2d711642b726b04401627ca9fbac32f5 c8530fb1903cc4db02258717921a4881
	tests := []struct {
		name   string
		prefix string
		want   []string
	}{
		{"default prefix", "", []string{
			"followpush:tok:2d711642b726b04401627ca9fbac32f5",
			"followpush:{u:alice}:devices",
			"followpush:{u:alice}:meta",
		}},
		{"custom prefix", "app1:", []string{
			"app1:tok:2d711642b726b04401627ca9fbac32f5",
			"app1:{u:alice}:devices",
			"app1:{u:alice}:meta",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rdb := redistest.Start(t).Client(t)
			now := time.UnixMilli(1700000000123)
			r := NewRegistry(rdb, Options{Prefix: tc.prefix, Now: func() time.Time { return now }})
			if err := r.Register(ctx, "alice", "x", Registration{Platform: "ios", Locale: "en"}); err != nil {
				t.Fatal(err)
			}
			keys, err := rdb.Keys(ctx, "*").Result()
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(keys)
			if diff := cmp.Diff(tc.want, keys); diff != "" {
				t.Fatalf("keys (-want +got):\n%s", diff)
			}
			owner := rdb.Get(ctx, tc.want[0]).Val()
			gen, user, ok := strings.Cut(owner, ":")
			if !ok || user != "alice" || gen == "" {
				t.Errorf("owner key = %q, want <gen>:alice", owner)
			}
			if got := rdb.ZScore(ctx, tc.want[1], "x").Val(); got != 1700000000123 {
				t.Errorf("last seen = %v, want 1700000000123", got)
			}
			if got, want := rdb.HGet(ctx, tc.want[2], "x").Val(), `{"gen":"`+gen+`","locale":"en","platform":"ios"}`; !jsonEqual(got, want) {
				t.Errorf("meta = %s, want %s", got, want)
			}
		})
	}
}

func jsonEqual(a, b string) bool {
	var x, y meta
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && x == y
}

// TestInterruptedMove stops a move of a token from alice to bob after its
// first step (the owner key names bob, the token is still in alice's keys):
// alice no longer lists it, and the stale entry is cleaned up.
func TestInterruptedMove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	r := NewRegistry(rdb, Options{})
	if err := r.Register(ctx, "alice", "tok", Registration{Platform: "android"}); err != nil {
		t.Fatal(err)
	}
	if err := claimScript.Run(ctx, rdb, []string{r.ownerKey("tok")}, "bob").Err(); err != nil {
		t.Fatal(err)
	}

	owners, err := r.Owners(ctx, []string{"tok"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"tok": "bob"}, owners); diff != "" {
		t.Errorf("Owners (-want +got):\n%s", diff)
	}
	// The two-step query with the owners queued on a second pipeline (what
	// the worker does) sees it the same way.
	p := rdb.Pipeline()
	q := r.QueueList(ctx, p, "alice")
	_, _ = p.Exec(ctx)
	if n := q.Listed(); n != 1 {
		t.Fatalf("Listed = %d, want the 1 entry still in alice's keys", n)
	}
	p = rdb.Pipeline()
	q.QueueOwners(ctx, p)
	_, _ = p.Exec(ctx)
	if got, err := q.Result(ctx); err != nil || len(got) != 0 {
		t.Errorf("QueueList+QueueOwners(alice) = %v, %v; want none", got, err)
	}
	for _, u := range []string{"alice", "bob"} {
		got, err := r.List(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("List(%s) = %v, want none", u, got)
		}
	}
	keys := r.userKeys("alice")
	if n := rdb.Exists(ctx, keys...).Val(); n != 0 {
		t.Errorf("alice's stale entry was not removed: %d of her keys exist", n)
	}

	// bob registering again completes the move.
	if err := r.Register(ctx, "bob", "tok", Registration{}); err != nil {
		t.Fatal(err)
	}
	got, err := r.List(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Token != "tok" {
		t.Errorf("List(bob) = %v, want tok", got)
	}
}

// TestEvictStaleEntryKeepsOtherOwner evicts, from alice's keys, an entry of
// a token that meanwhile belongs to bob: bob keeps it.
func TestEvictStaleEntryKeepsOtherOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	ms := int64(1700000000000)
	r := NewRegistry(rdb, Options{MaxDevicesPerUser: 2, Now: func() time.Time { ms += 1000; return time.UnixMilli(ms) }})
	mustDo(t, r.Register(ctx, "alice", "moved", Registration{}))
	// Interrupted move to bob: owner key only, then bob's entry as a second
	// step would have written it.
	res, err := claimScript.Run(ctx, rdb, []string{r.ownerKey("moved")}, "bob").StringSlice()
	mustDo(t, err)
	mustDo(t, addScript.Run(ctx, rdb, r.userKeys("bob"), "moved", ms, "", "", res[1], 2).Err())

	mustDo(t, r.Register(ctx, "alice", "a1", Registration{}))
	mustDo(t, r.Register(ctx, "alice", "a2", Registration{})) // evicts "moved" from alice
	if n := rdb.ZScore(ctx, r.userKeys("alice")[0], "moved").Err(); n != redis.Nil {
		t.Fatalf("moved still in alice's devices (err %v)", n)
	}
	owners, err := r.Owners(ctx, []string{"moved", "a1", "a2"})
	mustDo(t, err)
	if diff := cmp.Diff(map[string]string{"moved": "bob", "a1": "alice", "a2": "alice"}, owners); diff != "" {
		t.Errorf("Owners (-want +got):\n%s", diff)
	}
	bob, err := r.List(ctx, "bob")
	mustDo(t, err)
	if len(bob) != 1 || bob[0].Token != "moved" {
		t.Errorf("List(bob) = %v, want moved", bob)
	}
}

// TestStaleAddDoesNotUndoNewer checks the gen comparisons: removing a
// token with an older gen bound (a late step 3 of an older move, or of an
// unregistration) leaves a newer registration alone.
func TestStaleAddDoesNotUndoNewer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	r := NewRegistry(rdb, Options{})
	mustDo(t, r.Register(ctx, "alice", "tok", Registration{}))
	old := rdb.Get(ctx, r.ownerKey("tok")).Val()
	oldGen, _, _ := parseOwner(old)
	mustDo(t, r.Register(ctx, "alice", "tok", Registration{})) // newer gen
	n, err := pruneScript.Run(ctx, rdb, r.userKeys("alice"), "tok", oldGen).Int()
	mustDo(t, err)
	if n != 0 {
		t.Fatal("prune with an older gen removed a newer registration")
	}
	got, err := r.List(ctx, "alice")
	mustDo(t, err)
	if len(got) != 1 {
		t.Fatalf("List = %v, want tok", got)
	}
}

func TestParseOwner(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		gen, user string
		ok        bool
	}{
		{"123:alice", "123", "alice", true},
		{"123:a:b", "123", "a:b", true},
		{"", "", "", false},
		{"alice", "", "", false},
		{"x1:alice", "", "", false},
		{"123:", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			gen, user, ok := parseOwner(tc.in)
			if gen != tc.gen || user != tc.user || ok != tc.ok {
				t.Errorf("parseOwner(%q) = %q, %q, %v; want %q, %q, %v", tc.in, gen, user, ok, tc.gen, tc.user, tc.ok)
			}
		})
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
