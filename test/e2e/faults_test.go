package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/proc"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
)

// The fault-injection suite: real processes, a real redis-server, faults
// injected from outside. Each test logs one "FAULT" line with its figures
// (RELIABILITY.md quotes them); lost must be 0. Duplicates are counted once
// the follow queue is idle, so that a task still to be retried or recovered
// cannot add one after the count.

// followRun posts follows of users[i] by "fan-<i/per>", per followees per
// webhook, from conc goroutines, and records which followees were answered 200.
type followRun struct {
	s        *stack
	mu       sync.Mutex
	accepted map[string]bool // followee -> its webhook was answered 200
	statuses map[int]int
}

func newFollowRun(s *stack) *followRun {
	return &followRun{s: s, accepted: map[string]bool{}, statuses: map[int]int{}}
}

// answered returns how many webhooks have been answered so far.
func (r *followRun) answered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.statuses {
		n += c
	}
	return n
}

// answered5xx returns how many webhooks have been answered 5xx so far.
func (r *followRun) answered5xx() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for status, c := range r.statuses {
		if status/100 == 5 {
			n += c
		}
	}
	return n
}

// checkStatuses fails t for every status the webhooks were answered other
// than 200 and a storage 5xx.
func (r *followRun) checkStatuses(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for status := range r.statuses {
		if status != http.StatusOK && status/100 != 5 {
			t.Errorf("status %d seen: only 200 or a storage 5xx expected", status)
		}
	}
}

// post sends the webhooks for followees (per per webhook) with conc senders;
// it stops early when ctx is done.
func (r *followRun) post(ctx context.Context, followees []string, per, conc int, pace time.Duration) {
	jobs := make(chan []string)
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range jobs {
				status, _ := r.s.webhook(tencent.CommandFollowAdd, followBody("fan-"+batch[0], nowMillis(), batch...))
				r.mu.Lock()
				r.statuses[status]++
				if status == http.StatusOK {
					for _, f := range batch {
						r.accepted[f] = true
					}
				}
				r.mu.Unlock()
			}
		}()
	}
	tick := time.NewTicker(max(pace, time.Microsecond))
	defer tick.Stop()
	for i := 0; i < len(followees); i += per {
		if pace > 0 {
			<-tick.C
		}
		select {
		case jobs <- followees[i:min(i+per, len(followees))]:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
}

// lostAndDuplicated compares accepted followees with the pushes the fake
// FCM accepted (one device "tok-<followee>" each).
func (r *followRun) lostAndDuplicated(sc *script) (accepted, lost, dup int) {
	accepted, lost, dupOf := r.delivery(sc)
	for _, n := range dupOf {
		dup += n
	}
	return accepted, lost, dup
}

// delivery is lostAndDuplicated with the duplicates per followee.
func (r *followRun) delivery(sc *script) (accepted, lost int, dupOf map[string]int) {
	_, success := sc.snapshot()
	r.mu.Lock()
	defer r.mu.Unlock()
	dupOf = map[string]int{}
	for f := range r.accepted {
		accepted++
		switch n := success["tok-"+f]; {
		case n == 0:
			lost++
		case n > 1:
			dupOf[f] = n - 1
		}
	}
	return accepted, lost, dupOf
}

// waitDelivered waits until every accepted followee's device got a push,
// then until the follow queue is idle (nothing pending, running, scheduled
// or waiting to retry), so that duplicates counted afterwards are final. If
// pushes are still missing at the deadline it returns (the caller reports
// lost); a queue that does not become idle fails the test.
func (r *followRun) waitDelivered(t *testing.T, sc *script, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, lost, _ := r.lostAndDuplicated(sc); lost == 0 {
			break
		}
		if time.Now().After(deadline) {
			return // the caller reports lost
		}
		time.Sleep(50 * time.Millisecond) // polling the fake FCM's counters against a deadline
	}
	r.s.waitIdle(max(time.Until(deadline), 30*time.Second))
}

func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}

func (s *stack) registerAll(users []string) {
	s.t.Helper()
	for _, u := range users {
		s.registerDevice(u, "tok-"+u, "android")
	}
}

// heldTask is a follow task that was running when a worker was killed.
type heldTask struct {
	follow tasks.Follow
	// orphaned: seen running with its lease expired, which only a task of
	// a dead worker can be.
	orphaned bool
	// done is when the task had left Redis (completed); zero until then.
	done time.Time
}

// watchHeld follows held until every task has completed or timeout passed
// (then it fails t). A task the killed worker held stays active until its
// lease expires (asynq then reports it orphaned) and asynq's recoverer
// hands it back for a retry; the survivors' tasks just finish.
func (s *stack) watchHeld(t *testing.T, held map[string]*heldTask, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		active, err := s.insp.ListActiveTasks(tasks.QueueFollow, asynq.PageSize(10000))
		if err != nil {
			t.Fatalf("list active tasks: %v", err)
		}
		running := map[string]*asynq.TaskInfo{}
		for _, ti := range active {
			running[ti.ID] = ti
		}
		left := 0
		for id, h := range held {
			if !h.done.IsZero() {
				continue
			}
			if ti, ok := running[id]; ok {
				h.orphaned = h.orphaned || ti.IsOrphaned
				left++
				continue
			}
			switch _, err := s.insp.GetTaskInfo(tasks.QueueFollow, id); {
			case errors.Is(err, asynq.ErrTaskNotFound):
				h.done = time.Now()
			case err != nil:
				t.Fatalf("task %s: %v", id, err)
			default: // waiting for its retry
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of the %d tasks running at the kill still not completed after %s", left, len(held), timeout)
			return
		}
		<-tick.C
	}
}

