package httpserve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// A graceful shutdown lets an in-flight request finish, and is not held up
// by a connection that never sent a byte (a client's or load balancer's
// spare connection): net/http alone waits 5 s for such a connection, past a
// shorter SHUTDOWN_TIMEOUT, and Serve then failed with "context deadline
// exceeded" (seen in CI after the malformed-request barrage). The timeout
// here, 4 s, is under those 5 s, and well over what the shutdown takes
// (the unused connection's 250 ms, then net/http's idle checks, at most
// 500 ms apart), on a busy machine too.
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
	go func() { served <- Serve(ctx, ln, "http", h, 4*time.Second, slog.New(slog.DiscardHandler)) }()

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

// A slowloris client, one that sends part of a request header and then
// stalls, or trickles the header a byte at a time, is disconnected once
// ReadHeaderTimeout has passed since its request began, while ordinary
// requests are served meanwhile. The read timeout is long here, so only the
// header timeout can close the connection before the test's deadline.
func TestServeDisconnectsSlowHeaders(t *testing.T) {
	const headerTimeout = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	to := timeouts{ReadHeader: headerTimeout, Read: time.Minute, Write: time.Minute, Idle: time.Minute}
	go func() { served <- serve(ctx, ln, "http", h, 5*time.Second, to, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	for _, tt := range []struct {
		name    string
		trickle bool
	}{
		{"partial header, then nothing", false},
		{"header trickled byte by byte", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The server's header deadline starts when it accepts the
			// connection, which may be before Dial returns here: count
			// from before the dial.
			start := time.Now()
			slow, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer slow.Close()
			if _, err := io.WriteString(slow, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
				t.Fatal(err)
			}
			if tt.trickle {
				// Each byte well within the timeout: a per-read timeout would
				// never fire; the header's deadline does.
				stop := make(chan struct{})
				trickled := make(chan struct{})
				defer func() { close(stop); <-trickled }()
				go func() {
					defer close(trickled)
					tick := time.NewTicker(headerTimeout / 10)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						if _, err := io.WriteString(slow, "x"); err != nil {
							return
						}
					}
				}()
			}

			// Meanwhile an ordinary request is served.
			resp, err := http.Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatalf("ordinary request while a client stalls: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "ok" {
				t.Fatalf("ordinary request while a client stalls: %d %q", resp.StatusCode, body)
			}

			// The server closes the slow connection without answering: the
			// read ends without data, well before the generous deadline.
			if err := slow.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			n, err := slow.Read(make([]byte, 512))
			closed := errors.Is(err, io.EOF) || tt.trickle && errors.Is(err, syscall.ECONNRESET) // a byte in flight at the close makes it a reset
			if n != 0 || !closed {
				t.Fatalf("slow connection: read %d bytes, err %v; want it closed by the server (EOF)", n, err)
			}
			if elapsed := time.Since(start); elapsed < headerTimeout {
				t.Fatalf("slow connection closed after %s, before the %s header timeout", elapsed, headerTimeout)
			}
		})
	}
}

// Serve's defaults guard against slow clients: every timeout is set, and
// the header one is what the documentation says.
func TestServeTimeoutsAreSet(t *testing.T) {
	to := serveTimeouts()
	if to.ReadHeader != 5*time.Second || to.Read <= to.ReadHeader || to.Write <= 0 || to.Idle <= 0 {
		t.Errorf("serve timeouts %+v: want ReadHeader 5s, Read longer, Write and Idle set", to)
	}
}
