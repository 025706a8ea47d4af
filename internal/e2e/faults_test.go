package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/fcmtest"
	"github.com/followpush/followpush/internal/proc"
	"github.com/followpush/followpush/webhook"
)

// The fault-injection suite: real processes, a real redis-server, faults
// injected from outside. Each test logs one "FAULT" line with its figures
// (RELIABILITY.md quotes them); lost must be 0.

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
				status, _ := r.s.webhook(webhook.CommandFollowAdd, followBody("fan-"+batch[0], nowMillis(), batch...))
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
	_, success := sc.snapshot()
	r.mu.Lock()
	defer r.mu.Unlock()
	for f := range r.accepted {
		accepted++
		switch n := success["tok-"+f]; {
		case n == 0:
			lost++
		case n > 1:
			dup += n - 1
		}
	}
	return accepted, lost, dup
}

// waitDelivered waits until every accepted followee's device got a push.
func (r *followRun) waitDelivered(t *testing.T, sc *script, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, lost, _ := r.lostAndDuplicated(sc); lost == 0 {
			return
		}
		if time.Now().After(deadline) {
			return // the caller reports lost
		}
		time.Sleep(50 * time.Millisecond) // polling the fake FCM's counters against a deadline
	}
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

// (1) A worker is SIGKILLed in the middle of 1,000 follows: asynq's lease
// expires, the surviving worker recovers the task, every followee is pushed.
func TestFaultWorkerKilledMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection: takes about two minutes")
	}
	t.Parallel()
	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info"})
	sc := newScript(nil)
	s.fcm.SetResponder(sc.respond)
	s.fcm.SetLatency(20 * time.Millisecond) // sends in flight when the kill lands
	followees := users("k", 1000)
	s.registerAll(followees)

	run := newFollowRun(s)
	posted := make(chan struct{})
	go func() { run.post(context.Background(), followees, 20, 8, 0); close(posted) }()

	// Kill the first worker once pushes are flowing: it holds leases on
	// in-flight tasks.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.fcm.WaitForRequests(ctx, 200); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	s.workers[0].Kill()
	<-posted
	run.waitDelivered(t, sc, 4*time.Minute)
	recovery := time.Since(killedAt)

	accepted, lost, dup := run.lostAndDuplicated(sc)
	t.Logf("FAULT worker-sigkill: follows=%d accepted=%d lost=%d duplicated=%d all-delivered-after-kill=%s statuses=%v",
		len(followees), accepted, lost, dup, recovery.Round(time.Second), run.statuses)
	if accepted != len(followees) || lost != 0 {
		t.Errorf("accepted %d of %d, lost %d", accepted, len(followees), lost)
	}
}

// (2) Redis stops for 3 s while webhooks arrive, then restarts (AOF): every
// webhook answered 200 leads to a push.
func TestFaultRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection")
	}
	t.Parallel()
	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info"})
	sc := newScript(nil)
	s.fcm.SetResponder(sc.respond)
	followees := users("r", 600)
	s.registerAll(followees)

	run := newFollowRun(s)
	posted := make(chan struct{})
	go func() { run.post(context.Background(), followees, 2, 4, 10*time.Millisecond); close(posted) }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.fcm.WaitForRequests(ctx, 50); err != nil {
		t.Fatal(err)
	}
	s.redis.Stop()
	time.Sleep(3 * time.Second) // the fault: Redis is down for 3 s
	s.redis.Restart()
	<-posted
	run.waitDelivered(t, sc, 2*time.Minute)

	accepted, lost, dup := run.lostAndDuplicated(sc)
	t.Logf("FAULT redis-down-3s: follows=%d accepted=%d lost=%d duplicated=%d statuses=%v", len(followees), accepted, lost, dup, run.statuses)
	if lost != 0 {
		t.Errorf("lost %d follows answered 200", lost)
	}
	if accepted == 0 {
		t.Error("nothing was accepted")
	}
	for status := range run.statuses {
		if status != http.StatusOK && status/100 != 5 {
			t.Errorf("status %d seen: only 200 or a storage 5xx expected", status)
		}
	}
}

