package preferences_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/preferences"
)

const token = "a-token-of-sixteen-bytes"

// newAPI serves the preference API over a real redis-server.
func newAPI(t *testing.T) (*httptest.Server, *redistest.Server, *redis.Client) {
	t.Helper()
	red := redistest.Start(t)
	rdb := red.Client(t)
	a := preferences.NewAPI(preferences.NewStore(rdb, ""), token, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	mux := http.NewServeMux()
	mux.Handle("PUT /v1/users/{userID}/preferences", a.Guard(a.Put))
	mux.Handle("GET /v1/users/{userID}/preferences", a.Guard(a.Get))
	mux.Handle("DELETE /v1/users/{userID}/preferences", a.Guard(a.Delete))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, red, rdb
}

func call(t *testing.T, srv *httptest.Server, method, user, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+"/v1/users/"+user+"/preferences", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b))
}

func TestAPIRoundTrip(t *testing.T) {
	t.Parallel()
	srv, _, rdb := newAPI(t)
	if code, body := call(t, srv, "GET", "bob", ""); code != 200 || body != `{"follow_pushes":"all"}` {
		t.Errorf("GET without preferences = %d %s, want the defaults", code, body)
	}
	put := `{"follow_pushes":"summary","quiet_hours":{"start":"22:00","end":"07:30","time_zone":"Asia/Shanghai"},"later_field":[1,2]}`
	want := `{"follow_pushes":"summary","quiet_hours":{"start":"22:00","end":"07:30","time_zone":"Asia/Shanghai"}}`
	if code, body := call(t, srv, "PUT", "bob", put); code != 200 || body != want {
		t.Errorf("PUT = %d %s, want 200 %s (unknown fields ignored)", code, body, want)
	}
	if code, body := call(t, srv, "GET", "bob", ""); code != 200 || body != want {
		t.Errorf("GET = %d %s, want %s", code, body, want)
	}
	// PUT replaces: quiet hours left out are gone.
	if code, body := call(t, srv, "PUT", "bob", `{"follow_pushes":"off"}`); code != 200 || body != `{"follow_pushes":"off"}` {
		t.Errorf("PUT off = %d %s", code, body)
	}
	if code, _ := call(t, srv, "DELETE", "bob", ""); code != 204 {
		t.Errorf("DELETE = %d, want 204", code)
	}
	if n, err := rdb.Exists(context.Background(), "followpush:prefs:bob").Result(); err != nil || n != 0 {
		t.Errorf("key left after DELETE: %d, %v", n, err)
	}
	// The defaults are not stored.
	if code, _ := call(t, srv, "PUT", "carol", `{"follow_pushes":"all"}`); code != 200 {
		t.Errorf("PUT all = %d", code)
	}
	if n, _ := rdb.DBSize(context.Background()).Result(); n != 0 {
		t.Errorf("%d keys after setting the defaults, want none", n)
	}
}

// Bad input is a 400 naming the problem, and changes nothing.
func TestAPIRefusesBadInput(t *testing.T) {
	t.Parallel()
	srv, _, _ := newAPI(t)
	stored := `{"follow_pushes":"off"}`
	if code, _ := call(t, srv, "PUT", "bob", stored); code != 200 {
		t.Fatal(code)
	}
	for _, tc := range []struct{ name, user, body, want string }{
		{"no body", "bob", ``, "body required"},
		{"white space only", "bob", " \n", "body required"},
		{"wrong type", "bob", `{"follow_pushes":1}`, `member "/follow_pushes": want a string, got a number`},
		{"unknown mode", "bob", `{"follow_pushes":"sometimes"}`, `follow_pushes: "sometimes" is not one of all, summary, off`},
		{"name in another case", "bob", `{"Follow_Pushes":"off"}`, `names are case-sensitive`},
		{"quiet hours without zone", "bob", `{"quiet_hours":{"start":"22:00","end":"07:00"}}`, "quiet_hours.time_zone: missing"},
		{"bad time", "bob", `{"quiet_hours":{"start":"22:00","end":"7am","time_zone":"UTC"}}`, `quiet_hours.end: "7am" is not a time of day`},
		{"bad zone", "bob", `{"quiet_hours":{"start":"22:00","end":"07:00","time_zone":"GMT+8"}}`, `"GMT+8" is not an IANA time zone name`},
		{"quiet hours not an object", "bob", `{"quiet_hours":"22-7"}`, `member "/quiet_hours": want an object, got a string`},
		{"two objects", "bob", `{"follow_pushes":"all"}{}`, "data after the JSON object"},
		{"too big", "bob", `{"follow_pushes":"all","x":"` + strings.Repeat("x", preferences.MaxBodyBytes) + `"}`, "larger than 4096 bytes"},
		{"user too long", strings.Repeat("u", 33), `{"follow_pushes":"all"}`, "invalid user id"},
	} {
		code, body := call(t, srv, "PUT", tc.user, tc.body)
		var e struct{ Error string }
		if code != 400 || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s: %d %s, want 400 saying %q", tc.name, code, body, tc.want)
		}
	}
	if code, body := call(t, srv, "GET", "bob", ""); code != 200 || body != stored {
		t.Errorf("after the refusals GET = %d %s, want %s unchanged", code, body, stored)
	}
}

