package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
)

// Wrong Firebase credentials make FCM answer SENDER_ID_MISMATCH for every
// token. Three worker processes share one breaker through Redis: together
// they delete exactly SENDER_ID_MISMATCH_LIMIT tokens, then keep the rest;
// one of them logs that the breaker opened, and every worker's
// followpush_sender_id_mismatch_breaker_open is 1. A successful send (on
// any worker) closes it for all, and deleting resumes.
func TestSenderIDMismatchBreakerAcrossWorkers(t *testing.T) {
	skipIfShort(t, "runs the programs")
	const (
		limit    = 20
		users    = 15
		perUser  = 6
		workers  = 3
		mismatch = users * perUser
	)
	s := startStack(t, workers, map[string]string{
		"SENDER_ID_MISMATCH_LIMIT": fmt.Sprint(limit),
		// One task at a time per worker, each taking FCM's latency: no
		// worker can take every task, so all three share the breaker.
		"WORKER_CONCURRENCY": "1",
	})
	s.fcm.SetLatency(150 * time.Millisecond)
	s.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		if strings.HasPrefix(r.Token, "good-") {
			return fcmtest.Response{}
		}
		return fcmtest.SenderIDMismatch()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	metricsURL := make([]string, workers)
	for i, w := range s.workers {
		addr, err := w.Addr(ctx, "metrics")
		if err != nil {
			t.Fatal(err)
		}
		metricsURL[i] = "http://" + addr + "/metrics"
	}

	var followees []string
	for u := range users {
		user := fmt.Sprintf("user%02d", u)
		followees = append(followees, user)
		for d := range perUser {
			s.registerDevice(user, fmt.Sprintf("mismatch-%02d-%d", u, d), "android")
		}
	}
	s.follow(t, "alice", nowMillis(), followees...)
	s.waitIdle(60 * time.Second)

	mismatchReason := map[string]string{"reason": "sender_id_mismatch"}
	var deleted, kept float64
	for i, url := range metricsURL {
		mfs := scrape(t, url)
		d, _ := sample(mfs, "followpush_tokens_deleted_total", mismatchReason)
		k, _ := sample(mfs, "followpush_tokens_kept_total", mismatchReason)
		deleted, kept = deleted+d, kept+k
		// Every device of these follows answers SENDER_ID_MISMATCH: no push
		// reaches anyone, so the tasks end undelivered.
		if tasks, _ := sample(mfs, "followpush_tasks_total", map[string]string{"result": "undelivered"}); tasks == 0 {
			t.Errorf("worker %d processed no follow task: the test does not show the breaker shared", i)
		}
		if open, ok := sample(mfs, "followpush_sender_id_mismatch_breaker_open", nil); !ok || open != 1 {
			t.Errorf("worker %d: followpush_sender_id_mismatch_breaker_open = %v (found %v), want 1", i, open, ok)
		}
	}
	if deleted != limit || kept != mismatch-limit {
		t.Errorf("all workers: %v tokens deleted, %v kept; want %d deleted (SENDER_ID_MISMATCH_LIMIT) and %d kept", deleted, kept, limit, mismatch-limit)
	}
	left := 0
	for _, u := range followees {
		left += len(s.devices(u))
	}
	if left != mismatch-limit {
		t.Errorf("registry holds %d of the %d tokens, want %d", left, mismatch, mismatch-limit)
	}
	if n := s.workerLines(msgPrefix("SENDER_ID_MISMATCH breaker opened")); n != 1 {
		t.Errorf("%d workers logged that the breaker opened, want exactly 1", n)
	}

	// A send that succeeds closes the breaker for every worker; then a
	// SENDER_ID_MISMATCH token is deleted again.
	s.registerDevice("zed", "good-zed", "ios")
	s.follow(t, "alice", nowMillis(), "zed")
	s.waitIdle(30 * time.Second)
	for i, url := range metricsURL {
		// Each worker reads the breaker from Redis at most once a second.
		deadline := time.Now().Add(10 * time.Second)
		tick := time.NewTicker(100 * time.Millisecond)
		for {
			open, _ := sample(scrape(t, url), "followpush_sender_id_mismatch_breaker_open", nil)
			if open == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("worker %d: breaker still open 10 s after a successful send", i)
				break
			}
			<-tick.C
		}
		tick.Stop()
	}
	if n := s.workerLines(msgPrefix("SENDER_ID_MISMATCH breaker closed")); n != 1 {
		t.Errorf("%d workers logged that the breaker closed, want exactly 1", n)
	}
	s.registerDevice("yve", "mismatch-yve", "android")
	s.follow(t, "alice", nowMillis(), "yve")
	s.waitIdle(30 * time.Second)
	if left := s.devices("yve"); len(left) != 0 {
		t.Errorf("yve's tokens = %v after the breaker closed, want the mismatched one deleted", left)
	}
}

// workerLines counts the log lines of all workers that match.
func (s *stack) workerLines(match func(map[string]any) bool) int {
	n := 0
	for _, w := range s.workers {
		n += len(w.Lines(match))
	}
	return n
}

// msgPrefix matches log lines whose msg starts with prefix and that carry
// a task_id.
func msgPrefix(prefix string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		id, _ := m["task_id"].(string)
		return strings.HasPrefix(msg, prefix) && id != ""
	}
}
