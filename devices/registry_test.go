package devices_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/redistest"
)

// t0 is the start of every test clock.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a controllable Options.Now, safe for concurrent use.
type clock struct{ ms atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(t0.UnixMilli())
	return c
}

func (c *clock) Now() time.Time { return time.UnixMilli(c.ms.Load()).UTC() }

// Advance moves the clock forward by d and returns the new time.
func (c *clock) Advance(d time.Duration) time.Time {
	return time.UnixMilli(c.ms.Add(d.Milliseconds())).UTC()
}

// newRegistry starts a redis-server for the test and returns a registry on
// it, with opts.Now set to a new clock unless given.
func newRegistry(t *testing.T, opts devices.Options) (*devices.Registry, *clock, *redis.Client) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	clk := newClock()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	return devices.NewRegistry(rdb, opts), clk, rdb
}

func mustRegister(t *testing.T, r *devices.Registry, user, token string, reg devices.Registration) {
	t.Helper()
	if err := r.Register(context.Background(), user, token, reg); err != nil {
		t.Fatalf("Register(%q, %q): %v", user, token, err)
	}
}

func mustList(t *testing.T, r *devices.Registry, user string) []devices.Device {
	t.Helper()
	got, err := r.List(context.Background(), user)
	if err != nil {
		t.Fatalf("List(%q): %v", user, err)
	}
	return got
}

func mustOwners(t *testing.T, r *devices.Registry, tokens ...string) map[string]string {
	t.Helper()
	got, err := r.Owners(context.Background(), tokens)
	if err != nil {
		t.Fatalf("Owners: %v", err)
	}
	return got
}

func tokensOf(ds []devices.Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Token
	}
	return out
}

func TestRegisterListNewestFirst(t *testing.T) {
	t.Parallel()
	r, clk, _ := newRegistry(t, devices.Options{})
	const u = "alice"

	tA := clk.Now()
	mustRegister(t, r, u, "tok-a", devices.Registration{Platform: "android", Locale: "en-US"})
	tB := clk.Advance(time.Second)
	mustRegister(t, r, u, "tok-b", devices.Registration{Platform: "ios"})
	tC := clk.Advance(time.Second)
	mustRegister(t, r, u, "tok-c", devices.Registration{})

	want := []devices.Device{
		{Token: "tok-c", UpdatedAt: tC},
		{Token: "tok-b", Platform: "ios", UpdatedAt: tB},
		{Token: "tok-a", Platform: "android", Locale: "en-US", UpdatedAt: tA},
	}
	if diff := cmp.Diff(want, mustList(t, r, u)); diff != "" {
		t.Fatalf("List after registering (-want +got):\n%s", diff)
	}

	t.Run("refresh keeps platform and locale", func(t *testing.T) {
		tA2 := clk.Advance(time.Second)
		mustRegister(t, r, u, "tok-a", devices.Registration{})
		want := []devices.Device{
			{Token: "tok-a", Platform: "android", Locale: "en-US", UpdatedAt: tA2},
			{Token: "tok-c", UpdatedAt: tC},
			{Token: "tok-b", Platform: "ios", UpdatedAt: tB},
		}
		if diff := cmp.Diff(want, mustList(t, r, u)); diff != "" {
			t.Fatalf("List after refresh (-want +got):\n%s", diff)
		}
		// Registering again at the same time changes nothing.
		mustRegister(t, r, u, "tok-a", devices.Registration{})
		if diff := cmp.Diff(want, mustList(t, r, u)); diff != "" {
			t.Fatalf("List after repeated register (-want +got):\n%s", diff)
		}
	})

	t.Run("non-empty fields replace", func(t *testing.T) {
		tB2 := clk.Advance(time.Second)
		mustRegister(t, r, u, "tok-b", devices.Registration{Locale: "fr"})
		tC2 := clk.Advance(time.Second)
		mustRegister(t, r, u, "tok-c", devices.Registration{Platform: "web"})
		got := mustList(t, r, u)
		want := []devices.Device{
			{Token: "tok-c", Platform: "web", UpdatedAt: tC2},
			{Token: "tok-b", Platform: "ios", Locale: "fr", UpdatedAt: tB2},
		}
		if diff := cmp.Diff(want, got[:2]); diff != "" {
			t.Fatalf("List (-want +got):\n%s", diff)
		}
	})

	if diff := cmp.Diff(map[string]string{"tok-a": u, "tok-b": u, "tok-c": u}, mustOwners(t, r, "tok-a", "tok-b", "tok-c")); diff != "" {
		t.Fatalf("Owners (-want +got):\n%s", diff)
	}
}

