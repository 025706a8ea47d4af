package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/followpush/followpush/tasks"
)

// Settings of the policies scenario.
const (
	policiesWindow = 2 * time.Second
	policiesUsers  = 300 // followees drawn Zipf from u0..u299 unless -users is given
	policiesWait   = 60 * time.Second
)

// policiesSpec is one run of the Zipf aggregation simulation.
type policiesSpec struct {
	load    loadSpec
	workers int
	window  time.Duration // AGGREGATION_WINDOW of the workers (at least 1s)
	users   int           // followees are drawn Zipf from u0..u{users-1}
	wait    time.Duration // longest wait after the last webhook for every window to close
}

// policies simulates Zipf-distributed followee popularity with aggregation
// on: follows from distinct followers at a fixed rate, workers running
// with AGGREGATION_WINDOW; after the queue is idle and every window has
// closed it compares follows with pushes, per followee and in delay
// (see [tallyPolicies]). Lost, duplicated or misattributed follows are
// correctness failures.
func (h *harness) policies(ctx context.Context, ps policiesSpec) error {
	if err := h.fresh(ctx); err != nil {
		return err
	}
	spec, workers, window, users := ps.load, ps.workers, ps.window, ps.users
	if err := registerDevices(ctx, h.base, users, h.o.concurrency); err != nil {
		return err
	}
	h.registered = users >= h.o.users
	h.sink.reset(0)
	conns0 := h.sink.conns.Load()

	policy := map[string]string{"AGGREGATION_WINDOW": window.String(), "AGGREGATION_FIRST_IMMEDIATE": "true"}
	saved := map[string]*string{}
	for k, v := range policy {
		if old, ok := h.st.env[k]; ok {
			saved[k] = &old
		} else {
			saved[k] = nil
		}
		h.st.env[k] = v
	}
	ws, err := h.st.startWorkers(ctx, workers, h.insp)
	for k, old := range saved {
		if old == nil {
			delete(h.st.env, k)
		} else {
			h.st.env[k] = *old
		}
	}
	stopAll := func(err error) error {
		for _, w := range ws {
			if serr := h.st.stop(w); serr != nil && err == nil {
				err = serr
			}
		}
		return err
	}
	if err != nil {
		return stopAll(err)
	}

	gen := &generator{base: h.base, pop: population{users: users, dist: "zipf", zipfS: h.o.zipfS}, seed: h.o.seed}
	h.rep.markNoise()
	name := fmt.Sprintf("policies: %d workers, window %s, Zipf s=%g over %d users", workers, window, h.o.zipfS, users)
	h.logf("%s: %v", name, spec)
	meter := h.cpu(ws)
	res, err := gen.run(ctx, spec)
	if err != nil {
		return stopAll(err)
	}
	st := res.stats()
	h.webhookFailures(name, st)
	h.logf("%s: %d/%d webhooks OK, %s follows/s", name, st.OK, st.Sent, num(st.FollowsPerS))

	idle, waited, err := h.waitWindowsClosed(ctx, ps.wait)
	cores := meter.cores()
	if err = stopAll(err); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if !idle {
		h.rep.fail("%s: queue not idle or windows still open %s after the last webhook", name, ps.wait)
	}

	var follows, maybe []policyFollow
	for _, s := range res.Sent {
		for _, u := range s.To {
			f := policyFollow{from: s.From, to: userID(u), eventTime: s.EventTime}
			if s.OK {
				follows = append(follows, f)
			} else {
				maybe = append(maybe, f)
			}
		}
	}
	reqs := h.sink.sent()
	t := tallyPolicies(follows, maybe, reqs)

	// top-5 followees by follows against the median followed one
	type fe struct {
		to             string
		follows, pushs int
	}
	var list []fe
	for to, n := range t.followsTo {
		list = append(list, fe{to, n, t.pushesTo[to]})
	}
	slices.SortFunc(list, func(a, b fe) int {
		if a.follows != b.follows {
			return b.follows - a.follows
		}
		return strings.Compare(a.to, b.to)
	})
	var top []string
	topData := []map[string]any{}
	for _, x := range list[:min(5, len(list))] {
		top = append(top, fmt.Sprintf("%s %d→%d", x.to, x.follows, x.pushs))
		topData = append(topData, map[string]any{"followee": x.to, "follows": x.follows, "pushes": x.pushs})
	}
	var med fe
	if len(list) > 0 {
		med = list[len(list)/2]
	}

	ratio := 0.0
	if t.Follows > 0 {
		ratio = float64(t.Pushes) / float64(t.Follows)
	}
	h.rep.phase(phaseRecord{Name: name, Spec: &spec, Load: &st, Workers: workers, Cores: cores, SinkConns: h.sink.conns.Load() - conns0,
		Extra: map[string]any{"aggregation_window": window.String(), "users": users, "zipf_s": h.o.zipfS, "waited_after_load": waited.String(), "tally": t}})
	h.logf("%s: %d follows → %d pushes (%d summaries); delay over all follows %v; idle after %s", name, t.Follows, t.Pushes, t.Summaries, t.Delay, waited.Round(time.Millisecond))

	sec := "policies"
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("follows received (webhooks answered 200: %v; %d followees of %d users)",
		spec, t.Followees, users), Value: strconv.Itoa(t.Follows), Data: map[string]any{"follows": t.Follows, "followees": t.Followees}})
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("pushes sent (FCM sink requests; %d summaries), AGGREGATION_WINDOW %s, %d workers", t.Summaries, window, workers),
		Value: strconv.Itoa(t.Pushes), Ratio: fmt.Sprintf("%.3f", ratio), Baseline: fmt.Sprintf("%d (one per follow)", t.Follows),
		Data: map[string]any{"pushes": t.Pushes, "summaries": t.Summaries, "ratio": ratio}})
	h.rep.add(row{Section: sec, Figure: "pushes per followee: top-5 most-followed (follows→pushes)", Value: strings.Join(top, ", "), Data: map[string]any{"top": topData}})
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("pushes per followee: median followee (of %d followed)", len(list)),
		Value: fmt.Sprintf("%s %d→%d", med.to, med.follows, med.pushs), Data: map[string]any{"follows": med.follows, "pushes": med.pushs}})
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("delay, all follows: EventTime → the push that delivered it (%d of %d follows; %d delivered by none)", t.Delay.N, t.Follows, t.Uncovered),
		Value: fmt.Sprintf("p50 %s / p90 %s / p99 %s / max %s ms", num(t.Delay.P50ms), num(t.Delay.P90ms), num(t.Delay.P99ms), num(t.Delay.MaxMs)),
		Data:  map[string]any{"latency": t.Delay, "uncovered": t.Uncovered}})
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("delay, %d follows named in a push (first push naming the follower)", t.Named),
		Value: t.DelayNamed.String(), Data: map[string]any{"latency": t.DelayNamed, "named": t.Named}})
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("delay, %d follows only counted (first push to the followee with event_time ≥ the follow's)", t.CountOnly),
		Value: t.DelayCountOnly.String(), Data: map[string]any{"latency": t.DelayCountOnly, "count_only": t.CountOnly}})

	check := func(ok bool, figure, value, failure string, args ...any) {
		if !ok {
			h.rep.fail("%s: "+failure, append([]any{name}, args...)...)
		}
		h.rep.add(row{Section: "correctness", Figure: name + ": " + figure, Value: value, Verdict: verdict(ok)})
	}
	check(t.Silent == 0, "every followee with ≥1 follow got ≥1 push",
		fmt.Sprintf("%d of %d without a push", t.Silent, t.Followees), "%d followees with follows got no push", t.Silent)
	check(t.Unexpected == 0, "no push for followees with no follows",
		fmt.Sprintf("%d unexpected", t.Unexpected), "%d pushes to followees with no follow", t.Unexpected)
	check(t.Lost == 0 && t.Uncovered == 0, "no loss: per followee, the pushes' counts (count of a summary, 1 per single push) sum up every follow",
		fmt.Sprintf("%d follows lost at %d followees; %d follows with no push to their followee at or after their EventTime", t.Lost, t.LostFollowees, t.Uncovered),
		"%d follows lost at %d followees (pushes counted fewer than followed), %d follows delivered by no push", t.Lost, t.LostFollowees, t.Uncovered)
	check(t.Extra == 0 && t.NamedTwice == 0, "no duplicates: no followee counted beyond its follows, no follower named by two pushes",
		fmt.Sprintf("%d follows over-counted at %d followees; %d followers named twice", t.Extra, t.ExtraFollowees, t.NamedTwice),
		"%d follows over-counted at %d followees, %d followers named by more than one push", t.Extra, t.ExtraFollowees, t.NamedTwice)
	check(t.Foreign == 0, "pushes name only followers of that followee",
		fmt.Sprintf("%d named a follower not of that followee", t.Foreign), "%d pushes named a follower not of that followee", t.Foreign)
	return nil
}

