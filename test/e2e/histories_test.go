package e2e_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/tencent"
)

// pairEvent is one event of a (follower, followee) pair's history.
type pairEvent struct {
	follow   bool
	from, to string
	et       int64
}

// pushLog records the pushes the fake FCM accepted, by pair, and the
// pairs whose first follow it refused.
type pushLog struct {
	mu       sync.Mutex
	accepted map[[2]string][]string // pair -> event_time of each accepted push (one per device)
	refused  map[[2]string]bool
}

func (l *pushLog) note(r fcmtest.Request, accepted bool) {
	data, _ := r.Message["data"].(map[string]any)
	from, _ := data["from_account"].(string)
	to, _ := data["to_account"].(string)
	et, _ := data["event_time"].(string)
	pair := [2]string{from, to}
	l.mu.Lock()
	defer l.mu.Unlock()
	if accepted {
		l.accepted[pair] = append(l.accepted[pair], et)
	} else {
		l.refused[pair] = true
	}
}

func (l *pushLog) refusedAll(pairs [][2]string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range pairs {
		if !l.refused[p] {
			return false
		}
	}
	return true
}

// (6) Follow histories across an FCM outage, through the real programs
// with the default policies (a 1 h cooldown): every pair's first follow
// is tried while FCM answers 503 (and fails); then its unfollows,
// refollows and a few repeated webhooks arrive in random order, some
// crossing each other. FCM recovers. Every pair whose last event is a
// follow must get a push (the contract's I1), and no pair more than one
// (I2: no worker dies, no FCM answer is lost). FOLLOWPUSH_E2E_SEED replays
// a seed.
func TestFaultFollowHistories(t *testing.T) {
	skipIfShort(t, "fault injection")
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("FOLLOWPUSH_E2E_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (replay: FOLLOWPUSH_E2E_SEED=%d go test ./test/e2e -run TestFaultFollowHistories)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	s := startStack(t, 2, map[string]string{"LOG_LEVEL": "info"})
	log := &pushLog{accepted: map[[2]string][]string{}, refused: map[[2]string]bool{}}
	var down atomic.Bool
	down.Store(true)
	s.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		if down.Load() {
			log.note(r, false)
			return fcmtest.Unavailable(0)
		}
		log.note(r, true)
		return fcmtest.Response{}
	})
	followees, followers := users("star", 8), users("fan", 6)
	s.registerAll(followees)

	// Each pair's history: follow, then up to four more events,
	// alternately unfollow and follow, EventTimes increasing.
	var pairs [][2]string
	histories := map[[2]string][]pairEvent{}
	base := nowMillis()
	for _, to := range followees {
		for _, from := range followers {
			pair := [2]string{from, to}
			pairs = append(pairs, pair)
			n := 1 + rng.IntN(5)
			et := base
			for i := range n {
				histories[pair] = append(histories[pair], pairEvent{follow: i%2 == 0, from: from, to: to, et: et})
				et += 1 + int64(rng.IntN(400))
			}
		}
	}
	send := func(e pairEvent) {
		var status int
		var body []byte
		if e.follow {
			status, body = s.webhook(tencent.CommandFollowAdd, followBody(e.from, e.et, e.to))
		} else {
			status, body = s.webhook(tencent.CommandFollowDelete, unfollowBody(e.from, e.et, e.to))
		}
		if status != http.StatusOK {
			t.Errorf("webhook %+v: %d %s", e, status, body)
		}
	}

	// The first follows, while FCM is down; wait until each was tried.
	for _, p := range pairs {
		send(histories[p][0])
	}
	waitFor(t, 2*time.Minute, "every first follow tried during the outage", func() bool { return log.refusedAll(pairs) })

	// The rest in random order, with repeats, from four senders at once.
	var rest []pairEvent
	for _, p := range pairs {
		rest = append(rest, histories[p][1:]...)
		if rng.IntN(4) == 0 {
			rest = append(rest, histories[p][rng.IntN(len(histories[p]))])
		}
	}
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	jobs := make(chan pairEvent)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for e := range jobs {
				send(e)
			}
		})
	}
	for _, e := range rest {
		jobs <- e
	}
	close(jobs)
	wg.Wait()
	down.Store(false)
	s.waitIdle(3 * time.Minute)

	endedFollowed, unnotified, repeated := 0, 0, 0
	var report []string
	log.mu.Lock()
	for _, p := range pairs {
		h := histories[p]
		got := log.accepted[p]
		if len(got) > 1 {
			repeated++
			report = append(report, fmt.Sprintf("%s -> %s pushed %d times (event times %v)", p[0], p[1], len(got), got))
		}
		if !h[len(h)-1].follow {
			continue
		}
		endedFollowed++
		if len(got) == 0 {
			unnotified++
			report = append(report, fmt.Sprintf("%s -> %s ended followed (%d events) and got no push", p[0], p[1], len(h)))
		}
	}
	log.mu.Unlock()
	slices.Sort(report)
	t.Logf("FAULT follow-histories: pairs=%d webhooks=%d ended-followed=%d unnotified=%d pushed-more-than-once=%d",
		len(pairs), len(pairs)+len(rest), endedFollowed, unnotified, repeated)
	if unnotified != 0 || repeated != 0 {
		t.Errorf("%d pairs ended followed without a push, %d pairs were pushed more than once:\n%v", unnotified, repeated, report)
	}
	s.checkLogsKeepSecrets(t)
}

// waitFor polls cond against a deadline, failing t with what when it
// does not hold in time.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}
