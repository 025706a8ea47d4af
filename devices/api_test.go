package devices_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/httpcall"
	"github.com/followpush/followpush/internal/testrig/redistest"
)

const testAPI = "test-api-token-0123456789"

// apiServer serves the device API as the receiver does, guarded by token
// (empty: the API is off), over a real redis-server.
type apiServer struct{ URL string }

func newAPIServer(t *testing.T, token string) apiServer {
	t.Helper()
	reg := devices.NewRegistry(redistest.Start(t).Client(t), devices.Options{})
	api := devices.NewAPI(reg, token, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	mux := http.NewServeMux()
	mux.Handle("PUT /v1/users/{userID}/devices/{token}", api.Guard(api.Put))
	mux.Handle("DELETE /v1/users/{userID}/devices/{token}", api.Guard(api.Delete))
	mux.Handle("GET /v1/users/{userID}/devices", api.Guard(api.List))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return apiServer{URL: srv.URL}
}

func apiDo(t *testing.T, base, method, path, auth, body string) (int, http.Header, string) {
	t.Helper()
	var header map[string]string
	if auth != "" {
		header = map[string]string{"Authorization": auth}
	}
	r := httpcall.Do(t, httpcall.Request{Method: method, URL: base + path, Body: body, Header: header})
	return r.Status, r.Header, string(r.Body)
}

func TestDeviceAPIAuth(t *testing.T) {
	t.Parallel()
	off := newAPIServer(t, "")
	on := newAPIServer(t, testAPI)
	tests := []struct {
		name   string
		base   string
		auth   string
		status int
	}{
		{"API_TOKEN unset: 503 whatever the header", off.URL, "Bearer " + testAPI, 503},
		{"no header", on.URL, "", 401},
		{"wrong token", on.URL, "Bearer nope", 401},
		{"not bearer", on.URL, "Basic " + testAPI, 401},
		{"token prefix only", on.URL, "Bearer " + testAPI[:len(testAPI)-1], 401},
		{"right token", on.URL, "Bearer " + testAPI, 200},
		{"scheme is case-insensitive", on.URL, "bearer " + testAPI, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := apiDo(t, tt.base, http.MethodGet, "/v1/users/bob/devices", tt.auth, "")
			if status != tt.status {
				t.Fatalf("status = %d (%s), want %d", status, body, tt.status)
			}
			if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer (got %q)", hdr.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestDeviceAPIRoundTrip(t *testing.T) {
	t.Parallel()
	f := newAPIServer(t, testAPI)
	auth := "Bearer " + testAPI
	list := func(user string) []map[string]any {
		t.Helper()
		status, _, body := apiDo(t, f.URL, http.MethodGet, "/v1/users/"+user+"/devices", auth, "")
		if status != 200 {
			t.Fatalf("GET: %d %s", status, body)
		}
		var out struct {
			Devices []map[string]any `json:"devices"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil || out.Devices == nil {
			t.Fatalf("GET body %q: want {\"devices\":[...]}", body)
		}
		return out.Devices
	}
	if got := list("nobody"); len(got) != 0 {
		t.Fatalf("unknown user: %v", got)
	}
	for _, c := range []struct{ user, token, body string }{
		{"bob", "tok-1", `{"platform":"android"}`},
		{"bob", "tok-2", ``},
		{"bob", "tok-1", `{}`}, // refresh keeps the platform
	} {
		if status, _, body := apiDo(t, f.URL, http.MethodPut, "/v1/users/"+c.user+"/devices/"+c.token, auth, c.body); status/100 != 2 {
			t.Fatalf("PUT %s: %d %s", c.token, status, body)
		}
	}
	// (Order by last seen is covered by the devices package with a fake
	// clock; here registrations can share a millisecond.)
	platforms := map[string]string{}
	for _, d := range list("bob") {
		platforms[d["token"].(string)] = d["platform"].(string)
		if _, ok := d["updated_at"].(string); !ok {
			t.Errorf("device without updated_at: %v", d)
		}
	}
	if d := cmp.Diff(map[string]string{"tok-1": "android", "tok-2": ""}, platforms); d != "" {
		t.Errorf("devices and platforms (-want +got):\n%s", d)
	}
	// Registering tok-1 for carol takes it from bob.
	apiDo(t, f.URL, http.MethodPut, "/v1/users/carol/devices/tok-1", auth, "")
	if got := list("bob"); len(got) != 1 || got[0]["token"] != "tok-2" {
		t.Errorf("bob after the move: %v", got)
	}
	// DELETE by someone else changes nothing; by the owner removes it; twice is fine.
	for _, c := range []struct{ user string }{{"bob"}, {"carol"}, {"carol"}} {
		if status, _, body := apiDo(t, f.URL, http.MethodDelete, "/v1/users/"+c.user+"/devices/tok-1", auth, ""); status/100 != 2 {
			t.Fatalf("DELETE as %s: %d %s", c.user, status, body)
		}
		if c.user == "bob" && len(list("carol")) != 1 {
			t.Fatal("bob's DELETE removed carol's device")
		}
	}
	if got := list("carol"); len(got) != 0 {
		t.Errorf("carol after DELETE: %v", got)
	}
}

func TestDeviceAPIRejectsBadInput(t *testing.T) {
	t.Parallel()
	f := newAPIServer(t, testAPI)
	auth := "Bearer " + testAPI
	tests := []struct{ name, method, path, body string }{
		{"bad platform", http.MethodPut, "/v1/users/bob/devices/tok", `{"platform":"symbian"}`},
		{"platform wrong type", http.MethodPut, "/v1/users/bob/devices/tok", `{"platform":1}`},
		{"body not JSON", http.MethodPut, "/v1/users/bob/devices/tok", `platform=android`},
		{"trailing data", http.MethodPut, "/v1/users/bob/devices/tok", `{} {}`},
		{"token with slash", http.MethodPut, "/v1/users/bob/devices/a%2Fb", ``},
		{"token with space", http.MethodPut, "/v1/users/bob/devices/a%20b", ``},
		{"token too long", http.MethodPut, "/v1/users/bob/devices/" + strings.Repeat("a", 4097), ``},
		{"user too long", http.MethodPut, "/v1/users/" + strings.Repeat("u", 33) + "/devices/tok", ``},
		{"user too long on GET", http.MethodGet, "/v1/users/" + strings.Repeat("u", 33) + "/devices", ``},
		{"bad locale", http.MethodPut, "/v1/users/bob/devices/tok", `{"locale":"not a locale!"}`},
		{"huge body", http.MethodPut, "/v1/users/bob/devices/tok", `{"platform":"` + strings.Repeat("a", 5000) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := apiDo(t, f.URL, tt.method, tt.path, auth, tt.body)
			if status != http.StatusBadRequest {
				t.Errorf("status = %d (%s), want 400", status, body)
			}
		})
	}
	if status, _, body := apiDo(t, f.URL, http.MethodGet, "/v1/users/bob/devices", auth, ""); status != 200 || !strings.Contains(body, `"devices":[]`) {
		t.Errorf("bad requests changed bob's devices: %d %s", status, body)
	}
}

// The device body is decoded strictly where leniency would lose or change
// data, and the 400 names what is wrong: encoding/json alone would let the
// last of two "platform" keys win and match "PLATFORM" to platform. Unknown
// fields are ignored (clients add fields) and null is a field left out.
func TestDeviceAPIStrictBody(t *testing.T) {
	t.Parallel()
	f := newAPIServer(t, testAPI)
	auth := "Bearer " + testAPI
	tests := []struct{ name, body, want string }{
		{"duplicate key", `{"platform":"ios","platform":"android"}`, `duplicate object member name "platform"`},
		{"duplicate key, one escaped", `{"locale":"en","\u006cocale":"de"}`, `duplicate object member name`},
		{"field name in another case", `{"PLATFORM":"ios"}`, `member "PLATFORM": names are case-sensitive, want "platform"`},
		{"bad JSON in an unknown field", `{"extra":[1,}`, `invalid character ',' at start of value within "/extra"`},
		{"number platform", `{"platform":1}`, `member "/platform": want a string, got a number`},
		{"trailing object", `{} {}`, `data after the JSON object`},
		{"trailing garbage", `{"platform":"ios"}x`, `data after the JSON object`},
		{"null body", `null`, `body is not a JSON object`},
		{"array body", `[{"platform":"ios"}]`, `body is not a JSON object`},
		{"invalid UTF-8", "{\"locale\":\"\xff\"}", `invalid UTF-8`},
		{"syntax error", `{"platform":"ios",}`, `invalid character ','`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token := "tok-" + strings.ReplaceAll(tt.name, " ", "-")
			status, _, body := apiDo(t, f.URL, http.MethodPut, "/v1/users/strict/devices/"+token, auth, tt.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400 with %q", status, body, tt.want)
			}
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tt.want) {
				t.Errorf("400 body %s; want an error with %q", body, tt.want)
			}
		})
	}
	// Well-formed bodies are still accepted: escapes decoded, surrounding
	// whitespace allowed, platform lower-cased.
	for _, body := range []string{"", " \r\n\t", `{}`, ` {"platform":"I\u004fS", "locale":"pt-BR"} `,
		`{"platform":"ios","extra":{"nested":[true,null]},"app_version":"1.2"}`, `{"platform":null,"locale":null}`} {
		if status, _, resp := apiDo(t, f.URL, http.MethodPut, "/v1/users/strict-ok/devices/tok", auth, body); status != http.StatusNoContent {
			t.Fatalf("PUT %q: %d %s, want 204", body, status, resp)
		}
	}
	status, _, body := apiDo(t, f.URL, http.MethodGet, "/v1/users/strict-ok/devices", auth, "")
	if status != 200 || !strings.Contains(body, `"platform":"ios"`) || !strings.Contains(body, `"locale":"pt-BR"`) {
		t.Errorf("GET after strict PUTs: %d %s", status, body)
	}
	if status, _, body := apiDo(t, f.URL, http.MethodGet, "/v1/users/strict/devices", auth, ""); status != 200 || !strings.Contains(body, `"devices":[]`) {
		t.Errorf("rejected bodies registered devices: %d %s", status, body)
	}
}

// A fresh device API exports at 0 every answer the API gives itself, for
// each method: an alert on the first error of a new receiver must see a
// change from 0.
func TestAPICountersStartAtZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	devices.NewAPI(nil, "", slog.New(slog.DiscardHandler), reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var kv []string
			for _, lp := range m.GetLabel() {
				kv = append(kv, lp.GetName()+"="+lp.GetValue())
			}
			got[mf.GetName()+"{"+strings.Join(kv, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	for _, c := range []string{"code=200,method=GET", "code=204,method=PUT", "code=204,method=DELETE", "code=503,method=PUT",
		"code=503,method=GET", "code=503,method=DELETE", "code=401,method=PUT", "code=400,method=PUT"} {
		if v, ok := got["followpush_device_api_requests_total{"+c+"}"]; !ok || v != 0 {
			t.Errorf("followpush_device_api_requests_total{%s}: exported %v at %v; want it at 0 from the start", c, ok, v)
		}
	}
}