// (1) A worker is SIGKILLed in the middle of 1,000 follows: the tasks it was
// running stay leased to it until the lease expires, asynq's recoverer
// gives them back, the surviving worker delivers them; every followee is
// pushed, and a duplicate can only be a follow the dead worker held.
func TestFaultWorkerKilledMidStream(t *testing.T) {
	skipIfShort(t, "fault injection: takes about two minutes")
	t.Parallel()
	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info"})
	sc := newScript(nil)
	s.fcm.SetResponder(sc.respond)
	// Slow enough that both workers' 20 slots are busy when the kill lands:
	// 1,000 follows take the two workers some 5 s.
	s.fcm.SetLatency(100 * time.Millisecond)
	followees := users("k", 1000)
	s.registerAll(followees)

	run := newFollowRun(s)
	posted := make(chan struct{})
	go func() { run.post(context.Background(), followees, 20, 8, 0); close(posted) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.fcm.WaitForRequests(ctx, 200); err != nil {
		t.Fatal(err)
	}
	s.workers[0].Kill()
	killedAt := time.Now()
	// Every task running now is the dead worker's or the survivor's; the
	// dead worker's are the ones asynq will report orphaned.
	active, err := s.insp.ListActiveTasks(tasks.QueueFollow, asynq.PageSize(10000))
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]*heldTask{}
	for _, ti := range active {
		f, err := tasks.ParseFollow(asynq.NewTask(ti.Type, ti.Payload))
		if err != nil {
			t.Fatalf("task %s: %v", ti.ID, err)
		}
		held[ti.ID] = &heldTask{follow: f}
	}
	s.watchHeld(t, held, 4*time.Minute)
	<-posted
	run.waitDelivered(t, sc, 4*time.Minute)

	_, success := sc.snapshot()
	var orphans int
	var recovery time.Duration
	orphaned := map[string]bool{} // followees of the dead worker's tasks
	for id, h := range held {
		if !h.orphaned {
			continue
		}
		orphans++
		orphaned[h.follow.To] = true
		recovery = max(recovery, h.done.Sub(killedAt))
		if success["tok-"+h.follow.To] == 0 {
			t.Errorf("task %s, held by the killed worker, completed without a push to %s", id, h.follow.To)
		}
	}
	accepted, lost, dupOf := run.delivery(sc)
	dup := 0
	for f, n := range dupOf {
		dup += n
		if !orphaned[f] {
			t.Errorf("%s was pushed %d times more, but no task of the killed worker was for it", f, n)
		}
	}
	t.Logf("FAULT worker-sigkill: follows=%d accepted=%d lost=%d duplicated=%d running-at-kill=%d held-by-killed-worker=%d recovered-after=%s statuses=%v",
		len(followees), accepted, lost, dup, len(held), orphans, recovery.Round(time.Second), run.statuses)
	if accepted != len(followees) || lost != 0 {
		t.Errorf("accepted %d of %d, lost %d", accepted, len(followees), lost)
	}
	if orphans == 0 {
		t.Errorf("none of the %d tasks running at the kill was the killed worker's: nothing was recovered, the test proved nothing", len(held))
	}
	s.checkLogsKeepSecrets(t)
}

// (2) Redis stops for 3 s while webhooks arrive, then restarts (AOF): every
// webhook answered 200 leads to a push, and the webhooks that arrived while
// Redis was down were answered 503.
func TestFaultRedisRestart(t *testing.T) {
	skipIfShort(t, "fault injection")
	t.Parallel()
	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info"})
	sc := newScript(nil)
	s.fcm.SetResponder(sc.respond)
	followees := users("r", 600)
	s.registerAll(followees)

	// A slow FCM keeps a backlog in Redis (40 worker slots at 300 ms are
	// about 130 follows/s; the webhooks bring 200/s), so the restart has
	// queued tasks to keep.
	s.fcm.SetLatency(300 * time.Millisecond)
	run := newFollowRun(s)
	posted := make(chan struct{})
	go func() { run.post(context.Background(), followees, 2, 4, 10*time.Millisecond); close(posted) }()

	// Stop Redis once 50 of the 300 webhooks are answered: the other 250,
	// paced 10 ms apart, arrive during the outage and after it.
	deadline := time.Now().Add(30 * time.Second)
	for run.answered() < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d webhooks answered after 30 s", run.answered())
		}
		time.Sleep(5 * time.Millisecond) // polling the senders' progress against a deadline
	}
	qi, err := s.insp.GetQueueInfo("follow")
	if err != nil {
		t.Fatal(err)
	}
	if qi.Pending+qi.Active == 0 {
		t.Fatalf("no follow queued or running when Redis stops: the restart would keep nothing (%+v)", qi)
	}
	s.redis.Stop()
	time.Sleep(3 * time.Second) // the fault: Redis is down for 3 s
	s.redis.Restart()
	restarted := time.Now()
	<-posted
	run.waitDelivered(t, sc, 4*time.Minute)
	idle := time.Since(restarted)

	accepted, lost, dup := run.lostAndDuplicated(sc)
	failed := run.answered5xx()
	t.Logf("FAULT redis-down-3s: follows=%d accepted=%d lost=%d duplicated=%d answered-5xx=%d statuses=%v queued-at-stop=%d running-at-stop=%d queue-idle-after-restart=%s",
		len(followees), accepted, lost, dup, failed, run.statuses, qi.Pending, qi.Active, idle.Round(time.Second))
	if lost != 0 {
		t.Errorf("lost %d follows answered 200", lost)
	}
	if accepted == 0 {
		t.Error("nothing was accepted")
	}
	if failed == 0 {
		t.Error("no webhook was answered 5xx: none arrived while Redis was down, so the outage was not tested")
	}
	run.checkStatuses(t)
	s.checkLogsKeepSecrets(t)
}

