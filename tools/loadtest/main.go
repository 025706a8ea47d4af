// Command loadtest is followpush's load harness. On one machine it starts a
// redis-server (or uses the loopback Redis named by -redis), the real
// receiver and worker programs as separate processes, and a local
// FCM-wire-compatible sink (internal/testrig/fcmtest) with a configurable answer
// latency; it registers devices through the device API, sends correctly
// signed follow webhooks over keep-alive connections, and measures ingest,
// processing, end-to-end latency and cost next to bare-asynq baselines taken
// in the same run against the same Redis.
//
// It is a Go module of its own (its dependencies and its results stay out
// of the product's module). Run it from tools/loadtest (it builds receiver
// and worker from the repository unless -bin names a directory holding
// them):
//
//	go run . -scenario all -json bench.json
//	go run . -scenario smoke
//	go run . -h
//
// Every phase is bounded by a count or a duration, the harness talks to
// loopback only, and every child process is stopped on exit, error or
// SIGINT. It exits 1 when a checked follow did not produce exactly one push
// (and, for -scenario smoke, when any webhook was not answered 200 OK).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// errUsage marks bad flags (exit code 2).
var errUsage = errors.New("usage")

// scenarios lists the -scenario values; "all" runs the first six in order.
var scenarios = []string{"ingest", "growth", "process", "scaling", "e2e", "policies", "smoke"}

// allScenarios is how many of scenarios "all" runs.
const allScenarios = 6

// options are the parsed flags.
type options struct {
	scenario  string
	binDir    string
	redisURL  string
	redisAOF  string
	redisQry  string
	jsonPath  string
	verbose   bool
	timeout   time.Duration
	quiet     float64
	quietWait time.Duration
	seed      uint64

	users       int
	dist        string
	zipfS       float64
	concurrency int

	// Load-shape overrides: when set on the command line they replace the
	// scenario defaults wherever the figure is not the point of the phase.
	rate        float64
	followees   int
	count       int
	duration    time.Duration
	workers     int
	sinkLatency time.Duration
	set         map[string]bool

	baselineGoroutines int
	processTasks       int
	ingestRates        []float64
	growthSizes        []int
	growthRate         float64
	scalingWorkers     []int
	e2eRate            float64

	workerConcurrency  int
	enqueueConcurrency int
	pollInterval       time.Duration
	logLevel           string
	env                []string
}

