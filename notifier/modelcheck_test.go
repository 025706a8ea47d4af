package notifier_test

// TestDeliveryModel drives the real handler (on a real redis-server, the
// real firebase-admin-go client talking to the local FCM server) and the
// reference model (model_test.go) with the same seeded random histories:
// follows and unfollows that cross on the way (Tencent's webhooks arrive
// in any order, some twice), FCM outcomes per attempt (accepted, 503, 429,
// 500, a timeout or shutdown ending the attempt, UNREGISTERED), the global
// rate limit putting a send off, worker crashes at every step boundary,
// Redis restarts, retries used up, and the clock moving. Each task attempt
// runs step by step (read, commit, send, settle) under the test's
// control, so attempts of different tasks interleave as they would on
// many workers. After every step the two must agree on what was pushed,
// to which device, with which answer, and what was scheduled; at the end
// the delivery contract (RELIABILITY.md, I1 to I5) is checked on the
// history.
//
// A failing seed is printed with the command that replays it, and the
// test shrinks its history to a short one that still fails.
//
//	go test ./notifier -run TestDeliveryModel -model.seed=1234 -v   # replay one seed
//	go test ./notifier -run TestDeliveryModel -model.soak=30m       # new seeds for 30 minutes

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
)

var (
	modelSeed   = flag.Uint64("model.seed", 0, "TestDeliveryModel: run this seed only")
	modelSeeds  = flag.Int("model.seeds", 0, "TestDeliveryModel: how many seeds (default 250; 15 with -short)")
	modelSoak   = flag.Duration("model.soak", 0, "TestDeliveryModel: run new seeds for this long instead")
	modelSteps  = flag.Int("model.steps", 160, "TestDeliveryModel: actions per seed")
	modelShrink = flag.Duration("model.shrink", 3*time.Minute, "TestDeliveryModel: how long to look for a shorter failing history")
)

const (
	modelMaxAge      = time.Hour
	modelSendTimeout = 5 * time.Second
	// modelLeaseRecovery is when asynq hands a crashed worker's task to
	// another worker: its lease (30 s) runs out, and its recoverer looks.
	modelLeaseRecovery = 45 * time.Second
	// modelFCMWait is the longest Retry-After the test's FCM asks for (a
	// 503's): a follow that goes past MaxEventAge while its push waits for
	// it is dropped as stale, as designed, so I1 leaves out follows that
	// close to the age limit when the quiescence begins.
	modelFCMWait = 5 * time.Minute
	// modelRetryDelay is when a failed attempt's task may run again.
	modelRetryDelay = time.Second
	// modelSendWindow is the handler's bound on the time from an attempt's
	// commitment to its send (sendWindow).
	modelSendWindow = 10 * time.Second
	// modelSummaryWindow is HandlerOptions.SummaryWindow in histories with
	// preferences.
	modelSummaryWindow = 20 * time.Second
)

func TestDeliveryModel(t *testing.T) {
	env := newModelEnv(t)
	defer func() { t.Logf("what the seeds did: %v", env.tally) }()
	run := func(seed uint64) bool {
		h := generateHistory(seed, *modelSteps)
		err := env.run(h)
		if err == nil {
			return true
		}
		short := env.shrink(h, err)
		t.Errorf("seed %d: %v\n\nreplay: go test ./notifier -run 'TestDeliveryModel$' -model.seed=%d -v\n\n"+
			"shortest failing history found (%d of %d actions; fails with: %v); save it as testdata/model/<what-it-shows>.txt:\n%s",
			seed, err, seed, len(short.actions), len(h.actions), env.run(short), short)
		return false
	}
	switch {
	case *modelSeed != 0:
		run(*modelSeed)
	case *modelSoak > 0:
		deadline := time.Now().Add(*modelSoak)
		seed := uint64(time.Now().UnixNano())
		n := 0
		for ; time.Now().Before(deadline); seed++ {
			n++
			if !run(seed) {
				return
			}
		}
		t.Logf("%d seeds, from %d", n, seed-uint64(n))
	default:
		n := *modelSeeds
		if n == 0 {
			n = 250
			if testing.Short() {
				n = 15
			}
		}
		for seed := uint64(1); seed <= uint64(n); seed++ {
			if !run(seed) {
				return
			}
		}
	}
}

// TestDeliveryModelRegressions replays the histories in
// testdata/model/*.txt: each broke the contract once (the first lines of
// each file say how) and must pass now, whatever -model.seeds says. A
// failing seed of TestDeliveryModel prints its shortest history in this
// format: save it there as a new case.
func TestDeliveryModelRegressions(t *testing.T) {
	files, err := filepath.Glob("testdata/model/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no regression histories in testdata/model: %v", err)
	}
	env := newModelEnv(t)
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			text, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			h, err := parseHistory(string(text))
			if err != nil {
				t.Fatal(err)
			}
			if err := env.run(h); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A history survives its round trip through the text format.
