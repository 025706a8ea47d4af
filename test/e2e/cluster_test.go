package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/proc"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tencent"
)

// startStackOn is startStack against a Redis Cluster or a Sentinel-managed
// Redis: redisEnv holds REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS and
// REDIS_SENTINEL_MASTER, and rdb is a client of the same Redis, for the
// asynq Inspector behind waitIdle. startStack's own redis-server is
// stopped at once and REDIS_URL points at a closed port, so a program that
// ignored redisEnv could not store anything. The caller owns rdb.
func startStackOn(t *testing.T, workers int, redisEnv map[string]string, rdb redis.UniversalClient, extra map[string]string) *stack {
	t.Helper()
	env := map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0"}
	for k, v := range redisEnv {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	s := startStack(t, workers, env)
	s.redis.Stop()
	_ = s.insp.Close()
	s.insp = asynq.NewInspectorFromRedisClient(rdb) // closed by startStack's cleanup; rdb stays open
	return s
}

// wantRedisMode checks that every worker reported the Redis mode at start.
func (s *stack) wantRedisMode(mode string) {
	s.t.Helper()
	for i, w := range s.workers {
		if len(w.Lines(proc.Msg("worker started", "redis_mode", mode))) != 1 {
			s.t.Fatalf("worker %d did not start in redis_mode %s: %v", i, mode, w.Lines(proc.Msg("worker started")))
		}
	}
}

// checkBasicPath runs the end-to-end path on s: 50 users, each with one
// device, followed in 10 webhooks of 5 followees; one user also has a dead
// token. Each device gets exactly one push, the dead token is tried once
// and removed, a repeated webhook sends nothing, and an unfollow that
// arrives before its follow cancels it.
func checkBasicPath(t *testing.T, s *stack) {
	t.Helper()
	const dead = "dead-u0007"
	sc := newScript(map[string][]fcmtest.Response{dead: {fcmtest.Unregistered()}})
	s.fcm.SetResponder(sc.respond)
	followees := users("u", 50)
	s.registerAll(followees)
	s.registerDevice("u0007", dead, "android")

	var bodies []map[string]any
	for i := 0; i < len(followees); i += 5 {
		body := followBody(fmt.Sprintf("fan-%d", i), nowMillis(), followees[i:i+5]...)
		if status, b := s.webhook(tencent.CommandFollowAdd, body); status != http.StatusOK {
			t.Fatalf("follow webhook %d: %d %s", i/5, status, b)
		}
		bodies = append(bodies, body)
	}
	s.waitIdle(30 * time.Second)

	calls, success := sc.snapshot()
	want := map[string]int{}
	for _, u := range followees {
		want["tok-"+u] = 1
	}
	if d := cmp.Diff(want, success); d != "" {
		t.Errorf("pushes accepted per device (-want +got):\n%s", d)
	}
	if calls[dead] != 1 {
		t.Errorf("dead token was tried %d times, want 1 (no retry after UNREGISTERED)", calls[dead])
	}
	if d := cmp.Diff([]string{"tok-u0007"}, s.devices("u0007")); d != "" {
		t.Errorf("u0007's devices after UNREGISTERED (-want +got):\n%s", d)
	}

	t.Run("repeated webhook sends nothing more", func(t *testing.T) {
		before := len(s.fcm.Requests())
		if status, b := s.webhook(tencent.CommandFollowAdd, bodies[3]); status != http.StatusOK {
			t.Fatalf("repeat: %d %s", status, b)
		}
		s.waitIdle(30 * time.Second)
		if after := len(s.fcm.Requests()); after != before {
			t.Errorf("the repeated webhook caused %d more FCM requests", after-before)
		}
	})

	t.Run("unfollow arriving first cancels the follow", func(t *testing.T) { checkUnfollowFirstCancels(t, s, sc) })
}

// The whole path on a 3-master Redis Cluster (REDIS_CLUSTER_ADDRS), a
// receiver and two workers: followpush's keys spread over every master, and
// the basic path holds (see checkBasicPath).
func TestClusterEndToEnd(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	rc := cl.Client(t)
	s := startStackOn(t, 2, map[string]string{"REDIS_CLUSTER_ADDRS": strings.Join(cl.Addrs(), ",")}, rc, nil)
	s.wantRedisMode("cluster")

	checkBasicPath(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range cl.Nodes() {
		keys, _, err := n.Client(t).Scan(ctx, 0, "followpush:*", 10000).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			t.Errorf("master %s holds no followpush keys: they are not spread over the slots", n.Addr())
		}
	}
}
