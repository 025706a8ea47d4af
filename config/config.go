// Package config reads, validates and documents the settings of the
// followpush programs. Each program has one Load function that takes getenv
// (os.Getenv in production, a map in tests) and returns either a complete,
// validated configuration or every problem at once, each naming its setting.
//
// The [Settings] table is the single list of settings: the programs print it
// for -h, and docs/configuration.md's table is generated from it
// (go generate ./config; a test fails when it is stale).
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/internal/rediskey"
	"github.com/followpush/followpush/internal/spool"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
	"github.com/followpush/followpush/webhook"
)

// Program names a followpush program.
type Program string

// The programs.
const (
	ProgramReceiver   Program = "receiver"
	ProgramWorker     Program = "worker"
	ProgramStandalone Program = "standalone"
)

// Setting documents one environment variable.
type Setting struct {
	// Name is the environment variable.
	Name string
	// Programs are the programs that read it.
	Programs []Program
	// Default is the default for every program, unless Defaults names a
	// program-specific one.
	Default string
	// Defaults are the program-specific defaults, over Default; a value
	// may be a phrase ("(required)") rather than a value.
	Defaults map[Program]string
	// Help says what it means, for -h and docs/configuration.md.
	Help string
}

// DefaultFor returns the default of s for program p.
func (s Setting) DefaultFor(p Program) string {
	if d, ok := s.Defaults[p]; ok {
		return d
	}
	return s.Default
}

// UsedBy reports whether program p reads s.
func (s Setting) UsedBy(p Program) bool {
	for _, q := range s.Programs {
		if q == p {
			return true
		}
	}
	return false
}

var (
	all     = []Program{ProgramReceiver, ProgramWorker, ProgramStandalone}
	ingest  = []Program{ProgramReceiver, ProgramStandalone}
	sending = []Program{ProgramWorker, ProgramStandalone}
)

// Defaults of the settings that belong to the programs themselves; the
// others are the defaults of the packages that use them (MAX_EVENT_AGE is
// delivery.DefaultMaxEventAge, and so on), so that each is written once.
const (
	DefaultRedisURL          = "redis://127.0.0.1:6379/0"
	DefaultKeyPrefix         = rediskey.DefaultPrefix
	DefaultListenAddr        = ":8080"
	DefaultStandaloneListen  = "127.0.0.1:8080"
	DefaultWorkerMetricsAddr = ":9091"
	DefaultWorkerConcurrency = 100
	DefaultPollInterval      = 10 * time.Millisecond
	DefaultShutdownTimeout   = 25 * time.Second
	DefaultLogLevel          = "info"
	// DefaultStandaloneAppID is the SDKAppID standalone serves when
	// TENCENT_SDKAPPID is unset.
	DefaultStandaloneAppID = "1400000000"
)

// Minimum lengths of the secrets people choose: shorter values stop the
// program at start.
const (
	// MinAPITokenBytes is the shortest API_TOKEN accepted.
	MinAPITokenBytes = 16
	// MinMonitoringPasswordBytes is the shortest MONITORING_PASSWORD
	// accepted.
	MinMonitoringPasswordBytes = 12
)

