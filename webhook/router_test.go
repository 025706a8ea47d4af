package webhook_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/followpush/followpush/webhook"
)

// rawRequest sends raw (a request without its final blank line) on a new
// connection to addr and reads the answer.
func rawRequest(t *testing.T, addr, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, raw+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: read answer: %v", raw, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: read body: %v", raw, err)
	}
	return resp, b
}

// Answers the router or net/http make before a handler runs (no route, a
// method the route does not take, a path not in canonical form, a request
// line net/http cannot parse, headers too large) are ours: JSON, a
// Tencent-shaped FAIL under /webhook, the device API's {"error"} under
// /v1/, both shapes where net/http answers before it knows the path; 405
// says what is allowed, a redirect where to go.
func TestRouterAnswersAreOurs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, webhook.Options{APIToken: testAPI})
	// The same handler, served through webhook.Listener as the programs
	// serve it, with a small header limit to reach net/http's 431.
	srv := httptest.NewUnstartedServer(f.srv.Config.Handler)
	srv.Listener = webhook.Listener(srv.Listener)
	srv.Config.MaxHeaderBytes = 4 << 10
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	const (
		tencent = "tencent" // Tencent-shaped FAIL only
		api     = "api"     // {"error"} only
		both    = "both"    // both shapes in one body
	)
	query := "?SdkAppid=" + testApp + "&CallbackCommand=Follow.CallbackAfterFollowAdd"
	tests := []struct {
		name, request string
		status        int
		shape         string
		header        map[string]string
	}{
		{"GET /webhook", "GET /webhook" + query + " HTTP/1.1", 405, tencent, map[string]string{"Allow": "POST"}},
		{"PUT /webhook", "PUT /webhook HTTP/1.1", 405, tencent, map[string]string{"Allow": "POST"}},
		{"POST //webhook", "POST //webhook" + query + " HTTP/1.1", 307, tencent, map[string]string{"Location": "/webhook" + query}},
		{"POST /webhook/", "POST /webhook/ HTTP/1.1", 404, tencent, nil},
		{"POST /webhook/x", "POST /webhook/x HTTP/1.1", 404, tencent, nil},
		{"bad % escape in /webhook", "POST /webhook%zz HTTP/1.1", 400, both, nil},
		{"PUT without a token", "PUT /v1/users/bob/devices/ HTTP/1.1", 404, api, nil},
		{"GET devices/", "GET /v1/users/bob/devices/ HTTP/1.1", 404, api, nil},
		{"POST on a device", "POST /v1/users/bob/devices/tok HTTP/1.1", 405, api, map[string]string{"Allow": "DELETE, PUT"}},
		{"DELETE the list", "DELETE /v1/users/bob/devices HTTP/1.1", 405, api, map[string]string{"Allow": "GET, HEAD"}},
		{"// in the device API", "GET /v1/users/bob//devices HTTP/1.1", 307, api, map[string]string{"Location": "/v1/users/bob/devices"}},
		{"bad % escape in the device API", "PUT /v1/users/b%zzob/devices/x HTTP/1.1", 400, both, nil},
		{"unknown path", "GET /nope HTTP/1.1", 404, api, nil},
		{"POST /healthz", "POST /healthz HTTP/1.1", 405, api, map[string]string{"Allow": "GET, HEAD"}},
		{"no Host header", "POST /webhook HTTP/1.1\r\nContent-Length: 0", 400, both, nil},
		{"headers too large", "POST /webhook HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 8<<10), 431, both, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := tt.request
			if !strings.Contains(raw, "\r\n") {
				raw += "\r\nHost: receiver.example\r\nContent-Length: 0"
			} else if tt.name != "no Host header" {
				raw += "\r\nHost: receiver.example"
			}
			raw += "\r\nConnection: close\r\n"
			resp, b := rawRequest(t, addr, raw)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tt.status, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json (%s)", ct, b)
			}
			for k, v := range tt.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			var body map[string]any
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("body is not JSON: %q", b)
			}
			tencentShaped := body["ActionStatus"] == "FAIL" && body["ErrorCode"] == float64(tt.status*10) && body["ErrorInfo"] != ""
			_, hasInfo := body["ErrorInfo"].(string)
			errText, hasError := body["error"].(string)
			switch tt.shape {
			case tencent:
				if !tencentShaped || !hasInfo || hasError || len(body) != 3 {
					t.Errorf("body %s, want exactly Tencent's ActionStatus FAIL, ErrorCode %d, ErrorInfo", b, tt.status*10)
				}
			case api:
				if !hasError || errText == "" || len(body) != 1 {
					t.Errorf("body %s, want exactly {\"error\": \"...\"}", b)
				}
			case both:
				if !tencentShaped || !hasInfo || !hasError || errText == "" {
					t.Errorf("body %s, want Tencent's FAIL with ErrorCode %d and an \"error\"", b, tt.status*10)
				}
			}
		})
	}
}