func TestHistoryTextRoundTrip(t *testing.T) {
	h := generateHistory(42, 300)
	got, err := parseHistory(h.String())
	if err != nil {
		t.Fatal(err)
	}
	h.seed = 0
	if d := cmp.Diff(h, got, cmp.AllowUnexported(history{}, action{})); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

// --- histories --------------------------------------------------------------

type actKind int

const (
	aToggle  actKind = iota // a pair's next event happens: follow if not following, else unfollow; it is in transit
	aDeliver                // an in-transit webhook arrives (the i-th, mod their number)
	aRepeat                 // a webhook that arrived already arrives again
	aStart                  // a runnable task's attempt starts, and runs to its first step
	aResume                 // a paused attempt runs to its next step
	aCrash                  // a paused attempt's worker dies
	aAdvance                // the clock moves by d
	aFCM                    // FCM changes mode
	aRestart                // Redis restarts (nothing lost: AOF, clean shutdown)
	aPref                   // a followee sets their preferences (histories with preferences only)
)

type fcmMode int

const (
	fcmUp fcmMode = iota
	fcmDown
	fcmFlaky
)

func (m fcmMode) String() string { return [...]string{"up", "down", "flaky"}[m] }

type action struct {
	kind actKind
	i    int
	d    time.Duration
	mode fcmMode
	// aStart: what this attempt meets.
	throttle bool   // the global rate limit puts the send off
	timeout  bool   // the attempt's sends end by timeout (or shutdown): nothing delivered
	outcomes uint64 // seeds the per-device FCM answers
	// aPref: "all", "summary", "off" or "quiet=HH:MM-HH:MM" (UTC) for
	// followee i.
	pref string
}

// actNames are the actions' names in the format of histories.
var actNames = [...]string{aToggle: "toggle", aDeliver: "deliver", aRepeat: "repeat", aStart: "start", aResume: "resume",
	aCrash: "crash", aAdvance: "advance", aFCM: "fcm", aRestart: "restart", aPref: "pref"}

// String writes a in the format parseHistory reads.
func (a action) String() string {
	switch a.kind {
	case aStart:
		return fmt.Sprintf("start %d throttle=%v timeout=%v outcomes=%d", a.i, a.throttle, a.timeout, a.outcomes)
	case aAdvance:
		return "advance " + a.d.String()
	case aFCM:
		return "fcm " + a.mode.String()
	case aRestart:
		return "restart"
	case aPref:
		return fmt.Sprintf("pref %d %s", a.i, a.pref)
	}
	return fmt.Sprintf("%s %d", actNames[a.kind], a.i) // an action on the i-th pair, webhook or attempt
}

// history is one seed's configuration and actions.
type history struct {
	seed     uint64
	policy   delivery.Policy
	maxRetry int
	crashes  bool
	// prefs: the worker reads the users' preferences, which aPref
	// actions set.
	prefs   bool
	actions []action
}

// String writes h in the format parseHistory reads: a header, then one
// action a line.
func (h history) String() string {
	var b strings.Builder
	p := h.policy
	fmt.Fprintf(&b, "policy cooldown=%s cap=%d window=%s first-immediate=%v\n", p.Cooldown, p.MaxPerHour, p.Window, p.FirstImmediate)
	fmt.Fprintf(&b, "max-retry %d\ncrashes %v\n", h.maxRetry, h.crashes)
	if h.prefs {
		fmt.Fprintf(&b, "prefs true\n")
	}
	for _, a := range h.actions {
		fmt.Fprintf(&b, "%s\n", a)
	}
	return b.String()
}

// parseHistory reads a history as history.String writes it; lines
// starting with # are comments.
func parseHistory(text string) (history, error) {
	var h history
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		kv := map[string]string{}
		for _, x := range f[1:] {
			if k, v, ok := strings.Cut(x, "="); ok {
				kv[k] = v
			}
		}
		arg := func(i int) string {
			if i < len(f) {
				return f[i]
			}
			return ""
		}
		var err error
		num := func(s string) int {
			v, e := strconv.Atoi(s)
			err = errors.Join(err, e)
			return v
		}
		dur := func(s string) time.Duration {
			v, e := time.ParseDuration(s)
			err = errors.Join(err, e)
			return v
		}
		a := action{}
		switch f[0] {
		case "policy":
			h.policy = delivery.Policy{Cooldown: dur(kv["cooldown"]), MaxPerHour: num(kv["cap"]), Window: dur(kv["window"]),
				FirstImmediate: kv["first-immediate"] == "true"}
			continue
		case "max-retry":
			h.maxRetry = num(arg(1))
			continue
		case "crashes":
			h.crashes = arg(1) == "true"
			continue
		case "prefs":
			h.prefs = arg(1) == "true"
			continue
		case "pref":
			a = action{kind: aPref, i: num(arg(1)), pref: arg(2)}
			if _, e := parsePref(a.pref); e != nil {
				err = errors.Join(err, e)
			}
		case "toggle", "deliver", "repeat", "resume", "crash":
			a = action{kind: actKind(slices.Index(actNames[:], f[0])), i: num(arg(1))}
		case "start":
			o, e := strconv.ParseUint(kv["outcomes"], 10, 64)
			err = errors.Join(err, e)
			a = action{kind: aStart, i: num(arg(1)), throttle: kv["throttle"] == "true", timeout: kv["timeout"] == "true", outcomes: o}
		case "advance":
			a = action{kind: aAdvance, d: dur(arg(1))}
		case "fcm":
			m := slices.Index([]string{"up", "down", "flaky"}, arg(1))
			if m < 0 {
				err = errors.Join(err, fmt.Errorf("FCM mode %q", arg(1)))
			}
			a = action{kind: aFCM, mode: fcmMode(m)}
		case "restart":
			a = action{kind: aRestart}
		default:
			err = fmt.Errorf("unknown action %q", f[0])
		}
		if err != nil {
			return history{}, fmt.Errorf("line %d: %q: %w", n+1, line, err)
		}
		h.actions = append(h.actions, a)
	}
	return h, nil
}

// modelFollowees are the users aPref actions pick from.
var modelFollowees = []string{"q1", "q2", "q3"}

// parsePref reads an aPref's preferences.
func parsePref(spec string) (preferences.Preferences, error) {
	if q, ok := strings.CutPrefix(spec, "quiet="); ok {
		start, end, _ := strings.Cut(q, "-")
		p := preferences.Preferences{QuietHours: &preferences.QuietHours{Start: start, End: end, TimeZone: "UTC"}}
		return p, p.Validate()
	}
	p := preferences.Preferences{FollowPushes: spec}
	return p, p.Validate()
}

func (h history) without(from, to int) history {
	c := h
	c.actions = slices.Concat(h.actions[:from], h.actions[to:])
	return c
}

var modelPairs = func() [][2]string {
	var out [][2]string
	for _, to := range modelFollowees {
		for _, from := range []string{"a", "b", "c"} {
			out = append(out, [2]string{from, to})
		}
	}
	return out
}()

// modelDevices are the followees' devices. A token ending in "-old" is
// one FCM may call dead (UNREGISTERED) more often: q3 can lose its only
// device.
var modelDevices = map[string][]string{"q1": {"q1-phone", "q1-tablet"}, "q2": {"q2-phone", "q2-web-old"}, "q3": {"q3-old"}}

func generateHistory(seed uint64, steps int) history {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	h := history{seed: seed, maxRetry: 25, crashes: rng.IntN(2) == 0}
	if rng.IntN(4) == 0 {
		h.maxRetry = 1 + rng.IntN(2)
	}
	if rng.IntN(3) > 0 {
		h.policy.Cooldown = time.Hour
	}
	if rng.IntN(3) == 0 {
		h.policy.MaxPerHour = 1 + rng.IntN(2)
	}
	if rng.IntN(2) == 0 {
		h.policy.Window = time.Duration(5+rng.IntN(30)) * time.Second
		h.policy.FirstImmediate = rng.IntN(2) == 0
	}
	// Preferences come from a stream of their own, so that the other
	// actions of a seed are the same with and without them.
	prng := rand.New(rand.NewPCG(seed, 0xbeef))
	h.prefs = prng.IntN(2) == 0
	weights := []struct {
		k actKind
		w int
	}{{aToggle, 14}, {aDeliver, 14}, {aRepeat, 3}, {aStart, 26}, {aResume, 22}, {aCrash, 3}, {aAdvance, 12}, {aFCM, 5}, {aRestart, 1}}
	total := 0
	for _, w := range weights {
		total += w.w
	}
	for range steps {
		if h.prefs && prng.IntN(16) == 0 {
			h.actions = append(h.actions, randomPref(prng))
		}
		n := rng.IntN(total)
		var k actKind
		for _, w := range weights {
			if n < w.w {
				k = w.k
				break
			}
			n -= w.w
		}
		a := action{kind: k, i: rng.IntN(1 << 16)}
		switch k {
		case aCrash:
			if !h.crashes {
				a.kind = aResume
			}
		case aAdvance:
			switch r := rng.IntN(20); {
			case r < 14:
				a.d = time.Duration(rng.IntN(3000)) * time.Millisecond
			case r < 19:
				a.d = time.Duration(5+rng.IntN(60)) * time.Second
			default:
				a.d = time.Duration(10+rng.IntN(50)) * time.Minute
			}
			a.i = 0
		case aRestart:
			a.i = 0
		case aFCM:
			a.mode = fcmMode(rng.IntN(3))
			a.i = 0
		case aStart:
			a.throttle = rng.IntN(12) == 0
			a.timeout = rng.IntN(8) == 0
			a.outcomes = rng.Uint64()
		}
		h.actions = append(h.actions, a)
	}
	return h
}

