package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/tasks"
)

// harness holds what every scenario uses: Redis, the sink, the programs,
// the webhook generator and the report being filled.
type harness struct {
	o              options
	stdout, stderr io.Writer

	started  time.Time
	tmpBin   string
	redis    *redisTarget
	sink     *sink
	st       *stack
	receiver *program
	base     string
	gen      *generator
	insp     *asynq.Inspector
	rep      *report

	workerConcurrency int
	pollInterval      time.Duration

	// figures shared between scenarios
	bytesPerTask     float64 // Redis memory per pending follow task
	bytesPerTaskFrom string
	registered       bool // devices of the whole population are registered in the current database
	printed          bool // the report was printed
	lastNoise        []noiseSample
	windowTarget     time.Duration // latency target of the phase being sent, for windowStats
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (h *harness) setup(ctx context.Context, args []string) error {
	h.started = time.Now()
	h.rep = &report{Command: "loadtest " + strings.Join(args[min(1, len(args)):], " "), Scenario: h.o.scenario,
		Started: h.started, Machine: describeMachine()}
	if h.o.scenario == "smoke" {
		h.o.users = 200
	}

	binDir := h.o.binDir
	if binDir == "" {
		h.logf("building receiver and worker")
		dir, err := buildPrograms(ctx, h.stderr)
		if err != nil {
			return err
		}
		h.tmpBin, binDir = dir, dir
	}
	for _, p := range []string{"receiver", "worker"} {
		if _, err := os.Stat(filepath.Join(binDir, p)); err != nil {
			return fmt.Errorf("-bin: %w", err)
		}
	}
	if err := h.readWorkerDefaults(ctx, filepath.Join(binDir, "worker")); err != nil {
		return err
	}

	var err error
	if h.o.redisURL != "" {
		h.redis, err = useRedis(ctx, h.o.redisURL)
	} else {
		h.redis, err = startRedis(ctx, h.o.redisAOF)
	}
	if err != nil {
		return err
	}
	if info, err := h.redis.info(ctx, "server"); err == nil {
		h.rep.Machine.Redis = info["redis_version"]
	}
	if err := h.redis.flush(ctx); err != nil {
		return err
	}
	h.insp = asynq.NewInspector(h.redis.asynqOpt())

	if h.sink, err = startSink(h.stderr); err != nil {
		return err
	}

	redisURL := h.redis.URL
	if h.o.redisQry != "" {
		sep := "?"
		if strings.Contains(redisURL, "?") {
			sep = "&"
		}
		redisURL += sep + h.o.redisQry
		if _, err := redis.ParseURL(redisURL); err != nil {
			return fmt.Errorf("-redis-query: %w", err)
		}
	}
	env := map[string]string{
		"REDIS_URL":              redisURL,
		"TENCENT_SDKAPPID":       appID,
		"TENCENT_CALLBACK_TOKEN": callbackToken,
		"API_TOKEN":              apiToken,
		"FCM_ENDPOINT":           h.sink.URL,
		"FCM_PROJECT_ID":         fcmProject,
		"SHUTDOWN_TIMEOUT":       "10s",
	}
	if h.o.logLevel != "" {
		env["LOG_LEVEL"] = h.o.logLevel
	}
	if h.o.workerConcurrency > 0 {
		env["WORKER_CONCURRENCY"] = strconv.Itoa(h.o.workerConcurrency)
	}
	if h.o.enqueueConcurrency > 0 {
		env["ENQUEUE_CONCURRENCY"] = strconv.Itoa(h.o.enqueueConcurrency)
	}
	if h.o.pollInterval > 0 {
		env["WORKER_POLL_INTERVAL"] = h.o.pollInterval.String()
	}
	for _, kv := range h.o.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
		// The baselines and ideal rates follow what the workers will use.
		switch k {
		case "WORKER_CONCURRENCY":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				h.workerConcurrency = n
			}
		case "WORKER_POLL_INTERVAL":
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				h.pollInterval = d
			}
		}
	}
	settings := map[string]any{}
	for k, v := range env {
		if k != "REDIS_URL" && k != "FCM_ENDPOINT" && k != "LISTEN_ADDR" && k != "METRICS_ADDR" {
			settings["env."+k] = v
		}
	}
	settings["users"], settings["dist"], settings["concurrency"] = h.o.users, h.o.dist, h.o.concurrency
	if h.o.dist == "zipf" {
		settings["zipf_s"] = h.o.zipfS
	}
	settings["worker_concurrency"], settings["poll_interval"] = h.workerConcurrency, h.pollInterval.String()
	settings["redis_aof"], settings["redis_query"] = h.o.redisAOF, h.o.redisQry
	h.rep.Settings = settings

	var echo io.Writer
	if h.o.verbose {
		echo = h.stderr
	}
	h.st = newStack(binDir, env, echo)
	h.logf("starting the receiver (redis %s, sink %s)", h.redis.Addr, h.sink.URL)
	if h.receiver, h.base, err = h.st.startReceiver(ctx); err != nil {
		return err
	}
	h.gen = &generator{base: h.base, pop: population{users: h.o.users, dist: h.o.dist, zipfS: h.o.zipfS}, seed: h.o.seed}
	return nil
}

