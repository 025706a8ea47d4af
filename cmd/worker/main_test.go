package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/internal/testrig/syncbuf"
)

// A metrics server that fails once the worker runs (here: its listening
// socket shut down under it, so that accepting fails) stops the worker
// at once with an error that names it, as a failed server does in the
// receiver: not at the next SIGTERM.
func TestWorkerStopsWhenMetricsServerFails(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("shuts a listening socket down the Linux way")
	}
	t.Parallel()
	env := map[string]string{
		"REDIS_URL":      redistest.Start(t).URL(0),
		"FCM_PROJECT_ID": "test",
		"FCM_ENDPOINT":   fcmtest.NewServer(t).URL(),
		"METRICS_ADDR":   "127.0.0.1:0",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"worker"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &logs)
	}()
	addr := waitMetricsAddr(t, &logs, done)
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// The fault: the metrics listener's socket is shut down, as if the
	// network under it went away; its accept fails from now on.
	shutdownListener(t, addr)
	// The worker has nothing in flight: stopping takes well under a
	// second. A minute is for a very busy machine.
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "metrics") {
			t.Errorf("run = %v, want an error naming the metrics server", err)
		}
	case <-time.After(time.Minute):
		cancel()
		t.Fatalf("the worker still ran a minute after its metrics server failed (after SIGTERM: %v)\n%s", <-done, logs.String())
	}
}

// A METRICS_ADDR already in use stops the worker at start with an error
// naming it.
func TestWorkerStopsWhenMetricsAddrInUse(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	env := map[string]string{
		"REDIS_URL":      redistest.Start(t).URL(0),
		"FCM_PROJECT_ID": "test",
		"FCM_ENDPOINT":   fcmtest.NewServer(t).URL(),
		"METRICS_ADDR":   taken.Addr().String(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = run(ctx, []string{"worker"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "metrics") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("run = %v, want an error naming the metrics listener, address in use", err)
	}
	if ctx.Err() != nil {
		t.Error("run returned only when its context ended")
	}
}

// waitMetricsAddr waits until the worker has started and returns the
// address its metrics server listens on, from its log.
func waitMetricsAddr(t *testing.T, logs *syncbuf.Buffer, done chan error) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		addr, started := "", false
		for line := range strings.Lines(logs.String()) {
			var l struct{ Msg, Server, Addr string }
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			switch {
			case l.Msg == "listening" && l.Server == "metrics":
				addr = l.Addr
			case l.Msg == "worker started":
				started = true
			}
		}
		if started && addr != "" {
			return addr
		}
		select {
		case err := <-done:
			t.Fatalf("run = %v before the worker started\n%s", err, logs.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not start in a minute\n%s", logs.String())
		}
	}
}

// shutdownListener finds this process's listening socket bound to addr and
// shuts it down (shutdown(2)): the server's accept then fails with EINVAL.
func shutdownListener(t *testing.T, addr string) {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.Atoi(port)
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			continue
		}
		if in, ok := sa.(*syscall.SockaddrInet4); !ok || in.Port != want {
			continue
		}
		if acc, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || acc != 1 {
			continue // a connection from or to that port, not the listener
		}
		if err := syscall.Shutdown(fd, syscall.SHUT_RDWR); err != nil {
			t.Fatalf("shutdown of the listener on %s: %v", addr, err)
		}
		return
	}
	t.Fatalf("no listening socket on %s in this process", addr)
}
