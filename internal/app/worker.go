package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	netpprof "net/http/pprof"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
)

// NewSender returns the worker's push sender: FCM through firebase-admin-go
// when FCM is configured, otherwise (standalone only) the log.
func NewSender(ctx context.Context, cfg config.Worker, log *slog.Logger) (notifier.Sender, error) {
	if !cfg.FCMConfigured() {
		return &fcm.LogSender{Logger: log}, nil
	}
	s, err := fcm.NewSender(ctx, fcm.Config{
		ProjectID:       cfg.FCMProjectID,
		CredentialsFile: cfg.FCMCredentialsFile,
		Endpoint:        cfg.FCMEndpoint,
	})
	if err != nil {
		return nil, fmt.Errorf("FCM client: %w", err)
	}
	return s, nil
}

// Worker is an assembled worker: an asynq server and its handler.
type Worker struct {
	// Server is the asynq server that runs the tasks.
	Server *asynq.Server
	// Handler handles them (and exposes the worker's metrics and breaker).
	Handler *notifier.Handler
	// Queues are the queues the worker consumes (see [ConsumedQueues]).
	Queues []string

	lister     queueLister
	log        *slog.Logger
	checkEvery time.Duration // QueueCheckInterval unless set (tests)
	checks     atomic.Int64  // checks done (tests)
	stopWatch  chan struct{}
	watched    chan struct{}
	mux        *asynq.ServeMux
	history    *history.Async // nil: off
}

// NewWorker assembles the worker over rdb, sending with sender. asynq's own
// log lines go to log (with "component":"asynq") at log's level.
func NewWorker(cfg config.Worker, rdb redis.UniversalClient, sender notifier.Sender, log *slog.Logger, reg prometheus.Registerer) (*Worker, error) {
	var client notifier.Scheduler = asynq.NewClientFromRedisClient(rdb) // schedules digest tasks; shares rdb, nothing to close
	if cfg.CompletedTaskRetention > 0 {
		client = retainingScheduler{client, cfg.CompletedTaskRetention}
	}
	var limiter notifier.SendLimiter
	if cfg.FCMRateLimit > 0 {
		limiter = notifier.NewRateLimit(rdb, cfg.Redis.KeyPrefix+"fcm", cfg.FCMRateLimit, time.Second, 0)
	}
	var names notifier.NameResolver
	if api := cfg.Tencent; api.Base != "" {
		var err error
		names, err = notifier.NewTencentProfiles(notifier.TencentConfig{
			BaseURL:    api.Base,
			Identifier: api.AdminIdentifier,
			UserSigs:   api.AdminUserSigs,
			SecretKeys: api.SecretKeys,
			CacheTTL:   api.DisplayNameCacheTTL,
			KeyPrefix:  cfg.Redis.KeyPrefix,
		}, rdb, log.With("component", "display-names"))
		if err != nil {
			return nil, err
		}
	}
	var hist *history.Async // nil: FOLLOW_HISTORY=off
	if cfg.History.Enabled {
		hist = history.New(rdb, cfg.History.Options(cfg.Redis.KeyPrefix), history.NewMetrics(reg)).Async(0)
	}
	h, err := notifier.NewHandler(log,
		devices.NewRegistry(rdb, devices.Options{Prefix: cfg.Redis.KeyPrefix, MaxDevicesPerUser: cfg.MaxDevicesPerUser}),
		delivery.New(rdb, delivery.Options{Prefix: cfg.Redis.KeyPrefix, RecordTTL: cfg.DedupeTTL, CancelTTL: delivery.UnfollowTTL(cfg.MaxEventAge)}),
		sender, notifier.NewMetrics(reg), notifier.HandlerOptions{
			MaxEventAge: cfg.MaxEventAge,
			SendTimeout: cfg.FCMSendTimeout,
			Content:     cfg.Texts,
			Message:     cfg.Message,
			Policy:      cfg.Policy,
			Preferences: preferences.NewStore(rdb, cfg.Redis.KeyPrefix),
			Scheduler:   client,
			Shards:      cfg.FollowQueues,
			Limiter:     limiter,
			Names:       names,
			History:     hist,
			MismatchBreaker: notifier.NewMismatchBreaker(rdb, cfg.Redis.KeyPrefix+MismatchBreakerKey, notifier.MismatchBreakerOptions{
				Limit:  cfg.SenderIDMismatchLimit,
				Window: cfg.SenderIDMismatchWindow,
			}),
		})
	if err != nil {
		return nil, err
	}
	insp := asynq.NewInspectorFromRedisClient(rdb) // shares rdb, nothing to close
	queues, others, err := ConsumedQueues(insp, cfg.FollowQueues)
	if err != nil {
		log.Warn("could not list the queues in Redis: follow queues of another FOLLOW_QUEUE_SHARDS, if any, are not drained by this worker; restart it once Redis answers",
			"err", err)
	}
	if len(others) > 0 {
		log.Warn("draining follow queues of another FOLLOW_QUEUE_SHARDS (docs/operations.md: changing FOLLOW_QUEUE_SHARDS)",
			"follow_queue_shards", cfg.FollowQueues.N(), "other_queues", others)
	}
	weights := make(map[string]int, len(queues))
	for _, q := range queues {
		weights[q] = 1
	}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   weights,
		TaskCheckInterval:        cfg.PollInterval,
		DelayedTaskCheckInterval: time.Second,
		RetryDelayFunc:           notifier.RetryDelay,
		IsFailure:                notifier.IsFailure,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		Logger:                   asynqLogger{log.With("component", "asynq")},
		LogLevel:                 asynqLevel(log),
	})
	return &Worker{Server: srv, Handler: h, Queues: queues, lister: insp, log: log, mux: h.NewServeMux(), history: hist}, nil
}