// (3) FCM answers 503 to everything for 10 s: after it recovers, every
// follow is delivered.
func TestFaultFCMOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection")
	}
	t.Parallel()
	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info"})
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
}

// (5) A barrage of malformed, mutated, oversized and unauthenticated
// requests from many goroutines: no crash, no 5xx (Redis is up), nothing
// pushed, and the receiver still serves.
func TestFaultMalformedBarrage(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection")
	}
	t.Parallel()
	s := startStack(t, 1, map[string]string{"LOG_LEVEL": "info"})
	seed := mustJSON(t, followBody("UserID_001", nowMillis(), "UserID_002", "UserID_003"))
	const total, conc = 6000, 32
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		ok200    int
		wg       sync.WaitGroup
	)
	next := make(chan int)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body, signed := mutate(seed, i)
				var status int
				if signed {
					status, _ = s.webhookRaw(webhook.CommandFollowAdd, body)
				} else {
					status, _ = s.do(http.MethodPost, "/webhook?SdkAppid="+appID+"&CallbackCommand="+webhook.CommandFollowAdd+"&Sign=00&RequestTime=1", body, nil)
				}
				mu.Lock()
				statuses[status]++
				if status == 200 {
					ok200++
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < total; i++ {
		next <- i
	}
	close(next)
	wg.Wait()

	if status, _ := s.do(http.MethodGet, "/healthz", nil, nil); status != 200 {
		t.Fatalf("receiver unhealthy after the barrage: %d", status)
	}
	select {
	case <-s.receiver.Exited():
		t.Fatal("receiver exited")
	default:
	}
	s.waitIdle(30 * time.Second)
	t.Logf("FAULT malformed-barrage: requests=%d goroutines=%d statuses=%v fcm-requests=%d", total, conc, statuses, len(s.fcm.Requests()))
	for status, n := range statuses {
		if status/100 == 5 {
			t.Errorf("%d answers with status %d", n, status)
		}
	}
	if n := len(s.fcm.Requests()); n != 0 {
		t.Errorf("%d pushes sent (no devices are registered)", n)
	}
	if statuses[400]+statuses[401]+statuses[413] < total/2 {
		t.Errorf("too few rejections: %v", statuses)
	}
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
		b = append([]byte(`{"pad":"`), append(make([]byte, 2<<20), `"}`...)...)
		for j := 8; j < len(b)-2; j++ {
			b[j] = 'a'
		}
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

// (4) Redis is down, so the receiver spools 2,000 follows to disk (all
// answered 200); Redis comes back, and the receiver is SIGKILLed while its
// spool drains. A new receiver on the same spool directory finishes the
// drain: every follow is delivered.
func TestFaultReceiverKilledWhileSpoolDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection")
	}
	t.Parallel()
	spoolDir := t.TempDir()
	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info", "SPOOL_DIR": spoolDir})
	sc := newScript(nil)
	s.fcm.SetResponder(sc.respond)
	followees := users("s", 2000)
	s.registerAll(followees)

	s.redis.Stop()
	run := newFollowRun(s)
	run.post(context.Background(), followees, 20, 8, 0)
	if run.statuses[http.StatusOK] != len(followees)/20 {
		t.Fatalf("with Redis down and a spool, statuses %v; want every webhook answered 200", run.statuses)
	}
	s.redis.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := s.receiver.WaitLine(ctx, proc.Msg("spool drained into Redis")); err != nil {
		t.Fatal(err)
	}
	s.receiver.Kill()
	deliveredAtKill := len(s.fcm.Requests())

	second := s.start("receiver")
	if _, err := second.Addr(ctx, "http"); err != nil {
		t.Fatal(err)
	}
	run.waitDelivered(t, sc, 2*time.Minute)
	accepted, lost, dup := run.lostAndDuplicated(sc)
	t.Logf("FAULT receiver-sigkill-mid-drain: follows=%d accepted=%d spooled-webhooks=%d pushes-before-kill=%d lost=%d duplicated=%d",
		len(followees), accepted, run.statuses[200], deliveredAtKill, lost, dup)
	if lost != 0 || accepted != len(followees) {
		t.Errorf("accepted %d of %d, lost %d", accepted, len(followees), lost)
	}
}
