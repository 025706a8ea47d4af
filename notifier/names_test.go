package notifier_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/internal/testrig/syncbuf"
	"github.com/followpush/followpush/internal/testrig/tencenttest"
	"github.com/followpush/followpush/notifier"
)

func newTencentProfiles(t *testing.T, fake *tencenttest.Profiles) *notifier.TencentProfiles {
	t.Helper()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	p, err := notifier.NewTencentProfiles(notifier.TencentConfig{
		BaseURL: srv.URL, UserSigs: map[string]string{"1400000000": fake.UserSig}, CacheTTL: time.Hour,
	}, redistest.Start(t).Client(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTencentProfilesResolvesAndCaches(t *testing.T) {
	t.Parallel()
	fake := &tencenttest.Profiles{SDKAppID: 1400000000, UserSig: "eJyrVgrxCdYrSy1SslIyUtIBUVA", Nicks: map[string]string{"alice": "Alice Liddell", "carol": ""}}
	p := newTencentProfiles(t, fake)
	ctx := context.Background()
	want := map[string]string{"alice": "Alice Liddell", "carol": "carol", "mallory": "mallory"}
	for round := range 2 {
		got := p.DisplayNames(ctx, "1400000000", []string{"alice", "carol", "mallory"})
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("round %d (-want +got):\n%s", round, d)
		}
	}
	// One call for the three (failing: mallory is unknown), then one per
	// user; the second round comes from the cache.
	if calls := fake.Calls(); len(calls) != 4 {
		t.Errorf("portrait_get calls = %d (%v), want 4", len(calls), calls)
	}
}

// failingOnce is p answering its first call with HTTP 500.
func failingOnce(p *tencenttest.Profiles) *tencenttest.Profiles {
	p.FailNext(1)
	return p
}

func TestTencentProfilesFallsBackToUserIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fake      *tencenttest.Profiles
		sig       string
		after     string // the name once the pause after the failure is over
		wantCalls int    // calls after two pauses: a failure is never cached
		// refusedWith is Tencent's error code for the calls it refuses.
		refusedWith string
	}{
		// The second call succeeds and is cached: no third call.
		{"HTTP 500 once", failingOnce(&tencenttest.Profiles{SDKAppID: 1400000000, UserSig: "good", Nicks: map[string]string{"alice": "Alice"}}), "good", "Alice", 2, ""},
		// Every call fails and none is cached: one call per pause.
		{"expired UserSig", &tencenttest.Profiles{SDKAppID: 1400000000, UserSig: "good", Nicks: map[string]string{"alice": "Alice"}}, "expired", "alice", 3, "70001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.fake)
			t.Cleanup(srv.Close)
			clk := &clock{t: time.Unix(1_790_000_000, 0)}
			p, err := notifier.NewTencentProfiles(notifier.TencentConfig{BaseURL: srv.URL, UserSigs: map[string]string{"": tt.sig}, Now: clk.Now},
				redistest.Start(t).Client(t), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			resolve := func(step string, want string, calls int) {
				t.Helper()
				got := p.DisplayNames(context.Background(), "1400000000", []string{"alice"})
				if d := cmp.Diff(map[string]string{"alice": want}, got); d != "" {
					t.Errorf("%s (-want +got):\n%s", step, d)
				}
				if n := tt.fake.Hits(); n != calls {
					t.Errorf("%s: portrait_get calls = %d, want %d", step, n, calls)
				}
				for _, r := range tt.fake.Refusals() {
					if !strings.HasPrefix(r, tt.refusedWith+" ") {
						t.Errorf("%s: Tencent refused a call (%s), want only %q refusals", step, r, tt.refusedWith)
					}
				}
			}
			resolve("first", "alice", 1)
			resolve("within the pause", "alice", 1) // no call: UserID at once
			clk.Set(clk.Now().Add(30 * time.Second))
			resolve("after the pause", tt.after, 2) // the failure was not cached
			clk.Set(clk.Now().Add(30 * time.Second))
			resolve("after another pause", tt.after, tt.wantCalls)
		})
	}
}

// slowProfiles is a portrait_get server that answers only once fast is
// set; until then a call waits for the client to give up (or release to
// be closed). Each call is announced on arrived.
type slowProfiles struct {
	fast    atomic.Bool
	arrived chan string
	release chan struct{}
	inner   *tencenttest.Profiles
}

func (s *slowProfiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.arrived <- r.URL.Path
	if !s.fast.Load() {
		// With the body read, the server notices the client hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
		return
	}
	s.inner.ServeHTTP(w, r)
}

