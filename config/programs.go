package config

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/spool"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
	"github.com/followpush/followpush/webhook"
)

// Receiver is the configuration of the receiver program (and the receiving
// half of standalone).
type Receiver struct {
	// Redis is where tasks, devices and delivery state live (REDIS_*).
	Redis Redis
	// ListenAddr is LISTEN_ADDR (default ":8080"; standalone "127.0.0.1:8080").
	ListenAddr string
	// AppIDs are the accepted SDKAppIDs (TENCENT_SDKAPPID), at least one.
	AppIDs []string
	// CallbackTokens are TENCENT_CALLBACK_TOKEN by SDKAppID, the key "" for
	// one token that serves every app; nil = signatures not checked. A list
	// has a token for every app of AppIDs and for no other.
	CallbackTokens map[string]string
	// RequestTimeWindow is REQUEST_TIME_WINDOW (default 60s).
	RequestTimeWindow time.Duration
	// APIToken is API_TOKEN; empty = the device API answers 503.
	APIToken string
	// MonitoringUser and MonitoringPassword (MONITORING_USER,
	// MONITORING_PASSWORD) guard asynqmon at /monitoring; both empty = not
	// mounted (standalone on loopback mounts it without auth).
	MonitoringUser, MonitoringPassword string
	// MetricsAddr is METRICS_ADDR (receiver only): where /metrics is
	// served instead of on ListenAddr; empty (the default) = on ListenAddr.
	MetricsAddr string
	// SpoolDir is SPOOL_DIR (receiver only; empty = no spool).
	SpoolDir string
	// SpoolMaxBytes is SPOOL_MAX_BYTES (default 64 MiB).
	SpoolMaxBytes int64
	// SpoolDrainBatch is SPOOL_DRAIN_BATCH (default 100, 1 to 10000): how
	// many spooled events one drain step stores in Redis before it saves
	// its read position; a receiver that dies mid-drain re-offers at most
	// one step (harmlessly: the same tasks, the same delivery records).
	SpoolDrainBatch int
	// FollowQueues is FOLLOW_QUEUE_SHARDS (default 1): the queues follows
	// are stored in, by followee.
	FollowQueues tasks.Shards
	// MaxBodyBytes is WEBHOOK_MAX_BODY_BYTES (default 1 MiB).
	MaxBodyBytes int64
	// MaxFollows is WEBHOOK_MAX_FOLLOWS (default 1000).
	MaxFollows int
	// EnqueueConcurrency is ENQUEUE_CONCURRENCY (default 16).
	EnqueueConcurrency int
	// MaxDevicesPerUser is MAX_DEVICES_PER_USER (default 10).
	MaxDevicesPerUser int
	// MaxEventAge is MAX_EVENT_AGE (default 1h): how long an unfollow's
	// cancellation is kept.
	MaxEventAge time.Duration
	// CompletedTaskRetention is COMPLETED_TASK_RETENTION (default 0): how
	// long a follow task stays in Redis as completed after it succeeded.
	CompletedTaskRetention time.Duration
	// History is FOLLOW_HISTORY, FOLLOW_HISTORY_MAX_EVENTS and
	// FOLLOW_HISTORY_TTL.
	History HistorySettings
	// ShutdownTimeout is SHUTDOWN_TIMEOUT (default 25s).
	ShutdownTimeout time.Duration
	// LogLevel is LOG_LEVEL (default "info").
	LogLevel string
}

