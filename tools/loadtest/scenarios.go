package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/tasks"
)

// scenario runs one named scenario with its documented parameters, as
// overridden by the flags.
func (h *harness) scenario(ctx context.Context, name string) error {
	switch name {
	case "ingest":
		lat := make([]loadSpec, 0, len(h.o.ingestRates))
		rates := h.o.ingestRates
		if h.o.set["rate"] {
			rates = []float64{h.o.rate}
		}
		for _, r := range rates {
			lat = append(lat, h.spec(loadSpec{Rate: r, Followees: 10, Duration: 10 * time.Second}, "rate"))
		}
		return h.ingest(ctx, h.spec(loadSpec{Followees: 10, Count: 3000}, "rate"), lat, true)
	case "growth":
		return h.growth(ctx, h.o.growthSizes, h.spec(loadSpec{Rate: h.o.growthRate, Duration: 5 * time.Second}, "followees"), true)
	case "process":
		return h.process(ctx, h.o.processTasks, true)
	case "scaling":
		return h.scaling(ctx, h.o.processTasks, h.o.scalingWorkers, pick(h, "sink-latency", h.o.sinkLatency, 50*time.Millisecond), true)
	case "e2e":
		return h.e2e(ctx, h.spec(loadSpec{Rate: h.o.e2eRate, Followees: 1, Duration: 20 * time.Second}),
			pick(h, "workers", h.o.workers, 2), pick(h, "sink-latency", h.o.sinkLatency, 0), true)
	case "policies":
		return h.policies(ctx, policiesSpec{load: h.spec(loadSpec{Rate: 300, Followees: 1, Duration: 10 * time.Second}, "followees"),
			workers: pick(h, "workers", h.o.workers, 2), window: policiesWindow, users: pick(h, "users", h.o.users, policiesUsers), wait: policiesWait})
	case "smoke":
		return h.smoke(ctx)
	}
	return fmt.Errorf("unknown scenario %q", name)
}

// smoke runs every scenario tiny (policies with the shortest window
// AGGREGATION_WINDOW allows, 1s): it shows that the harness and the
// product work end to end, not how fast.
func (h *harness) smoke(ctx context.Context) error {
	if err := h.ingest(ctx, loadSpec{Concurrency: 8, Followees: 4, Count: 50},
		[]loadSpec{{Rate: 100, Concurrency: 8, Followees: 4, Count: 50}}, false); err != nil {
		return err
	}
	if err := h.growth(ctx, []int{1, 20}, loadSpec{Rate: 50, Concurrency: 8, Count: 20}, false); err != nil {
		return err
	}
	if err := h.process(ctx, 300, false); err != nil {
		return err
	}
	if err := h.scaling(ctx, 200, []int{1, 2}, 10*time.Millisecond, false); err != nil {
		return err
	}
	if err := h.e2e(ctx, loadSpec{Rate: 100, Concurrency: 8, Followees: 3, Count: 100}, 2, 0, false); err != nil {
		return err
	}
	// 300 follows in about a second to 50 users: the most followed get
	// summaries past their list of names, so both delay paths and the
	// per-followee loss check run.
	return h.policies(ctx, policiesSpec{load: loadSpec{Rate: 300, Concurrency: 8, Followees: 1, Count: 300},
		workers: 2, window: time.Second, users: 50, wait: 30 * time.Second})
}

// webhookFailures records failed webhooks: a correctness failure in the
// smoke run, a figure otherwise (an overloaded receiver answering 503 is
// the product working as documented).
func (h *harness) webhookFailures(phase string, st loadStats) {
	if st.Failed == 0 {
		return
	}
	if h.o.scenario == "smoke" {
		h.rep.fail("%s: %d of %d webhooks not answered 200 OK (first: %s)", phase, st.Failed, st.Sent, st.FirstFailure)
		return
	}
	h.rep.add(row{Section: "correctness", Figure: phase + ": webhooks not answered 200 OK", Value: fmt.Sprintf("%d of %d", st.Failed, st.Sent),
		Data: map[string]any{"first": st.FirstFailure}})
}