// queueLister lists the queues asynq knows of (*asynq.Inspector).
type queueLister interface {
	Queues() ([]string, error)
}

// ConsumedQueues returns the queues a worker with shards consumes, all
// with the same weight: shards' own queues, then every other follow queue
// (tasks.IsFollowQueue: of another FOLLOW_QUEUE_SHARDS) that Redis lists,
// sorted, which others repeats. Tasks stored under another shard count, by
// receivers not yet restarted or before a change of FOLLOW_QUEUE_SHARDS,
// are thus processed, not stranded. When the queues cannot be listed it
// returns shards' own queues and the error.
func ConsumedQueues(insp queueLister, shards tasks.Shards) (queues, others []string, err error) {
	queues = shards.Names()
	all, err := insp.Queues()
	if err != nil {
		return queues, nil, err
	}
	own := map[string]bool{}
	for _, q := range queues {
		own[q] = true
	}
	for _, q := range all {
		if tasks.IsFollowQueue(q) && !own[q] {
			others = append(others, q)
		}
	}
	slices.Sort(others)
	return append(queues, others...), others, nil
}

// retainingScheduler enqueues tasks that asynq keeps as completed for
// retention after they succeeded (COMPLETED_TASK_RETENTION).
type retainingScheduler struct {
	next      notifier.Scheduler
	retention time.Duration
}

// EnqueueContext enqueues t with asynq.Retention(retention) after opts.
func (s retainingScheduler) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	return s.next.EnqueueContext(ctx, t, append(opts, asynq.Retention(s.retention))...)
}

// MismatchBreakerKey is the Redis key (after REDIS_KEY_PREFIX) of the
// SENDER_ID_MISMATCH breaker all workers share.
const MismatchBreakerKey = "breaker:sender_id_mismatch"

// Start starts processing; Shutdown stops fetching, lets in-flight tasks
// finish within the shutdown timeout and leaves the rest in Redis.
func (w *Worker) Start() error {
	if err := w.Server.Start(w.mux); err != nil {
		return err
	}
	w.stopWatch = make(chan struct{})
	w.watched = make(chan struct{})
	go w.watchQueues()
	return nil
}

// QueueCheckInterval is how often a running worker looks for follow queues
// it does not consume ([Worker.Queues] is fixed at start).
const QueueCheckInterval = time.Minute

// watchQueues logs, once per queue, every follow queue that appears in
// Redis after the worker started (a receiver with another
// FOLLOW_QUEUE_SHARDS): its tasks wait until a worker starts that
// consumes it. It stops when stopWatch closes.
func (w *Worker) watchQueues() {
	defer close(w.watched)
	every := w.checkEvery
	if every <= 0 {
		every = QueueCheckInterval
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	consumed := map[string]bool{}
	for _, q := range w.Queues {
		consumed[q] = true
	}
	for {
		select {
		case <-w.stopWatch:
			return
		case <-tick.C:
		}
		all, err := w.lister.Queues()
		w.checks.Add(1)
		if err != nil {
			continue // Redis unreachable: asynq and /readyz report that
		}
		for _, q := range all {
			if tasks.IsFollowQueue(q) && !consumed[q] {
				consumed[q] = true
				w.log.Error("a follow queue this worker does not consume appeared in Redis (a receiver with another FOLLOW_QUEUE_SHARDS?): its tasks wait until a worker starts that consumes it; give receivers and workers the same FOLLOW_QUEUE_SHARDS and restart the workers (docs/operations.md)",
					"queue", q, "follow_queues", w.Queues)
			}
		}
	}
}

// Shutdown stops the worker gracefully, then writes the history entries
// it still holds (for at most historyFlushTimeout).
func (w *Worker) Shutdown() {
	if w.stopWatch != nil {
		close(w.stopWatch)
		<-w.watched
		w.stopWatch = nil
	}
	w.Server.Shutdown()
	if w.history != nil {
		ctx, cancel := context.WithTimeout(context.Background(), historyFlushTimeout)
		defer cancel()
		_ = w.history.Close(ctx)
	}
}

// historyFlushTimeout bounds how long a stopping worker writes its last
// history entries.
const historyFlushTimeout = 3 * time.Second

// FlushHistory waits until the history entries of the tasks finished so
// far are written (tests).
func (w *Worker) FlushHistory(ctx context.Context) error {
	if w.history == nil {
		return nil
	}
	return w.history.Flush(ctx)
}

// OpsHandler serves /metrics, /healthz and /readyz for the worker, and
// Go's profiler under /debug/pprof/ when pprof is true. /readyz answers 503
// with "redis":"unavailable" when Redis does not answer a PING within 1 s;
// Redis's own error goes to log (at warn level), not into the answer.
func OpsHandler(reg *prometheus.Registry, rdb redis.UniversalClient, pprof bool, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	if pprof {
		mux.HandleFunc("GET /debug/pprof/", netpprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", netpprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", netpprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", netpprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", netpprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("GET /readyz", readiness{ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }, log: log})
	return mux
}

// asynqLevel returns the asynq log level that matches what log lets
// through: asynq's lines at a level log writes are passed on, and asynq
// does not format those log would drop. (asynqLogger logs asynq's debug,
// info, warn and error lines at slog's levels of the same names.)
func asynqLevel(log *slog.Logger) asynq.LogLevel {
	ctx := context.Background()
	switch {
	case log.Enabled(ctx, slog.LevelDebug):
		return asynq.DebugLevel
	case log.Enabled(ctx, slog.LevelInfo):
		return asynq.InfoLevel
	case log.Enabled(ctx, slog.LevelWarn):
		return asynq.WarnLevel
	}
	return asynq.ErrorLevel
}

// asynqLogger routes asynq's own logs into slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)); panic(fmt.Sprint(args...)) }
