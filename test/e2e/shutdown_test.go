package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/testrig/proc"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
)

// SIGTERM to the worker: in-flight sends finish, nothing new is fetched, the
// rest stays in Redis for the next worker, and nothing is sent twice.
func TestWorkerGracefulShutdown(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1, map[string]string{"WORKER_CONCURRENCY": "2", "LOG_LEVEL": "info"})
	sc := newScript(nil)
	s.fcm.SetResponder(sc.respond)
	s.fcm.SetLatency(time.Second) // sends in flight when SIGTERM lands
	followees := users("g", 6)
	s.registerAll(followees)
	if status, body := s.webhook(tencent.CommandFollowAdd, followBody("fan", nowMillis(), followees...)); status != 200 {
		t.Fatalf("webhook: %d %s", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.fcm.WaitForRequests(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.workers[0].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.workers[0].Exited():
	case <-ctx.Done():
		t.Fatal("worker did not exit after SIGTERM")
	}
	if code := s.workers[0].ExitCode(); code != 0 {
		t.Errorf("worker exit code %d, want 0", code)
	}
	_, success := sc.snapshot()
	inFlight := len(success)
	if inFlight != 2 {
		t.Errorf("%d sends completed by the stopping worker, want the 2 in flight", inFlight)
	}
	qi, err := s.insp.GetQueueInfo(tasks.QueueFollow)
	if err != nil {
		t.Fatal(err)
	}
	if qi.Active != 0 || qi.Pending != len(followees)-inFlight {
		t.Errorf("after shutdown: active %d pending %d, want 0 and %d", qi.Active, qi.Pending, len(followees)-inFlight)
	}
	// The next worker delivers the rest, and only the rest.
	s.addWorker(ctx)
	s.waitIdle(30 * time.Second)
	_, success = sc.snapshot()
	for _, f := range followees {
		if success["tok-"+f] != 1 {
			t.Errorf("%s got %d pushes, want 1", f, success["tok-"+f])
		}
	}
}

// SIGTERM to the receiver: it stops accepting new connections but finishes a
// request that is in flight, then exits 0.
func TestReceiverGracefulShutdown(t *testing.T) {
	t.Parallel()
	s := startStack(t, 0, nil)
	body := mustJSON(t, followBody("alice", nowMillis(), "bob"))
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := fmt.Sprint(time.Now().Unix())
	// Send the headers with Expect: 100-continue; the server answers
	// "100 Continue" once the handler starts reading the body, so the
	// request is provably in flight before SIGTERM.
	fmt.Fprintf(conn, "POST /webhook?SdkAppid=%s&CallbackCommand=%s&RequestTime=%s&Sign=%s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n",
		appID, tencent.CommandFollowAdd, rt, tencent.Sign(callbackToken, rt), len(body))
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue, got %q %v", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil { // the blank line after it
		t.Fatal(err)
	}
	half := len(body) / 2
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	if err := s.receiver.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.receiver.WaitLine(ctx, proc.Msg("shutting down: finishing in-flight requests", "server", "http")); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body[half:]); err != nil {
		t.Fatalf("write rest of body after SIGTERM: %v", err)
	}
	resp, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(resp), "HTTP/1.1 200") || !strings.Contains(string(resp), `"ActionStatus":"OK"`) {
		t.Errorf("in-flight request after SIGTERM got:\n%s", resp)
	}
	select {
	case <-s.receiver.Exited():
	case <-ctx.Done():
		t.Fatal("receiver did not exit after SIGTERM")
	}
	if code := s.receiver.ExitCode(); code != 0 {
		t.Errorf("receiver exit code %d, want 0", code)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(s.base, "http://"), time.Second); err == nil {
		t.Error("receiver still accepts connections after shutdown")
	}
	qi, err := s.insp.GetQueueInfo(tasks.QueueFollow)
	if err != nil || qi.Pending != 1 {
		t.Errorf("the in-flight follow was not stored: %+v %v", qi, err)
	}
}