// policyFollow is one follow sent to the receiver.
type policyFollow struct {
	from, to  string
	eventTime int64 // ms
}

// policyTally compares the follows of a policies run with the pushes the
// sink received.
type policyTally struct {
	Follows   int `json:"follows"`   // follows answered 200
	Followees int `json:"followees"` // users with at least one of them
	Pushes    int `json:"pushes"`    // sink requests
	Summaries int `json:"summaries"` // pushes with a count
	// Unexpected pushes went to a user nobody followed; Foreign ones name
	// a follower who did not follow that user; Silent followees got no push.
	Unexpected int `json:"unexpected"`
	Foreign    int `json:"foreign"`
	Silent     int `json:"silent"`
	// Lost is the sum over followees of follows minus the followers their
	// pushes count (count of a summary, 1 per single push), where that is
	// positive, at LostFollowees followees; Extra and ExtraFollowees are the
	// same for counts beyond the follows (beyond the follows of webhooks not
	// answered 200, which may or may not have been stored).
	Lost           int `json:"lost"`
	LostFollowees  int `json:"lost_followees"`
	Extra          int `json:"extra"`
	ExtraFollowees int `json:"extra_followees"`
	// NamedTwice are followers named by more than one push.
	NamedTwice int `json:"named_twice"`
	// Named follows are delivered by the first push naming their follower;
	// CountOnly ones (summed up in a summary's count past its list of
	// names) by the first push to their followee whose event_time (a
	// summary's: its newest follow's) is at or after their own EventTime.
	// Uncovered follows have neither.
	Named     int `json:"named"`
	CountOnly int `json:"count_only"`
	Uncovered int `json:"uncovered"`
	// Delay is follow EventTime → its push received by the sink, over every
	// delivered follow; DelayNamed and DelayCountOnly split it.
	Delay          latencyStats `json:"delay"`
	DelayNamed     latencyStats `json:"delay_named"`
	DelayCountOnly latencyStats `json:"delay_count_only"`

	followsTo map[string]int // per followee
	pushesTo  map[string]int
}