// randomPref is a followee's new preferences: the defaults, summaries
// only, off, or quiet hours starting within 20 minutes of the histories'
// start (12:00 UTC), so that histories enter and leave them: 1 to 15
// minutes long, or (one in three) 61 minutes to 3 hours, longer than
// MaxEventAge, so that held follows outlive the usual stale cutoff.
func randomPref(rng *rand.Rand) action {
	a := action{kind: aPref, i: rng.IntN(len(modelFollowees))}
	switch r := rng.IntN(20); {
	case r < 7:
		a.pref = "all"
	case r < 11:
		a.pref = "summary"
	case r < 14:
		a.pref = "off"
	default:
		start := time.Date(2026, 12, 1, 12, rng.IntN(20), 0, 0, time.UTC)
		length := time.Duration(1+rng.IntN(15)) * time.Minute
		if rng.IntN(3) == 0 {
			// longer than MaxEventAge: held follows outlive the usual
			// stale cutoff
			length = time.Duration(61+rng.IntN(120)) * time.Minute
		}
		end := start.Add(length)
		a.pref = "quiet=" + start.Format("15:04") + "-" + end.Format("15:04")
	}
	return a
}

// outcome is FCM's answer to one device in one attempt.
type outcome string

const (
	oOK          outcome = "ok"
	oUnavailable outcome = "503"
	oQuota       outcome = "429"
	oInternal    outcome = "500"
	oTimeout     outcome = "timeout"
	oUnreg       outcome = "unregistered"
)

// outcomeFor decides, from the attempt's seed, what FCM answers token.
func outcomeFor(mode fcmMode, timeout bool, seed uint64, token string) outcome {
	if mode == fcmUp {
		return oOK
	}
	if timeout {
		return oTimeout
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", seed, token)
	r := h.Sum64() % 100
	if strings.HasSuffix(token, "-old") && r < 12 {
		return oUnreg
	}
	switch mode {
	case fcmDown:
		switch {
		case r < 55:
			return oUnavailable
		case r < 80:
			return oQuota
		default:
			return oInternal
		}
	default: // flaky
		switch {
		case r < 55:
			return oOK
		case r < 75:
			return oUnavailable
		case r < 85:
			return oQuota
		case r < 95:
			return oInternal
		default:
			return oUnreg
		}
	}
}

// --- the environment ----------------------------------------------------------

// modelEnv is what the seeds share: a redis-server and a local FCM server.
type modelEnv struct {
	t     *testing.T
	redis *redistest.Server
	rdb   *redis.Client
	fcm   *fcmtest.Server

	// tally counts, over all seeds, the model's task results and the
	// policies they ran under, to show what the seeds exercised.
	tally map[string]int

	mu       sync.Mutex
	attempts map[string]*attempt // by attemptHeader: the FCM server answers for the attempt that sent
}

// attemptHeader carries an FCM request's attempt to the local FCM server,
// which answers as that attempt's draw says: a request a timed-out attempt
// wrote just before it gave up may reach the server later.
const attemptHeader = "X-Model-Attempt"

// tagAttempts is the FCM sender's transport: it adds attemptHeader.
type tagAttempts struct{ next http.RoundTripper }

func (t tagAttempts) RoundTrip(r *http.Request) (*http.Response, error) {
	if a := attemptOf(r.Context()); a != nil {
		r = r.Clone(r.Context())
		r.Header.Set(attemptHeader, a.key)
	}
	return t.next.RoundTrip(r)
}

func newModelEnv(t *testing.T) *modelEnv {
	t.Helper()
	srv := redistest.Start(t, redistest.AOF("always"))
	e := &modelEnv{t: t, redis: srv, rdb: srv.Client(t), fcm: fcmtest.NewServer(t), attempts: map[string]*attempt{}, tally: map[string]int{}}
	e.fcm.SetResponder(e.respond)
	return e
}

func (e *modelEnv) respond(r fcmtest.Request) fcmtest.Response {
	e.mu.Lock()
	a := e.attempts[r.Header.Get(attemptHeader)]
	e.mu.Unlock()
	if a == nil {
		return fcmtest.ErrorResponse(500, "INTERNAL", "no attempt sent this")
	}
	o := a.outcome(r.Token)
	a.observe(r, o)
	switch o {
	case oUnavailable:
		// A Retry-After beyond firebase-admin-go's 2-minute bound: the SDK
		// does not retry it itself, the handler does.
		return fcmtest.Unavailable(5 * time.Minute)
	case oQuota:
		return fcmtest.QuotaExceeded(time.Minute)
	case oInternal:
		return fcmtest.Internal()
	case oUnreg:
		return fcmtest.Unregistered()
	case oTimeout:
		// The attempt ends before FCM answers (a send timeout, or the
		// worker shutting down): nothing is delivered.
		a.cancel()
		<-r.Context.Done()
		return fcmtest.Internal()
	}
	return fcmtest.Response{}
}

// --- one run ----------------------------------------------------------------------

// sim is one seed's run: the real handler and the model side by side.
type sim struct {
	env  *modelEnv
	hist history
	h    *notifier.Handler
	reg  *devices.Registry
	st   *delivery.Store
	met  *prometheus.Registry
	m    *model

	now  int64 // ms
	mode fcmMode
	step int // the action being run

	pairs     []*pairState
	transit   []webhook // happened, not delivered yet
	delivered []webhook

	queue    map[string]*dTask
	paused   []*attempt
	nextSeq  int
	schedule []tasks.Summary // scheduled by the real handler in this segment

	// history for the invariants
	pushes     []pushRec
	unfollows  []unfollowRec
	archived   map[string]bool
	results    map[string]map[string]int // "follow"/"digest" -> result -> count (model)
	prefLog    []prefChange
	crashed    bool
	lostRecord bool  // a worker died between its send and its record
	quiescent  int64 // when the quiescence began (ms)
}

// prefChange is an aPref action as it happened.
type prefChange struct {
	step  int // the action
	to    string
	prefs preferences.Preferences
}

type pairState struct {
	from, to  string
	following bool
	lastET    int64
	events    []webhook
}

type webhook struct {
	follow   bool
	from, to string
	et       int64
	step     int // the action that made it happen
}

type pushRec struct {
	step      int
	token, to string
	followers []mFollower // a single push: one
	summary   string      // digest id, "" for a single push
	accepted  bool
	at        int64 // when the attempt committed to it (ms)
	prefsRead int   // the action during which the attempt read the preferences
	rest      bool  // an earlier attempt of the same push reached a device
}

type unfollowRec struct {
	step     int
	from, to string
	et       int64
}

// dTask is a task in the simulated queue (asynq's part).
type dTask struct {
	id       string
	follow   *tasks.Follow
	digest   *tasks.Summary
	state    string // pending, waiting (scheduled, retry, crashed: runnable at at), active, archived
	at       int64
	retried  int
	lastWait bool
}

func (e *modelEnv) newSim(h history) (*sim, error) {
	ctx := context.Background()
	if err := e.rdb.FlushAll(ctx).Err(); err != nil {
		return nil, err
	}
	if err := e.rdb.ScriptFlush(ctx).Err(); err != nil {
		return nil, err
	}
	s := &sim{env: e, hist: h, queue: map[string]*dTask{}, archived: map[string]bool{},
		results: map[string]map[string]int{"follow": {}, "digest": {}}, met: prometheus.NewRegistry()}
	s.now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	s.reg = devices.NewRegistry(e.rdb, devices.Options{})
	s.st = delivery.New(e.rdb, delivery.Options{RecordTTL: modelMaxAge, CancelTTL: delivery.UnfollowTTL(modelMaxAge)})
	sender, err := fcm.NewSender(ctx, fcm.Config{ProjectID: "p", Endpoint: e.fcm.URL(),
		HTTPClient: &http.Client{Transport: tagAttempts{next: http.DefaultTransport}}})
	if err != nil {
		return nil, err
	}
	opts := notifier.HandlerOptions{
		MaxEventAge: modelMaxAge, SendTimeout: modelSendTimeout, Policy: h.policy,
		Scheduler: schedulerFunc(s.enqueueDigest), Limiter: limiterFunc(s.limit),
		Now: func() time.Time { return time.UnixMilli(s.now) },
	}
	if h.prefs {
		opts.Preferences, opts.SummaryWindow = preferences.NewStore(e.rdb, ""), modelSummaryWindow
	}
	s.h, err = notifier.NewHandler(slog.New(slog.DiscardHandler), s.reg, s.st, sender, notifier.NewMetrics(s.met), opts)
	if err != nil {
		return nil, err
	}
	notifier.SetTestHooks(s.h, s.onStep, s.retries)
	for to, toks := range modelDevices {
		for _, tok := range toks {
			if err := s.reg.Register(ctx, to, tok, devices.Registration{Platform: "android"}); err != nil {
				return nil, err
			}
		}
	}
	s.m = newModel(h.policy, modelMaxAge, s.h.Lease(), modelDevices)
	s.m.prefsOn, s.m.summaryWindow = h.prefs, modelSummaryWindow.Milliseconds()
	for _, p := range modelPairs {
		s.pairs = append(s.pairs, &pairState{from: p[0], to: p[1]})
	}
	return s, nil
}

type schedulerFunc func(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)

func (f schedulerFunc) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	return f(ctx, t, opts...)
}