// Worker is the configuration of the worker program (and the delivering
// half of standalone).
type Worker struct {
	// Redis is where tasks, devices and delivery state live (REDIS_*).
	Redis Redis
	// Concurrency is WORKER_CONCURRENCY (default 100).
	Concurrency int
	// FollowQueues is FOLLOW_QUEUE_SHARDS (default 1): the queues the
	// worker consumes (with any other follow queue found in Redis) and
	// schedules digests in, by followee.
	FollowQueues tasks.Shards
	// PollInterval is WORKER_POLL_INTERVAL (default 10ms).
	PollInterval time.Duration
	// MetricsAddr is METRICS_ADDR (default ":9091"); unused by standalone.
	MetricsAddr string
	// FCM settings. All empty in standalone means "push to the log".
	// FCMProjectID is FCM_PROJECT_ID (default: the credentials file's).
	FCMProjectID string
	// FCMCredentialsFile is GOOGLE_APPLICATION_CREDENTIALS, a service
	// account JSON file.
	FCMCredentialsFile string
	// FCMEndpoint is FCM_ENDPOINT, the base URL of an FCM-compatible
	// server; empty: Google's.
	FCMEndpoint string
	// FCMSendTimeout is FCM_SEND_TIMEOUT (default 10s).
	FCMSendTimeout time.Duration
	// SenderIDMismatchLimit is SENDER_ID_MISMATCH_LIMIT (default 100):
	// SENDER_ID_MISMATCH answers since the last successful send whose tokens
	// are deleted before the breaker opens.
	SenderIDMismatchLimit int
	// SenderIDMismatchWindow is SENDER_ID_MISMATCH_WINDOW (default 24h):
	// how long such an answer counts when no send succeeds.
	SenderIDMismatchWindow time.Duration
	// Texts are the push texts per locale (PUSH_TITLE, PUSH_BODY,
	// PUSH_TEMPLATES_FILE over the built-in ones), every template checked.
	Texts *pushtext.Templates
	// Message is the per-platform settings of every push (ANDROID_*,
	// APNS_*, WEBPUSH_LINK).
	Message fcm.MessageOptions
	// MaxDevicesPerUser is MAX_DEVICES_PER_USER (default 10).
	MaxDevicesPerUser int
	// MaxEventAge is MAX_EVENT_AGE (default 1h).
	MaxEventAge time.Duration
	// DedupeTTL is DEDUPE_TTL (default 1h, at least MaxEventAge).
	DedupeTTL time.Duration
	// CompletedTaskRetention is COMPLETED_TASK_RETENTION (default 0): how
	// long a digest task stays in Redis as completed after it succeeded.
	CompletedTaskRetention time.Duration
	// History is FOLLOW_HISTORY, FOLLOW_HISTORY_MAX_EVENTS and
	// FOLLOW_HISTORY_TTL.
	History HistorySettings
	// ShutdownTimeout is SHUTDOWN_TIMEOUT (default 25s).
	ShutdownTimeout time.Duration
	// LogLevel is LOG_LEVEL (default "info").
	LogLevel string
	// Pprof is PPROF (default false): serve /debug/pprof/ on MetricsAddr;
	// unused by standalone.
	Pprof bool
	// Policy is the notification policies (FOLLOW_COOLDOWN,
	// MAX_PUSHES_PER_USER_PER_HOUR, AGGREGATION_WINDOW,
	// AGGREGATION_FIRST_IMMEDIATE).
	Policy delivery.Policy
	// FCMRateLimit is FCM_RATE_LIMIT, sends per second for all workers
	// together (default notifier.DefaultFCMRateLimit; 0 = unlimited; at most
	// notifier.MaxFCMRateLimit, FCM's default quota of 600,000 a minute).
	FCMRateLimit int
	// Tencent is the REST API for display names (TENCENT_API_BASE, ...).
	Tencent TencentAPI
}

// FCMConfigured reports whether any FCM setting is present (standalone pushes
// to its log otherwise).
func (w Worker) FCMConfigured() bool {
	return w.FCMProjectID != "" || w.FCMCredentialsFile != "" || w.FCMEndpoint != ""
}

// Standalone is the configuration of the standalone program: a receiver
// and a worker sharing one Redis.
type Standalone struct {
	// Receiver is the receiving half, with standalone's own defaults.
	Receiver Receiver
	// Worker is the sending half, with standalone's own defaults.
	Worker Worker
	// EmbeddedRedis is true when no Redis setting was given: standalone then
	// runs miniredis in-process.
	EmbeddedRedis bool
	// GeneratedAPIToken is true when API_TOKEN was unset and a dev token was
	// made up (standalone prints it).
	GeneratedAPIToken bool
}

// LoadReceiver reads the receiver's settings. The error joins one error per
// bad setting, each starting with the setting's name.
func LoadReceiver(getenv func(string) string) (Receiver, error) {
	l := newLoader(getenv, ProgramReceiver)
	r := l.receiver(l.redis(DefaultRedisURL), DefaultListenAddr, "")
	return r, l.err()
}

