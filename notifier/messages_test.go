package notifier_test

import (
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/internal/testrig/asynqlog"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/syncbuf"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/tasks"
)

// serveHandler runs a real asynq server over the fixture's Redis with h
// for follow and digest tasks, configured with the worker's retry policy,
// until the test ends.
func serveHandler(t *testing.T, f *handlerFixture, h *notifier.Handler) {
	t.Helper()
	srv := asynq.NewServerFromRedisClient(f.rdb, asynq.Config{
		Concurrency:       2,
		Queues:            map[string]int{tasks.QueueFollow: 1},
		TaskCheckInterval: 10 * time.Millisecond,
		RetryDelayFunc:    notifier.RetryDelay,
		IsFailure:         notifier.IsFailure,
		Logger:            asynqlog.Discard{},
	})
	if err := srv.Start(h.NewServeMux()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}

// waitTask polls list until it returns a task, for up to 30 s.
func waitTask(t *testing.T, what string, list func() ([]*asynq.TaskInfo, error)) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ts, err := list()
		if err == nil && len(ts) > 0 {
			return ts[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s task after 30 s (err %v)", what, err)
		}
		<-tick.C
	}
}

var nextTryRE = regexp.MustCompile(`; next try in [0-9.]+(ms|s|m[0-9.]*s?|h[0-9ms.]*), at (\S+)$`)

// The message asynq keeps as a retried task's last error (asynqmon's "Last
// Error") says when the next try really is, matching the time asynq
// scheduled it for, and never claims a Retry-After FCM did not send.
func TestLastErrorSaysWhenTheRetryIs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		resp    fcmtest.Response
		want    string // in the message
		notWant string
	}{
		{"no Retry-After", fcmtest.Internal(), "1 device(s) failed with internal; next try in ", "wait"},
		{"Retry-After", fcmtest.QuotaExceeded(7 * time.Second), "1 device(s) failed with quota_exceeded; FCM asked to wait 7s (Retry-After); next try in ", "retry after 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newHandlerFixture(t, notifier.HandlerOptions{})
			f.fcm.SetResponder(fcmtest.Always(tt.resp))
			f.register(t, "bob", "tok-bob")
			serveHandler(t, f, f.h)
			task, err := tasks.NewFollowTask(f.follow("bob"))
			if err != nil {
				t.Fatal(err)
			}
			client := asynq.NewClientFromRedisClient(f.rdb)
			if _, err := client.Enqueue(task); err != nil {
				t.Fatal(err)
			}
			insp := asynq.NewInspectorFromRedisClient(f.rdb)
			ti := waitTask(t, "retry", func() ([]*asynq.TaskInfo, error) { return insp.ListRetryTasks(tasks.QueueFollow) })

			if !strings.Contains(ti.LastErr, tt.want) || strings.Contains(ti.LastErr, tt.notWant) {
				t.Errorf("last error %q: want it to contain %q and not %q", ti.LastErr, tt.want, tt.notWant)
			}
			m := nextTryRE.FindStringSubmatch(ti.LastErr)
			if m == nil {
				t.Fatalf("last error %q does not end with the next try", ti.LastErr)
			}
			at, err := time.Parse(time.RFC3339, m[2])
			if err != nil {
				t.Fatal(err)
			}
			// The message has whole seconds; asynq stored the exact time.
			if d := ti.NextProcessAt.Sub(at); d < -time.Second || d > time.Second {
				t.Errorf("message says the next try is at %s, asynq scheduled it at %s", at, ti.NextProcessAt)
			}
		})
	}
}

// The log lines of tasks whose payload cannot be read (archived at once)
// carry the task's id, like every other line about a task.
func TestInvalidTaskLogsTaskID(t *testing.T) {
	t.Parallel()
	f := newHandlerFixture(t, notifier.HandlerOptions{})
	var logs syncbuf.Buffer
	sender := senderTo(t, f.fcm, "p")
	h, err := notifier.NewHandler(slog.New(slog.NewJSONHandler(&logs, nil)), f.reg, f.records, sender, nil, notifier.HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	serveHandler(t, f, h)
	client := asynq.NewClientFromRedisClient(f.rdb)
	bad := map[string]string{
		"bad-follow-1": tasks.TypeFollow,
		"bad-digest-1": tasks.TypeSummary,
	}
	for id, typ := range bad {
		if _, err := client.Enqueue(asynq.NewTask(typ, []byte(`{"to":""}`)), asynq.Queue(tasks.QueueFollow), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(f.rdb)
	waitTask(t, "second archived", func() ([]*asynq.TaskInfo, error) {
		ts, err := insp.ListArchivedTasks(tasks.QueueFollow)
		if len(ts) < len(bad) {
			return nil, err
		}
		return ts, err
	})
	found := map[string]bool{}
	for line := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		msg, _ := m["msg"].(string)
		if !strings.HasPrefix(msg, "invalid ") {
			continue
		}
		id, _ := m["task_id"].(string)
		if bad[id] == "" {
			t.Errorf("%q logged with task_id %q, want one of the archived tasks' ids", msg, id)
		}
		found[id] = true
	}
	for id := range bad {
		if !found[id] {
			t.Errorf("no invalid-task line with task_id %q in:\n%s", id, logs.String())
		}
	}
}