// Settings lists every setting of every program, in the order -h prints
// them; docs/configuration.md's table is generated from it.
//
//go:generate go test -run TestConfigurationDocIsCurrent -update .
var Settings = []Setting{
	{Name: "REDIS_URL", Programs: all, Default: DefaultRedisURL, Defaults: map[Program]string{ProgramStandalone: "(embedded in-memory Redis)"},
		Help: "Redis to use: redis://[user:pass@]host:port/db, rediss:// for TLS"},
	{Name: "REDIS_CLUSTER_ADDRS", Programs: all, Help: "comma-separated host:port of a Redis Cluster; replaces REDIS_URL"},
	{Name: "REDIS_SENTINEL_ADDRS", Programs: all, Help: "comma-separated host:port of Redis Sentinels; replaces REDIS_URL; needs REDIS_SENTINEL_MASTER"},
	{Name: "REDIS_SENTINEL_MASTER", Programs: all, Help: "master name watched by the sentinels"},
	{Name: "REDIS_USERNAME", Programs: all, Help: "Redis ACL user for cluster and sentinel modes (REDIS_URL carries its own)"},
	{Name: "REDIS_PASSWORD", Programs: all, Help: "Redis password for cluster and sentinel modes (REDIS_URL carries its own); never logged"},
	{Name: "REDIS_KEY_PREFIX", Programs: all, Default: DefaultKeyPrefix, Help: "prefix of followpush's own Redis keys (asynq keeps its own asynq: keys)"},
	{Name: "FOLLOW_QUEUE_SHARDS", Programs: all, Default: text(tasks.DefaultFollowQueueShards), Help: fmt.Sprintf("asynq queues the follow and summary tasks are spread over, each followee's on one of them (a hash of its UserID); 1 = the single queue follow; more spread the queue over Redis Cluster masters (use a multiple of the masters); 1 to %d; give receivers and workers the same value; workers also drain the follow queues of other values they find in Redis (docs/operations.md)", tasks.MaxFollowQueueShards)},
	{Name: "LISTEN_ADDR", Programs: ingest, Default: DefaultListenAddr, Defaults: map[Program]string{ProgramStandalone: DefaultStandaloneListen}, Help: "HTTP listen address of the webhook and device API"},
	{Name: "TENCENT_SDKAPPID", Programs: ingest, Defaults: map[Program]string{ProgramReceiver: "(required)", ProgramStandalone: DefaultStandaloneAppID}, Help: "the app's SDKAppID; a comma-separated list serves several apps (one shared user namespace)"},
	{Name: "TENCENT_CALLBACK_TOKEN", Programs: ingest, Help: "webhook authentication token: one for every app, or sdkappid=token,... with a token for each app of TENCENT_SDKAPPID; when set every webhook needs a valid Sign and a RequestTime within REQUEST_TIME_WINDOW; unset = not checked (warned at start); never logged"},
	{Name: "REQUEST_TIME_WINDOW", Programs: ingest, Default: text(webhook.DefaultRequestTimeWindow), Help: "how far RequestTime may be from now before a signed webhook is a replay"},
	{Name: "API_TOKEN", Programs: ingest, Defaults: map[Program]string{ProgramStandalone: "followpush-dev-token on loopback, else a random one; printed at start"}, Help: fmt.Sprintf("bearer token of the device API, at least %d bytes (use a random secret); unset = the device API answers 503", MinAPITokenBytes)},
	{Name: "MONITORING_USER", Programs: ingest, Help: "with MONITORING_PASSWORD, mounts asynqmon at /monitoring behind HTTP basic auth; unset = not mounted (standalone on loopback: mounted without auth)"},
	{Name: "MONITORING_PASSWORD", Programs: ingest, Help: fmt.Sprintf("password of /monitoring, at least %d bytes; never logged", MinMonitoringPasswordBytes)},
	{Name: "SPOOL_DIR", Programs: []Program{ProgramReceiver}, Help: "directory of the local fsync'd spool that takes events while Redis is unavailable (one per receiver process; use a persistent volume); unset = no spool: such events get a 503"},
	{Name: "SPOOL_MAX_BYTES", Programs: []Program{ProgramReceiver}, Default: text(spool.DefaultMaxBytes), Help: "size bound of the spool on disk; when full (and Redis down) webhooks get a 503"},
	{Name: "SPOOL_DRAIN_BATCH", Programs: []Program{ProgramReceiver}, Default: text(webhook.DefaultDrainBatch), Help: "spooled events moved into Redis per drain step, 1 to 10000; the read position is saved after each step, so a receiver killed mid-drain offers that one step again (harmless: same task ids and delivery records)"},
	{Name: "WEBHOOK_MAX_BODY_BYTES", Programs: ingest, Default: text(webhook.DefaultMaxBodyBytes), Help: "largest webhook body accepted (bigger: 413)"},
	{Name: "WEBHOOK_MAX_FOLLOWS", Programs: ingest, Default: text(tencent.DefaultMaxFollows), Help: "longest FollowList / To_Account list accepted (longer: 400)"},
	{Name: "ENQUEUE_CONCURRENCY", Programs: ingest, Default: text(webhook.DefaultEnqueueConcurrency), Help: "Redis pipelines (of up to 100 followee tasks) one webhook stores at once"},
	{Name: "MAX_DEVICES_PER_USER", Programs: all, Default: text(devices.DefaultMaxDevicesPerUser), Help: "devices kept per user; registering one more evicts the least recently seen"},
	{Name: "MAX_EVENT_AGE", Programs: all, Default: text(delivery.DefaultMaxEventAge), Help: "a follow older than this (from its EventTime) is dropped, not pushed; also how long an unfollow cancels"},
	{Name: "DEDUPE_TTL", Programs: sending, Default: text(delivery.DefaultRecordTTL), Help: "how long a follow's delivery record (dedupe, sent devices) is kept; at least MAX_EVENT_AGE"},
	{Name: "COMPLETED_TASK_RETENTION", Programs: all, Default: "0", Help: "how long a delivered follow's task (receivers) and a sent summary's task (workers) stay in Redis as completed, for asynqmon's Completed tab; 0 = deleted at once; 1s to 24h, about 650 bytes of Redis per task kept; give receivers and workers the same value"},
	{Name: "FOLLOW_HISTORY", Programs: all, Default: onOff(history.DefaultEnabled), Help: "on: every follow and unfollow, and every decision and push attempt about it, is kept per followed user in Redis and served at GET /v1/users/{userID}/notifications (docs/history.md); off: nothing written, the route answers 503; give receivers and workers the same value"},
	{Name: "FOLLOW_HISTORY_MAX_EVENTS", Programs: all, Default: text(history.DefaultMaxEvents), Help: fmt.Sprintf("history entries kept per followed user (about; a follow takes 2 to 4), %d to %d", history.MinMaxEvents, history.MaxMaxEvents)},
	{Name: "FOLLOW_HISTORY_TTL", Programs: all, Default: text(history.DefaultTTL), Help: "how long a user's history is kept after its last entry, 1m to 2160h"},
	{Name: "WORKER_CONCURRENCY", Programs: sending, Default: text(DefaultWorkerConcurrency), Help: "tasks processed at once per worker process (FCM sends are I/O bound)"},
	{Name: "WORKER_POLL_INTERVAL", Programs: sending, Default: text(DefaultPollInterval), Help: "how often an idle worker checks for new tasks (asynq TaskCheckInterval, asynq's own default 1s): pick-up p50 ~11 ms, ~300 Redis commands/s per idle worker"},
	{Name: "FCM_PROJECT_ID", Programs: sending, Default: "(from the credentials file)", Help: "Firebase project id; required with FCM_ENDPOINT and no credentials, or with neither (application default credentials)"},
	{Name: "GOOGLE_APPLICATION_CREDENTIALS", Programs: sending, Help: "service-account JSON file for FCM"},
	{Name: "FCM_ENDPOINT", Programs: sending, Help: "base URL of an FCM-HTTP-v1-compatible server; unset = Google's endpoint"},
	{Name: "FCM_SEND_TIMEOUT", Programs: sending, Default: text(notifier.DefaultSendTimeout), Help: "bound on one task's FCM sends, the SDK's own retries included"},
	{Name: "SENDER_ID_MISMATCH_LIMIT", Programs: sending, Default: text(notifier.DefaultMismatchLimit), Help: "SENDER_ID_MISMATCH answers (all workers together, since the last successful send) whose tokens are deleted; the next one opens a breaker: no worker deletes for that reason until a send succeeds (wrong credentials must not wipe the registry); 1 to 1000000"},
	{Name: "SENDER_ID_MISMATCH_WINDOW", Programs: sending, Default: text(notifier.DefaultMismatchWindow), Help: "how long a SENDER_ID_MISMATCH answer counts towards SENDER_ID_MISMATCH_LIMIT when no send succeeds; 1m to 720h"},
	{Name: "PUSH_TITLE", Programs: sending, Default: pushtext.DefaultTitle, Help: "notification title"},
	{Name: "PUSH_BODY", Programs: sending, Default: pushtext.DefaultBody, Help: "notification body, a Go text/template with .From and .To"},
	{Name: "PUSH_TEMPLATES_FILE", Programs: sending, Help: "JSON file of push texts per locale ({\"zh-TW\":{\"title\":…,\"body\":…,\"digest_title\":…,\"digest_body\":…}}) over the built-in en, zh, ja; a device's locale picks, else en; unset = built-in texts (en: PUSH_TITLE, PUSH_BODY)"},
	{Name: "FOLLOW_COOLDOWN", Programs: sending, Default: text(delivery.DefaultCooldown), Help: "follow → unfollow → follow again within this time notifies once per pair; 0 = off"},
	{Name: "MAX_PUSHES_PER_USER_PER_HOUR", Programs: sending, Default: "0", Help: "follower pushes one user gets in any hour at most; more follows are folded into the next summary push; 0 = unlimited"},
	{Name: "AGGREGATION_WINDOW", Programs: sending, Default: "0", Help: "follows of the same user within this window become one summary push (first followers named, the rest counted); 0 = off: one push per follow"},
	{Name: "AGGREGATION_FIRST_IMMEDIATE", Programs: sending, Default: "true", Help: "with AGGREGATION_WINDOW, the first follow after a quiet period is pushed at once and opens the window"},
	{Name: "FCM_RATE_LIMIT", Programs: sending, Default: text(notifier.DefaultFCMRateLimit), Help: "FCM sends per second shared by all workers (through Redis), below FCM's 600,000/min project quota; 0 = unlimited"},
	{Name: "ANDROID_CHANNEL_ID", Programs: sending, Help: "Android notification channel of the pushes; unset = the app's default channel"},
	{Name: "ANDROID_PRIORITY", Programs: sending, Default: fcm.DefaultAndroidPriority, Help: "FCM Android priority: high or normal"},
	{Name: "APNS_SOUND", Programs: sending, Default: fcm.DefaultAPNsSound, Help: "APNs sound: a sound file of the app, default, or none for silent"},
	{Name: "APNS_THREAD_ID", Programs: sending, Default: fcm.DefaultAPNsThreadID, Help: "APNs thread-id grouping follower notifications on iOS"},
	{Name: "WEBPUSH_LINK", Programs: sending, Help: "https URL a web notification opens when clicked; unset = none"},
	{Name: "TENCENT_API_BASE", Programs: sending, Help: "Tencent Cloud Chat REST API domain of the app's region (e.g. https://adminapisgp.im.qcloud.com): pushes then name followers by nickname (v4/profile/portrait_get); unset = by UserID"},
	{Name: "TENCENT_ADMIN_IDENTIFIER", Programs: sending, Default: tencent.DefaultIdentifier, Help: "app admin account for the REST API"},
	{Name: "TENCENT_ADMIN_USERSIG", Programs: sending, Help: "the admin account's UserSig (one for every app, or sdkappid=usersig,... per app); it expires: renew it yourself, or set TENCENT_SECRET_KEY instead; with TENCENT_API_BASE one of the two is required; never logged"},
	{Name: "TENCENT_SECRET_KEY", Programs: sending, Help: "the app's secret key from the console (one for every app, or sdkappid=key,... per app): the worker makes the admin's UserSig itself (TLSSigAPIv2, valid 24h, renewed after 12h); an app has this or TENCENT_ADMIN_USERSIG, not both; never logged"},
	{Name: "DISPLAY_NAME_CACHE_TTL", Programs: sending, Default: text(notifier.DefaultDisplayNameCacheTTL), Help: "how long a follower's nickname (or its absence) is cached in Redis"},
	{Name: "METRICS_ADDR", Programs: []Program{ProgramReceiver, ProgramWorker}, Default: DefaultWorkerMetricsAddr, Defaults: map[Program]string{ProgramReceiver: ""},
		Help: "worker: address of its /metrics, /healthz and /readyz; receiver: address its /metrics moves to, off the webhook's port (unset = /metrics beside the webhook); :0 picks a free port"},
	{Name: "PPROF", Programs: []Program{ProgramWorker}, Default: "false", Help: "true also serves Go's profiler at /debug/pprof/ on METRICS_ADDR (keep that address private)"},
	{Name: "SHUTDOWN_TIMEOUT", Programs: all, Default: text(DefaultShutdownTimeout), Help: "on SIGTERM, how long in-flight requests and tasks may take to finish"},
	{Name: "LOG_LEVEL", Programs: all, Default: DefaultLogLevel, Help: "debug, info, warn or error"},
}