// LoadWorker reads the worker's settings. The error joins one error per bad
// setting, each starting with the setting's name.
func LoadWorker(getenv func(string) string) (Worker, error) {
	l := newLoader(getenv, ProgramWorker)
	w := l.worker(l.redis(DefaultRedisURL))
	l.workerOps(&w)
	if !w.FCMConfigured() && l.raw("FCM_ENDPOINT", "") == "" {
		// Production default: Google's endpoint with application default
		// credentials; a project id is still needed to address it.
		l.fail("FCM_PROJECT_ID", "required when neither GOOGLE_APPLICATION_CREDENTIALS nor FCM_ENDPOINT is set")
	}
	return w, l.err()
}

// DevAPIToken is standalone's API token when API_TOKEN is unset and it
// listens on loopback only (the default), the same on every run so that
// scripts written against one run keep working. On any other address
// standalone makes up a random one instead.
const DevAPIToken = "followpush-dev-token"

// LoopbackOnly reports whether the listen address addr ("host:port") binds
// a loopback interface only ("localhost", 127.0.0.0/8, ::1).
func LoopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoadStandalone reads standalone's settings: those of receiver and worker,
// with the defaults of a first try (embedded Redis, loopback listener, a dev
// SDKAppID and API token ([DevAPIToken]), pushes to the log).
func LoadStandalone(getenv func(string) string) (Standalone, error) {
	l := newLoader(getenv, ProgramStandalone)
	rd := l.redis("")
	s := Standalone{EmbeddedRedis: rd.Mode() == "embedded"}
	devToken := ""
	if strings.TrimSpace(getenv("API_TOKEN")) == "" {
		devToken = DevAPIToken
		s.GeneratedAPIToken = true
	}
	s.Receiver = l.receiver(rd, DefaultStandaloneListen, devToken)
	if s.GeneratedAPIToken && !LoopbackOnly(s.Receiver.ListenAddr) {
		// Reachable from other hosts: a well-known token would let anyone in.
		s.Receiver.APIToken = "dev-" + randomHex(12)
	}
	s.Worker = l.worker(rd)
	s.Receiver.Redis.PoolSize = s.Worker.Redis.PoolSize // one client serves both halves
	return s, l.err()
}

func (l *loader) receiver(rd Redis, listenDefault, apiTokenDefault string) Receiver {
	appDefault := ""
	if l.program == ProgramStandalone {
		appDefault = DefaultStandaloneAppID
	}
	r := Receiver{
		Redis:              rd,
		ListenAddr:         l.listenAddr("LISTEN_ADDR", listenDefault),
		AppIDs:             l.list("TENCENT_SDKAPPID"),
		CallbackTokens:     l.perApp("TENCENT_CALLBACK_TOKEN", "token"),
		RequestTimeWindow:  l.duration("REQUEST_TIME_WINDOW", webhook.DefaultRequestTimeWindow, time.Second, time.Hour),
		APIToken:           l.raw("API_TOKEN", apiTokenDefault),
		MonitoringUser:     l.raw("MONITORING_USER", ""),
		MonitoringPassword: l.raw("MONITORING_PASSWORD", ""),
		MaxBodyBytes:       int64(l.intRange("WEBHOOK_MAX_BODY_BYTES", webhook.DefaultMaxBodyBytes, 1024, 64<<20)),
		FollowQueues:       l.followQueues(),
		MaxFollows:         l.intRange("WEBHOOK_MAX_FOLLOWS", tencent.DefaultMaxFollows, 1, 100000),
		EnqueueConcurrency: l.intRange("ENQUEUE_CONCURRENCY", webhook.DefaultEnqueueConcurrency, 1, 1024),
		MaxDevicesPerUser:  l.intRange("MAX_DEVICES_PER_USER", devices.DefaultMaxDevicesPerUser, 1, 1000),
		MaxEventAge:        l.duration("MAX_EVENT_AGE", delivery.DefaultMaxEventAge, time.Minute, 7*24*time.Hour),
		ShutdownTimeout:    l.duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, time.Second, 10*time.Minute),
		LogLevel:           l.logLevel(),
	}
	r.CompletedTaskRetention = l.retention()
	r.History = l.history()
	if l.program == ProgramReceiver {
		l.spool(&r)
		if v := l.raw("METRICS_ADDR", ""); v != "" {
			r.MetricsAddr = l.listenAddr("METRICS_ADDR", "")
			if r.MetricsAddr == r.ListenAddr && !strings.HasSuffix(r.MetricsAddr, ":0") {
				l.fail("METRICS_ADDR", "%q is LISTEN_ADDR too: give /metrics another port, or leave METRICS_ADDR unset to serve it on LISTEN_ADDR", r.MetricsAddr)
			}
		}
	}
	if len(r.AppIDs) == 0 && appDefault != "" {
		r.AppIDs = []string{appDefault}
	}
	if len(r.AppIDs) == 0 {
		l.fail("TENCENT_SDKAPPID", "required: your app's SDKAppID (a comma-separated list for several apps)")
	}
	for _, id := range r.AppIDs {
		if n, err := strconv.ParseUint(id, 10, 64); err != nil || n == 0 {
			l.fail("TENCENT_SDKAPPID", "%q is not a numeric SDKAppID", id)
		}
	}
	l.callbackTokens(r)
	if (r.MonitoringUser == "") != (r.MonitoringPassword == "") {
		l.fail("MONITORING_PASSWORD", "MONITORING_USER and MONITORING_PASSWORD go together")
	} else if p := r.MonitoringPassword; p != "" && len(p) < MinMonitoringPasswordBytes {
		l.fail("MONITORING_PASSWORD", "must be at least %d bytes", MinMonitoringPasswordBytes)
	}
	if t := r.APIToken; t != "" && len(t) < MinAPITokenBytes {
		l.fail("API_TOKEN", "must be at least %d bytes (use a random secret)", MinAPITokenBytes)
	}
	return r
}

