package tencenttest_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/internal/testrig/tencenttest"
	"github.com/followpush/followpush/tencent"
)

// Profiles answers a good call with the nicknames and refuses each kind of
// bad call with Tencent's error code, recording only the authenticated
// calls.
func TestProfilesAnswersAndRefusesAsTencent(t *testing.T) {
	t.Parallel()
	p := &tencenttest.Profiles{SDKAppID: 1400000000, UserSig: "sig", Nicks: map[string]string{"alice": "Alice", "carol": ""}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	const good = "sdkappid=1400000000&identifier=administrator&usersig=sig&random=7&contenttype=json"
	const body = `{"To_Account":["alice","carol"],"TagList":["Tag_Profile_IM_Nick"]}`
	tests := []struct {
		name, query, body string
		wantCode          int // Tencent's ErrorCode; -1: HTTP 500
	}{
		{"good call", good, body, 0},
		{"another app", strings.Replace(good, "1400000000", "1400000001", 1), body, 60002},
		{"no random", strings.Replace(good, "random=7", "random=x", 1), body, 60002},
		{"not the admin", strings.Replace(good, "administrator", "alice", 1), body, 70001},
		{"wrong UserSig", strings.Replace(good, "usersig=sig", "usersig=gis", 1), body, 70001},
		{"another tag", good, `{"To_Account":["alice"],"TagList":["Tag_Profile_IM_Gender"]}`, 40001},
		{"unknown account", good, `{"To_Account":["alice","mallory"],"TagList":["Tag_Profile_IM_Nick"]}`, 40003},
		{"HTTP 500", good, body, -1},
	}
	for _, tt := range tests {
		if tt.wantCode == -1 {
			p.FailNext(1)
		}
		resp, err := http.Post(srv.URL+"/v4/profile/portrait_get?"+tt.query, "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			ErrorCode       int
			UserProfileItem []struct {
				ToAccount   string `json:"To_Account"`
				ProfileItem []struct{ Tag, Value string }
			}
		}
		decodeErr := json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if tt.wantCode == -1 {
			if resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("%s: HTTP %d, want 500", tt.name, resp.StatusCode)
			}
			continue
		}
		if decodeErr != nil || resp.StatusCode != http.StatusOK || got.ErrorCode != tt.wantCode {
			t.Errorf("%s: HTTP %d, ErrorCode %d (%v), want 200 with %d", tt.name, resp.StatusCode, got.ErrorCode, decodeErr, tt.wantCode)
		}
		if tt.wantCode == 0 {
			nicks := map[string]string{}
			for _, it := range got.UserProfileItem {
				nicks[it.ToAccount] = it.ProfileItem[0].Value
			}
			if d := cmp.Diff(map[string]string{"alice": "Alice", "carol": ""}, nicks); d != "" {
				t.Errorf("%s: nicknames (-want +got):\n%s", tt.name, d)
			}
		}
	}
	if resp, err := http.Get(srv.URL + "/v4/profile/portrait_get?" + good); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET: %v, %v; want 404", resp, err)
	} else {
		resp.Body.Close()
	}
	// The good call, the unknown account's and the 500's were authenticated.
	want := [][]string{{"alice", "carol"}, {"alice", "mallory"}, {"alice", "carol"}}
	if d := cmp.Diff(want, p.Calls()); d != "" {
		t.Errorf("Calls (-want +got):\n%s", d)
	}
	if n := len(p.Refusals()); n != 7 {
		t.Errorf("%d refusals, want 7: %q", n, p.Refusals())
	}
	if n := p.Hits(); n != len(tests)+1 {
		t.Errorf("Hits = %d, want %d", n, len(tests)+1)
	}
}

// With SecretKey, a UserSig made with the key is accepted and one made
// with another key is not.
func TestProfilesVerifiesUserSigsWithTheKey(t *testing.T) {
	t.Parallel()
	const key = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	p := &tencenttest.Profiles{SDKAppID: 1400000000, SecretKey: key, Nicks: map[string]string{"alice": "Alice"}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	for _, tt := range []struct {
		name, key string
		wantCode  int
	}{
		{"the app's key", key, 0},
		{"another key", strings.Repeat("ab", 32), 70001},
	} {
		sig, err := tencent.UserSig(1400000000, tt.key, "administrator", time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(srv.URL+"/v4/profile/portrait_get?sdkappid=1400000000&identifier=administrator&random=1&contenttype=json&usersig="+sig,
			"application/json", strings.NewReader(`{"To_Account":["alice"],"TagList":["Tag_Profile_IM_Nick"]}`))
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ ErrorCode int }
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || got.ErrorCode != tt.wantCode {
			t.Errorf("%s: ErrorCode %d (%v), want %d", tt.name, got.ErrorCode, err, tt.wantCode)
		}
	}
}