// tallyPolicies compares follows (of webhooks answered 200) and maybe
// (follows of the others, which may or may not have been stored) with the
// pushes the sink received, whose data is a single follow's or a summary's
// (see notifier.DigestMessage). Every follower is new in a run, so a
// follower names its follow.
func tallyPolicies(follows, maybe []policyFollow, pushes []sentPush) policyTally {
	t := policyTally{Follows: len(follows), Pushes: len(pushes), followsTo: map[string]int{}, pushesTo: map[string]int{}}
	maybeTo := map[string]int{}
	followeeOf := map[string]string{}
	for _, f := range maybe {
		maybeTo[f.to]++
		followeeOf[f.from] = f.to
	}
	for _, f := range follows {
		t.followsTo[f.to]++
		followeeOf[f.from] = f.to
	}
	t.Followees = len(t.followsTo)

	// pushes per followee in the order they arrived
	type arrived struct {
		at        time.Time
		eventTime int64
	}
	byTo := map[string][]arrived{}
	counted := map[string]int{}
	namedAt := map[string]time.Time{} // follower -> first push naming it
	namedBy := map[string]int{}       // follower -> pushes naming it
	for _, p := range pushes {
		to := p.data["to_account"]
		t.pushesTo[to]++
		if t.followsTo[to] == 0 && maybeTo[to] == 0 {
			t.Unexpected++
		}
		et, err := strconv.ParseInt(p.data["event_time"], 10, 64)
		if err != nil {
			et = -1 // delivers nothing by its time
		}
		byTo[to] = append(byTo[to], arrived{p.received, et})
		var named []string
		n := 1
		if c, ok := p.data["count"]; ok {
			t.Summaries++
			n, _ = strconv.Atoi(c)
			_ = json.Unmarshal([]byte(p.data["from_accounts"]), &named)
		} else if from := p.data["from_account"]; from != "" {
			named = []string{from}
		}
		counted[to] += n
		foreign := false
		for _, f := range slices.Compact(slices.Sorted(slices.Values(named))) {
			if followeeOf[f] != to {
				foreign = true
				continue
			}
			namedBy[f]++
			if at, ok := namedAt[f]; !ok || p.received.Before(at) {
				namedAt[f] = p.received
			}
		}
		if foreign {
			t.Foreign++
		}
	}
	for to := range byTo {
		slices.SortStableFunc(byTo[to], func(a, b arrived) int { return a.at.Compare(b.at) })
	}
	for _, n := range namedBy {
		if n > 1 {
			t.NamedTwice++
		}
	}

	for to, n := range t.followsTo {
		if t.pushesTo[to] == 0 {
			t.Silent++
		}
		if c := counted[to]; c < n {
			t.Lost += n - c
			t.LostFollowees++
		}
	}
	for to, c := range counted {
		// a followee nobody followed is an unexpected push, not an over-count
		if n, m := t.followsTo[to], maybeTo[to]; n+m > 0 && c > n+m {
			t.Extra += c - n - m
			t.ExtraFollowees++
		}
	}

	var all, named, countOnly []time.Duration
	for _, f := range follows {
		sent := time.UnixMilli(f.eventTime)
		if at, ok := namedAt[f.from]; ok {
			t.Named++
			named = append(named, at.Sub(sent))
			all = append(all, at.Sub(sent))
			continue
		}
		i := slices.IndexFunc(byTo[f.to], func(a arrived) bool { return a.eventTime >= f.eventTime })
		if i < 0 {
			t.Uncovered++
			continue
		}
		t.CountOnly++
		d := byTo[f.to][i].at.Sub(sent)
		countOnly = append(countOnly, d)
		all = append(all, d)
	}
	t.Delay, t.DelayNamed, t.DelayCountOnly = latencies(all), latencies(named), latencies(countOnly)
	return t
}