// callbackTokens checks TENCENT_CALLBACK_TOKEN against the apps: each
// token 1 to 256 bytes without whitespace; a per-app list names exactly the
// apps of TENCENT_SDKAPPID (an app left out would take unsigned webhooks).
func (l *loader) callbackTokens(r Receiver) {
	const name = "TENCENT_CALLBACK_TOKEN"
	apps := map[string]bool{}
	for _, id := range r.AppIDs {
		apps[id] = true
	}
	keys := make([]string, 0, len(r.CallbackTokens))
	for app := range r.CallbackTokens {
		keys = append(keys, app)
	}
	sort.Strings(keys)
	for _, app := range keys {
		t := r.CallbackTokens[app]
		switch {
		case len(t) > 256 || strings.ContainsAny(t, " \t\r\n"):
			if app == "" {
				l.fail(name, "must be 1 to 256 bytes without whitespace")
			} else {
				l.fail(name, "the token of SDKAppID %s must be 1 to 256 bytes without whitespace", app)
			}
		case app != "" && !apps[app]:
			l.fail(name, "names SDKAppID %s, which is not in TENCENT_SDKAPPID", app)
		}
	}
	if _, one := r.CallbackTokens[""]; one || len(r.CallbackTokens) == 0 {
		return
	}
	for _, id := range r.AppIDs {
		if _, ok := r.CallbackTokens[id]; !ok {
			l.fail(name, "no token for SDKAppID %s: give every app of TENCENT_SDKAPPID its token, or one token for all", id)
		}
	}
}

// spool reads the spool settings, which only the receiver program has
// (standalone has none).
func (l *loader) spool(r *Receiver) {
	r.SpoolDir = l.raw("SPOOL_DIR", "")
	r.SpoolMaxBytes = int64(l.intRange("SPOOL_MAX_BYTES", spool.DefaultMaxBytes, 1<<20, 1<<40))
	r.SpoolDrainBatch = l.intRange("SPOOL_DRAIN_BATCH", webhook.DefaultDrainBatch, 1, 10000)
}

// workerOps reads the settings of the worker program's own ops listener
// (standalone has none).
func (l *loader) workerOps(w *Worker) {
	w.MetricsAddr = l.listenAddr("METRICS_ADDR", DefaultWorkerMetricsAddr)
	w.Pprof = l.boolean("PPROF", false)
}

