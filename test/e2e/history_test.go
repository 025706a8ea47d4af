package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
)

// A follow's story with the real programs: the receiver records the follow
// (twice: the webhook is repeated) and an unfollow, the worker its first
// attempt (one device failed and is retried, a dead token removed), the
// push sent with FCM's message name, and the repeat found done; the
// history API tells it, newest first, linked to the asynq task.
func TestFollowStoryEndToEnd(t *testing.T) {
	s := startStack(t, 1, nil)
	const good, dead = "tok-bob-good-5be1f2a9c4", "tok-bob-dead-07d3e6b1a8"
	sc := newScript(map[string][]fcmtest.Response{good: {fcmtest.Internal()}, dead: {fcmtest.Unregistered()}})
	s.fcm.SetResponder(sc.respond)
	s.registerDevice("bob", good, "android")
	s.registerDevice("bob", dead, "android")

	event := nowMillis()
	s.follow(t, "alice", event, "bob")
	s.waitIdle(30 * time.Second)
	// The worker writes its entries in the background: wait for the sent
	// push's entry before the repeat, so that the story's order is the
	// order things happened in.
	for deadline := time.Now().Add(30 * time.Second); ; {
		status, b := s.do(http.MethodGet, "/v1/users/bob/notifications?limit=50", nil, map[string]string{"Authorization": "Bearer " + apiToken})
		if status != http.StatusOK {
			t.Fatalf("history: %d %s", status, b)
		}
		if strings.Contains(string(b), `"event":"sent"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history never showed the push sent: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.follow(t, "alice", event, "bob")
	if status, body := s.webhook(tencent.CommandFollowDelete, unfollowBody("carol", event+1, "bob")); status != http.StatusOK {
		t.Fatalf("unfollow webhook: %d %s", status, body)
	}
	s.waitIdle(30 * time.Second)

	// The worker writes its entries in the background: ask until the
	// repeat's entry is there.
	var ans history.Answer
	var raw []byte
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		status, b := s.do(http.MethodGet, "/v1/users/bob/notifications?limit=50", nil, map[string]string{"Authorization": "Bearer " + apiToken})
		if status != http.StatusOK {
			t.Fatalf("history: %d %s", status, b)
		}
		raw = b
		if err := json.Unmarshal(b, &ans); err != nil {
			t.Fatal(err)
		}
		if n := ans.Notifications; len(n) == 2 && len(n[1].Events) > 0 && n[1].Events[len(n[1].Events)-1].Event == "duplicate" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history never showed the whole story: %s", b)
		}
		<-tick.C
	}
	t.Logf("history answer: %s", raw)
	unf, fol := ans.Notifications[0], ans.Notifications[1]
	if unf.Kind != "unfollow" || unf.From != "carol" || unf.EventTime == nil || unf.EventTime.UnixMilli() != event+1 {
		t.Errorf("newest item = %+v, want carol's unfollow", unf)
	}
	var evs []string
	for _, e := range fol.Events {
		var devs []string
		for _, d := range e.Devices {
			if strings.Contains(d.Token, "5be1f2a9") || strings.Contains(d.Token, "07d3e6b1") {
				t.Errorf("token %q not masked", d.Token)
			}
			if (d.Outcome == "sent") != strings.HasPrefix(d.Message, "projects/e2e-project/messages/") {
				t.Errorf("device %+v: FCM's message name exactly when sent", d)
			}
			s := " " + d.Outcome
			if d.Removed {
				s += "(removed)"
			}
			devs = append(devs, s)
		}
		slices.Sort(devs)
		evs = append(evs, e.Event+strings.Join(devs, ""))
		if e.Event == "retry" && (e.NextRetry == nil || !e.NextRetry.After(e.At.Add(-time.Second))) {
			t.Errorf("retry entry %+v: want its next retry time", e)
		}
	}
	want := []string{"received", "retry internal unregistered(removed)", "sent sent", "received", "duplicate"}
	if d := cmp.Diff(want, evs); d != "" {
		t.Errorf("alice's follow (-want +got):\n%s", d)
	}
	if fol.Kind != "follow" || fol.From != "alice" || !strings.HasPrefix(fol.TaskID, "follow:") || fol.EventTime == nil || fol.EventTime.UnixMilli() != event || fol.Fate != "sent" {
		t.Errorf("alice's follow = %+v", fol)
	}
	if d := cmp.Diff([]string{good}, s.devices("bob")); d != "" {
		t.Errorf("bob's devices (-want +got):\n%s", d)
	}
	s.checkLogsKeepSecrets(t)
}

// The fates the policies give, each in its follow's story, with the real
// programs: sent, capped (bob's one push of the hour is taken), unfollowed
// before the push (cancelled), older than MAX_EVENT_AGE (stale), and
// follow → unfollow → follow again within the cooldown (cooldown).
func TestFollowFatesEndToEnd(t *testing.T) {
	skipIfShort(t, "runs the programs")
	s := startStack(t, 1, map[string]string{"MAX_PUSHES_PER_USER_PER_HOUR": "1", "FOLLOW_COOLDOWN": "1h"})
	s.registerDevice("bob", "tok-bob", "android")
	ev := nowMillis()
	send := func(cmd string, body map[string]any) {
		t.Helper()
		if status, b := s.webhook(cmd, body); status != http.StatusOK {
			t.Fatalf("%s: %d %s", cmd, status, b)
		}
	}
	send(tencent.CommandFollowAdd, followBody("alice", ev, "bob"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.fcm.WaitForRequests(ctx, 1); err != nil {
		t.Fatalf("alice's push: %v", err)
	}
	send(tencent.CommandFollowAdd, followBody("carol", ev+1, "bob"))
	send(tencent.CommandFollowDelete, unfollowBody("dave", ev+3, "bob"))
	send(tencent.CommandFollowAdd, followBody("dave", ev+2, "bob"))
	send(tencent.CommandFollowAdd, followBody("erin", ev-2*time.Hour.Milliseconds(), "bob"))
	send(tencent.CommandFollowDelete, unfollowBody("alice", ev+4, "bob"))
	send(tencent.CommandFollowAdd, followBody("alice", ev+5, "bob"))

	want := map[string][]string{"alice": {"cooldown", "sent"}, "carol": {"capped"}, "dave": {"cancelled"}, "erin": {"stale"}}
	var got map[string][]string
	var raw []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		status, b := s.do(http.MethodGet, "/v1/users/bob/notifications?limit=50", nil, map[string]string{"Authorization": "Bearer " + apiToken})
		var ans history.Answer
		if status != http.StatusOK || json.Unmarshal(b, &ans) != nil {
			t.Fatalf("history: %d %s", status, b)
		}
		raw, got = b, map[string][]string{}
		for _, it := range ans.Notifications {
			if it.Kind == history.KindFollow {
				got[it.From] = append(got[it.From], it.Fate)
			}
		}
		for _, f := range got {
			slices.Sort(f)
		}
		if cmp.Equal(want, got) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fates (-want +got):\n%s\nhistory: %s", cmp.Diff(want, got), raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(s.fcm.Requests()); n != 1 {
		t.Errorf("FCM requests = %d, want alice's first follow's only", n)
	}
}

// A follow whose retry budget runs out ends as "exhausted" with the real
// programs: its task is archived (an operator may run it again from
// asynqmon), the worker counts followpush_tasks_total{result="exhausted"},
// and the followee's history tells the fate. The budget is set to 0 on a
// task stored directly (the receiver's tasks get 25 retries, hours of
// backoff); FCM answers 503 with a Retry-After over two minutes, which
// firebase-admin-go does not retry itself and the worker counts against
// the budget.
func TestExhaustedFollowEndToEnd(t *testing.T) {
	skipIfShort(t, "runs the programs")
	s := startStack(t, 1, nil)
	s.registerDevice("zoe", "tok-zoe", "android")
	s.fcm.SetResponder(fcmtest.Always(fcmtest.Unavailable(3 * time.Minute)))
	f := tasks.Follow{AppID: appID, From: "yan", To: "zoe", EventTime: nowMillis()}
	spec, err := tasks.FollowSpec(f)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: s.redis.Addr()})
	defer client.Close()
	if _, err := client.Enqueue(spec.Task(asynq.MaxRetry(0))); err != nil {
		t.Fatal(err)
	}

	var fate string
	for deadline := time.Now().Add(30 * time.Second); ; {
		status, b := s.do(http.MethodGet, "/v1/users/zoe/notifications", nil, map[string]string{"Authorization": "Bearer " + apiToken})
		var ans history.Answer
		if status != http.StatusOK || json.Unmarshal(b, &ans) != nil {
			t.Fatalf("history: %d %s", status, b)
		}
		for _, it := range ans.Notifications {
			if it.Kind == history.KindFollow && it.From == "yan" {
				fate = it.Fate
			}
		}
		if fate == "exhausted" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("yan's fate = %q, want exhausted; history: %s", fate, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info, err := s.insp.GetTaskInfo(spec.Queue, spec.ID); err != nil || info.State != asynq.TaskStateArchived {
		t.Errorf("the task after its last attempt: %+v, %v; want archived", info, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := s.workers[0].Addr(ctx, "metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := sample(scrape(t, "http://"+addr+"/metrics"), "followpush_tasks_total", map[string]string{"result": "exhausted"}); !ok || v != 1 {
		t.Errorf(`followpush_tasks_total{result="exhausted"} = %v (found %v), want 1`, v, ok)
	}
	if n := len(s.fcm.Requests()); n != 1 {
		t.Errorf("FCM requests = %d, want the one attempt", n)
	}
}
