package e2e_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/tencent"
)

// script is an FCM responder that answers each token's n-th request from a
// list (success once the list runs out) and counts successes per token.
type script struct {
	mu       sync.Mutex
	plan     map[string][]fcmtest.Response
	calls    map[string]int
	success  map[string]int
	messages map[string]map[string]any
}

func newScript(plan map[string][]fcmtest.Response) *script {
	return &script{plan: plan, calls: map[string]int{}, success: map[string]int{}, messages: map[string]map[string]any{}}
}

func (s *script) respond(r fcmtest.Request) fcmtest.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.calls[r.Token]
	s.calls[r.Token]++
	if steps := s.plan[r.Token]; n < len(steps) {
		return steps[n]
	}
	s.success[r.Token]++
	s.messages[r.Token] = r.Message
	return fcmtest.Response{}
}

func (s *script) snapshot() (calls, success map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls, success = map[string]int{}, map[string]int{}
	for k, v := range s.calls {
		calls[k] = v
	}
	for k, v := range s.success {
		success[k] = v
	}
	return calls, success
}

// The whole path with a receiver and two workers as separate processes:
// exactly one push per device, a repeated webhook sends nothing more, a
// device behind a 503 storm gets its push after retries, a dead token is
// removed, an unfollow that arrives first cancels, bad input enqueues nothing,
// and no process logs a secret (tokens, Sign values, whole device tokens).
func TestEndToEnd(t *testing.T) {
	s := startStack(t, 2, nil)
	unavailable := fcmtest.Unavailable(0)
	// Two tokens long enough (20 bytes or more) that the logs show them
	// masked rather than as "***": the secret scan below checks that the
	// lines about them are there and the whole tokens are not.
	const deadDave, flakyErin = "dead-dave-4f1c9a2be07d", "flaky-erin-93d0c6a1f25e"
	sc := newScript(map[string][]fcmtest.Response{
		deadDave: {fcmtest.Unregistered()},
		// firebase-admin-go tries a send 5 times (retrying a 503 after 0,
		// 1, 2 and 4 s): 5 503s fail the task's first attempt whatever
		// FCM_SEND_TIMEOUT and the machine's speed, so asynq retries it.
		flakyErin: {unavailable, unavailable, unavailable, unavailable, unavailable},
	})
	s.fcm.SetResponder(sc.respond)

	s.registerDevice("bob", "tok-bob-android", "android")
	s.registerDevice("bob", "tok-bob-ios", "ios")
	s.registerDevice("carol", "tok-carol", "web")
	s.registerDevice("dave", deadDave, "android")
	s.registerDevice("dave", "tok-dave", "android")
	s.registerDevice("erin", flakyErin, "ios")

	event := nowMillis()
	follow := followBody("alice", event, "bob", "carol", "dave", "erin", "frank-has-no-device", "alice", "bob")
	if status, body := s.webhook(tencent.CommandFollowAdd, follow); status != http.StatusOK {
		t.Fatalf("follow webhook: %d %s", status, body)
	}
	s.waitIdle(30 * time.Second)

	calls, success := sc.snapshot()
	wantSuccess := map[string]int{"tok-bob-android": 1, "tok-bob-ios": 1, "tok-carol": 1, "tok-dave": 1, flakyErin: 1}
	if d := cmp.Diff(wantSuccess, success); d != "" {
		t.Errorf("pushes accepted per device (-want +got):\n%s", d)
	}
	if calls[deadDave] != 1 {
		t.Errorf("dead token was tried %d times, want 1 (no retry after UNREGISTERED)", calls[deadDave])
	}
	if calls[flakyErin] < 6 {
		t.Errorf("flaky device saw %d requests, want the 5 failures and a success", calls[flakyErin])
	}
	if d := cmp.Diff([]string{"tok-dave"}, s.devices("dave")); d != "" {
		t.Errorf("dave's devices after UNREGISTERED (-want +got):\n%s", d)
	}

	t.Run("push content", func(t *testing.T) {
		sc.mu.Lock()
		msg := sc.messages["tok-bob-android"]
		sc.mu.Unlock()
		data, _ := msg["data"].(map[string]any)
		want := map[string]any{"type": "follow", "from_account": "alice", "to_account": "bob", "event_time": itoa(event)}
		for k, v := range want {
			if data[k] != v {
				t.Errorf("data[%q] = %v, want %v (data %v)", k, data[k], v, data)
			}
		}
		n, _ := msg["notification"].(map[string]any)
		if n["title"] != "New follower" || n["body"] != "alice started following you" {
			t.Errorf("notification = %v", n)
		}
		android, _ := msg["android"].(map[string]any)
		an, _ := android["notification"].(map[string]any)
		if tag, _ := an["tag"].(string); tag == "" {
			t.Errorf("android.notification.tag missing: %v", android)
		}
	})

	t.Run("repeated webhook sends nothing more", func(t *testing.T) {
		before := len(s.fcm.Requests())
		for i := 0; i < 3; i++ {
			if status, body := s.webhook(tencent.CommandFollowAdd, follow); status != http.StatusOK {
				t.Fatalf("repeat %d: %d %s", i, status, body)
			}
		}
		s.waitIdle(30 * time.Second)
		if after := len(s.fcm.Requests()); after != before {
			t.Errorf("repeated webhooks caused %d more FCM requests", after-before)
		}
	})

	t.Run("unfollow arriving first cancels the follow", func(t *testing.T) { checkUnfollowFirstCancels(t, s, sc) })

	t.Run("malformed and unauthenticated webhooks enqueue nothing", func(t *testing.T) {
		before := len(s.fcm.Requests())
		status, _ := s.webhookRaw(tencent.CommandFollowAdd, []byte(`{"From_Account":"x","FollowList":[{"To_Account":"bob"}],"EventTime":"soon"}`))
		if status != http.StatusBadRequest {
			t.Errorf("malformed: status %d, want 400", status)
		}
		status, _ = s.do(http.MethodPost, "/webhook?SdkAppid="+appID+"&CallbackCommand="+tencent.CommandFollowAdd, mustJSON(t, followBody("x", nowMillis(), "bob")), nil)
		if status != http.StatusUnauthorized {
			t.Errorf("unsigned: status %d, want 401", status)
		}
		qi, err := s.insp.GetQueueInfo("follow")
		if err != nil {
			t.Fatal(err)
		}
		if qi.Pending+qi.Active+qi.Scheduled+qi.Retry != 0 || len(s.fcm.Requests()) != before {
			t.Errorf("bad webhooks left work: %+v, %d new FCM requests", qi, len(s.fcm.Requests())-before)
		}
	})

	t.Run("no secret in any log", func(t *testing.T) {
		logs := s.checkLogsKeepSecrets(t)
		// The scan sees the lines that name the tokens: the retried and the
		// dropped device are logged, masked.
		for _, tok := range []string{flakyErin, deadDave} {
			if !strings.Contains(logs, fcm.MaskToken(tok)) {
				t.Errorf("no log line names %s masked as %q: the scan did not see the lines it guards", tok, fcm.MaskToken(tok))
			}
		}
		// The 503s reached the worker, which had asynq retry erin's task:
		// the SDK's own retries alone could make the requests counted above.
		retried := false
		for line := range strings.Lines(logs) {
			if strings.Contains(line, `"msg":"push will be retried"`) && strings.Contains(line, `"to_account":"erin"`) &&
				strings.Contains(line, string(fcm.OutcomeUnavailable)) {
				retried = true
			}
		}
		if !retried {
			t.Error(`no "push will be retried" line for erin's 503s: the worker never retried the task`)
		}
	})
}

// checkUnfollowFirstCancels: an unfollow that arrives before its follow
// (a reordered retry) cancels it; a follow of another pair to the same user,
// which proves the workers are running, is pushed.
func checkUnfollowFirstCancels(t *testing.T, s *stack, sc *script) {
	t.Helper()
	s.registerDevice("gina", "tok-gina", "android")
	ev := nowMillis()
	if status, body := s.webhook(tencent.CommandFollowDelete, unfollowBody("henry", ev+1, "gina")); status != http.StatusOK {
		t.Fatalf("unfollow: %d %s", status, body)
	}
	s.follow(t, "henry", ev, "gina")
	s.follow(t, "ivan", ev, "gina")
	s.waitIdle(30 * time.Second)
	sc.mu.Lock()
	data, _ := sc.messages["tok-gina"]["data"].(map[string]any)
	got := sc.success["tok-gina"]
	sc.mu.Unlock()
	if got != 1 || data["from_account"] != "ivan" {
		t.Errorf("gina got %d pushes, last with data %v; want exactly ivan's", got, data)
	}
}