// waitWindowsClosed polls until the follow queue (follow and scheduled
// digest tasks) is empty and no followee has an aggregation window open,
// for at most limit. It reports whether that happened and how long it took.
func (h *harness) waitWindowsClosed(ctx context.Context, limit time.Duration) (bool, time.Duration, error) {
	start := time.Now()
	for {
		size := 0
		qi, err := h.insp.GetQueueInfo(tasks.QueueFollow)
		if err == nil {
			size = qi.Size
		}
		open := 0
		if size == 0 {
			// A window is open while its due time is ahead or followers
			// wait in its pending set (delivery's admit script); an expired
			// one with nobody pending stays as a key but is closed.
			now := time.Now().UnixMilli()
			iter := h.redis.rdb.Scan(ctx, 0, "*{ag:*}:win", 1000).Iterator()
			for iter.Next(ctx) {
				win := iter.Val()
				due, _ := h.redis.rdb.HGet(ctx, win, "due").Int64()
				pending, _ := h.redis.rdb.ZCard(ctx, strings.TrimSuffix(win, ":win")).Result()
				if due > now || pending > 0 {
					open++
				}
			}
			if err := iter.Err(); err != nil {
				return false, time.Since(start), fmt.Errorf("scan windows: %w", err)
			}
			if open == 0 {
				return true, time.Since(start), nil
			}
		}
		if p := h.st.exited(); p != nil {
			return false, time.Since(start), fmt.Errorf("%s exited (%v):\n%s", p.Name, p.ExitErr(), tail(p.Output(), 20))
		}
		if time.Since(start) > limit {
			h.logf("policies: still %d queued, %d windows open after %s", size, open, limit)
			return false, time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return false, time.Since(start), ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