// (3) FCM answers 503 to everything for 10 s: after it recovers, every
// follow is delivered.
func TestFaultFCMOutage(t *testing.T) {
	skipIfShort(t, "fault injection")
	t.Parallel()
	// A short send deadline, as RELIABILITY.md's figures were taken with:
	// each attempt during the outage ends within 1.5 s, and asynq's retries
	// keep trying. (Duplicates are not checked here: a send that FCM
	// accepted after its deadline may be pushed twice.)
	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info", "FCM_SEND_TIMEOUT": "1500ms"})
	sc := newScript(nil)
	var down atomic.Bool
	down.Store(true)
	var failed atomic.Int64
	s.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		if down.Load() {
			failed.Add(1)
			return fcmtest.Unavailable(0)
		}
		return sc.respond(r)
	})
	followees := users("o", 300)
	s.registerAll(followees)
	run := newFollowRun(s)
	start := time.Now()
	run.post(context.Background(), followees, 10, 4, 0)
	time.Sleep(time.Until(start.Add(10 * time.Second))) // the fault: FCM is down for 10 s
	down.Store(false)
	recovered := time.Now()
	run.waitDelivered(t, sc, 3*time.Minute)

	accepted, lost, dup := run.lostAndDuplicated(sc)
	t.Logf("FAULT fcm-503-10s: follows=%d accepted=%d lost=%d duplicated=%d failed-sends-during-outage=%d delivered-after-recovery=%s",
		len(followees), accepted, lost, dup, failed.Load(), time.Since(recovered).Round(time.Millisecond))
	if lost != 0 || accepted != len(followees) {
		t.Errorf("accepted %d of %d, lost %d", accepted, len(followees), lost)
	}
	if failed.Load() == 0 {
		t.Error("no send failed: the outage was not tested")
	}
	s.checkLogsKeepSecrets(t)
}

// fcmAttempt is one send request the fake FCM answered.
type fcmAttempt struct {
	at     time.Time
	failed bool
}

// (3b) FCM answers 429 RESOURCE_EXHAUSTED with Retry-After to everything for
// 10 s, half of it as a device quota (QUOTA_EXCEEDED), half as the project
// quota (no FcmError detail): every follow is delivered, no retry comes
// sooner than Retry-After, retries are spread by jitter, and a follow is
// tried at most once per Retry-After during the outage (no retry storm).
func TestFaultFCMQuota(t *testing.T) {
	skipIfShort(t, "fault injection: takes about 90 s")
	t.Parallel()
	const (
		outage     = 10 * time.Second
		retryAfter = 5 * time.Second
	)
	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info"})
	sc := newScript(nil)
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	attempts := map[string][]fcmAttempt{}
	s.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		failed := down.Load()
		mu.Lock()
		attempts[r.Token] = append(attempts[r.Token], fcmAttempt{at: r.Received, failed: failed})
		mu.Unlock()
		switch {
		case !failed:
			return sc.respond(r)
		case r.Token[len(r.Token)-1]%2 == 0: // tokens end in a digit
			return fcmtest.QuotaExceeded(retryAfter)
		default:
			return fcmtest.ProjectQuotaExceeded(retryAfter)
		}
	})
	followees := users("q", 300)
	s.registerAll(followees)
	run := newFollowRun(s)
	start := time.Now()
	run.post(context.Background(), followees, 10, 4, 0)
	time.Sleep(time.Until(start.Add(outage))) // the fault: FCM answers 429 for 10 s
	down.Store(false)
	recovered := time.Now()
	run.waitDelivered(t, sc, 3*time.Minute)
	accepted, lost, dup := run.lostAndDuplicated(sc)

	mu.Lock()
	defer mu.Unlock()
	var (
		failures, maxFailures int
		delays                []time.Duration // from a failure to the next try of the same device
	)
	maxPerToken := int(outage/retryAfter) + 1
	for tok, as := range attempts {
		n := 0
		for i, a := range as {
			if !a.failed {
				continue
			}
			n++
			if i+1 < len(as) {
				d := as[i+1].at.Sub(a.at)
				delays = append(delays, d)
				if d < retryAfter {
					t.Errorf("%s was tried again %s after a 429 with Retry-After %s", tok, d, retryAfter)
				}
			}
		}
		failures += n
		maxFailures = max(maxFailures, n)
		if n > maxPerToken {
			t.Errorf("%s got %d 429s in a %s outage with Retry-After %s: more than %d tries (a retry storm)", tok, n, outage, retryAfter, maxPerToken)
		}
	}
	slices.Sort(delays)
	var lo, median, hi time.Duration
	if len(delays) > 0 {
		lo, median, hi = delays[0], delays[len(delays)/2], delays[len(delays)-1]
	}
	t.Logf("FAULT fcm-429-10s: follows=%d accepted=%d lost=%d duplicated=%d 429s=%d max-429s-per-device=%d retry-delay-min=%s median=%s max=%s delivered-after-recovery=%s",
		len(followees), accepted, lost, dup, failures, maxFailures, lo.Round(time.Millisecond), median.Round(time.Millisecond),
		hi.Round(time.Millisecond), time.Since(recovered).Round(time.Millisecond))
	if lost != 0 || accepted != len(followees) {
		t.Errorf("accepted %d of %d, lost %d", accepted, len(followees), lost)
	}
	if dup != 0 {
		t.Errorf("%d duplicate pushes", dup)
	}
	if failures == 0 {
		t.Fatal("no send was answered 429: the outage was not tested")
	}
	// Without jitter every retry would come the same delay after its
	// failure, give or take asynq's 1 s scheduling tick.
	if hi-lo < median/10 {
		t.Errorf("retry delays span only %s (median %s): retries are not spread by jitter", hi-lo, median)
	}
	s.checkLogsKeepSecrets(t)
}