// ingest measures the receiver alone (no workers): followee tasks stored
// per second at full speed against bare asynq enqueue of as many tasks,
// then webhook latency at fixed offered rates.
func (h *harness) ingest(ctx context.Context, thr loadSpec, lat []loadSpec, targets bool) error {
	if err := h.fresh(ctx); err != nil {
		return err
	}
	mem0, err := h.redis.usedMemory(ctx)
	if err != nil {
		return err
	}
	h.rep.markNoise()
	name := "ingest: max rate, no workers"
	_, st, err := h.send(ctx, name, thr, nil)
	if err != nil {
		return err
	}
	h.webhookFailures(name, st)
	mem1, err := h.redis.usedMemory(ctx)
	if err != nil {
		return err
	}
	pending, err := h.pendingFollows()
	if err != nil {
		return err
	}
	stored := st.OK * thr.Followees
	if pending != stored {
		h.rep.fail("%s: %d follows accepted but %d tasks pending in Redis", name, stored, pending)
	}
	if pending > 0 && h.bytesPerTask == 0 {
		h.bytesPerTask, h.bytesPerTaskFrom = float64(mem1-mem0)/float64(pending), fmt.Sprintf("%d stored by the receiver", pending)
	}

	if err := h.fresh(ctx); err != nil {
		return err
	}
	g := h.o.baselineGoroutines
	if g == 0 {
		g = thr.Concurrency
	}
	n := max(stored, 100)
	if err := h.settle(ctx); err != nil {
		return err
	}
	h.logf("baseline: bare asynq enqueue of %d tasks from %d goroutines", n, g)
	meter := h.cpu(nil)
	bare, err := bareEnqueue(ctx, h.redis, n, g)
	if err != nil {
		return fmt.Errorf("bare enqueue: %w", err)
	}
	cores := meter.cores()
	calls, callsText := meter.redisCalls(ctx, n)
	h.rep.phase(phaseRecord{Name: "baseline: bare asynq enqueue", Cores: cores, RedisCalls: calls, RedisCallsText: callsText,
		Extra: map[string]any{"tasks": n, "goroutines": g, "tasks_per_s": bare}})
	h.logf("baseline: %s tasks/s", num(bare))
	ratio := st.FollowsPerS / bare
	r := row{Section: "ingest", Figure: fmt.Sprintf("followee-tasks/s via receiver (%d webhooks × %d followees, concurrency %d)", st.OK, thr.Followees, thr.Concurrency),
		Value: num(st.FollowsPerS), Baseline: fmt.Sprintf("%s (bare enqueue, %d goroutines)", num(bare), g), Ratio: fmt.Sprintf("%.2f", ratio),
		Data: map[string]any{"follows_per_s": st.FollowsPerS, "bare_per_s": bare, "ratio": ratio, "webhooks_per_s": st.WebhooksPerS}}
	if targets {
		r.Target, r.Verdict = "≥ 0.9 × bare", verdict(ratio >= 0.9)
	}
	h.rep.add(r)
	h.rep.add(row{Section: "ingest", Figure: "webhook latency at max rate (closed loop)", Value: st.Latency.String()})

	for _, spec := range lat {
		if err := h.fresh(ctx); err != nil {
			return err
		}
		h.rep.markNoise()
		name := fmt.Sprintf("ingest: %g webhooks/s × %d", spec.Rate, spec.Followees)
		h.windowTarget = 10 * time.Millisecond
		_, st, err := h.send(ctx, name, spec, nil)
		if err != nil {
			return err
		}
		h.webhookFailures(name, st)
		r := row{Section: "ingest", Figure: fmt.Sprintf("webhook latency, offered %g/s × %d followees (achieved %s/s, %d sent)", spec.Rate, spec.Followees, num(st.WebhooksPerS), st.Sent),
			Value: st.Latency.String(), Data: map[string]any{"latency": st.Latency, "offered": spec.Rate, "achieved": st.WebhooksPerS}}
		if targets && spec.Followees == 10 && spec.Rate >= 1000 {
			r.Target, r.Verdict = "p99 ≤ 10 ms", verdict(st.Latency.P99ms <= 10 && st.WebhooksPerS >= 0.95*spec.Rate)
		}
		h.rep.add(r)
		if w := st.Windows.String(); w != "" {
			h.rep.add(row{Section: "ingest", Figure: "  same, by 1-s window", Value: w})
		}
	}
	return nil
}

