package webhook

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/tasks"
)

// Enqueuer durably stores one task per follow. It returns only after every
// follow is stored (a follow already queued counts as stored) or with an
// error when any could not be.
type Enqueuer interface {
	EnqueueFollows(ctx context.Context, follows []tasks.Follow) (EnqueueResult, error)
}

// EnqueueResult counts what [Enqueuer.EnqueueFollows] did.
type EnqueueResult struct {
	Enqueued  int // new tasks stored
	Duplicate int // tasks that already existed (a repeated webhook)
}

// Canceller records unfollows so that pending pushes of the same pairs are
// not sent (see delivery.Store.Cancel).
type Canceller interface {
	Cancel(ctx context.Context, app, from string, to []string, eventTime int64) error
}

// DeviceRegistry is the device store behind the device API (devices.Registry).
type DeviceRegistry interface {
	Register(ctx context.Context, userID, token string, reg devices.Registration) error
	Unregister(ctx context.Context, userID, token string) error
	List(ctx context.Context, userID string) ([]devices.Device, error)
}

// Pinger reports whether the store behind the receiver answers; /readyz uses it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// MaxClockSkew is how far in the future a callback's EventTime may be: a
// follow stamped later than now+MaxClockSkew is refused (400). Such an event
// would outlive every expiry (dedupe records are kept until EventTime plus
// their TTL).
const MaxClockSkew = 10 * time.Minute

// Options configure the handler returned by [NewServer].
type Options struct {
	// AppIDs are the accepted SDKAppIDs; a webhook from any other is refused (403).
	AppIDs []string
	// CallbackToken, when set, makes every webhook need a valid Sign and a
	// RequestTime within RequestTimeWindow (default 60 s).
	CallbackToken     string
	RequestTimeWindow time.Duration
	// CallbackTokens are per-SDKAppID tokens (the key "" serves apps not
	// listed), over CallbackToken. When any is set, every webhook needs a
	// valid Sign: a webhook of an app without a token here (and no
	// CallbackToken) is refused (401).
	CallbackTokens map[string]string
	// APIToken guards the device API; empty = the device API answers 503.
	APIToken string
	// MaxBodyBytes bounds a webhook body (default 1 MiB; larger: 413).
	MaxBodyBytes int64
	// MaxFollows bounds a callback's list (default 1000; longer: 400).
	MaxFollows int
	// StoreTimeout bounds storing one webhook's events (default 1.5 s, inside
	// Tencent's 2 s budget). Failed attempts are retried within it.
	StoreTimeout time.Duration
	// SpoolAfter is how long Redis is tried before an event goes to the
	// spool, when there is one (default 500 ms).
	SpoolAfter time.Duration
	// SpoolMaxBytes is the spool's size bound; /readyz reports not ready
	// when Redis is down and the spool is 90 % full.
	SpoolMaxBytes int64
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Deps are the collaborators of the handler returned by [NewServer].
type Deps struct {
	// Logger receives the handler's logs (default: discarded).
	Logger *slog.Logger
	// Enqueuer stores follow tasks (required).
	Enqueuer Enqueuer
	// Canceller records unfollows (required).
	Canceller Canceller
	// Devices backs the device API (required).
	Devices DeviceRegistry
	// Ready is pinged by /readyz (required).
	Ready Pinger
	// Metrics records the receiver's metrics (default: unregistered).
	Metrics *Metrics
	// MetricsHandler serves GET /metrics; nil = no such route.
	MetricsHandler http.Handler
	// Monitoring serves everything under /monitoring/ (asynqmon); nil = not
	// mounted. It does its own authentication.
	Monitoring http.Handler
	// Spool takes events when Redis cannot; nil = none (a 5xx then).
	Spool Spool
}

type server struct {
	opts Options
	apps map[string]bool
	Deps
}

// NewServer returns the receiver's HTTP handler: the webhook, the device
// API, health, readiness and metrics (see routes.go). Requests no route
// takes get the answer shape of the API they were meant for: under /webhook
// a Tencent-shaped FAIL whose ErrorCode is 10 times the HTTP status (4040,
// 4050 with an Allow header, 3070 with a Location header for a path such as
// "//webhook"), elsewhere the device API's {"error": "..."}.
func NewServer(opts Options, deps Deps) http.Handler {
	if opts.RequestTimeWindow <= 0 {
		opts.RequestTimeWindow = 60 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.MaxFollows <= 0 {
		opts.MaxFollows = 1000
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 1500 * time.Millisecond
	}
	if opts.SpoolAfter <= 0 {
		opts.SpoolAfter = 500 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	s := &server{opts: opts, apps: map[string]bool{}, Deps: deps}
	for _, id := range opts.AppIDs {
		s.apps[id] = true
	}
	mux := http.NewServeMux()
	s.addRoutes(mux)
	return answerOwnRouting(mux)
}

// PingFunc adapts a function to [Pinger].
type PingFunc func(ctx context.Context) error

// Ping calls f.
func (f PingFunc) Ping(ctx context.Context) error { return f(ctx) }