// event is one follow as a push names it.
type event struct {
	From, To string
	Time     int64
}

// barrageResult is what one request of the barrage got.
type barrageResult struct {
	webhook bool   // a webhook, or a device API request
	command string // the CallbackCommand the receiver read from the query
	body    []byte
	status  int
	err     error // transport error (status 0)
	// closedEarly: an oversized body's connection was closed while the
	// client was still sending it (see barrageRequest); a refusal.
	closedEarly bool
}

// maxBodyBytes is WEBHOOK_MAX_BODY_BYTES's default, which the stack keeps.
const maxBodyBytes = 1 << 20

// (5) A barrage of malformed, mutated, oversized and unauthenticated
// requests from many goroutines: bodies, query strings (SdkAppid, Sign,
// RequestTime, CallbackCommand) and the device API. No crash, no 5xx
// (Redis is up), and the pushes are exactly the follows that the requests
// answered 200 legitimately carry: each named followee has a device, so a
// mutation that slipped in a follow it should not have, or lost one, shows.
func TestFaultMalformedBarrage(t *testing.T) {
	skipIfShort(t, "fault injection")
	t.Parallel()
	// No cooldown: every distinct follow event is pushed once, so the
	// pushes expected are exactly the events accepted.
	s := startStack(t, 1, map[string]string{"LOG_LEVEL": "info", "FOLLOW_COOLDOWN": "0"})
	sc := newScript(nil)
	s.fcm.SetResponder(sc.respond)
	seed := mustJSON(t, followBody("UserID_001", nowMillis(), "UserID_002", "UserID_003"))
	const (
		bodies, queries, deviceCalls = 6000, 1000, 1000
		total, conc                  = bodies + queries + deviceCalls, 32
	)

	// Register a device for every followee a body mutation could name.
	tokenOf := map[string]string{}
	for i := -1; i < bodies; i++ {
		body := seed
		if i >= 0 {
			body, _ = mutate(seed, i)
		}
		if len(body) > maxBodyBytes {
			continue // over WEBHOOK_MAX_BODY_BYTES: refused unread
		}
		cb, err := tencent.Parse(tencent.CommandFollowAdd, body, tencent.Limits{})
		if err != nil {
			continue
		}
		for _, to := range cb.To {
			if tokenOf[to] == "" {
				sum := sha256.Sum256([]byte(to))
				tokenOf[to] = "tok-" + hex.EncodeToString(sum[:12])
				s.registerDevice(to, tokenOf[to], "android")
			}
		}
	}

	client := &http.Client{
		Transport:     &http.Transport{MaxIdleConnsPerHost: conc},
		Timeout:       time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(client.CloseIdleConnections)
	results := make([]barrageResult, total)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = s.barrageRequest(client, seed, i, bodies, queries)
			}
		}()
	}
	start := time.Now()
	for k := 0; k < total; k++ {
		next <- k * 7919 % total // 7919 is prime to total: every index once, kinds interleaved
	}
	close(next)
	wg.Wait()
	took := time.Since(start)

	if status, _ := s.do(http.MethodGet, "/healthz", nil, nil); status != 200 {
		t.Fatalf("receiver unhealthy after the barrage: %d", status)
	}
	for _, p := range append([]*proc.Process{s.receiver}, s.workers...) {
		select {
		case <-p.Exited():
			t.Fatalf("%s exited during the barrage", p.Name)
		default:
		}
	}

	// What the requests answered 200 carry, read as the receiver reads it.
	now := time.Now()
	want, unsure := map[event]bool{}, map[event]bool{}
	statuses := map[string]map[int]int{"body": {}, "query": {}, "device": {}}
	closedEarly := 0
	for i, r := range results {
		kind := "device"
		switch {
		case i < bodies:
			kind = "body"
		case i < bodies+queries:
			kind = "query"
		}
		if r.closedEarly {
			closedEarly++
			continue
		}
		statuses[kind][r.status]++
		if r.err != nil {
			t.Errorf("request %d (%s): %v", i, kind, r.err)
		}
		if r.status/100 == 5 {
			t.Errorf("request %d (%s) answered %d", i, kind, r.status)
		}
		if !r.webhook || r.status != http.StatusOK {
			continue
		}
		cb, err := tencent.Parse(r.command, r.body, tencent.Limits{})
		if err != nil {
			t.Errorf("request %d (%s) answered 200, but its body does not parse: %v", i, kind, err)
			continue
		}
		for _, to := range cb.To {
			e := event{From: cb.From, To: to, Time: cb.EventTime}
			switch age := now.Sub(time.UnixMilli(cb.EventTime)); {
			case cb.Command != tencent.CommandFollowAdd:
				unsure[e] = true // an unfollow (none is expected) cancels what it names
			case age > time.Hour+2*time.Minute:
				// Older than MAX_EVENT_AGE: dropped, not pushed.
			case age > time.Hour-2*time.Minute:
				unsure[e] = true // too close to MAX_EVENT_AGE to say
			default:
				if tokenOf[to] == "" {
					t.Errorf("request %d (%s) names followee %q, which no mutation was expected to name", i, kind, to)
				}
				want[e] = true
			}
		}
	}
	if len(want) == 0 {
		t.Fatal("no request answered 200 carried a follow: the barrage cannot show a lost or invented push")
	}

	// Wait for the expected pushes, then for the queue to be idle, so that
	// nothing more can come.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, _ := pushedEvents(s.fcm.Requests(), tokenOf)
		missing := 0
		for e := range want {
			if got[e] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the fake FCM against a deadline
	}
	s.waitIdle(time.Minute)
	got, problems := pushedEvents(s.fcm.Requests(), tokenOf)
	for _, p := range problems {
		t.Error(p)
	}
	var gotList, wantList []string
	for e, n := range got {
		if unsure[e] && n == 1 {
			continue
		}
		for range n {
			gotList = append(gotList, fmt.Sprintf("%s->%s@%d", e.From, e.To, e.Time))
		}
	}
	for e := range want {
		wantList = append(wantList, fmt.Sprintf("%s->%s@%d", e.From, e.To, e.Time))
	}
	sort.Strings(gotList)
	sort.Strings(wantList)
	if d := cmp.Diff(wantList, gotList); d != "" {
		t.Errorf("pushes (-expected from the requests answered 200 +sent):\n%s", d)
	}
	// The followees' devices are untouched by the device API barrage.
	for to, tok := range tokenOf {
		if d := cmp.Diff([]string{tok}, s.devices(to)); d != "" {
			t.Errorf("devices of %q after the barrage (-want +got):\n%s", to, d)
		}
	}

	t.Logf("FAULT malformed-barrage: requests=%d goroutines=%d took=%s body-statuses=%v oversized-closed-before-the-answer=%d query-statuses=%v device-statuses=%v followees-with-devices=%d follows-expected=%d pushes=%d",
		total, conc, took.Round(time.Second), statuses["body"], closedEarly, statuses["query"], statuses["device"], len(tokenOf), len(want), len(gotList))
	if b := statuses["body"]; b[400]+b[401]+b[413]+closedEarly < bodies/2 {
		t.Errorf("too few body rejections: %v and %d closed early", b, closedEarly)
	}
	if q := statuses["query"]; q[401] == 0 || q[400] == 0 || q[200] == 0 {
		t.Errorf("query mutations should meet 401s, 400s and some 200s: %v", q)
	}
	if d := statuses["device"]; d[400] == 0 || d[401] == 0 || d[204] == 0 {
		t.Errorf("device calls should meet 400s, 401s and some 204s: %v", d)
	}
	s.checkLogsKeepSecrets(t)
}