// growth measures webhook latency by FollowList size at one offered rate.
func (h *harness) growth(ctx context.Context, sizes []int, base loadSpec, targets bool) error {
	var p99one float64
	for _, n := range sizes {
		if err := h.fresh(ctx); err != nil {
			return err
		}
		spec := base
		spec.Followees = n
		h.rep.markNoise()
		name := fmt.Sprintf("growth: FollowList %d", n)
		_, st, err := h.send(ctx, name, spec, nil)
		if err != nil {
			return err
		}
		h.webhookFailures(name, st)
		r := row{Section: "growth", Figure: fmt.Sprintf("webhook latency, FollowList %d at %g webhooks/s (achieved %s/s)", n, spec.Rate, num(st.WebhooksPerS)),
			Value: st.Latency.String(), Data: map[string]any{"latency": st.Latency, "followees": n}}
		if n == 1 {
			p99one = st.Latency.P99ms
		} else if p99one > 0 {
			ratio := st.Latency.P99ms / p99one
			r.Baseline, r.Ratio = fmt.Sprintf("p99 %s ms (FollowList 1)", num(p99one)), fmt.Sprintf("%.2f", ratio)
			r.Data["ratio_p99_to_1"] = ratio
			if targets && n == 20 {
				r.Target, r.Verdict = "p99 ≤ 3 × FollowList 1", verdict(ratio <= 3)
			}
		}
		h.rep.add(r)
	}
	return nil
}

// preload empties Redis, registers the population's devices and stores n
// follow tasks; it records Redis memory per pending task.
func (h *harness) preload(ctx context.Context, n int) (map[followKey]time.Time, error) {
	if err := h.fresh(ctx); err != nil {
		return nil, err
	}
	if err := h.ensureDevices(ctx); err != nil {
		return nil, err
	}
	mem0, err := h.redis.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	expected, rate, err := preloadFollows(ctx, h.redis, h.gen, n)
	if err != nil {
		return nil, fmt.Errorf("preload: %w", err)
	}
	mem1, err := h.redis.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	h.bytesPerTask, h.bytesPerTaskFrom = float64(mem1-mem0)/float64(n), fmt.Sprintf("%d preloaded", n)
	h.logf("preloaded %d follow tasks at %s/s; Redis +%s", n, num(rate), mib(mem1-mem0))
	return expected, nil
}

// drain starts k workers with the follow queue paused, unpauses it and
// waits until every preloaded follow was pushed; it checks that each
// produced exactly one push.
func (h *harness) drain(ctx context.Context, name string, expected map[followKey]time.Time, k int, latency time.Duration) (delivery, error) {
	if err := h.insp.PauseQueue(tasks.QueueFollow); err != nil {
		return delivery{}, fmt.Errorf("pause queue: %w", err)
	}
	h.sink.reset(latency)
	conns0 := h.sink.conns.Load()
	ws, err := h.st.startWorkers(ctx, k, h.insp)
	if err != nil {
		return delivery{}, err
	}
	if err := h.settle(ctx); err != nil {
		return delivery{}, err
	}
	h.logf("%s: %d follow tasks", name, len(expected))
	meter := h.cpu(ws)
	start := time.Now()
	if err := h.insp.UnpauseQueue(tasks.QueueFollow); err != nil {
		return delivery{}, fmt.Errorf("unpause queue: %w", err)
	}
	qi, cores, calls, callsText, err := h.drainAndStop(ctx, ws, meter, len(expected))
	if err != nil {
		return delivery{}, fmt.Errorf("%s: %w", name, err)
	}
	d := matchPushes(expected, nil, h.sink.pushes(), start, false)
	h.rep.phase(phaseRecord{Name: name, Delivery: &d, Workers: k, SinkMs: ms(latency), Cores: cores,
		SinkConns: h.sink.conns.Load() - conns0, RedisCalls: calls, RedisCallsText: callsText, Extra: map[string]any{"archived": qi.Archived}})
	h.logf("%s: %s pushes/s; %v", name, num(d.PushesPerS), d)
	if !d.ok() {
		h.rep.fail("%s: %v", name, d)
	}
	if qi.Archived > 0 {
		h.rep.fail("%s: %d tasks archived (failed for good)", name, qi.Archived)
	}
	return d, nil
}