type limiterFunc func(ctx context.Context, n int) (time.Duration, error)

func (f limiterFunc) Wait(ctx context.Context, n int) (time.Duration, error) { return f(ctx, n) }

// enqueueDigest is the handler's Scheduler: asynq's task id uniqueness.
func (s *sim) enqueueDigest(_ context.Context, t *asynq.Task, _ ...asynq.Option) (*asynq.TaskInfo, error) {
	d, err := tasks.ParseSummary(t)
	if err != nil {
		return nil, err
	}
	s.schedule = append(s.schedule, d)
	if s.enqueue(&dTask{id: d.TaskID(), digest: &d, state: "waiting", at: d.Due}) {
		return &asynq.TaskInfo{ID: d.TaskID()}, nil
	}
	return nil, asynq.ErrTaskIDConflict
}

// enqueue adds t unless a task with its id exists (asynq keeps a task id
// until the task completes; an archived task keeps it too).
func (s *sim) enqueue(t *dTask) bool {
	if _, ok := s.queue[t.id]; ok {
		return false
	}
	s.queue[t.id] = t
	return true
}

func (s *sim) limit(ctx context.Context, _ int) (time.Duration, error) {
	if a := attemptOf(ctx); a != nil && a.act.throttle {
		return time.Second, nil
	}
	return 0, nil
}

func (s *sim) retries(ctx context.Context) (int, int, bool) {
	a := attemptOf(ctx)
	if a == nil {
		return 0, 0, false
	}
	return a.task.retried, s.hist.maxRetry, true
}

// --- attempts ---------------------------------------------------------------------

type attemptKey struct{}

func attemptOf(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	return a
}

// attempt is one task attempt, run on the real handler and on the model in
// lockstep, segment by segment (a segment ends at a step boundary or at
// the attempt's end).
type attempt struct {
	s      *sim
	seq    int
	key    string // attemptHeader
	task   *dTask
	act    action
	mode   fcmMode
	ctx    context.Context
	cancel context.CancelFunc

	real, mod *runner
	at        string    // the step boundary it is paused at
	run       *modelRun // the model side

	mu       sync.Mutex
	observed []sent // FCM requests of the running segment (real side)
}

type sent struct {
	token, identity string
	outcome         outcome
}

func (a *attempt) outcome(token string) outcome {
	return outcomeFor(a.mode, a.act.timeout, a.act.outcomes, token)
}

