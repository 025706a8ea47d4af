package e2e_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/followpush/followpush/tencent"
	"github.com/google/go-cmp/cmp"
)

// The notification policies through the real programs: with aggregation
// on, a burst of follows to one user is the first follower's push and one
// summary, without the follower who unfollowed before it went out; and
// follow → unfollow → follow again pushes once (cooldown).
func TestPoliciesEndToEnd(t *testing.T) {
	skipIfShort(t, "runs the programs")
	s := startStack(t, 2, map[string]string{
		"AGGREGATION_WINDOW":          "4s",
		"AGGREGATION_FIRST_IMMEDIATE": "true",
		"FOLLOW_COOLDOWN":             "1h",
	})
	s.registerDevice("star", "tok-star", "android")
	s.registerDevice("bob", "tok-bob", "android")
	ev := nowMillis()

	// The first follower opens the window and is pushed at once.
	s.follow(t, "fan0", ev, "star")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.fcm.WaitForRequests(ctx, 1); err != nil {
		t.Fatalf("first push: %v", err)
	}
	// 19 more within the window; fan5 unfollows before the summary.
	for i := 1; i < 20; i++ {
		s.follow(t, "fan"+strconv.Itoa(i), ev+int64(i), "star")
	}
	if status, body := s.webhook(tencent.CommandFollowDelete, unfollowBody("fan5", ev+100, "star")); status != http.StatusOK {
		t.Fatalf("unfollow: %d %s", status, body)
	}

	// Cooldown: bob is followed, unfollowed and followed again by alice.
	s.follow(t, "alice", ev, "bob")
	s.waitIdle(30 * time.Second)
	for i, cmd := range []string{tencent.CommandFollowDelete, tencent.CommandFollowAdd} {
		body := followBody("alice", ev+int64(i+1), "bob")
		if cmd == tencent.CommandFollowDelete {
			body = unfollowBody("alice", ev+int64(i+1), "bob")
		}
		if status, b := s.webhook(cmd, body); status != http.StatusOK {
			t.Fatalf("%s: %d %s", cmd, status, b)
		}
	}
	s.waitIdle(30 * time.Second) // the summary is scheduled: idle once it went out

	got := map[string][]string{}
	for _, r := range s.fcm.Requests() {
		n, _ := r.Message["notification"].(map[string]any)
		data, _ := r.Message["data"].(map[string]any)
		got[r.Token] = append(got[r.Token], text(n["title"])+" / "+text(n["body"])+" / count="+text(data["count"]))
	}
	want := map[string][]string{
		"tok-star": {
			"New follower / fan0 started following you / count=",
			"18 new followers / fan1, fan2 and 16 others started following you / count=18",
		},
		"tok-bob": {"New follower / alice started following you / count="},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("pushes (-want +got):\n%s", d)
	}
}

// text returns v if it is a string, else "".
func text(v any) string { s, _ := v.(string); return s }