// process measures one worker draining preloaded follow tasks with an
// instant FCM, against bare asynq no-op processing of as many tasks.
func (h *harness) process(ctx context.Context, n int, targets bool) error {
	expected, err := h.preload(ctx, n)
	if err != nil {
		return err
	}
	h.rep.markNoise()
	name := "process: 1 worker, 0 ms sink"
	d, err := h.drain(ctx, name, expected, 1, 0)
	if err != nil {
		return err
	}
	if err := h.fresh(ctx); err != nil {
		return err
	}
	if err := h.settle(ctx); err != nil {
		return err
	}
	h.logf("baseline: bare asynq no-op processing of %d tasks, concurrency %d, poll %s", n, h.workerConcurrency, h.pollInterval)
	var meter *cpuMeter
	bare, err := bareProcess(ctx, h.redis, n, h.workerConcurrency, h.pollInterval, func() { meter = h.cpu(nil) })
	if err != nil {
		return fmt.Errorf("bare processing: %w", err)
	}
	cores := meter.cores()
	calls, callsText := meter.redisCalls(ctx, n)
	h.rep.phase(phaseRecord{Name: "baseline: bare asynq no-op processing", Cores: cores, RedisCalls: calls, RedisCallsText: callsText,
		Extra: map[string]any{"tasks": n, "tasks_per_s": bare}})
	h.logf("baseline: %s tasks/s", num(bare))
	ratio := d.PushesPerS / bare
	r := row{Section: "process", Figure: fmt.Sprintf("pushes/s, 1 worker (concurrency %d), 0 ms sink, %d preloaded", h.workerConcurrency, n),
		Value: num(d.PushesPerS), Baseline: fmt.Sprintf("%s (bare no-op asynq server)", num(bare)), Ratio: fmt.Sprintf("%.2f", ratio),
		Data: map[string]any{"pushes_per_s": d.PushesPerS, "bare_per_s": bare, "ratio": ratio}}
	if targets {
		r.Target, r.Verdict = "≥ 0.8 × bare", verdict(ratio >= 0.8)
	}
	h.rep.add(r)
	h.rep.add(row{Section: "correctness", Figure: name, Value: d.String(), Verdict: verdict(d.ok())})
	return nil
}

// scaling measures pushes/s with a slow FCM for several worker counts.
func (h *harness) scaling(ctx context.Context, n int, workers []int, latency time.Duration, targets bool) error {
	var one float64
	for _, k := range workers {
		expected, err := h.preload(ctx, n)
		if err != nil {
			return err
		}
		h.rep.markNoise()
		name := fmt.Sprintf("scaling: %d worker(s), %s sink", k, latency)
		d, err := h.drain(ctx, name, expected, k, latency)
		if err != nil {
			return err
		}
		r := row{Section: "scaling", Figure: fmt.Sprintf("pushes/s, %d worker(s), %s sink latency, %d preloaded", k, latency, n),
			Value: num(d.PushesPerS), Data: map[string]any{"pushes_per_s": d.PushesPerS, "workers": k}}
		if k == 1 {
			one = d.PushesPerS
			ideal := float64(h.workerConcurrency) / latency.Seconds()
			r.Baseline = fmt.Sprintf("%s (concurrency/latency)", num(ideal))
			r.Ratio = fmt.Sprintf("%.2f", d.PushesPerS/ideal)
		} else if one > 0 {
			ratio := d.PushesPerS / (float64(k) * one)
			r.Baseline, r.Ratio = fmt.Sprintf("%s (%d × 1 worker)", num(float64(k)*one), k), fmt.Sprintf("%.2f", ratio)
			r.Data["linearity"] = ratio
			if targets {
				r.Target, r.Verdict = "near-linear (≥ 0.8)", verdict(ratio >= 0.8)
			}
		}
		h.rep.add(r)
		h.rep.add(row{Section: "correctness", Figure: name, Value: d.String(), Verdict: verdict(d.ok())})
	}
	return nil
}