// A field null or left out takes its default, as the docs say: {} sets
// the defaults.
func TestAPINullAndAbsentAreTheDefaults(t *testing.T) {
	t.Parallel()
	srv, _, _ := newAPI(t)
	set := `{"follow_pushes":"off","quiet_hours":{"start":"22:00","end":"07:30","time_zone":"UTC"}}`
	for _, tc := range []struct{ body, want string }{
		{`{"follow_pushes":"off","quiet_hours":null}`, `{"follow_pushes":"off"}`},
		{`{"follow_pushes":null,"quiet_hours":{"start":"22:00","end":"07:30","time_zone":"UTC"}}`, `{"follow_pushes":"all","quiet_hours":{"start":"22:00","end":"07:30","time_zone":"UTC"}}`},
		{`{}`, `{"follow_pushes":"all"}`},
		{`{"quiet_hours":null}`, `{"follow_pushes":"all"}`},
		{`{"later_field":true}`, `{"follow_pushes":"all"}`},
	} {
		if code, body := call(t, srv, "PUT", "bob", set); code != 200 {
			t.Fatalf("PUT %s = %d %s", set, code, body)
		}
		if code, body := call(t, srv, "PUT", "bob", tc.body); code != 200 || body != tc.want {
			t.Errorf("PUT %s = %d %s, want 200 %s", tc.body, code, body, tc.want)
		}
		if code, body := call(t, srv, "GET", "bob", ""); code != 200 || body != tc.want {
			t.Errorf("GET after PUT %s = %d %s, want %s", tc.body, code, body, tc.want)
		}
	}
}

// Without the token: 401; a failing store: 503 without Redis's error.
func TestAPIAuthAndStoreFailure(t *testing.T) {
	t.Parallel()
	srv, red, _ := newAPI(t)
	res, err := srv.Client().Get(srv.URL + "/v1/users/bob/preferences")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Errorf("without the token: %d, want 401", res.StatusCode)
	}
	red.Stop()
	if code, body := call(t, srv, "GET", "bob", ""); code != 503 || body != `{"error":"preference store unavailable"}` {
		t.Errorf("Redis down: %d %s, want 503 without detail", code, body)
	}
}

// A stored value that is not valid preferences (a hand-edited key) is an
// error, not the defaults: a user who turned pushes off must not get them.
func TestStoreRefusesABadStoredValue(t *testing.T) {
	t.Parallel()
	_, _, rdb := newAPI(t)
	s := preferences.NewStore(rdb, "")
	if err := rdb.Set(context.Background(), "followpush:prefs:bob", `{"follow_pushes":"of"}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Get(context.Background(), "bob"); err == nil {
		t.Errorf("Get = %+v, want an error", p)
	}
	// The API answers it as the store failing (503), not as the caller's
	// bad input: the caller did nothing wrong, and the key is not shown.
	srv, _, rdb2 := newAPI(t)
	if err := rdb2.Set(context.Background(), "followpush:prefs:bob", `{"follow_pushes":"of"}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if code, body := call(t, srv, "GET", "bob", ""); code != 503 || body != `{"error":"preference store unavailable"}` {
		t.Errorf("GET of a bad stored value = %d %s, want 503 without detail", code, body)
	}
}