func parseFlags(args []string, stdout io.Writer) (options, error) {
	var o options
	name := "loadtest"
	if len(args) > 0 {
		name, args = filepath.Base(args[0]), args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&o.scenario, "scenario", "all", "what to measure: all ("+strings.Join(scenarios[:allScenarios], ", ")+"), one of them, or smoke (a tiny correctness run of everything)")
	fs.StringVar(&o.binDir, "bin", "", "directory holding built receiver and worker binaries (default: build them into a temporary directory; needs the repository)")
	fs.StringVar(&o.redisURL, "redis", "", "use this loopback Redis (redis://127.0.0.1:port/db; its database is FLUSHED between phases) instead of starting a redis-server")
	fs.StringVar(&o.redisAOF, "redis-aof", "", "appendfsync policy (everysec, always, no) to run the started redis-server with an append-only file (default: no AOF, no snapshots)")
	fs.StringVar(&o.redisQry, "redis-query", "", "query string added to the programs' REDIS_URL, e.g. protocol=2 (go-redis options; the harness's own clients are unaffected)")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.BoolVar(&o.verbose, "v", false, "echo the programs' log lines to stderr")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long in all")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the followee draws")
	fs.Float64Var(&o.quiet, "quiet", 0, "on a shared machine: before each measured phase, wait until other processes use at most this many cores (0 = do not wait)")
	fs.DurationVar(&o.quietWait, "quiet-wait", 2*time.Minute, "longest wait for -quiet before measuring anyway")

	fs.IntVar(&o.users, "users", 10000, "population: followees are drawn from users u0..u{users-1}, each with one registered device")
	fs.StringVar(&o.dist, "dist", "uniform", "followee distribution: uniform or zipf")
	fs.Float64Var(&o.zipfS, "zipf-s", 1.1, "Zipf exponent s (> 1) for -dist zipf")
	fs.IntVar(&o.concurrency, "concurrency", 64, "webhooks in flight at most (and idle keep-alive connections kept)")

	fs.Float64Var(&o.rate, "rate", 0, "override: offered webhooks/s of the fixed-rate phases (ingest latency, growth, e2e); 0 = as fast as possible")
	fs.IntVar(&o.followees, "followees", 0, "override: followees per webhook (ingest, e2e; defaults 10 and 1)")
	fs.IntVar(&o.count, "count", 0, "override: webhooks per phase (instead of a duration)")
	fs.DurationVar(&o.duration, "duration", 0, "override: length of each webhook phase (ingest latency 10s, growth 5s, e2e 20s)")
	fs.IntVar(&o.workers, "workers", 0, "override: worker processes in e2e (default 2)")
	fs.DurationVar(&o.sinkLatency, "sink-latency", 0, "override: FCM sink answer latency in e2e (default 0) and scaling (default 50ms)")

	fs.IntVar(&o.baselineGoroutines, "baseline-goroutines", 0, "goroutines of the bare asynq enqueue baseline (default: -concurrency)")
	fs.IntVar(&o.processTasks, "process-tasks", 20000, "follow tasks preloaded for the process and scaling phases")
	var ingestRates, growthSizes, scalingWorkers string
	fs.StringVar(&ingestRates, "ingest-rates", "1000", "offered webhooks/s of the ingest latency phases, comma-separated")
	fs.StringVar(&growthSizes, "growth-sizes", "1,10,20,100", "FollowList sizes of the growth phases")
	fs.Float64Var(&o.growthRate, "growth-rate", 100, "offered webhooks/s of the growth phases")
	fs.StringVar(&scalingWorkers, "scaling-workers", "1,2,4", "worker process counts of the scaling phases")
	fs.Float64Var(&o.e2eRate, "e2e-rate", 500, "offered webhooks/s of the e2e phase")

	fs.IntVar(&o.workerConcurrency, "worker-concurrency", 0, "WORKER_CONCURRENCY of the workers (default: the worker's own default)")
	fs.IntVar(&o.enqueueConcurrency, "enqueue-concurrency", 0, "ENQUEUE_CONCURRENCY of the receiver (default: the receiver's own default)")
	fs.DurationVar(&o.pollInterval, "poll-interval", 0, "WORKER_POLL_INTERVAL of the workers and the bare processing baseline (default: the worker's own default)")
	fs.StringVar(&o.logLevel, "log-level", "", "LOG_LEVEL of the programs (default: theirs, info, which logs a line per push; warn saves that CPU)")
	fs.Func("env", "extra NAME=value for the programs' environment (repeatable), e.g. -env GOMAXPROCS=1", func(s string) error {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			return fmt.Errorf("want NAME=value, got %q", s)
		}
		o.env = append(o.env, s)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: %s [flags]\n\nfollowpush's load harness: starts redis-server, the real receiver and workers, and a fake FCM;\nsends signed follow webhooks; prints a table of figures next to same-run asynq baselines.\n\nFlags:\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var err error
	if o.ingestRates, err = parseList(ingestRates, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }); err != nil {
		bad("-ingest-rates: %v", err)
	}
	if o.growthSizes, err = parseList(growthSizes, strconv.Atoi); err != nil {
		bad("-growth-sizes: %v", err)
	}
	if o.scalingWorkers, err = parseList(scalingWorkers, strconv.Atoi); err != nil {
		bad("-scaling-workers: %v", err)
	}
	if o.scenario != "all" && !contains(scenarios, o.scenario) {
		bad("-scenario: %q is not all, %s", o.scenario, strings.Join(scenarios, ", "))
	}
	if o.dist != "uniform" && o.dist != "zipf" {
		bad("-dist: %q is not uniform or zipf", o.dist)
	}
	if o.dist == "zipf" && o.zipfS <= 1 {
		bad("-zipf-s must be > 1")
	}
	if o.users < 2 {
		bad("-users must be at least 2")
	}
	if o.concurrency < 1 {
		bad("-concurrency must be at least 1")
	}
	for _, n := range append([]int{o.followees}, o.growthSizes...) {
		if n > o.users {
			bad("a FollowList of %d needs -users of at least %d", n, n)
		}
	}
	if o.redisAOF != "" && o.redisAOF != "everysec" && o.redisAOF != "always" && o.redisAOF != "no" {
		bad("-redis-aof: %q is not everysec, always or no", o.redisAOF)
	}
	if o.rate < 0 || o.count < 0 || o.duration < 0 || o.workers < 0 || o.sinkLatency < 0 || o.followees < 0 {
		bad("-rate, -count, -duration, -workers, -sink-latency and -followees cannot be negative")
	}
	if o.redisURL != "" {
		if err := checkRedisURL(o.redisURL); err != nil {
			bad("-redis: %v", err)
		}
	}
	if o.processTasks < 1 {
		bad("-process-tasks must be at least 1")
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return o, nil
}

func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// run is the whole program: flags, setup, the scenarios, the report, and
// the cleanup of every child process and temporary directory. The
// programs get only the environment the harness builds (see proc.Start),
// so getenv is not consulted.
func run(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	h := &harness{o: o, stdout: stdout, stderr: stderr}
	defer func() {
		if cerr := h.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := h.setup(ctx, args); err != nil {
		return err
	}
	todo := scenarios[:allScenarios]
	if o.scenario != "all" {
		todo = []string{o.scenario}
	}
	for _, sc := range todo {
		if err := h.scenario(ctx, sc); err != nil {
			_ = h.finish() // print what was measured so far
			return fmt.Errorf("%s: %w", sc, err)
		}
	}
	if err := h.finish(); err != nil {
		return err
	}
	if n := len(h.rep.Failures); n > 0 {
		return fmt.Errorf("%d correctness failure(s); see the report", n)
	}
	return nil
}