// e2e sends webhooks at a fixed rate with workers running and measures
// webhook sent -> FCM request received for every follow.
func (h *harness) e2e(ctx context.Context, spec loadSpec, workers int, latency time.Duration, targets bool) error {
	if err := h.fresh(ctx); err != nil {
		return err
	}
	if err := h.ensureDevices(ctx); err != nil {
		return err
	}
	h.sink.reset(latency)
	conns0 := h.sink.conns.Load()
	ws, err := h.st.startWorkers(ctx, workers, h.insp)
	if err != nil {
		return err
	}
	h.rep.markNoise()
	name := fmt.Sprintf("e2e: %d workers, %s sink", workers, latency)
	meter := h.cpu(ws)
	h.windowTarget = 30 * time.Millisecond
	res, st, err := h.send(ctx, name, spec, ws)
	if err != nil {
		return err
	}
	h.webhookFailures(name, st)
	expected, maybe := expectFollows(res)
	_, cores, calls, callsText, err := h.drainAndStop(ctx, ws, meter, len(expected))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d := matchPushes(expected, maybe, h.sink.pushes(), time.Time{}, true)
	d.Windows = windows(d.samples, h.lastNoise, 30*time.Millisecond)
	h.rep.phase(phaseRecord{Name: name + " (incl. drain)", Spec: &spec, Delivery: &d, Workers: workers, SinkMs: ms(latency), Cores: cores,
		SinkConns: h.sink.conns.Load() - conns0, RedisCalls: calls, RedisCallsText: callsText})
	h.logf("%s: e2e latency %v; %v", name, d.Latency, d)
	if !d.ok() {
		h.rep.fail("%s: %v", name, d)
	}
	follows := st.FollowsPerS
	r := row{Section: "e2e", Figure: fmt.Sprintf("webhook sent → FCM request received, %s follows/s offered (%g webhooks/s × %d), %d workers, %s sink",
		num(spec.Rate*float64(spec.Followees)), spec.Rate, spec.Followees, workers, latency),
		Value: d.Latency.String(), Data: map[string]any{"latency": d.Latency, "follows_per_s": follows}}
	if targets {
		r.Target, r.Verdict = "p99 ≤ 30 ms", verdict(d.Latency.P99ms <= 30 && d.Latency.N > 0)
	}
	h.rep.add(r)
	if w := d.Windows.String(); w != "" {
		h.rep.add(row{Section: "e2e", Figure: "  same, by 1-s window of webhook send time", Value: w})
	}
	h.rep.add(row{Section: "e2e", Figure: fmt.Sprintf("webhook latency during e2e (achieved %s follows/s)", num(follows)), Value: st.Latency.String()})
	h.rep.add(row{Section: "correctness", Figure: name, Value: d.String(), Verdict: verdict(d.ok())})
	return nil
}

// drainAndStop waits until the follow queue is drained and want pushes
// arrived, reads the phase's CPU use and Redis commands per push, and stops
// the workers; the first error wins.
func (h *harness) drainAndStop(ctx context.Context, ws []*program, meter *cpuMeter, want int) (qi asynq.QueueInfo, cores, calls map[string]float64, callsText string, err error) {
	qi, err = waitDrained(ctx, h.insp, tasks.QueueFollow, h.sink, want, 30*time.Second, h.st)
	cores = meter.cores()
	calls, callsText = meter.redisCalls(ctx, want)
	for _, w := range ws {
		if serr := h.st.stop(w); serr != nil && err == nil {
			err = serr
		}
	}
	return qi, cores, calls, callsText, err
}
