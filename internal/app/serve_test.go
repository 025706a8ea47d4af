package app

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A graceful shutdown lets an in-flight request finish, and is not held up
// by a connection that never sent a byte (a client's or load balancer's
// spare connection): net/http alone waits 5 s for such a connection, past a
// 2 s SHUTDOWN_TIMEOUT, and Serve then failed with "context deadline
// exceeded" (seen in CI after the malformed-request barrage).
func TestServeShutdownFinishesRequestsAndClosesUnusedConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inHandler, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, "http", h, 2*time.Second, slog.New(slog.DiscardHandler)) }()

	unused, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer unused.Close()
	busy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := io.WriteString(busy, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	cancel()

	// The unused connection is closed by the server: the read ends without data.
	if n, err := unused.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatalf("unused connection: read %d bytes, err %v; want it closed", n, err)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("in-flight request cut off by shutdown: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "done" {
		t.Fatalf("in-flight request: %d %q", resp.StatusCode, body)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// PPROF=true mounts Go's profiler on the worker's ops listener; off, the
// path does not exist.
func TestOpsHandlerPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		rec := httptest.NewRecorder()
		OpsHandler(prometheus.NewRegistry(), nil, on).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("pprof %v: GET /debug/pprof/ = %d, want %d", on, rec.Code, want)
		}
	}
}