// readWorkerDefaults learns WORKER_CONCURRENCY and WORKER_POLL_INTERVAL as
// the worker will use them (its -h lists its defaults), for the bare
// processing baseline.
func (h *harness) readWorkerDefaults(ctx context.Context, bin string) error {
	out, err := exec.CommandContext(ctx, bin, "-h").Output()
	if err != nil {
		return fmt.Errorf("worker -h: %w", err)
	}
	h.workerConcurrency, h.pollInterval = 100, 10*time.Millisecond
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "WORKER_CONCURRENCY":
			if n, err := strconv.Atoi(f[1]); err == nil {
				h.workerConcurrency = n
			}
		case "WORKER_POLL_INTERVAL":
			if d, err := time.ParseDuration(f[1]); err == nil {
				h.pollInterval = d
			}
		}
	}
	if h.o.workerConcurrency > 0 {
		h.workerConcurrency = h.o.workerConcurrency
	}
	if h.o.pollInterval > 0 {
		h.pollInterval = h.o.pollInterval
	}
	return nil
}

// finish adds the cost figures, stops the programs and prints the report.
func (h *harness) finish() error {
	if h.rep == nil || h.st == nil || h.printed {
		return nil
	}
	if h.receiver != nil {
		if hwm, ok := peakRSS(h.receiver.Pid()); ok {
			h.st.peakRSS["receiver"] = max(h.st.peakRSS["receiver"], hwm)
		}
	}
	stopErr := h.st.stopAll()
	h.receiver = nil
	if rss, ok := h.st.peakRSS["receiver"]; ok {
		h.rep.add(row{Section: "cost", Figure: "receiver peak RSS (VmHWM over the whole run)", Value: mib(rss),
			Target: "≤ 64 MiB", Verdict: verdict(rss <= 64<<20), Data: map[string]any{"bytes": rss}})
	}
	if rss, ok := h.st.peakRSS["worker"]; ok {
		h.rep.add(row{Section: "cost", Figure: "worker peak RSS (VmHWM, largest worker)", Value: mib(rss),
			Target: "≤ 128 MiB", Verdict: verdict(rss <= 128<<20), Data: map[string]any{"bytes": rss}})
	}
	if h.bytesPerTask > 0 {
		h.rep.add(row{Section: "cost", Figure: "Redis memory per pending follow task (" + h.bytesPerTaskFrom + ")",
			Value: fmt.Sprintf("%.0f B", h.bytesPerTask), Target: "≤ 1024 B", Verdict: verdict(h.bytesPerTask <= 1024),
			Data: map[string]any{"bytes": h.bytesPerTask}})
	}
	h.rep.LogProblems = h.st.logProblems()
	h.rep.Machine.LoadAvgEnd = loadAvg()
	h.rep.Duration = time.Since(h.started).Round(time.Second).String()
	h.rep.print(h.stdout)
	if h.o.jsonPath != "" {
		if err := h.rep.writeJSON(h.o.jsonPath); err != nil {
			return fmt.Errorf("write -json: %w", err)
		}
		fmt.Fprintf(h.stdout, "\nresults written to %s\n", h.o.jsonPath)
	}
	h.printed = true
	return stopErr
}

// close stops everything still running and removes temporary files.
func (h *harness) close() error {
	var errs []error
	if h.st != nil {
		errs = append(errs, h.st.stopAll())
	}
	if h.insp != nil {
		_ = h.insp.Close()
	}
	if h.sink != nil {
		h.sink.Close()
	}
	if h.redis != nil {
		h.redis.Close()
	}
	if h.tmpBin != "" {
		os.RemoveAll(h.tmpBin)
	}
	return errors.Join(errs...)
}

// cpu starts measuring the cores used by the harness, Redis, the receiver
// and the given workers.
func (h *harness) cpu(workers []*program) *cpuMeter {
	pids := map[string][]int{"loadtest+sink": {os.Getpid()}}
	if h.redis.pid > 0 {
		pids["redis"] = []int{h.redis.pid}
	}
	if h.receiver != nil {
		pids["receiver"] = []int{h.receiver.Pid()}
	}
	for _, w := range workers {
		pids["workers"] = append(pids["workers"], w.Pid())
	}
	m := newCPUMeter(pids)
	m.redis = h.redis
	m.cmds0, _ = h.redis.commandCalls(context.Background())
	return m
}

