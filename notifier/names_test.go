package notifier_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/internal/redistest"
	"github.com/followpush/followpush/notifier"
)

// tencentProfiles is a local server speaking Tencent Cloud Chat's REST API
// v4/profile/portrait_get: accounts it knows (nickname "" = none), admin
// authentication by identifier and UserSig, and the whole-call error 40003
// when any account asked for was never imported.
type tencentProfiles struct {
	nicks map[string]string
	sig   string

	mu    sync.Mutex
	calls [][]string // To_Account of each call
	fail  int        // answer HTTP 500 to this many calls
}

func (s *tencentProfiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	answer := func(v any) { w.Header().Set("Content-Type", "application/json"); _ = json.NewEncoder(w).Encode(v) }
	fail := func(code int, info string) {
		answer(map[string]any{"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info})
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v4/profile/portrait_get" {
		http.NotFound(w, r)
		return
	}
	if _, err := strconv.ParseUint(q.Get("random"), 10, 32); err != nil || q.Get("contenttype") != "json" || q.Get("sdkappid") != "1400000000" {
		fail(60002, "bad query: "+r.URL.RawQuery)
		return
	}
	if q.Get("identifier") != "administrator" || q.Get("usersig") != s.sig {
		fail(70001, "UserSig expired or invalid")
		return
	}
	var req struct {
		ToAccount []string `json:"To_Account"`
		TagList   []string
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.TagList) != 1 || req.TagList[0] != "Tag_Profile_IM_Nick" {
		fail(40001, "bad body")
		return
	}
	s.mu.Lock()
	s.calls = append(s.calls, req.ToAccount)
	failNow := s.fail > 0
	s.fail--
	s.mu.Unlock()
	if failNow {
		http.Error(w, "internal", http.StatusInternalServerError)
		return
	}
	var items []map[string]any
	for _, id := range req.ToAccount {
		nick, ok := s.nicks[id]
		if !ok {
			fail(40003, "Account not found: "+id)
			return
		}
		items = append(items, map[string]any{"To_Account": id, "ResultCode": 0, "ResultInfo": "",
			"ProfileItem": []map[string]any{{"Tag": "Tag_Profile_IM_Nick", "Value": nick}}})
	}
	answer(map[string]any{"UserProfileItem": items, "ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "ErrorDisplay": ""})
}

func (s *tencentProfiles) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func newTencentProfiles(t *testing.T, fake *tencentProfiles) *notifier.TencentProfiles {
	t.Helper()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	p, err := notifier.NewTencentProfiles(notifier.TencentConfig{
		BaseURL: srv.URL, UserSigs: map[string]string{"1400000000": fake.sig}, CacheTTL: time.Hour,
	}, redistest.Start(t).Client(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTencentProfilesResolvesAndCaches(t *testing.T) {
	t.Parallel()
	fake := &tencentProfiles{sig: "eJyrVgrxCdYrSy1SslIyUtIBUVA", nicks: map[string]string{"alice": "Alice Liddell", "carol": ""}}
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
	if n := fake.callCount(); n != 4 {
		t.Errorf("portrait_get calls = %d (%v), want 4", n, fake.calls)
	}
}

func TestTencentProfilesFallsBackToUserIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fake  *tencentProfiles
		sig   string
		after string // the name once the server answers again
	}{
		{"HTTP 500 once", &tencentProfiles{sig: "good", nicks: map[string]string{"alice": "Alice"}, fail: 1}, "good", "Alice"},
		{"expired UserSig", &tencentProfiles{sig: "good", nicks: map[string]string{"alice": "Alice"}}, "expired", "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.fake)
			t.Cleanup(srv.Close)
			p, err := notifier.NewTencentProfiles(notifier.TencentConfig{BaseURL: srv.URL, UserSigs: map[string]string{"": tt.sig}},
				redistest.Start(t).Client(t), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			got := p.DisplayNames(context.Background(), "1400000000", []string{"alice"})
			if d := cmp.Diff(map[string]string{"alice": "alice"}, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			// A failure is not cached: the next push asks again.
			again := p.DisplayNames(context.Background(), "1400000000", []string{"alice"})
			if again["alice"] != tt.after {
				t.Errorf("next time: %v, want %s", again, tt.after)
			}
		})
	}
}

// The push names the follower by display name; the data keeps the UserID.
func TestHandlerUsesDisplayNames(t *testing.T) {
	t.Parallel()
	fake := &tencentProfiles{sig: "sig", nicks: map[string]string{"alice": "Alice Liddell", "carol": "Carol"}}
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