func (a *attempt) observe(r fcmtest.Request, o outcome) {
	if o == oTimeout {
		return // see mDelivery: not compared
	}
	if a.ctx.Err() != nil {
		return // a late request of an attempt that gave up: its answer is lost
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.observed = append(a.observed, sent{token: r.Token, identity: identityOf(r.Message), outcome: o})
}

// identityOf names what a push is for: one follow, or a summary of
// followers.
func identityOf(msg map[string]any) string {
	data, _ := msg["data"].(map[string]any)
	str := func(k string) string { v, _ := data[k].(string); return v }
	if id := str(fcm.DataSummaryID); id != "" {
		var from []string
		_ = json.Unmarshal([]byte(str(fcm.DataFromAccounts)), &from)
		return "summary " + str(fcm.DataToAccount) + " <- " + strings.Join(from, ",") + " #" + str(fcm.DataCount)
	}
	return "follow " + str(fcm.DataFromAccount) + " -> " + str(fcm.DataToAccount) + " @" + str(fcm.DataEventTime)
}

// runner runs one side of an attempt in a goroutine that stops at each
// step boundary until told to go on.
type runner struct {
	events chan runEvent
	resume chan bool // true: go on; false: the worker died
}

type runEvent struct {
	step string // "" at the end
	err  error  // real side's result at the end
	res  string // model side's result at the end
	out  []sent // model side: what it sent in the segment
	sch  []tasks.Summary
}

func newRunner() *runner { return &runner{events: make(chan runEvent), resume: make(chan bool)} }

// pause reports a step boundary and waits; a crash parks the goroutine for
// good, as the process it stands for is gone.
func (r *runner) pause(ev runEvent) {
	r.events <- ev
	if !<-r.resume {
		select {}
	}
}

func (s *sim) onStep(ctx context.Context, step string) {
	a := attemptOf(ctx)
	a.real.pause(runEvent{step: step})
}

// segment runs both sides of a to their next step boundary (or end) and
// compares them. It returns whether the attempt ended.
func (s *sim) segment(a *attempt, first bool) (bool, error) {
	a.mu.Lock()
	a.observed = nil
	a.mu.Unlock()
	s.schedule = nil
	if first {
		go func() {
			var err error
			t := a.task
			if t.follow != nil {
				task, _ := tasks.NewFollowTask(*t.follow)
				err = s.h.ProcessTask(a.ctx, task)
			} else {
				task, _ := tasks.NewSummaryTask(*t.digest)
				err = s.h.ProcessTask(a.ctx, task)
			}
			a.real.events <- runEvent{err: err}
		}()
		go s.modelProcess(a)
	} else {
		a.real.resume <- true
		a.mod.resume <- true
	}
	var real, mod runEvent
	select {
	case real = <-a.real.events:
	case <-time.After(2 * time.Minute):
		return true, fmt.Errorf("attempt %d (%s): the real handler did not reach a step in 2 minutes", a.seq, a.task.id)
	}
	mod = <-a.mod.events
	a.mu.Lock()
	got := slices.Clone(a.observed)
	a.mu.Unlock()
	sortSent(got)
	sortSent(mod.out)
	where := fmt.Sprintf("action %d, attempt %d of %s", s.step, a.seq, a.task.id)
	if real.step != mod.step {
		return true, fmt.Errorf("%s: real handler reached %q (end: %v), the model %q (end: %s)", where, real.step, real.err, mod.step, mod.res)
	}
	if d := cmp.Diff(mod.out, got, cmp.AllowUnexported(sent{})); d != "" {
		return true, fmt.Errorf("%s, step %q: FCM requests differ (-model +real):\n%s", where, real.step, d)
	}
	if d := cmp.Diff(mod.sch, s.schedule); d != "" {
		return true, fmt.Errorf("%s, step %q: scheduled summaries differ (-model +real):\n%s", where, real.step, d)
	}
	if modelDebug {
		desc := a.task.id
		if f := a.task.follow; f != nil {
			desc = fmt.Sprintf("%s->%s@%d", f.From, f.To, f.EventTime)
		}
		fmt.Printf("    action %d attempt %d %s: %q end=%v/%s out=%v sch=%v\n", s.step, a.seq, desc, real.step, real.err, mod.res, got, s.schedule)
	}
	a.at = real.step
	if real.step != "" {
		return false, nil
	}
	if got, want := errClass(real.err), mod.res; !resultMatches(want, got) {
		return true, fmt.Errorf("%s: the real handler ended with %s (%v), the model with %s", where, got, real.err, want)
	}
	s.finish(a, real.err)
	return true, nil
}

func sortSent(x []sent) {
	sort.Slice(x, func(i, j int) bool {
		return x[i].token+x[i].identity < x[j].token+x[j].identity
	})
}

// errClass names a task's result as asynq sees it.
func errClass(err error) string {
	var re *notifier.RetryError
	switch {
	case err == nil:
		return "done"
	case errors.As(err, &re) && !notifier.IsFailure(err):
		return "retry-free"
	case errors.As(err, &re):
		return "retry"
	case errors.Is(err, asynq.SkipRetry):
		return "archive"
	}
	return "error"
}

// resultMatches reports whether the model's result (a metric result name)
// matches the real handler's class of error.
func resultMatches(model, real string) bool {
	switch model {
	case "retry-free":
		return real == "retry-free"
	case "retry", "exhausted":
		return real == "retry"
	}
	return real == "done"
}

// finish applies asynq's handling of an attempt's result to its task.
func (s *sim) finish(a *attempt, err error) {
	t := a.task
	t.lastWait = false
	var re *notifier.RetryError
	switch {
	case err == nil:
		delete(s.queue, t.id)
	case errors.As(err, &re) && !notifier.IsFailure(err):
		t.state, t.at = "waiting", s.now+max(re.After, 100*time.Millisecond).Milliseconds()
		t.lastWait = re.Reason != ""
	case t.retried >= s.hist.maxRetry || errors.Is(err, asynq.SkipRetry):
		t.state = "archived"
		s.archived[t.id] = true
	default:
		t.retried++
		t.state, t.at = "waiting", s.now+modelRetryDelay.Milliseconds()
	}
}

func (s *sim) runnable() []*dTask {
	var out []*dTask
	for _, t := range s.queue {
		if t.state == "pending" || (t.state == "waiting" && t.at <= s.now) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *dTask) int { return strings.Compare(a.id, b.id) })
	return out
}

func (s *sim) start(t *dTask, act action) (*attempt, error) {
	s.nextSeq++
	a := &attempt{s: s, seq: s.nextSeq, task: t, act: act, mode: s.mode, real: newRunner(), mod: newRunner(),
		key: fmt.Sprintf("%d/%d", s.hist.seed, s.nextSeq)}
	a.ctx, a.cancel = context.WithCancel(context.WithValue(context.Background(), attemptKey{}, a))
	s.env.mu.Lock()
	s.env.attempts[a.key] = a
	s.env.mu.Unlock()
	t.state = "active"
	ended, err := s.segment(a, true)
	if err != nil {
		return nil, err
	}
	if !ended {
		s.paused = append(s.paused, a)
	}
	return a, nil
}

func (s *sim) resume(i int) error {
	a := s.paused[i]
	ended, err := s.segment(a, false)
	if err != nil {
		return err
	}
	if ended {
		s.paused = slices.Delete(s.paused, i, i+1)
	}
	return nil
}

func (s *sim) crash(i int) {
	a := s.paused[i]
	s.paused = slices.Delete(s.paused, i, i+1)
	a.real.resume <- false
	a.mod.resume <- false
	a.task.state, a.task.at = "waiting", s.now+modelLeaseRecovery.Milliseconds()
	s.crashed = true
	if a.at == "sent" {
		// The pushes went out and their record with the worker: the
		// task's retry sends them again (the collapse id replaces them
		// on the devices). I2 does not hold for such a history.
		s.lostRecord = true
	}
}

// --- the model side of an attempt -----------------------------------------------------

// modelProcess runs the model's handler for a's task, reporting the same
// step boundaries as the real handler.
func (s *sim) modelProcess(a *attempt) {
	p := &modelRun{s: s, a: a}
	a.run = p
	var res string
	if a.task.follow != nil {
		res = p.follow(mFollow{From: a.task.follow.From, To: a.task.follow.To, ET: a.task.follow.EventTime})
	} else {
		res = p.digest(*a.task.digest)
	}
	kind := "follow"
	if a.task.digest != nil {
		kind = "digest"
	}
	if r := strings.TrimPrefix(res, "retry-free"); r == res && res != "retry" {
		s.results[kind][res]++
	} else {
		s.results[kind]["retry"]++
	}
	a.mod.events <- runEvent{res: res, out: p.out, sch: p.sch}
}

type modelRun struct {
	s   *sim
	a   *attempt
	out []sent
	sch []tasks.Summary
	// committed is the action during which the attempt committed to its
	// push: what I3 compares with the unfollows; committedAt the time it
	// counts from.
	committed   int
	committedAt int64
	// prefsRead is the action during which the attempt read the
	// followee's preferences; rest: an earlier attempt of its push
	// reached a device (what I5 allows).
	prefsRead int
	rest      bool
}

func (p *modelRun) yield(step string) {
	ev := runEvent{step: step, out: p.out, sch: p.sch}
	p.out, p.sch = nil, nil
	p.a.mod.pause(ev)
}

func (p *modelRun) scheduleDigest(d tasks.Summary) {
	p.sch = append(p.sch, d)
}

// mDeliver is the handler's deliver on the model: the rate limit, the
// sends and their answers, dead tokens removed.
type mDelivery struct {
	rec       mAttemptRecord
	retry     bool
	throttled bool
	counted   bool // the retry counts against the budget
}

