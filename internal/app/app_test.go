package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/internal/testrig/syncbuf"
	"github.com/followpush/followpush/tasks"
)

// logLines parses the JSON log lines written to buf so far, skipping any
// line that is not JSON.
func logLines(buf *syncbuf.Buffer) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// The start-up check warns about exactly the Redis settings that risk losing
// queued follows, and is quiet when they are right. When Redis refuses CONFIG
// GET (an ACL user without the permission, or the command renamed away) it
// says the settings could not be verified, and why, instead of nothing.
func TestCheckRedisSettings(t *testing.T) {
	t.Parallel()
	// noConfigUser connects as an ACL user that may run everything but CONFIG.
	noConfigUser := func(t *testing.T, red *redistest.Server) *redis.Client {
		admin := red.Client(t)
		if err := admin.Do(context.Background(), "ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "&*", "+@all", "-config").Err(); err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(&redis.Options{Addr: red.Addr(), Username: "noconfig", Password: "pw"})
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("PING as noconfig: %v", err)
		}
		return c
	}
	tests := []struct {
		name       string
		opts       []redistest.Option
		client     func(*testing.T, *redistest.Server) *redis.Client // nil: the default user
		want       []string                                          // setting names warned about
		unverified string                                            // in the reason of the could-not-verify warning
	}{
		{name: "no AOF, allkeys-lru", opts: []redistest.Option{redistest.Arg("--maxmemory-policy", "allkeys-lru")}, want: []string{"appendonly", "maxmemory-policy"}},
		{name: "AOF and noeviction", opts: []redistest.Option{redistest.AOF("everysec")}},
		{name: "ACL user without CONFIG", opts: []redistest.Option{redistest.Arg("--maxmemory-policy", "allkeys-lru")}, client: noConfigUser, unverified: "NOPERM"},
		{name: "CONFIG renamed away", opts: []redistest.Option{redistest.Arg("--rename-command", "CONFIG", "")}, unverified: "unknown, renamed or disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			red := redistest.Start(t, tt.opts...)
			client := red.Client(t)
			if tt.client != nil {
				client = tt.client(t, red)
			}
			var buf syncbuf.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			checkRedisSettings(ctx, client, slog.New(slog.NewJSONHandler(&buf, nil)), func() { close(done) })
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("check did not finish")
			}
			var got, unverified []string
			for _, l := range logLines(&buf) {
				for _, k := range []string{"appendonly", "maxmemory-policy"} {
					if _, ok := l[k]; ok {
						got = append(got, k)
					}
				}
				if msg, _ := l["msg"].(string); strings.Contains(msg, "could not verify the Redis settings") {
					if l["level"] != "WARN" || l["redis"] != red.Addr() {
						t.Errorf("could-not-verify line %v: want level WARN and redis %s", l, red.Addr())
					}
					reason, _ := l["reason"].(string)
					unverified = append(unverified, reason)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("warned about %v, want %v", got, tt.want)
			}
			switch {
			case tt.unverified == "" && len(unverified) > 0:
				t.Errorf("could-not-verify warnings %q, want none", unverified)
			case tt.unverified != "" && (len(unverified) != 1 || !strings.Contains(unverified[0], tt.unverified)):
				t.Errorf("could-not-verify warnings with reasons %q, want one whose reason says %q", unverified, tt.unverified)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{BadConfig(errors.Join(errors.New("A: bad"), errors.New("B: bad"))), 2},
		{errors.New("boom"), 1},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err, &stderr); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
	if !strings.Contains(stderr.String(), "bad setting: A: bad\nbad setting: B: bad\n") {
		t.Errorf("stderr = %q, want one line per bad setting", stderr.String())
	}
}

// blockingSender stands for an FCM send that outlasts SHUTDOWN_TIMEOUT: it
// announces each send on started and answers only when release is closed
// (or its context ends), with a transient error.
type blockingSender struct {
	started chan struct{}
	release chan struct{}
}

func (s *blockingSender) Send(ctx context.Context, msgs []*messaging.Message) []error {
	s.started <- struct{}{}
	err := errors.New("send abandoned")
	select {
	case <-s.release:
	case <-ctx.Done():
		err = ctx.Err()
	}
	errs := make([]error, len(msgs))
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// recordingSender succeeds and sends each message's token on sent.
type recordingSender struct{ sent chan string }

func (s *recordingSender) Send(ctx context.Context, msgs []*messaging.Message) []error {
	for _, m := range msgs {
		s.sent <- m.Token
	}
	return make([]error, len(msgs))
}

// A send still running when SHUTDOWN_TIMEOUT runs out does not hold the
// worker's shutdown, and its task goes back to Redis (pending, its retry
// budget untouched) for the next worker, which delivers it.
func TestWorkerShutdownRequeuesSendOutlastingTimeout(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	cfg, err := config.LoadWorker(func(k string) string {
		return map[string]string{
			"REDIS_URL":          red.URL(0),
			"FCM_PROJECT_ID":     "test",
			"SHUTDOWN_TIMEOUT":   "1s",
			"FCM_SEND_TIMEOUT":   "60s", // the send outlasts the shutdown timeout by far
			"WORKER_CONCURRENCY": "1",
			"LOG_LEVEL":          "error",
		}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	rdb := cfg.Redis.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)

	reg := devices.NewRegistry(rdb, devices.Options{Prefix: cfg.Redis.KeyPrefix})
	if err := reg.Register(ctx, "bob", "tok-bob", devices.Registration{}); err != nil {
		t.Fatal(err)
	}
	f := tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: time.Now().UnixMilli()}
	task, err := tasks.NewFollowTask(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := asynq.NewClientFromRedisClient(rdb).EnqueueContext(ctx, task); err != nil {
		t.Fatal(err)
	}

	blocked := &blockingSender{started: make(chan struct{}, 1), release: make(chan struct{})}
	defer close(blocked.release)
	w1, err := NewWorker(cfg, rdb, blocked, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := w1.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocked.started:
	case <-ctx.Done():
		t.Fatal("the worker never started the send")
	}
	shutStart := time.Now()
	stopped := make(chan struct{})
	go func() { w1.Shutdown(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Shutdown waited for a send past SHUTDOWN_TIMEOUT")
	}
	// asynq's own default is 8 s: this shows SHUTDOWN_TIMEOUT is what applied.
	if took := time.Since(shutStart); took > cfg.ShutdownTimeout+4*time.Second {
		t.Errorf("Shutdown took %s with SHUTDOWN_TIMEOUT %s", took, cfg.ShutdownTimeout)
	}

	insp := asynq.NewInspectorFromRedisClient(rdb)
	info, err := insp.GetTaskInfo(tasks.QueueFollow, f.TaskID())
	if err != nil {
		t.Fatalf("the task is not in Redis after the shutdown: %v", err)
	}
	if info.State != asynq.TaskStatePending || info.Retried != 0 {
		t.Fatalf("task after the shutdown: state %s, retried %d; want pending, 0", info.State, info.Retried)
	}

	// The next worker delivers it.
	rec := &recordingSender{sent: make(chan string, 10)}
	w2, err := NewWorker(cfg, rdb, rec, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Start(); err != nil {
		t.Fatal(err)
	}
	defer w2.Shutdown()
	select {
	case tok := <-rec.sent:
		if tok != "tok-bob" {
			t.Fatalf("next worker sent to %q, want tok-bob", tok)
		}
	case <-ctx.Done():
		t.Fatal("the next worker did not deliver the requeued task")
	}
}

// asynq's own log lines go through the worker's logger at that logger's
// level: with a debug logger asynq's debug lines are there (whatever
// cfg.LogLevel says: the logger decides), with an info logger its info
// lines but no debug ones, with warn and error neither.
func TestWorkerAsynqLogsAtTheLoggersLevel(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	for _, tt := range []struct {
		level       slog.Level
		debug, info bool // asynq's lines at those levels are logged
	}{
		{slog.LevelDebug, true, true},
		{slog.LevelInfo, false, true},
		{slog.LevelWarn, false, false},
		{slog.LevelError, false, false},
	} {
		t.Run(tt.level.String(), func(t *testing.T) {
			t.Parallel()
			cfg, err := config.LoadWorker(func(k string) string {
				return map[string]string{"REDIS_URL": red.URL(0), "FCM_PROJECT_ID": "test", "SHUTDOWN_TIMEOUT": "1s"}[k]
			}) // LOG_LEVEL unset: "info"
			if err != nil {
				t.Fatal(err)
			}
			rdb := cfg.Redis.Client()
			t.Cleanup(func() { _ = rdb.Close() })
			var buf syncbuf.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tt.level}))
			w, err := NewWorker(cfg, rdb, &recordingSender{sent: make(chan string, 1)}, log, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			// Start logs "Starting processing" (info); Shutdown logs, among
			// others, "Processor shutting down..." (debug).
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			w.Shutdown()
			seen := map[string]bool{}
			for _, l := range logLines(&buf) {
				if l["component"] == "asynq" {
					seen[l["level"].(string)] = true
				}
			}
			if seen["DEBUG"] != tt.debug || seen["INFO"] != tt.info {
				t.Errorf("asynq's lines with a %s logger: debug %v, info %v; want %v, %v", tt.level, seen["DEBUG"], seen["INFO"], tt.debug, tt.info)
			}
		})
	}
}
