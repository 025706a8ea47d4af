package e2e_test

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/testrig/tencenttest"
)

// A worker given the app's secret key (TENCENT_SECRET_KEY) instead of a
// UserSig makes the admin's UserSig itself: Tencent's REST API accepts it,
// the push names the follower by nickname, and neither the key nor the
// UserSig shows in any process's output.
func TestWorkerMakesAdminUserSigFromSecretKey(t *testing.T) {
	t.Parallel()
	const key = "9c1f0e8d7b6a5948372615049f8e7d6c5b4a39281706f5e4d3c2b1a098f7e6d5"
	app, err := strconv.ParseUint(appID, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	rest := &tencenttest.Profiles{SDKAppID: app, SecretKey: key, Nicks: map[string]string{"alice": "Alice Liddell", "bob": "Bob"}}
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
	sigs, refused := rest.UserSigs(), rest.Refusals()
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