// pushedEvents counts the pushes FCM accepted per follow event (from the
// data every push carries), and describes the pushes that name no event or
// went to another device than the followee's (tokenOf).
func pushedEvents(reqs []fcmtest.Request, tokenOf map[string]string) (map[event]int, []string) {
	out := map[event]int{}
	var problems []string
	for _, r := range reqs {
		data, _ := r.Message["data"].(map[string]any)
		from, _ := data["from_account"].(string)
		to, _ := data["to_account"].(string)
		et, err := strconv.ParseInt(fmt.Sprint(data["event_time"]), 10, 64)
		switch {
		case from == "" || to == "" || err != nil:
			problems = append(problems, fmt.Sprintf("push to %s names no follow event: data %v", r.Token, data))
			continue
		case r.Token != tokenOf[to]:
			problems = append(problems, fmt.Sprintf("push for %s->%s went to %s, not to %s's device %q", from, to, r.Token, to, tokenOf[to]))
		}
		out[event{From: from, To: to, Time: et}]++
	}
	return out, problems
}

// barrageRequest sends the i-th request of the barrage: below bodies a
// mutated body (mutate), then queries mutated query strings (mutateQuery)
// around the seed body, then malformed device API calls (mutateDeviceCall).
// Signatures are made at send time, so they stay within the replay window.
func (s *stack) barrageRequest(client *http.Client, seed []byte, i, bodies, queries int) barrageResult {
	var (
		method = http.MethodPost
		path   string
		body   []byte
		header map[string]string
		res    barrageResult
	)
	switch {
	case i < bodies:
		var signed bool
		body, signed = mutate(seed, i)
		q := s.signedQuery(tencent.CommandFollowAdd)
		if !signed {
			q.Set("Sign", "00")
		}
		path = "/webhook?" + q.Encode()
	case i < bodies+queries:
		body = seed
		path = "/webhook?" + s.mutateQuery(i-bodies)
	default:
		method, path, body, header = s.mutateDeviceCall(i - bodies - queries)
	}
	if p, raw, ok := strings.Cut(path, "?"); ok && p == "/webhook" {
		q, _ := url.ParseQuery(raw) // as the receiver reads it: bad pairs dropped
		res.webhook, res.command, res.body = true, q.Get("CallbackCommand"), body
	}
	req, err := http.NewRequest(method, s.base+path, bytes.NewReader(body))
	if err != nil {
		res.err = err
		return res
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		// Past WEBHOOK_MAX_BODY_BYTES the receiver answers 413 without
		// reading the rest and closes the connection. A client still
		// writing that rest (or slow to read the answer, on a busy
		// machine) sees the close, a broken pipe or a reset, before the
		// 413: the body was refused all the same.
		if len(body) > maxBodyBytes && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
			res.closedEarly = true
			return res
		}
		res.err = err
		return res
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	res.status = resp.StatusCode
	if method == http.MethodPut && resp.StatusCode/100 == 2 {
		// A device token that was registered is a secret from now on.
		if _, tok, ok := strings.Cut(path, "/devices/"); ok {
			if tok, err := url.PathUnescape(tok); err == nil {
				s.noteSecret(tok)
			}
		}
	}
	return res
}