func (p *modelRun) deliver(to string, targets []string, identity string, followers []mFollower, summary string) mDelivery {
	var d mDelivery
	if p.a.act.throttle || p.s.now-p.committedAt > modelSendWindow.Milliseconds() {
		d.retry, d.throttled = true, true
		return d
	}
	allQuota := true
	for _, tok := range targets {
		o := p.a.outcome(tok)
		if o != oTimeout {
			// Which requests of an attempt that timed out reached FCM
			// before it ended is a race: they are not compared.
			p.out = append(p.out, sent{token: tok, identity: identity, outcome: o})
			p.s.pushes = append(p.s.pushes, pushRec{step: p.committed, token: tok, to: to, followers: followers, summary: summary, accepted: o == oOK,
				at: p.committedAt, prefsRead: p.prefsRead, rest: p.rest})
		}
		switch o {
		case oOK:
			d.rec.finished = append(d.rec.finished, tok)
			d.rec.accepted = true
		case oUnreg:
			d.rec.finished = append(d.rec.finished, tok)
			p.s.m.unregister(to, tok)
		default:
			d.retry = true
			allQuota = allQuota && o == oQuota
			d.rec.quota = d.rec.quota || o == oQuota
		}
	}
	d.counted = d.retry && !allQuota
	if !d.retry {
		d.rec.quota = false
	}
	return d
}

// settleAttempt is the handler's settle: it decides whether the attempt is
// final, and whether anything is written.
func (p *modelRun) settleAttempt(d *mDelivery, write func(mAttemptRecord)) (last bool) {
	switch {
	case !d.retry:
		d.rec.final = true
	case d.counted && p.a.task.retried >= p.s.hist.maxRetry:
		d.rec.final, d.rec.failed, last = true, true, true
		d.rec.quota = false
	default:
		if d.throttled && len(d.rec.finished) == 0 && !p.s.m.active() && !p.s.m.prefsOn {
			return false
		}
	}
	write(d.rec)
	return last
}

func (p *modelRun) retryResult(d mDelivery, last bool, reached bool) string {
	switch {
	case last:
		return "exhausted"
	case d.retry && !d.counted:
		return "retry-free"
	case d.retry:
		return "retry"
	case reached:
		return "sent"
	}
	return "undelivered"
}

func (p *modelRun) owned(to string, listed []string) []string {
	var out []string
	for _, tok := range listed {
		if slices.Contains(p.s.m.devices[to], tok) {
			out = append(out, tok)
		}
	}
	return out
}

func (p *modelRun) follow(f mFollow) string {
	m, now := p.s.m, p.s.now
	final := mAttemptRecord{final: true}
	if now-f.ET > m.maxAge {
		if m.active() || m.prefsOn {
			m.settle(f, final)
		}
		return "stale"
	}
	rec := m.record(f.id()).clone()
	x, ok := m.user(f.To).ux[f.From]
	cancelled := ok && x > f.ET
	listed := slices.Clone(m.devices[f.To])
	pr := m.prefs[f.To]
	p.prefsRead, p.rest = p.s.step, rec.reached
	p.yield("loaded")
	switch {
	case rec.done:
		return "duplicate"
	case cancelled:
		m.settle(f, final)
		return "cancelled"
	case pr.Mode() == preferences.ModeOff:
		m.settle(f, final)
		return "preference_off"
	case len(listed) == 0:
		m.settle(f, final)
		return "no_devices"
	}
	owned := p.owned(f.To, listed)
	pol := m.policyFor(pr, now)
	if rec.reached { // pushed to some devices: the rest get the same push
		pol.Window, pol.FirstImmediate, pol.Quiet = m.p.Window, m.p.FirstImmediate, false
	}
	adm := m.admit(f, now, pol)
	p.committed, p.committedAt = p.s.step, now
	p.yield("committed")
	switch adm.verdict {
	case delivery.VerdictWait:
		p.s.env.tally["follow waited for a push in flight"]++
		return "retry-free"
	case delivery.VerdictAggregated, delivery.VerdictCapped, delivery.VerdictQuiet:
		p.scheduleDigest(tasks.Summary{AppID: modelApp, To: f.To, Due: adm.due})
		p.yield("scheduled")
		m.settle(f, final)
		return string(adm.verdict)
	case delivery.VerdictSend:
	default:
		m.settle(f, final)
		if adm.verdict == delivery.VerdictSummarized {
			return "aggregated"
		}
		return string(adm.verdict)
	}
	var targets []string
	for _, tok := range owned {
		if !rec.finished[tok] {
			targets = append(targets, tok)
		}
	}
	if len(targets) == 0 {
		m.settle(f, final)
		if rec.reached {
			return "sent"
		}
		return "no_devices"
	}
	identity := fmt.Sprintf("follow %s -> %s @%d", f.From, f.To, f.ET)
	d := p.deliver(f.To, targets, identity, []mFollower{{f.From, f.ET}}, "")
	p.yield("sent")
	last := p.settleAttempt(&d, func(r mAttemptRecord) { m.settle(f, r) })
	p.yield("settled")
	return p.retryResult(d, last, rec.reached || d.rec.accepted)
}

func (p *modelRun) digest(d tasks.Summary) string {
	m := p.s.m
	rec := m.record(d.ID()).clone()
	pr := m.prefs[d.To] // read with the record
	p.prefsRead, p.rest = p.s.step, rec.reached
	p.yield("loaded")
	if rec.done {
		return "duplicate"
	}
	now := p.s.now
	hold := m.holdFor(pr).Milliseconds()
	if q := pr.QuietHours; q != nil && pr.Mode() != preferences.ModeOff && !rec.reached {
		if quiet, _, _ := q.At(time.UnixMilli(now)); quiet {
			// Store.Hold: its followers (taken, or pending) keep the
			// hold it is put off for.
			if u := m.user(d.To); len(u.snaps[d.Due]) > 0 {
				r := m.record(d.ID())
				r.hold = max(r.hold, hold)
			} else if u.win != nil && u.win.due == d.Due {
				u.win.hold = max(u.win.hold, hold)
			}
			return "retry-free" // at the end of the quiet hours
		}
	}
	end := func(cutoff int64) { m.settleDigest(d, mAttemptRecord{final: true}, cutoff) }
	notSent := func(b mBatch, taken bool) string {
		if b.next != 0 {
			p.scheduleDigest(tasks.Summary{AppID: d.AppID, To: d.To, Due: b.next})
		}
		end(0)
		switch {
		case taken && !b.retake:
			return "stale"
		case b.verdict == delivery.TakeEmpty:
			return "empty"
		case b.verdict == delivery.TakeLater:
			return "deferred"
		}
		return "superseded"
	}
	b := m.take(d, now, 0)
	if b.verdict != delivery.TakeSend {
		return notSent(b, rec.taken)
	}
	if pr.Mode() == preferences.ModeOff {
		end(0)
		return "preference_off"
	}
	// The followers waited as long as they were held, or as the
	// preferences now say.
	maxAge := m.maxAge + m.p.Window.Milliseconds() + max(b.hold, hold)
	if m.p.MaxPerHour > 0 {
		maxAge += delivery.CapWindow.Milliseconds()
	}
	cutoff := now - maxAge
	fresh := func(fs []mFollower) []mFollower {
		return slices.DeleteFunc(slices.Clone(fs), func(f mFollower) bool { return f.et < cutoff })
	}
	sum := fresh(b.followers)
	if len(sum) == 0 {
		end(cutoff)
		return "stale"
	}
	var targets []string
	for _, tok := range m.devices[d.To] {
		if !rec.finished[tok] {
			targets = append(targets, tok)
		}
	}
	if len(targets) == 0 {
		end(cutoff)
		if rec.reached {
			return "sent"
		}
		return "no_devices"
	}
	b = m.take(d, now, now+m.lease)
	if b.verdict != delivery.TakeSend {
		return notSent(b, true)
	}
	p.committed, p.committedAt = p.s.step, now
	if again := fresh(b.followers); !slices.Equal(again, sum) {
		if len(again) == 0 {
			end(cutoff)
			return "stale"
		}
		sum = again
	}
	p.yield("committed")
	names := make([]string, 0, len(sum))
	for _, f := range sum {
		names = append(names, f.id)
	}
	identity := fmt.Sprintf("summary %s <- %s #%d", d.To, strings.Join(names[:min(len(names), fcm.SummaryListMax)], ","), len(names))
	dv := p.deliver(d.To, targets, identity, sum, d.ID())
	p.yield("sent")
	last := p.settleAttempt(&dv, func(r mAttemptRecord) { m.settleDigest(d, r, cutoff) })
	p.yield("settled")
	return p.retryResult(dv, last, rec.reached || dv.rec.accepted)
}