// settle waits, before a measured phase, until the rest of the machine
// uses at most -quiet cores (over one second), for at most -quiet-wait.
func (h *harness) settle(ctx context.Context) error {
	if h.o.quiet <= 0 {
		return nil
	}
	deadline := time.Now().Add(h.o.quietWait)
	for logged := false; ; logged = true {
		h.st.mu.Lock()
		var running []*program
		for _, p := range h.st.running {
			if p.kind == "worker" {
				running = append(running, p)
			}
		}
		h.st.mu.Unlock()
		m := h.cpu(running)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		others := m.cores()["others"]
		if others <= h.o.quiet {
			return nil
		}
		if time.Now().After(deadline) {
			h.logf("other processes still use %.2f cores after %s: measuring anyway", others, h.o.quietWait)
			return nil
		}
		if !logged {
			h.logf("other processes use %.2f cores: waiting for at most %.2f", others, h.o.quiet)
		}
	}
}

// fresh empties Redis for the next phase.
func (h *harness) fresh(ctx context.Context) error {
	h.registered = false
	return h.redis.flush(ctx)
}

// ensureDevices registers one device for every user of the population.
func (h *harness) ensureDevices(ctx context.Context) error {
	if h.registered {
		return nil
	}
	start := time.Now()
	if err := registerDevices(ctx, h.base, h.o.users, h.o.concurrency); err != nil {
		return err
	}
	h.logf("registered %d devices in %s", h.o.users, time.Since(start).Round(time.Millisecond))
	h.registered = true
	return nil
}

// spec returns a phase's load spec: def, with the load-shape flags given on
// the command line applied except those named in fixed.
func (h *harness) spec(def loadSpec, fixed ...string) loadSpec {
	s := def
	free := func(name string) bool { return h.o.set[name] && !contains(fixed, name) }
	if free("rate") {
		s.Rate = h.o.rate
	}
	if free("followees") {
		s.Followees = h.o.followees
	}
	if free("count") {
		s.Count = h.o.count
		if !h.o.set["duration"] {
			s.Duration = 0
		}
	}
	if free("duration") {
		s.Duration = h.o.duration
		if !h.o.set["count"] {
			s.Count = 0
		}
	}
	if s.Concurrency == 0 {
		s.Concurrency = h.o.concurrency
	}
	return s
}

// pick returns the flag's value when it was given, else def.
func pick[T any](h *harness, flagName string, v, def T) T {
	if h.o.set[flagName] {
		return v
	}
	return def
}

// send runs one webhook stream, measuring CPU, and records the phase.
func (h *harness) send(ctx context.Context, name string, spec loadSpec, workers []*program) (*loadResult, loadStats, error) {
	if err := h.settle(ctx); err != nil {
		return nil, loadStats{}, err
	}
	h.logf("%s: %v", name, spec)
	meter := h.cpu(workers)
	ns := startNoise(func() *cpuMeter { return h.cpu(workers) })
	res, err := h.gen.run(ctx, spec)
	h.lastNoise = ns.finish()
	if err != nil {
		return nil, loadStats{}, err
	}
	st := res.stats()
	if spec.Rate > 0 {
		st.Windows = windows(st.samples, h.lastNoise, h.windowTarget)
	}
	cores := meter.cores()
	calls, callsText := meter.redisCalls(ctx, st.OK*spec.Followees)
	h.rep.phase(phaseRecord{Name: name, Spec: &spec, Load: &st, Workers: len(workers), Cores: cores, RedisCalls: calls, RedisCallsText: callsText})
	h.logf("%s: %d/%d webhooks OK, %s webhooks/s, %s follows/s, latency %v", name, st.OK, st.Sent, num(st.WebhooksPerS), num(st.FollowsPerS), st.Latency)
	if st.Failed > 0 {
		h.logf("%s: %d webhooks failed, first: %s", name, st.Failed, st.FirstFailure)
	}
	if p := h.st.exited(); p != nil {
		return nil, st, fmt.Errorf("%s exited (%v):\n%s", p.Name, p.ExitErr(), tail(p.Output(), 20))
	}
	return res, st, nil
}

// pendingFollows is the number of follow tasks waiting in Redis.
func (h *harness) pendingFollows() (int, error) {
	qi, err := h.insp.GetQueueInfo(tasks.QueueFollow)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return qi.Pending, nil
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