// mutateQuery returns the i-th variant of a follow webhook's query string,
// signed now where the variant needs a signature: wrong, missing or odd
// SdkAppid, Sign, RequestTime and CallbackCommand, repeated parameters and
// broken escapes. Some variants are legitimate (an upper-case Sign, no
// CallbackCommand in the query) and must be accepted.
func (s *stack) mutateQuery(i int) string {
	q := s.signedQuery(tencent.CommandFollowAdd)
	pick := func(vs ...string) string { return vs[(i/14)%len(vs)] }
	resign := func(rt string) {
		q.Set("RequestTime", rt)
		q.Set("Sign", tencent.Sign(callbackToken, rt))
		s.noteSecret(q.Get("Sign"))
	}
	switch i % 14 {
	case 0:
		q.Set("SdkAppid", pick("1400000002", "0", "-1400000001", appID+"0"))
	case 1:
		q.Del("SdkAppid")
	case 2:
		q.Set("SdkAppid", pick("", "abc", appID+" ", " "+appID, strings.Repeat("9", 5000), "１４００００００００１", appID+"\x00"))
	case 3:
		q.Del("Sign")
	case 4: // a wrong Sign: one hex digit changed, cut short, or made longer
		sign := []byte(q.Get("Sign"))
		pos := (i / 14) % len(sign)
		sign[pos] = "0123456789abcdef"[(strings.IndexByte("0123456789abcdef", sign[pos])+1)%16]
		q.Set("Sign", pick(string(sign), string(sign[:63]), q.Get("Sign")+"0", "", strings.Repeat("f", 64), "ZZ"+q.Get("Sign")[2:]))
	case 5: // Tencent's hex is compared case-insensitively: accepted
		q.Set("Sign", strings.ToUpper(q.Get("Sign")))
		s.noteSecret(q.Get("Sign"))
	case 6:
		q.Del("RequestTime")
	case 7: // RequestTime not what was signed, or no integer
		q.Set("RequestTime", pick("soon", "-1", "99999999999999999999", "1e9", " "+q.Get("RequestTime"), q.Get("RequestTime")+".0", "0x10"))
	case 8: // signed, but outside the 60 s replay window
		resign(strconv.FormatInt(time.Now().Add(-time.Duration(61+(i/14)%3600)*time.Second).Unix(), 10))
	case 9:
		resign(strconv.FormatInt(time.Now().Add(time.Duration(61+(i/14)%3600)*time.Second).Unix(), 10))
	case 10: // no command in the query: the body's counts, accepted
		q.Del("CallbackCommand")
	case 11:
		q.Set("CallbackCommand", pick("State.StateChange", tencent.CommandFollowDelete, "", "follow.callbackafterfollowadd",
			tencent.CommandFollowAdd+" ", strings.Repeat("x", 10000), "C2C.CallbackAfterSendMsg"))
	case 12: // repeated parameters: the first counts
		return q.Encode() + "&CallbackCommand=State.StateChange&SdkAppid=1&Sign=00&RequestTime=1"
	case 13: // broken escapes: the receiver drops those pairs
		return pick("SdkAppid=%zz&", "Sign=%&", "CallbackCommand=%G0&", "%%%&") + q.Encode()
	}
	return q.Encode()
}

