package e2e_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/tasks"
)

// Users' own preferences through the real programs: set through the
// receiver's API, applied by the worker. One follow webhook to three
// users: bob turned follower pushes off (nothing sent), carol is in her
// quiet hours (held for one summary when they end), dave has the defaults
// (pushed).
func TestPreferencesEndToEnd(t *testing.T) {
	skipIfShort(t, "runs the programs")
	s := startStack(t, 1, nil)
	s.registerDevice("bob", "tok-bob", "android")
	s.registerDevice("carol", "tok-carol", "android")
	s.registerDevice("dave", "tok-dave", "android")
	auth := map[string]string{"Authorization": "Bearer " + apiToken}

	now := time.Now().UTC()
	quietEnd := now.Add(2 * time.Hour).Truncate(time.Minute)
	carol := `{"follow_pushes":"all","quiet_hours":{"start":"` + now.Add(-time.Hour).Format("15:04") + `","end":"` + quietEnd.Format("15:04") + `","time_zone":"UTC"}}`
	for user, body := range map[string]string{"bob": `{"follow_pushes":"off"}`, "carol": carol} {
		if status, b := s.do(http.MethodPut, "/v1/users/"+user+"/preferences", []byte(body), auth); status != http.StatusOK {
			t.Fatalf("PUT %s's preferences: %d %s", user, status, b)
		}
	}
	if status, b := s.do(http.MethodPut, "/v1/users/bob/preferences", []byte(`{"follow_pushes":"never"}`), auth); status != http.StatusBadRequest {
		t.Errorf("PUT a bad mode: %d %s, want 400", status, b)
	}
	if status, b := s.do(http.MethodGet, "/v1/users/bob/preferences", nil, auth); status != http.StatusOK || string(b) != `{"follow_pushes":"off"}`+"\n" {
		t.Errorf("GET bob's preferences: %d %s", status, b)
	}

	s.follow(t, "alice", nowMillis(), "bob", "carol", "dave")
	// Idle but for carol's summary, scheduled for the end of her quiet hours.
	deadline := time.Now().Add(30 * time.Second)
	var held []*asynq.TaskInfo
	for {
		qi, err := s.insp.GetQueueInfo(tasks.QueueFollow)
		if err == nil && qi.Pending+qi.Active+qi.Retry == 0 && qi.Scheduled == 1 {
			if held, err = s.insp.ListScheduledTasks(tasks.QueueFollow); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not settled after 30 s: %+v (err %v)", qi, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := cmp.Diff(map[string]int{"tok-dave": 1}, accepted(s.fcm.Requests(), func(r fcmtest.Request) bool { return true })); d != "" {
		t.Errorf("pushes per device (-want +got):\n%s", d)
	}
	var sum tasks.Summary
	if err := json.Unmarshal(held[0].Payload, &sum); err != nil || held[0].Type != tasks.TypeSummary {
		t.Fatalf("scheduled task %s %s: %v", held[0].Type, held[0].Payload, err)
	}
	if sum.To != "carol" || !sum.Time().Equal(quietEnd) {
		t.Errorf("held summary for %s due %v, want carol's at the end of her quiet hours %v", sum.To, sum.Time().UTC(), quietEnd)
	}

	// Each follow's story says what the preference did (the worker writes
	// it in the background: ask until it is there).
	for user, fate := range map[string]string{"bob": "preference_off", "carol": "quiet_hours", "dave": "sent"} {
		var ans history.Answer
		for deadline := time.Now().Add(30 * time.Second); ; {
			status, b := s.do(http.MethodGet, "/v1/users/"+user+"/notifications?from=alice", nil, auth)
			if status != http.StatusOK || json.Unmarshal(b, &ans) != nil {
				t.Fatalf("%s's history: %d %s", user, status, b)
			}
			if len(ans.Notifications) == 1 && ans.Notifications[0].Fate == fate {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's history never said %s: %s", user, fate, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