// After a failed call (a timeout of a slow API here), pushes do not wait
// for the API: names not in the cache are UserIDs at once, without a call,
// until the pause is over; then one call tries again, and its success
// resumes calls.
func TestTencentProfilesPausesCallsAfterAFailure(t *testing.T) {
	t.Parallel()
	fake := &slowProfiles{arrived: make(chan string, 10), release: make(chan struct{}),
		inner: &tencenttest.Profiles{SDKAppID: 1400000000, UserSig: "sig", Nicks: map[string]string{"alice": "Alice", "carol": "Carol"}}}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(fake.release) }) // runs first
	clk := &clock{t: time.Unix(1_790_000_000, 0)}
	p, err := notifier.NewTencentProfiles(notifier.TencentConfig{
		BaseURL: srv.URL, UserSigs: map[string]string{"": "sig"}, Timeout: time.Second, FailurePause: time.Minute, Now: clk.Now,
	}, redistest.Start(t).Client(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	calls := func() int { return len(fake.arrived) }
	resolve := func(step, user, want string, wantCalls int) {
		t.Helper()
		if got := p.DisplayNames(ctx, "1400000000", []string{user})[user]; got != want {
			t.Errorf("%s: name %q, want %q", step, got, want)
		}
		if n := calls(); n != wantCalls {
			t.Errorf("%s: portrait_get calls = %d, want %d", step, n, wantCalls)
		}
	}
	resolve("slow API", "alice", "alice", 1) // waits for the timeout
	resolve("next push", "alice", "alice", 1)
	resolve("next push, another user", "carol", "carol", 1)
	clk.Set(clk.Now().Add(59 * time.Second))
	resolve("just before the pause ends", "alice", "alice", 1)

	fake.fast.Store(true)
	clk.Set(clk.Now().Add(time.Second))
	resolve("after the pause", "alice", "Alice", 2)
	resolve("calls resumed", "carol", "Carol", 3)
}

// The push names the follower by display name; the data keeps the UserID.
func TestHandlerUsesDisplayNames(t *testing.T) {
	t.Parallel()
	fake := &tencenttest.Profiles{SDKAppID: 1400000000, UserSig: "sig", Nicks: map[string]string{"alice": "Alice Liddell", "carol": "Carol"}}
	names := newTencentProfiles(t, fake)
	f := newPolicyFixture(t, notifier.HandlerOptions{Names: names})
	f.register(t, "bob", "tok-bob", "android", "ja-JP")
	f.at(0)
	if err := f.follow(t, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	want := []string{"tok-bob: 新しいフォロワー / Alice Liddellさんにフォローされました"}
	if d := cmp.Diff(want, f.pushes()); d != "" {
		t.Errorf("pushes (-want +got):\n%s", d)
	}
	if from := f.lastData(t)["from_account"]; from != "alice" {
		t.Errorf("data from_account = %v, want the UserID", from)
	}
}

// With the app's secret key instead of a UserSig, the client makes the
// admin's UserSig itself, which Tencent accepts (it verifies with the
// key), and makes a new one once half its validity has passed: calls keep
// working after the first UserSig's validity ended. The key never leaves
// the process: requests carry only UserSigs.
func TestTencentProfilesMakesAndRenewsUserSig(t *testing.T) {
	t.Parallel()
	const key = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	clk := &clock{t: time.Unix(1_790_000_000, 0)}
	fake := &tencenttest.Profiles{SDKAppID: 1400000000, SecretKey: key, Now: clk.Now, Nicks: map[string]string{"alice": "Alice", "carol": "Carol", "dave": "Dave"}}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	var logs syncbuf.Buffer
	p, err := notifier.NewTencentProfiles(notifier.TencentConfig{
		BaseURL: srv.URL, SecretKeys: map[string]string{"1400000000": key}, UserSigValidity: 2 * time.Hour, Now: clk.Now,
	}, redistest.Start(t).Client(t), slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	issuedAt := func() time.Time {
		t.Helper()
		sigs := fake.UserSigs()
		sig := sigs[len(sigs)-1]
		doc, err := tencenttest.DecodeUserSig(sig)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := doc["TLS.time"].(json.Number).Int64()
		return time.Unix(n, 0)
	}
	start := clk.Now()
	for _, step := range []struct {
		name, user, want string
		after            time.Duration // since start
		issued           time.Duration // of the UserSig used, since start
	}{
		{"first call", "alice", "Alice", 0, 0},
		{"before half its validity", "carol", "Carol", time.Hour - time.Second, 0},
		{"after half its validity, past the first's end", "dave", "Dave", 2*time.Hour + time.Minute, 2*time.Hour + time.Minute},
	} {
		clk.Set(start.Add(step.after))
		if got := p.DisplayNames(context.Background(), "1400000000", []string{step.user})[step.user]; got != step.want {
			t.Fatalf("%s: name %q, want %q (Tencent refused the UserSig?)", step.name, got, step.want)
		}
		if got := issuedAt(); !got.Equal(start.Add(step.issued)) {
			t.Errorf("%s: UserSig issued at +%s, want +%s", step.name, got.Sub(start), step.issued)
		}
	}
	if strings.Contains(logs.String(), key) {
		t.Error("the secret key was logged")
	}
}