// PrintUsage writes the -h text of program p: every setting it reads with its
// default.
func PrintUsage(w io.Writer, p Program, summary string) {
	fmt.Fprintf(w, "%s\n\nSettings (environment variables):\n\n", summary)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tDEFAULT\tMEANING")
	for _, s := range Settings {
		if !s.UsedBy(p) {
			continue
		}
		def := s.DefaultFor(p)
		if def == "" {
			def = "(unset)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Name, def, s.Help)
	}
	tw.Flush()
}

// loader reads settings through getenv and collects every problem.
type loader struct {
	getenv  func(string) string
	program Program
	errs    []error
	read    map[string]bool
}

func newLoader(getenv func(string) string, p Program) *loader {
	return &loader{getenv: getenv, program: p, read: map[string]bool{}}
}

func (l *loader) fail(name, format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (l *loader) err() error { return errors.Join(l.errs...) }

// raw returns the trimmed value of name, or def when it is unset or empty.
func (l *loader) raw(name, def string) string {
	l.read[name] = true
	if v := strings.TrimSpace(l.getenv(name)); v != "" {
		return v
	}
	return def
}

func (l *loader) str(name, def string) string { return l.raw(name, def) }

func (l *loader) intRange(name string, def, lo, hi int) int {
	return inRange(l, name, def, lo, hi, strconv.Atoi, "%q is not a whole number from %v to %v")
}

func (l *loader) duration(name string, def, lo, hi time.Duration) time.Duration {
	return inRange(l, name, def, lo, hi, time.ParseDuration, "%q is not a duration from %v to %v (e.g. 30s, 5m)")
}

// inRange is name's value read by parse, def when it is unset; a value
// parse refuses or outside lo to hi fails name with form (given the value,
// lo and hi).
func inRange[T int | time.Duration](l *loader, name string, def, lo, hi T, parse func(string) (T, error), form string) T {
	v := l.raw(name, "")
	if v == "" {
		return def
	}
	n, err := parse(v)
	if err != nil || n < lo || n > hi {
		l.fail(name, form, v, lo, hi)
		return def
	}
	return n
}

func (l *loader) list(name string) []string {
	v := l.raw(name, "")
	if v == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (l *loader) listenAddr(name, def string) string {
	v := l.raw(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil {
		l.fail(name, "%q is not host:port (e.g. :8080)", v)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		l.fail(name, "%q has no valid port", v)
	}
	return v
}

func (l *loader) logLevel() string {
	v := strings.ToLower(l.raw("LOG_LEVEL", DefaultLogLevel))
	switch v {
	case "debug", "info", "warn", "error":
	default:
		l.fail("LOG_LEVEL", "%q is not one of debug, info, warn, error", v)
		v = DefaultLogLevel
	}
	return v
}

func (l *loader) baseURL(name string) string {
	v := l.raw(name, "")
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		l.fail(name, "%q is not an http(s) base URL (e.g. http://127.0.0.1:9099)", v)
		return ""
	}
	return strings.TrimRight(v, "/")
}

// text writes a default as the settings are written: a duration without
// zero units ("1h", "90s" as "1m30s", "10ms"), a number in decimal.
func text[T int | int64 | time.Duration](v T) string {
	if d, ok := any(v).(time.Duration); ok {
		s := d.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
	return strconv.FormatInt(int64(v), 10)
}