// mutateDeviceCall returns the i-th malformed (or, now and then, valid)
// device API call. Its users ("zz-dev-…") are never followees of the
// barrage, so whatever it registers or deletes changes no push.
func (s *stack) mutateDeviceCall(i int) (method, path string, body []byte, header map[string]string) {
	pick := func(vs ...string) string { return vs[(i/10)%len(vs)] }
	user := fmt.Sprintf("zz-dev-%02d", i%37)
	token := fmt.Sprintf("zz-token-%05d-abcdefghijklmnop", i)
	method, header = http.MethodPut, map[string]string{"Authorization": "Bearer " + apiToken}
	devicePath := func(user, token string) string {
		return "/v1/users/" + url.PathEscape(user) + "/devices/" + url.PathEscape(token)
	}
	path, body = devicePath(user, token), []byte(`{"platform":"android"}`)
	switch i % 10 {
	case 0: // bad tokens
		path = devicePath(user, pick("has space", "tab\tin", "slash/in", strings.Repeat("a", 4097), "ünïcode", "nul\x00", "del\x7f", "new\nline"))
	case 1: // bad bodies
		body = []byte(pick(`{`, `{"platform":1}`, `{"platform":"symbian"}`, `{"locale":"x"}`, `{"platform":"ios"} {}`,
			`{"platform":"ios","platform":"web"}`, "\xff\xfe", `[]`, `"ios"`, `{"locale":"en-"}`, `{"locale":"`+strings.Repeat("a", 100)+`"}`,
			`{"pad":"`+strings.Repeat("p", 5000)+`"}`, `{"platform":null,"locale":{"x":[1,2]}}`))
	case 2: // bad user IDs
		path = devicePath(pick(strings.Repeat("u", 33), "\xff", "a/b", "..", ".", "nul\x00", "with space", "ü"+strings.Repeat("x", 31)), token)
	case 3: // bad credentials
		header = map[string]string{"Authorization": pick("", "Bearer wrong-token-0123456789", "Basic ZTJlOmUyZQ==", "Bearer",
			"Bearer "+apiToken[:10], "Token "+apiToken, "Bearer  "+apiToken, "Bearer "+apiToken+"x", "Bearer "+strings.Repeat("B", 30000))}
	case 4: // delete with bad user or token
		method, body = http.MethodDelete, nil
		path = devicePath(pick(user, strings.Repeat("u", 40), ""), pick("no such token", strings.Repeat("t", 5000), token))
	case 5: // list with bad user or credentials
		method, body = http.MethodGet, nil
		path = "/v1/users/" + url.PathEscape(pick(strings.Repeat("u", 40), "\xff", user, "")) + "/devices"
		if i%20 == 5 {
			header = nil
		}
	case 6: // wrong method
		method = pick(http.MethodPost, http.MethodPatch, "PROPFIND")
	case 7: // valid: registered
	case 8: // paths that go nowhere
		path = pick("/v1/users//devices/x", "/v1/users/x/devices/", "/v1/users/x/devices/a/b", "/v1//users", "/v2/users/x/devices/y", "/v1/users/%ff/devices/x")
	case 9: // valid: deleted (registered or not)
		method, body = http.MethodDelete, nil
		path = devicePath(user, fmt.Sprintf("zz-token-%05d-abcdefghijklmnop", i-2))
	}
	return method, path, body, header
}

// mutate returns the i-th bad variant of seed and whether to sign it.
func mutate(seed []byte, i int) ([]byte, bool) {
	b := append([]byte(nil), seed...)
	r := uint32(i)*2654435761 + 12345 // deterministic per i
	pos := int(r>>8) % len(b)
	switch i % 10 {
	case 0: // flip a byte
		b[pos] ^= byte(r) | 1
	case 1: // truncate
		b = b[:pos]
	case 2: // invalid UTF-8
		b = append(b[:pos:pos], append([]byte{0xff, 0xfe}, b[pos:]...)...)
	case 3: // oversized
		b = slices.Concat([]byte(`{"pad":"`), bytes.Repeat([]byte("a"), 2<<20), []byte(`"}`))
	case 4: // wrong types
		b = []byte(`{"From_Account":["x"],"FollowList":{"To_Account":1},"EventTime":"` + fmt.Sprint(i) + `"}`)
	case 5: // duplicate keys
		b = []byte(`{"From_Account":"a","From_Account":"b","FollowList":[{"To_Account":"c"}],"EventTime":1}`)
	case 6: // deep nesting
		b = []byte(fmt.Sprintf(`{"x":%s1%s}`, repeat("[", 200), repeat("]", 200)))
	case 7: // unsigned
		return b, false
	case 8: // huge numbers, negative time
		b = []byte(`{"From_Account":"a","FollowList":[{"To_Account":"c"}],"EventTime":-1e400}`)
	case 9: // not an object
		b = []byte(`["Follow.CallbackAfterFollowAdd"]`)
	}
	return b, true
}