func (l *loader) worker(rd Redis) Worker {
	w := Worker{
		Redis:                  rd,
		Concurrency:            l.intRange("WORKER_CONCURRENCY", DefaultWorkerConcurrency, 1, 10000),
		FollowQueues:           l.followQueues(),
		PollInterval:           l.duration("WORKER_POLL_INTERVAL", DefaultPollInterval, time.Millisecond, time.Minute),
		FCMProjectID:           l.raw("FCM_PROJECT_ID", ""),
		FCMCredentialsFile:     l.raw("GOOGLE_APPLICATION_CREDENTIALS", ""),
		FCMEndpoint:            l.baseURL("FCM_ENDPOINT"),
		FCMSendTimeout:         l.duration("FCM_SEND_TIMEOUT", notifier.DefaultSendTimeout, 100*time.Millisecond, 5*time.Minute),
		SenderIDMismatchLimit:  l.intRange("SENDER_ID_MISMATCH_LIMIT", notifier.DefaultMismatchLimit, 1, 1_000_000),
		SenderIDMismatchWindow: l.duration("SENDER_ID_MISMATCH_WINDOW", notifier.DefaultMismatchWindow, time.Minute, 720*time.Hour),
		MaxDevicesPerUser:      l.intRange("MAX_DEVICES_PER_USER", devices.DefaultMaxDevicesPerUser, 1, 1000),
		MaxEventAge:            l.duration("MAX_EVENT_AGE", delivery.DefaultMaxEventAge, time.Minute, 7*24*time.Hour),
		DedupeTTL:              l.duration("DEDUPE_TTL", delivery.DefaultRecordTTL, time.Minute, 30*24*time.Hour),
		ShutdownTimeout:        l.duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, time.Second, 10*time.Minute),
		LogLevel:               l.logLevel(),
	}
	w.CompletedTaskRetention = l.retention()
	w.History = l.history()
	// Each task may hold a connection; asynq needs a few of its own.
	w.Redis.PoolSize = max(64, w.Concurrency+32)
	if w.DedupeTTL < w.MaxEventAge {
		l.fail("DEDUPE_TTL", "%s is shorter than MAX_EVENT_AGE %s: a repeated webhook could push twice", w.DedupeTTL, w.MaxEventAge)
	}
	if w.FCMCredentialsFile == "" && w.FCMEndpoint != "" && w.FCMProjectID == "" {
		// (An invalid FCM_ENDPOINT was reported already; w.FCMEndpoint is
		// then empty and this does not fire.)
		l.fail("FCM_PROJECT_ID", "required with FCM_ENDPOINT when GOOGLE_APPLICATION_CREDENTIALS is not set")
	}
	w.Texts = l.texts()
	w.Message = l.message()
	w.Policy = l.policy(w.MaxEventAge)
	w.FCMRateLimit = l.intRange("FCM_RATE_LIMIT", notifier.DefaultFCMRateLimit, 0, notifier.MaxFCMRateLimit)
	w.Tencent = l.tencentAPI()
	return w
}

// followQueues reads FOLLOW_QUEUE_SHARDS: 1 to tasks.MaxFollowQueueShards.
func (l *loader) followQueues() tasks.Shards {
	n := l.intRange("FOLLOW_QUEUE_SHARDS", tasks.DefaultFollowQueueShards, 1, tasks.MaxFollowQueueShards)
	s, err := tasks.NewShards(n)
	if err != nil { // not reached: intRange bounds n
		l.fail("FOLLOW_QUEUE_SHARDS", "%v", err)
	}
	return s
}

// retention reads COMPLETED_TASK_RETENTION: 0, or 1s to 24h (asynq keeps
// whole seconds).
func (l *loader) retention() time.Duration {
	d := l.duration("COMPLETED_TASK_RETENTION", 0, 0, 24*time.Hour)
	if d > 0 && d < time.Second {
		l.fail("COMPLETED_TASK_RETENTION", "%s is under a second: use 0 (off) or 1s to 24h", d)
		return 0
	}
	return d
}

func splitHostPort(a string) (string, int, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return "", 0, strconv.ErrRange
	}
	return host, n, nil
}

// redactURLError returns err's text with any password in raw replaced.
func redactURLError(err error, raw string) string {
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
		return msg
	}
	// Unparseable: drop anything between "://" and "@".
	if i := strings.Index(raw, "://"); i >= 0 {
		if j := strings.LastIndex(raw, "@"); j > i {
			msg = strings.ReplaceAll(msg, raw[i+3:j], "xxxxx")
		}
	}
	return msg
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}
