package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
)

// With COMPLETED_TASK_RETENTION, delivered follows (stored by the
// receiver) and sent summaries (scheduled by the worker) stay in Redis as
// completed tasks for that long, and asynqmon's Completed tab, served by
// the receiver at /monitoring/, lists them. (Without it nothing is kept:
// TestMetricsScrape checks asynq_queue_tasks{state="completed"} is 0.)
func TestCompletedTaskRetention(t *testing.T) {
	skipIfShort(t, "runs the programs")
	const user, password = "ops", "monitoring-password-0123"
	s := startStack(t, 1, map[string]string{
		"COMPLETED_TASK_RETENTION": "1h",
		"AGGREGATION_WINDOW":       "1s",
		"MONITORING_USER":          user,
		"MONITORING_PASSWORD":      password,
	})
	s.noteSecret(password)
	s.registerDevice("bob", "tok-bob", "android")
	ev := nowMillis()
	alice := tasks.Follow{AppID: appID, From: "alice", To: "bob", EventTime: ev}
	carl := tasks.Follow{AppID: appID, From: "carl", To: "bob", EventTime: ev}
	for _, f := range []tasks.Follow{alice, carl} { // alice's is pushed at once, carl's folded into a summary
		if status, body := s.webhook(tencent.CommandFollowAdd, followBody(f.From, f.EventTime, f.To)); status != http.StatusOK {
			t.Fatalf("follow %s: %d %s", f.From, status, body)
		}
	}
	s.waitIdle(30 * time.Second)

	completed, err := s.insp.ListCompletedTasks(tasks.QueueFollow)
	if err != nil {
		t.Fatal(err)
	}
	var ids, types []string
	for _, ti := range completed {
		ids = append(ids, ti.ID)
		types = append(types, ti.Type)
		if ti.Retention != time.Hour {
			t.Errorf("completed task %s (%s) has retention %s, want 1h", ti.ID, ti.Type, ti.Retention)
		}
	}
	slices.Sort(types)
	if !slices.Contains(ids, alice.TaskID()) || !slices.Contains(ids, carl.TaskID()) ||
		!slices.Equal(types, []string{tasks.TypeSummary, tasks.TypeFollow, tasks.TypeFollow}) {
		t.Errorf("completed tasks %v (types %v), want both follows (%s, %s) and the summary", ids, types, alice.TaskID(), carl.TaskID())
	}

	// What asynqmon's Completed tab reads.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/monitoring/api/queues/"+tasks.QueueFollow+"/completed_tasks", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Tasks []struct {
			ID         string `json:"id"`
			TTLSeconds int64  `json:"ttl_seconds"`
		} `json:"tasks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("asynqmon completed_tasks: %d, %v", resp.StatusCode, err)
	}
	var shown []string
	for _, tk := range page.Tasks {
		shown = append(shown, tk.ID)
		if tk.TTLSeconds <= 0 || tk.TTLSeconds > 3600 {
			t.Errorf("asynqmon shows %s kept for %d s more, want up to an hour", tk.ID, tk.TTLSeconds)
		}
	}
	if !slices.Contains(shown, alice.TaskID()) || len(shown) != 3 {
		t.Errorf("asynqmon's Completed tab shows %v, want the 3 completed tasks", shown)
	}
}