func repeat(s string, n int) string {
	out := make([]byte, 0, len(s)*n)
	for i := 0; i < n; i++ {
		out = append(out, s...)
	}
	return string(out)
}

// (4) Redis is down, so the receiver spools 160 webhooks (1,920 follows, all
// answered 200) to disk, to be drained 10 at a time. Redis comes back, and
// the receiver dies right after its first drain step stored its 120 follows
// in Redis and before it saved its read position: the worst moment, the
// step is offered again. A new receiver on the same spool directory opens
// with everything pending and drains it; the re-offered step, whose tasks
// have completed meanwhile, pushes nothing again: nothing lost, nothing
// twice.
func TestFaultReceiverKilledWhileSpoolDrains(t *testing.T) {
	skipIfShort(t, "fault injection")
	t.Parallel()
	const (
		webhooks = 160
		per      = 12 // followees per webhook: one spooled event
		batch    = 10 // SPOOL_DRAIN_BATCH
	)
	spoolDir := t.TempDir()
	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info", "SPOOL_DIR": spoolDir, "SPOOL_DRAIN_BATCH": strconv.Itoa(batch)})
	sc := newScript(nil)
	s.fcm.SetResponder(sc.respond)
	followees := users("s", webhooks*per)
	s.registerAll(followees)

	// The crash point, made deterministic: a directory where the spool
	// writes its new read position (POS.tmp, see internal/spool) makes
	// every save fail, so the first drain step stores its follows in Redis
	// and then leaves the position where it was, as a crash between the two
	// would. The receiver is killed on the line that reports it.
	blocker := filepath.Join(spoolDir, "POS.tmp")
	if err := os.Mkdir(blocker, 0o700); err != nil {
		t.Fatal(err)
	}
	s.redis.Stop()
	run := newFollowRun(s)
	run.post(context.Background(), followees, per, 16, 0)
	if run.statuses[http.StatusOK] != webhooks {
		t.Fatalf("with Redis down and a spool, statuses %v; want every webhook answered 200", run.statuses)
	}
	s.redis.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	failed, err := s.receiver.WaitLine(ctx, func(m map[string]any) bool {
		return m["msg"] == "spool drain failed; will retry" && strings.Contains(fmt.Sprint(m["err"]), "save read position")
	})
	if err != nil {
		t.Fatal(err)
	}
	s.receiver.Kill()
	if p := fmt.Sprint(failed["pending"]); p != strconv.Itoa(webhooks) {
		t.Fatalf("the receiver was killed with %s events pending, want all %d", p, webhooks)
	}

	// The first step's follows were stored: they are delivered. Waiting for
	// the queue to be idle too means their tasks are gone from Redis, so
	// only the delivery records can stop the re-offered step from pushing
	// again.
	deadline := time.Now().Add(time.Minute)
	for {
		_, success := sc.snapshot()
		if len(success) >= batch*per || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the fake FCM's counters against a deadline
	}
	s.waitIdle(time.Minute)
	_, success := sc.snapshot()
	pushedBeforeRestart := len(success)
	if pushedBeforeRestart != batch*per {
		t.Fatalf("%d followees pushed from the killed receiver's drain, want exactly its first step's %d", pushedBeforeRestart, batch*per)
	}

	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	second := s.start("receiver")
	opened, err := second.WaitLine(ctx, proc.Msg("spool open"))
	if err != nil {
		t.Fatal(err)
	}
	if p := fmt.Sprint(opened["pending"]); p != strconv.Itoa(webhooks) {
		t.Errorf("the new receiver opened the spool with %s events pending, want %d (nothing was saved as drained)", p, webhooks)
	}
	if _, err := second.WaitLine(ctx, proc.Msg("spool drained into Redis", "pending", "0")); err != nil {
		t.Fatal(err)
	}
	steps, moved := second.Lines(proc.Msg("spool drained into Redis")), 0
	for _, l := range steps {
		n, _ := l["events"].(float64)
		if n < 1 || n > batch {
			t.Errorf("a drain step moved %v events, want 1 to %d (SPOOL_DRAIN_BATCH)", l["events"], batch)
		}
		moved += int(n)
	}
	if moved != webhooks || len(steps) != webhooks/batch {
		t.Errorf("the new receiver drained %d events in %d steps, want %d in %d", moved, len(steps), webhooks, webhooks/batch)
	}
	run.waitDelivered(t, sc, 2*time.Minute)
	accepted, lost, dup := run.lostAndDuplicated(sc)
	t.Logf("FAULT receiver-sigkill-mid-drain: follows=%d accepted=%d spooled-webhooks=%d drain-batch=%d pending-at-kill=%v pushed-before-restart=%d pending-at-reopen=%v drain-steps-after=%d lost=%d duplicated=%d",
		len(followees), accepted, run.statuses[200], batch, failed["pending"], pushedBeforeRestart, opened["pending"], len(steps), lost, dup)
	if lost != 0 || accepted != len(followees) {
		t.Errorf("accepted %d of %d, lost %d", accepted, len(followees), lost)
	}
	if dup != 0 {
		t.Errorf("%d duplicate pushes: the re-offered drain step pushed again", dup)
	}
	s.checkLogsKeepSecrets(t)
}
