package e2e_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/testrig/tencenttest"
)

// adminREST is a local Tencent Cloud Chat REST API for portrait_get that
// authenticates the admin as Tencent does: the UserSig must verify with the
// app's secret key (decoded, inflated, parsed, HMAC recomputed) now.
type adminREST struct {
	key   string
	nicks map[string]string

	mu    sync.Mutex
	sigs  []string
	other []string // requests that failed authentication, by reason
}

func (a *adminREST) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	w.Header().Set("Content-Type", "application/json")
	app, _ := strconv.ParseUint(q.Get("sdkappid"), 10, 64)
	if err := tencenttest.VerifyUserSig(app, a.key, q.Get("identifier"), q.Get("usersig"), time.Now()); err != nil || r.URL.Path != "/v4/profile/portrait_get" {
		a.mu.Lock()
		a.other = append(a.other, r.URL.Path+" as "+q.Get("identifier")+": "+errString(err))
		a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"ActionStatus": "FAIL", "ErrorCode": 70001, "ErrorInfo": "UserSig invalid"})
		return
	}
	a.mu.Lock()
	a.sigs = append(a.sigs, q.Get("usersig"))
	a.mu.Unlock()
	var req struct {
		ToAccount []string `json:"To_Account"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	var items []map[string]any
	for _, id := range req.ToAccount {
		items = append(items, map[string]any{"To_Account": id, "ResultCode": 0,
			"ProfileItem": []map[string]any{{"Tag": "Tag_Profile_IM_Nick", "Value": a.nicks[id]}}})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "UserProfileItem": items})
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// A worker given the app's secret key (TENCENT_SECRET_KEY) instead of a
// UserSig makes the admin's UserSig itself: Tencent's REST API accepts it,
// the push names the follower by nickname, and neither the key nor the
// UserSig shows in any process's output.
func TestWorkerMakesAdminUserSigFromSecretKey(t *testing.T) {
	t.Parallel()
	const key = "9c1f0e8d7b6a5948372615049f8e7d6c5b4a39281706f5e4d3c2b1a098f7e6d5"
	rest := &adminREST{key: key, nicks: map[string]string{"alice": "Alice Liddell"}}
	srv := httptest.NewServer(rest)
	t.Cleanup(srv.Close)
	s := startStack(t, 1, map[string]string{
		"TENCENT_API_BASE":   srv.URL,
		"TENCENT_SECRET_KEY": appID + "=" + key,
	})
	s.noteSecret(key)
	s.registerDevice("bob", "tok-bob-android", "android")
	s.follow(t, "alice", nowMillis(), "bob")
	s.waitIdle(30 * time.Second)

	reqs := s.fcm.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d pushes, want 1", len(reqs))
	}
	rest.mu.Lock()
	sigs, refused := append([]string(nil), rest.sigs...), append([]string(nil), rest.other...)
	rest.mu.Unlock()
	n, _ := reqs[0].Message["notification"].(map[string]any)
	if n["body"] != "Alice Liddell started following you" {
		t.Errorf("notification %v, want the follower's nickname (REST API refusals: %v)", n, refused)
	}
	if len(sigs) == 0 {
		t.Fatal("no authenticated portrait_get call")
	}
	for _, sig := range sigs {
		s.noteSecret(sig)
	}
	s.checkLogsKeepSecrets(t)
}
