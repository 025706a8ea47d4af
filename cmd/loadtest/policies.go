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

// policies simulates Zipf-distributed followee popularity with aggregation
// on: follows from distinct followers at a fixed rate, workers running
// with AGGREGATION_WINDOW; after the queue is idle and every window has
// closed it compares follows with pushes, per followee and in delay.
func (h *harness) policies(ctx context.Context, spec loadSpec, workers int) error {
	if err := h.fresh(ctx); err != nil {
		return err
	}
	users := pick(h, "users", h.o.users, policiesUsers)
	if err := registerDevices(ctx, h.base, users, h.o.concurrency); err != nil {
		return err
	}
	h.registered = users >= h.o.users
	h.sink.reset(0)
	conns0 := h.sink.conns.Load()

	policy := map[string]string{"AGGREGATION_WINDOW": policiesWindow.String(), "AGGREGATION_FIRST_IMMEDIATE": "true"}
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
	name := fmt.Sprintf("policies: %d workers, window %s, Zipf s=%g over %d users", workers, policiesWindow, h.o.zipfS, users)
	h.logf("%s: %v", name, spec)
	meter := h.cpu(ws)
	res, err := gen.run(ctx, spec)
	if err != nil {
		return stopAll(err)
	}
	st := res.stats()
	h.webhookFailures(name, st)
	h.logf("%s: %d/%d webhooks OK, %s follows/s", name, st.OK, st.Sent, num(st.FollowsPerS))

	idle, waited, err := h.waitWindowsClosed(ctx, policiesWait)
	cores := meter.cores()
	if err = stopAll(err); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if !idle {
		h.rep.fail("%s: queue not idle or windows still open %s after the last webhook", name, policiesWait)
	}

	// follows answered 200, by followee; each follower is new, so the
	// follower names the follow.
	follows := map[string]int{}
	eventTime := map[string]int64{} // follower -> EventTime ms
	followeeOf := map[string]string{}
	for _, s := range res.Sent {
		if !s.OK {
			continue
		}
		for _, u := range s.To {
			follows[userID(u)]++
			eventTime[s.From] = s.EventTime
			followeeOf[s.From] = userID(u)
		}
	}
	nFollows := 0
	for _, n := range follows {
		nFollows += n
	}

	// pushes, by followee; the first push naming each follower.
	pushes := map[string]int{}
	counted := map[string]int{} // followee -> followers summed up by its pushes
	covered := map[string]time.Time{}
	var unexpected, summaries, foreign int
	reqs := h.sink.sent()
	for _, r := range reqs {
		data := r.data
		to := data["to_account"]
		pushes[to]++
		if follows[to] == 0 {
			unexpected++
		}
		var named []string
		n := 1
		if c, ok := data["count"]; ok {
			summaries++
			n, _ = strconv.Atoi(c)
			_ = json.Unmarshal([]byte(data["from_accounts"]), &named)
		} else if from := data["from_account"]; from != "" {
			named = []string{from}
		}
		counted[to] += n
		for _, f := range named {
			if followeeOf[f] != to {
				foreign++
				continue
			}
			if t, ok := covered[f]; !ok || r.received.Before(t) {
				covered[f] = r.received
			}
		}
	}
	var delays []time.Duration
	for f, t := range covered {
		delays = append(delays, t.Sub(time.UnixMilli(eventTime[f])))
	}
	lat := latencies(delays)
	countOnly := nFollows - len(covered)
	missing, accounted := 0, 0
	for to, n := range follows {
		if pushes[to] == 0 {
			missing++
		}
		accounted += min(counted[to], n)
	}

	// top-5 followees by follows against the median followed one
	type fe struct {
		to             string
		follows, pushs int
	}
	var list []fe
	for to, n := range follows {
		list = append(list, fe{to, n, pushes[to]})
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
	if nFollows > 0 {
		ratio = float64(len(reqs)) / float64(nFollows)
	}
	h.rep.phase(phaseRecord{Name: name, Spec: &spec, Load: &st, Workers: workers, Cores: cores, SinkConns: h.sink.conns.Load() - conns0,
		Extra: map[string]any{"aggregation_window": policiesWindow.String(), "users": users, "zipf_s": h.o.zipfS, "waited_after_load": waited.String()}})
	h.logf("%s: %d follows → %d pushes (%d summaries); delay %v; idle after %s", name, nFollows, len(reqs), summaries, lat, waited.Round(time.Millisecond))

	sec := "policies"
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("follows received (webhooks × 1 followee answered 200, %g/s offered for %s; %d followees of %d users)",
		spec.Rate, spec.Duration, len(follows), users), Value: strconv.Itoa(nFollows), Data: map[string]any{"follows": nFollows, "followees": len(follows)}})
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("pushes sent (FCM sink requests; %d summaries), AGGREGATION_WINDOW %s, %d workers", summaries, policiesWindow, workers),
		Value: strconv.Itoa(len(reqs)), Ratio: fmt.Sprintf("%.3f", ratio), Baseline: fmt.Sprintf("%d (one per follow)", nFollows),
		Data: map[string]any{"pushes": len(reqs), "summaries": summaries, "ratio": ratio}})
	h.rep.add(row{Section: sec, Figure: "pushes per followee: top-5 most-followed (follows→pushes)", Value: strings.Join(top, ", "), Data: map[string]any{"top": topData}})
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("pushes per followee: median followee (of %d followed)", len(list)),
		Value: fmt.Sprintf("%s %d→%d", med.to, med.follows, med.pushs), Data: map[string]any{"follows": med.follows, "pushes": med.pushs}})
	h.rep.add(row{Section: sec, Figure: fmt.Sprintf("follow EventTime → first push naming it (%d of %d follows named; %d covered only by a summary's count)", len(covered), nFollows, countOnly),
		Value: lat.String(), Data: map[string]any{"latency": lat, "named": len(covered), "count_only": countOnly}})

	okAll := missing == 0
	if !okAll {
		h.rep.fail("%s: %d followees with follows got no push", name, missing)
	}
	h.rep.add(row{Section: "correctness", Figure: name + ": every followee with ≥1 follow got ≥1 push",
		Value: fmt.Sprintf("%d of %d without a push", missing, len(follows)), Verdict: verdict(okAll)})
	if unexpected > 0 {
		h.rep.fail("%s: %d pushes to followees with no follow", name, unexpected)
	}
	h.rep.add(row{Section: "correctness", Figure: name + ": no push for followees with no follows",
		Value: fmt.Sprintf("%d unexpected", unexpected), Verdict: verdict(unexpected == 0)})
	h.rep.add(row{Section: "correctness", Figure: name + ": follows summed up by pushes (count of summaries, 1 per single push)",
		Value:   fmt.Sprintf("%d of %d (%d pushes named a follower not of that followee)", accounted, nFollows, foreign),
		Verdict: verdict(accounted == nFollows && foreign == 0)})
	return nil
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