// --- running a history ---------------------------------------------------------------

func (e *modelEnv) run(h history) (err error) {
	s, err := e.newSim(h)
	if err != nil {
		return err
	}
	for i, act := range h.actions {
		s.step = i
		if err := s.do(act); err != nil {
			return err
		}
	}
	s.step = len(h.actions)
	if err := s.quiesce(); err != nil {
		return err
	}
	for kind, rs := range s.results {
		for r, n := range rs {
			e.tally[kind+" "+r] += n
		}
	}
	for _, p := range s.pushes {
		if p.accepted {
			e.tally["pushes accepted"]++
		}
	}
	if s.crashed {
		e.tally["seeds with crashes"]++
	}
	return s.check()
}

// modelDebug (MODEL_DEBUG=1) prints every action and step of a run.
var modelDebug = os.Getenv("MODEL_DEBUG") == "1"

func (s *sim) do(act action) error {
	ctx := context.Background()
	if modelDebug {
		fmt.Printf("%3d now=%d %s\n", s.step, s.now, act)
	}
	switch act.kind {
	case aToggle:
		p := s.pairs[act.i%len(s.pairs)]
		et := max(s.now, p.lastET+1)
		p.lastET = et
		p.following = !p.following
		w := webhook{follow: p.following, from: p.from, to: p.to, et: et, step: s.step}
		p.events = append(p.events, w)
		s.transit = append(s.transit, w)
	case aDeliver:
		if len(s.transit) == 0 {
			return nil
		}
		i := act.i % len(s.transit)
		w := s.transit[i]
		s.transit = slices.Delete(s.transit, i, i+1)
		s.delivered = append(s.delivered, w)
		return s.webhook(ctx, w)
	case aRepeat:
		if len(s.delivered) == 0 {
			return nil
		}
		return s.webhook(ctx, s.delivered[act.i%len(s.delivered)])
	case aStart:
		r := s.runnable()
		if len(r) == 0 {
			return nil
		}
		_, err := s.start(r[act.i%len(r)], act)
		return err
	case aResume:
		if len(s.paused) == 0 {
			return nil
		}
		return s.resume(act.i % len(s.paused))
	case aCrash:
		if len(s.paused) == 0 {
			return nil
		}
		s.crash(act.i % len(s.paused))
	case aAdvance:
		// A worker records what it sent within its bookkeeping timeout,
		// well inside the lease of its commitment; one stalled longer
		// would be a crash. Time moves on as far as that allows.
		d := act.d.Milliseconds()
		for _, a := range s.paused {
			if a.at == "sent" {
				d = min(d, max(a.run.committedAt+s.h.Lease().Milliseconds()-1-s.now, 0))
			}
		}
		s.now += d
	case aFCM:
		s.mode = act.mode
	case aRestart:
		s.env.redis.Restart()
	case aPref:
		if !s.hist.prefs {
			return nil
		}
		to := modelFollowees[act.i%len(modelFollowees)]
		pr, err := parsePref(act.pref)
		if err != nil {
			return err
		}
		if err := preferences.NewStore(s.env.rdb, "").Put(ctx, to, pr); err != nil {
			return fmt.Errorf("action %d: set preferences: %w", s.step, err)
		}
		s.m.prefs[to] = pr
		s.prefLog = append(s.prefLog, prefChange{step: s.step, to: to, prefs: pr})
	}
	return nil
}

// webhook is the receiver's part: a follow stores a task (a repeat while
// the task exists is a no-op), an unfollow is recorded.
func (s *sim) webhook(ctx context.Context, w webhook) error {
	if modelDebug {
		fmt.Printf("    webhook %+v\n", w)
	}
	if !w.follow {
		if err := s.st.Cancel(ctx, modelApp, w.from, []string{w.to}, w.et); err != nil {
			return fmt.Errorf("action %d: unfollow: %w", s.step, err)
		}
		s.m.unfollow(w.from, w.to, w.et)
		s.unfollows = append(s.unfollows, unfollowRec{step: s.step, from: w.from, to: w.to, et: w.et})
		return nil
	}
	f := tasks.Follow{AppID: modelApp, From: w.from, To: w.to, EventTime: w.et}
	s.enqueue(&dTask{id: f.TaskID(), follow: &f, state: "pending"})
	return nil
}

// quiesce lets everything finish: the webhooks still on their way arrive,
// FCM is up, paused attempts run to their end, and tasks run until the
// queue is empty, the clock moving to the next due task when nothing can
// run.
func (s *sim) quiesce() error {
	ctx := context.Background()
	for _, w := range s.transit {
		s.delivered = append(s.delivered, w)
		if err := s.webhook(ctx, w); err != nil {
			return err
		}
	}
	s.transit = nil
	s.mode = fcmUp
	s.quiescent = s.now
	for len(s.paused) > 0 {
		if err := s.resume(0); err != nil {
			return err
		}
	}
	for range 5000 {
		if r := s.runnable(); len(r) > 0 {
			a, err := s.start(r[0], action{kind: aStart})
			if err != nil {
				return err
			}
			for slices.Contains(s.paused, a) {
				if err := s.resume(slices.Index(s.paused, a)); err != nil {
					return err
				}
			}
			continue
		}
		next := int64(-1)
		for _, t := range s.queue {
			if t.state == "waiting" && (next < 0 || t.at < next) {
				next = t.at
			}
		}
		if next < 0 {
			return nil
		}
		s.now = max(s.now, next)
	}
	return fmt.Errorf("the queue did not drain: %d tasks left", len(s.queue))
}

// --- the contract ----------------------------------------------------------------------

