package app

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/spool"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/webhook"
	"github.com/prometheus/client_golang/prometheus"
)

const testAPIToken = "api-token-0123456789"

// testReceiverRoutes is the receiver's route table over a real
// redis-server, for app 1400000000, the device API on testAPIToken and a
// spool sp (nil: none).
func testReceiverRoutes(t *testing.T, sp webhook.Spool) http.Handler {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	log := slog.New(slog.DiscardHandler)
	metrics := webhook.NewMetrics(prometheus.NewRegistry())
	return receiverRoutes(receiverParts{
		webhook: webhook.NewHandler(webhook.Options{AppIDs: []string{"1400000000"}},
			webhook.Deps{Enqueuer: webhook.NewAsynqEnqueuer(rdb, 1), Canceller: delivery.New(rdb, delivery.Options{}), Spool: sp, Metrics: metrics}),
		devices: devices.NewAPI(devices.NewRegistry(rdb, devices.Options{}), testAPIToken, log, prometheus.NewRegistry()),
		ready:   readiness{ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }, log: log, spool: sp, maxBytes: 1 << 20, metrics: metrics},
	})
}

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
	// The receiver's routes, served through Listener as the programs
	// serve them, with a small header limit to reach net/http's 431.
	srv := httptest.NewUnstartedServer(testReceiverRoutes(t, nil))
	srv.Listener = Listener(srv.Listener)
	srv.Config.MaxHeaderBytes = 4 << 10
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	const (
		tencent = "tencent" // Tencent-shaped FAIL only
		api     = "api"     // {"error"} only
		both    = "both"    // both shapes in one body
	)
	query := "?SdkAppid=1400000000&CallbackCommand=Follow.CallbackAfterFollowAdd"
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

// The receiver's /healthz answers while it runs; /readyz while events can
// be stored: Redis answers, or (with a spool) the spool is under 90 %
// full. A stopped Redis is "unavailable", nothing more.
func TestReceiverReadiness(t *testing.T) {
	t.Parallel()
	get := func(t *testing.T, base, path string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("%s: answer is not JSON: %v", path, err)
		}
		return resp.StatusCode, body
	}
	for _, tc := range []struct {
		name       string
		spoolBytes int // filled before Redis stops; -1: no spool
		want       int
	}{
		{"no spool", -1, http.StatusServiceUnavailable},
		{"spool with room", 0, http.StatusOK},
		{"spool full", 1<<20 - 64, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sp webhook.Spool
			if tc.spoolBytes >= 0 {
				s, err := spool.Open(spool.Options{Dir: t.TempDir(), MaxBytes: 1 << 20, SegmentBytes: 1 << 20})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				if tc.spoolBytes > 0 {
					if err := s.Append(make([]byte, tc.spoolBytes-8)); err != nil {
						t.Fatal(err)
					}
				}
				sp = s
			}
			red := redistest.Start(t)
			rdb := red.Client(t)
			log := slog.New(slog.DiscardHandler)
			srv := httptest.NewServer(receiverRoutes(receiverParts{
				webhook: http.NotFoundHandler(),
				devices: devices.NewAPI(devices.NewRegistry(rdb, devices.Options{}), "", log, prometheus.NewRegistry()),
				ready: readiness{ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }, log: log, spool: sp,
					maxBytes: 1 << 20, metrics: webhook.NewMetrics(prometheus.NewRegistry())},
			}))
			t.Cleanup(srv.Close)
			if status, _ := get(t, srv.URL, "/healthz"); status != http.StatusOK {
				t.Errorf("/healthz = %d", status)
			}
			if status, body := get(t, srv.URL, "/readyz"); status != http.StatusOK || body["redis"] != "ok" {
				t.Errorf("/readyz with Redis up = %d %v", status, body)
			}
			red.Stop()
			status, body := get(t, srv.URL, "/readyz")
			if status != tc.want || body["redis"] != "unavailable" {
				t.Errorf("/readyz with Redis down = %d %v, want %d and redis unavailable", status, body, tc.want)
			}
		})
	}
}