func TestListUnknownUser(t *testing.T) {
	t.Parallel()
	r, _, _ := newRegistry(t, devices.Options{})
	got := mustList(t, r, "nobody")
	if got == nil || len(got) != 0 {
		t.Fatalf("List = %#v, want an empty non-nil slice", got)
	}
	b, err := json.Marshal(map[string]any{"devices": got})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"devices":[]}` {
		t.Fatalf("JSON = %s, want {\"devices\":[]}", b)
	}
}

func TestDeviceJSON(t *testing.T) {
	t.Parallel()
	r, _, _ := newRegistry(t, devices.Options{})
	mustRegister(t, r, "alice", "tok-1", devices.Registration{Platform: "android"})
	mustRegister(t, r, "alice", "tok-2", devices.Registration{Platform: "ios", Locale: "de"})
	b, err := json.Marshal(mustList(t, r, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	// Both registered at the same millisecond: ties list the greater token first.
	want := `[{"token":"tok-2","platform":"ios","locale":"de","updated_at":"2025-01-02T03:04:05Z"},` +
		`{"token":"tok-1","platform":"android","updated_at":"2025-01-02T03:04:05Z"}]`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Fatalf("JSON (-want +got):\n%s", diff)
	}
}

func TestRegisterMovesToken(t *testing.T) {
	t.Parallel()
	r, clk, _ := newRegistry(t, devices.Options{})
	mustRegister(t, r, "alice", "shared", devices.Registration{Platform: "android", Locale: "en"})
	mustRegister(t, r, "alice", "alice-own", devices.Registration{Platform: "ios"})
	tMove := clk.Advance(time.Minute)
	mustRegister(t, r, "bob", "shared", devices.Registration{})

	if diff := cmp.Diff([]string{"alice-own"}, tokensOf(mustList(t, r, "alice"))); diff != "" {
		t.Errorf("alice's devices (-want +got):\n%s", diff)
	}
	// A moved token is a new device for bob: nothing of alice's carries over.
	if diff := cmp.Diff([]devices.Device{{Token: "shared", UpdatedAt: tMove}}, mustList(t, r, "bob")); diff != "" {
		t.Errorf("bob's devices (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"shared": "bob", "alice-own": "alice"}, mustOwners(t, r, "shared", "alice-own")); diff != "" {
		t.Errorf("Owners (-want +got):\n%s", diff)
	}

	// And back.
	mustRegister(t, r, "alice", "shared", devices.Registration{Platform: "web"})
	if diff := cmp.Diff([]string{"shared", "alice-own"}, tokensOf(mustList(t, r, "alice"))); diff != "" {
		t.Errorf("alice's devices after moving back (-want +got):\n%s", diff)
	}
	if got := mustList(t, r, "bob"); len(got) != 0 {
		t.Errorf("bob's devices after moving back = %v, want none", got)
	}
	if diff := cmp.Diff(map[string]string{"shared": "alice"}, mustOwners(t, r, "shared")); diff != "" {
		t.Errorf("Owners after moving back (-want +got):\n%s", diff)
	}
}

func TestEvictLeastRecentlySeen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		max     int
		setup   int    // tokens t0..t(setup-1) registered one second apart
		refresh string // refreshed after setup
		add     string
		want    []string // List afterwards
		evicted []string // tokens that lost their owner
	}{
		{
			name: "oldest evicted", max: 3, setup: 3, add: "new",
			want: []string{"new", "t2", "t1"}, evicted: []string{"t0"},
		},
		{
			name: "refresh saves the oldest", max: 3, setup: 3, refresh: "t0", add: "new",
			want: []string{"new", "t0", "t2"}, evicted: []string{"t1"},
		},
		{
			name: "below the cap nothing evicted", max: 3, setup: 2, add: "new",
			want: []string{"new", "t1", "t0"},
		},
		{
			name: "default cap is 10", max: 0, setup: 10, add: "new",
			want:    []string{"new", "t9", "t8", "t7", "t6", "t5", "t4", "t3", "t2", "t1"},
			evicted: []string{"t0"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, clk, _ := newRegistry(t, devices.Options{MaxDevicesPerUser: tc.max})
			const u = "carol"
			var all []string
			for i := range tc.setup {
				tok := fmt.Sprintf("t%d", i)
				all = append(all, tok)
				mustRegister(t, r, u, tok, devices.Registration{Platform: "android"})
				clk.Advance(time.Second)
			}
			if tc.refresh != "" {
				mustRegister(t, r, u, tc.refresh, devices.Registration{})
				clk.Advance(time.Second)
			}
			mustRegister(t, r, u, tc.add, devices.Registration{})
			all = append(all, tc.add)

			if diff := cmp.Diff(tc.want, tokensOf(mustList(t, r, u))); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
			wantOwners := map[string]string{}
			for _, tok := range all {
				if !slices.Contains(tc.evicted, tok) {
					wantOwners[tok] = u
				}
			}
			if diff := cmp.Diff(wantOwners, mustOwners(t, r, all...)); diff != "" {
				t.Errorf("Owners (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEvictNewTokenWithOldClock checks that the token being registered is
// never the one evicted, even when its last-seen time is the oldest (clock
// skew between receivers).
func TestEvictNewTokenWithOldClock(t *testing.T) {
	t.Parallel()
	r, clk, rdb := newRegistry(t, devices.Options{MaxDevicesPerUser: 2})
	clk.Advance(time.Hour)
	mustRegister(t, r, "dave", "a", devices.Registration{})
	mustRegister(t, r, "dave", "b", devices.Registration{})
	skewed := devices.NewRegistry(rdb, devices.Options{MaxDevicesPerUser: 2, Now: func() time.Time { return t0 }})
	mustRegister(t, skewed, "dave", "late", devices.Registration{})
	if diff := cmp.Diff([]string{"b", "late"}, tokensOf(mustList(t, r, "dave"))); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"b": "dave", "late": "dave"}, mustOwners(t, r, "a", "b", "late")); diff != "" {
		t.Errorf("Owners (-want +got):\n%s", diff)
	}
}

func TestUnregister(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		user       string // who unregisters "tok"
		wantOwners map[string]string
		wantAlice  []string
		wantBob    []string
	}{
		{
			name: "by owner", user: "alice",
			wantOwners: map[string]string{"other": "alice"},
			wantAlice:  []string{"other"}, wantBob: []string{},
		},
		{
			name: "by non-owner changes nothing", user: "bob",
			wantOwners: map[string]string{"tok": "alice", "other": "alice"},
			wantAlice:  []string{"tok", "other"}, wantBob: []string{},
		},
		{
			name: "by unknown user changes nothing", user: "mallory",
			wantOwners: map[string]string{"tok": "alice", "other": "alice"},
			wantAlice:  []string{"tok", "other"}, wantBob: []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r, clk, _ := newRegistry(t, devices.Options{})
			mustRegister(t, r, "alice", "other", devices.Registration{Platform: "android"})
			clk.Advance(time.Second)
			mustRegister(t, r, "alice", "tok", devices.Registration{Platform: "ios"})
			before := mustList(t, r, "alice")

			for i := range 2 { // the second call finds nothing to do
				if err := r.Unregister(ctx, tc.user, "tok"); err != nil {
					t.Fatalf("Unregister #%d: %v", i+1, err)
				}
			}
			if diff := cmp.Diff(tc.wantOwners, mustOwners(t, r, "tok", "other")); diff != "" {
				t.Errorf("Owners (-want +got):\n%s", diff)
			}
			alice := mustList(t, r, "alice")
			if diff := cmp.Diff(tc.wantAlice, tokensOf(alice)); diff != "" {
				t.Errorf("alice's devices (-want +got):\n%s", diff)
			}
			if tc.user != "alice" {
				if diff := cmp.Diff(before, alice); diff != "" {
					t.Errorf("alice's devices changed (-before +after):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tc.wantBob, tokensOf(mustList(t, r, "bob"))); diff != "" {
				t.Errorf("bob's devices (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("never registered", func(t *testing.T) {
		t.Parallel()
		r, _, rdb := newRegistry(t, devices.Options{})
		if err := r.Unregister(context.Background(), "alice", "nothing"); err != nil {
			t.Fatalf("Unregister: %v", err)
		}
		if n := rdb.DBSize(context.Background()).Val(); n != 0 {
			t.Fatalf("DBSIZE = %d, want 0", n)
		}
	})

	t.Run("register again after unregister", func(t *testing.T) {
		t.Parallel()
		r, _, _ := newRegistry(t, devices.Options{})
		mustRegister(t, r, "alice", "tok", devices.Registration{Platform: "ios"})
		if err := r.Unregister(context.Background(), "alice", "tok"); err != nil {
			t.Fatal(err)
		}
		mustRegister(t, r, "alice", "tok", devices.Registration{})
		want := []devices.Device{{Token: "tok", UpdatedAt: t0}} // platform forgotten
		if diff := cmp.Diff(want, mustList(t, r, "alice")); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
	})
}

func TestOwners(t *testing.T) {
	t.Parallel()
	r, _, _ := newRegistry(t, devices.Options{})
	mustRegister(t, r, "alice", "a1", devices.Registration{})
	mustRegister(t, r, "alice", "a2", devices.Registration{})
	mustRegister(t, r, "bob", "b1", devices.Registration{})
	mustRegister(t, r, "bob", "gone", devices.Registration{})
	if err := r.Unregister(context.Background(), "bob", "gone"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		tokens []string
		want   map[string]string
	}{
		{"none", nil, map[string]string{}},
		{"mixed", []string{"a1", "unknown", "b1", "gone", "a2"}, map[string]string{"a1": "alice", "a2": "alice", "b1": "bob"}},
		{"duplicates", []string{"a1", "a1"}, map[string]string{"a1": "alice"}},
		{"only unknown", []string{"x", "y"}, map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := mustOwners(t, r, tc.tokens...)
			if got == nil {
				t.Fatal("Owners returned a nil map")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Owners (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInvalidArgumentsTouchNothing(t *testing.T) {
	t.Parallel()
	r, _, rdb := newRegistry(t, devices.Options{})
	ctx := context.Background()
	long := strings.Repeat("x", 4097)
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"Register empty user", func() error { return r.Register(ctx, "", "tok", devices.Registration{}) }, devices.ErrInvalidUserID},
		{"Register long user", func() error { return r.Register(ctx, strings.Repeat("u", 33), "tok", devices.Registration{}) }, devices.ErrInvalidUserID},
		{"Register bad token", func() error { return r.Register(ctx, "alice", "a/b", devices.Registration{}) }, devices.ErrInvalidToken},
		{"Register long token", func() error { return r.Register(ctx, "alice", long, devices.Registration{}) }, devices.ErrInvalidToken},
		{"Register bad platform", func() error { return r.Register(ctx, "alice", "tok", devices.Registration{Platform: "nokia"}) }, devices.ErrInvalidPlatform},
		{"Register bad locale", func() error { return r.Register(ctx, "alice", "tok", devices.Registration{Locale: "en_US"}) }, devices.ErrInvalidLocale},
		{"Unregister bad user", func() error { return r.Unregister(ctx, "a\xff", "tok") }, devices.ErrInvalidUserID},
		{"Unregister bad token", func() error { return r.Unregister(ctx, "alice", "") }, devices.ErrInvalidToken},
		{"List bad user", func() error { _, err := r.List(ctx, ""); return err }, devices.ErrInvalidUserID},
		{"Owners bad token", func() error { _, err := r.Owners(ctx, []string{"ok", "a b"}); return err }, devices.ErrInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("got error %v, want one wrapping %v", err, tc.want)
			}
		})
	}
	t.Cleanup(func() {
		if n := rdb.DBSize(ctx).Val(); n != 0 {
			t.Errorf("DBSIZE = %d after invalid calls, want 0", n)
		}
	})
}

// TestConcurrentRegisterSameToken registers one token for many users at
// once, many times over, and checks the invariant the worker relies on: one
// user owns the token and lists it, no one else lists it.
func TestConcurrentRegisterSameToken(t *testing.T) {
	t.Parallel()
	r, _, _ := newRegistry(t, devices.Options{})
	ctx := context.Background()
	const users, rounds = 12, 20
	for round := range rounds {
		tok := fmt.Sprintf("token-%d", round%4) // tokens come back with a history
		err := concurrently(users, func(u int) error {
			return r.Register(ctx, fmt.Sprintf("user-%d", u), tok, devices.Registration{Platform: "android"})
		})
		if err != nil {
			t.Fatalf("round %d: Register: %v", round, err)
		}
		checkSingleOwner(t, r, tok, users)
	}
}

// TestConcurrentRegisterUnregister mixes moves and unregistrations of one
// token; afterwards either no one lists it and no one owns it, or exactly
// the owner lists it.
func TestConcurrentRegisterUnregister(t *testing.T) {
	t.Parallel()
	r, _, _ := newRegistry(t, devices.Options{})
	ctx := context.Background()
	const users, rounds = 6, 30
	for round := range rounds {
		tok := "token"
		err := concurrently(4*users, func(u int) error {
			user := fmt.Sprintf("user-%d", u%users)
			if (u+round)%3 == 0 {
				return r.Unregister(ctx, user, tok)
			}
			return r.Register(ctx, user, tok, devices.Registration{})
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		checkSingleOwner(t, r, tok, users)
	}
}

// concurrently runs call(0) to call(n-1) all at once and returns their
// errors, joined.
func concurrently(n int, call func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = call(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func checkSingleOwner(t *testing.T, r *devices.Registry, tok string, users int) {
	t.Helper()
	owner := mustOwners(t, r, tok)[tok]
	for u := range users {
		user := fmt.Sprintf("user-%d", u)
		listed := slices.Contains(tokensOf(mustList(t, r, user)), tok)
		if listed != (user == owner) {
			t.Fatalf("owner %q; %s lists the token: %v", owner, user, listed)
		}
	}
}

// TestConcurrentRegisterAtCap registers many tokens for one user at once;
// afterwards the user owns exactly what it lists, and lists the cap.
//
// With each token registered twice at once, a late add of a token that a
// third registration evicted in between can take a slot and be dropped by
// List (the owner key is gone): then the user may list fewer than the cap.
// That race needs a device to be evicted while it registers, so only the
// ownership invariant is asserted for it.
func TestConcurrentRegisterAtCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		times int // registrations of each token
		exact bool
	}{
		{"distinct tokens", 1, true},
		{"with refreshes", 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const maxDevices, n = 5, 40
			r, clk, _ := newRegistry(t, devices.Options{MaxDevicesPerUser: maxDevices})
			ctx := context.Background()
			tokens := make([]string, n)
			for i := range tokens {
				tokens[i] = fmt.Sprintf("tok-%02d", i)
			}
			err := concurrently(tc.times*n, func(i int) error {
				clk.Advance(time.Millisecond)
				return r.Register(ctx, "erin", tokens[i%n], devices.Registration{})
			})
			if err != nil {
				t.Fatal(err)
			}
			listed := tokensOf(mustList(t, r, "erin"))
			if len(listed) > maxDevices || len(listed) == 0 || tc.exact && len(listed) != maxDevices {
				t.Errorf("lists %d devices, want %d: %v", len(listed), maxDevices, listed)
			}
			var owned []string
			for tok := range mustOwners(t, r, tokens...) {
				owned = append(owned, tok)
			}
			slices.Sort(owned)
			slices.Sort(listed)
			if diff := cmp.Diff(listed, owned); diff != "" {
				t.Errorf("owned tokens differ from listed ones (-listed +owned):\n%s", diff)
			}
		})
	}
}