func (s *sim) check() error {
	if err := s.checkI1(); err != nil {
		return err
	}
	if !s.lostRecord {
		if err := s.checkI2(); err != nil {
			return err
		}
	}
	if err := s.checkI3(); err != nil {
		return err
	}
	if err := s.checkI4(); err != nil {
		return err
	}
	return s.checkI5()
}

// I5: no push goes to a followee inside their quiet hours (as the attempt
// read their preferences), except the rest of a push that reached one of
// their devices before: what arrives inside the quiet hours waits for
// their end.
func (s *sim) checkI5() error {
	for _, r := range s.pushes {
		pr := s.prefsAt(r.to, r.prefsRead)
		if q := pr.QuietHours; q != nil && !r.rest {
			if quiet, _, _ := q.At(time.UnixMilli(r.at)); quiet {
				return fmt.Errorf("I5: a push (%v, summary %q) went to %s's device %s at %s, inside their quiet hours %s-%s",
					r.followers, r.summary, r.to, r.token, time.UnixMilli(r.at).UTC().Format(time.TimeOnly), q.Start, q.End)
			}
		}
	}
	return nil
}

// prefsAt is user to's preferences during action step.
func (s *sim) prefsAt(to string, step int) preferences.Preferences {
	var at preferences.Preferences
	for _, c := range s.prefLog {
		if c.to == to && c.step <= step {
			at = c.prefs
		}
	}
	return at
}

// I1: a pair whose last event is a follow, whose followee has a working
// device, and whose follow is younger than the maximum event age, gets a
// push for that pair (single or in a summary), unless a push for an
// earlier follow of the pair reached a device within the cooldown; here:
// unless the follow's task (or a summary's) ran out of retries, or the
// followee turned follower pushes off at any time since the follow. The
// age is taken when the quiescence begins, less modelFCMWait: attempts
// paused before it may still meet FCM's Retry-After.
func (s *sim) checkI1() error {
	archivedFor := map[string]bool{}
	for id := range s.archived {
		if t := s.queue[id]; t != nil {
			if t.follow != nil {
				archivedFor[t.follow.To] = true
			} else {
				archivedFor[t.digest.To] = true
			}
		}
	}
	for _, p := range s.pairs {
		if len(p.events) == 0 {
			continue
		}
		last := p.events[len(p.events)-1]
		if !last.follow || s.quiescent-last.et > s.m.maxAge-modelFCMWait.Milliseconds() || len(s.m.devices[p.to]) == 0 || archivedFor[p.to] || s.offSince(p.to, last.step) {
			continue
		}
		cd := s.m.p.Cooldown.Milliseconds()
		ok := false
		for _, r := range s.pushes {
			if !r.accepted || r.to != p.to {
				continue
			}
			for _, f := range r.followers {
				if f.id == p.from && (f.et == last.et || (cd > 0 && f.et < last.et && last.et-f.et < cd)) {
					ok = true
				}
			}
		}
		if !ok {
			return fmt.Errorf("I1: %s follows %s (last follow at %d, %s before the end), %s has devices %v, and no push for it reached a device",
				p.from, p.to, last.et, time.Duration(s.quiescent-last.et)*time.Millisecond, p.to, s.m.devices[p.to])
		}
	}
	return nil
}

// offSince reports whether user to had follower pushes off at any time
// from action since on.
func (s *sim) offSince(to string, since int) bool {
	var at preferences.Preferences // in effect at since
	for _, c := range s.prefLog {
		if c.to != to {
			continue
		}
		if c.step < since {
			at = c.prefs
		} else if c.prefs.Mode() == preferences.ModeOff {
			return true
		}
	}
	return at.Mode() == preferences.ModeOff
}

// I2 (unless a worker died between a send and its record, or FCM's
// answer was lost; the test loses no answers): at most one push per pair
// per cooldown period; each follow reaches each device once; no follow is
// named by two summaries.
func (s *sim) checkI2() error {
	type followKey struct {
		from, to string
		et       int64
	}
	perDevice := map[string]int{}
	summaries := map[followKey]map[string]bool{}
	reached := map[[2]string][]int64{}
	for _, r := range s.pushes {
		if !r.accepted {
			continue
		}
		for _, f := range r.followers {
			k := followKey{f.id, r.to, f.et}
			perDevice[fmt.Sprintf("%v/%s", k, r.token)]++
			if perDevice[fmt.Sprintf("%v/%s", k, r.token)] > 1 {
				return fmt.Errorf("I2: the follow %v reached device %s twice", k, r.token)
			}
			if summaries[k] == nil {
				summaries[k] = map[string]bool{}
			}
			summaries[k][r.summary] = true
			if len(summaries[k]) > 1 {
				return fmt.Errorf("I2: the follow %v was pushed by more than one push: %v", k, slices.Sorted(maps.Keys(summaries[k])))
			}
			pair := [2]string{f.id, r.to}
			if !slices.Contains(reached[pair], f.et) {
				reached[pair] = append(reached[pair], f.et)
			}
		}
	}
	if cd := s.m.p.Cooldown.Milliseconds(); cd > 0 {
		for pair, ets := range reached {
			slices.Sort(ets)
			for i := 1; i < len(ets); i++ {
				if ets[i]-ets[i-1] < cd {
					return fmt.Errorf("I2: %s -> %s notified for follows at %d and %d, within the cooldown", pair[0], pair[1], ets[i-1], ets[i])
				}
			}
		}
	}
	return nil
}

// I3: no push for a follow whose later unfollow was answered before the
// push was attempted.
func (s *sim) checkI3() error {
	for _, r := range s.pushes {
		for _, f := range r.followers {
			for _, u := range s.unfollows {
				if u.from == f.id && u.to == r.to && u.et > f.et && u.step < r.step {
					return fmt.Errorf("I3: %s -> %s (follow at %d) committed to a push at action %d, after the unfollow at %d arrived at action %d",
						f.id, r.to, f.et, r.step, u.et, u.step)
				}
			}
		}
	}
	return nil
}

// I4: the counters tell the truth: the real handler's counts by result
// are the model's.
func (s *sim) checkI4() error {
	families, err := s.met.Gather()
	if err != nil {
		return err
	}
	got := map[string]map[string]int{"follow": {}, "digest": {}}
	for _, mf := range families {
		kind := map[string]string{"followpush_tasks_total": "follow", "followpush_digests_total": "digest"}[mf.GetName()]
		if kind == "" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && m.GetCounter().GetValue() > 0 {
					got[kind][l.GetValue()] = int(m.GetCounter().GetValue())
				}
			}
		}
	}
	if d := cmp.Diff(s.results, got); d != "" {
		return fmt.Errorf("I4: task results counted (-model +real):\n%s", d)
	}
	return nil
}

// shrink looks for a shorter history that still fails: it drops chunks of
// actions, halving the chunk size, as long as the run still fails.
func (e *modelEnv) shrink(h history, _ error) history {
	deadline := time.Now().Add(*modelShrink)
	for chunk := len(h.actions) / 2; chunk >= 1 && time.Now().Before(deadline); chunk /= 2 {
		for i := 0; i+chunk <= len(h.actions) && time.Now().Before(deadline); {
			c := h.without(i, i+chunk)
			if e.run(c) != nil {
				h = c
				continue
			}
			i += chunk
		}
	}
	return h
}
