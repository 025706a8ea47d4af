package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/internal/restapi"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
)

// Enqueuer durably stores one task per follow. It returns only after every
// follow is stored (a follow already queued counts as stored) or with an
// error when any could not be.
type Enqueuer interface {
	// EnqueueFollows stores one task per follow.
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
	// Cancel records that from unfollowed each of to at eventTime (ms).
	Cancel(ctx context.Context, app, from string, to []string, eventTime int64) error
}

// MaxClockSkew is how far in the future a callback's EventTime may be: a
// follow stamped later than now+MaxClockSkew is refused (400). Such an event
// would outlive every expiry (dedupe records are kept until EventTime plus
// their TTL).
const MaxClockSkew = 10 * time.Minute

// Defaults of [Options].
const (
	DefaultRequestTimeWindow = 60 * time.Second
	DefaultMaxBodyBytes      = 1 << 20
	DefaultStoreTimeout      = 1500 * time.Millisecond
	DefaultSpoolAfter        = 500 * time.Millisecond
)

// Options configure the handler returned by [NewHandler].
type Options struct {
	// AppIDs are the accepted SDKAppIDs; a webhook from any other is refused (403).
	AppIDs []string
	// CallbackToken, when set, makes every webhook need a valid Sign and a
	// RequestTime within RequestTimeWindow (default [DefaultRequestTimeWindow]).
	CallbackToken string
	// RequestTimeWindow is how far RequestTime may be from now
	// (REQUEST_TIME_WINDOW).
	RequestTimeWindow time.Duration
	// CallbackTokens are per-SDKAppID tokens (the key "" serves apps not
	// listed), over CallbackToken. When any is set, every webhook needs a
	// valid Sign: a webhook of an app without a token here (and no
	// CallbackToken) is refused (401).
	CallbackTokens map[string]string
	// MaxBodyBytes bounds a webhook body (default [DefaultMaxBodyBytes];
	// larger: 413).
	MaxBodyBytes int64
	// MaxFollows bounds a callback's list (default
	// [tencent.DefaultMaxFollows]; longer: 400).
	MaxFollows int
	// StoreTimeout bounds storing one webhook's events (default
	// [DefaultStoreTimeout], inside Tencent's 2 s budget). Failed attempts
	// are retried within it.
	StoreTimeout time.Duration
	// SpoolAfter is how long Redis is tried before an event goes to the
	// spool, when there is one (default [DefaultSpoolAfter]).
	SpoolAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Deps are the collaborators of the handler returned by [NewHandler].
type Deps struct {
	// Logger receives the handler's logs (default: discarded).
	Logger *slog.Logger
	// Enqueuer stores follow tasks (required).
	Enqueuer Enqueuer
	// Canceller records unfollows (required).
	Canceller Canceller
	// Metrics records the webhooks' metrics (default: unregistered).
	Metrics *Metrics
	// Spool takes events when Redis cannot; nil = none (a 5xx then).
	Spool Spool
}

type handler struct {
	opts Options
	apps map[string]bool
	Deps
}

// NewHandler returns the handler of POST /webhook: Tencent Cloud Chat's
// callbacks, authenticated ([tencent.VerifySign]), parsed
// ([tencent.Parse]) and stored. Its answers are Tencent-shaped: 200 OK
// once the event is stored (or ignored: a command this service does not
// handle), otherwise FAIL with the status and ErrorCode of [Failure].
func NewHandler(opts Options, deps Deps) http.Handler {
	if opts.RequestTimeWindow <= 0 {
		opts.RequestTimeWindow = DefaultRequestTimeWindow
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxFollows <= 0 {
		opts.MaxFollows = tencent.DefaultMaxFollows
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = DefaultStoreTimeout
	}
	if opts.SpoolAfter <= 0 {
		opts.SpoolAfter = DefaultSpoolAfter
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
	h := &handler{opts: opts, apps: map[string]bool{}, Deps: deps}
	for _, id := range opts.AppIDs {
		h.apps[id] = true
	}
	return h
}

func (s *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	app := q.Get("SdkAppid")
	command := q.Get("CallbackCommand")

	cb, result, err := s.acceptWebhook(w, r, app, command)
	if cb.Command != "" {
		command = cb.Command
	}
	label := commandLabel(command)
	defer func() {
		s.Metrics.observeWebhook(label, result, time.Since(start))
	}()
	if err != nil {
		status, code, res := Failure(err)
		result = res
		log := s.Logger.With("sdkappid", app, "command", command, "status", status)
		if status >= 500 {
			log.Error("webhook not stored", "err", err)
		} else {
			log.Warn("webhook refused", "err", err, "client_ip", q.Get("ClientIP"))
		}
		info := err.Error()
		if status >= 500 {
			info = "event could not be stored; try again" // internal details stay in our log
		}
		restapi.WriteJSON(w, status, tencent.Fail(code, info))
		return
	}
	restapi.WriteJSON(w, http.StatusOK, tencent.OK())
}

// acceptWebhook authenticates, parses and stores one callback. It returns the
// parsed callback (as far as it got), the metric result and the error that
// decides the answer.
func (s *handler) acceptWebhook(w http.ResponseWriter, r *http.Request, app, command string) (tencent.Callback, string, error) {
	// Authenticate first: a request both unauthenticated and malformed gets
	// the authentication answer.
	if !s.apps[app] {
		return tencent.Callback{}, "", fmt.Errorf("%w %q", errUnknownApp, app)
	}
	if token, signed := s.callbackToken(app); signed {
		if token == "" {
			return tencent.Callback{}, "", fmt.Errorf("%w: no callback token for SdkAppid %s", tencent.ErrBadSign, app)
		}
		q := r.URL.Query()
		if err := tencent.VerifySign(token, q.Get("RequestTime"), q.Get("Sign"), s.opts.Now(), s.opts.RequestTimeWindow); err != nil {
			return tencent.Callback{}, "", err
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return tencent.Callback{}, "", err
		}
		return tencent.Callback{}, "", fmt.Errorf("%w: %v", errUnreadableBody, err)
	}
	cb, err := tencent.Parse(command, body, tencent.Limits{MaxFollows: s.opts.MaxFollows})
	if err != nil {
		return cb, "", err
	}
	if cb.EventTime > s.opts.Now().Add(MaxClockSkew).UnixMilli() {
		return cb, "", fmt.Errorf("%w: EventTime %d is more than %s in the future", tencent.ErrMalformed, cb.EventTime, MaxClockSkew)
	}

	// Store the event even if Tencent hangs up: a half-stored callback would
	// only be completed by a retry that may never come.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.opts.StoreTimeout)
	defer cancel()
	switch cb.Command {
	case tencent.CommandFollowAdd:
		s.countSkipped(cb)
		if len(cb.To) == 0 {
			return cb, resultOK, nil
		}
		err = s.retryStore(ctx, func(ctx context.Context) error { return s.storeFollows(ctx, app, cb) })
	case tencent.CommandFollowDelete:
		err = s.retryStore(ctx, func(ctx context.Context) error { return s.Canceller.Cancel(ctx, app, cb.From, cb.To, cb.EventTime) })
		if err == nil {
			s.Metrics.follows.WithLabelValues("cancelled").Add(float64(len(cb.To)))
		}
	default:
		return cb, resultIgnored, nil
	}
	if err != nil && s.Spool != nil {
		if err = s.spoolEvent(app, cb, err); err == nil {
			return cb, resultSpooled, nil
		}
	}
	return cb, resultOK, err
}

// callbackToken returns the token that signs app's webhooks (see
// Options.CallbackTokens), and whether webhooks are signed at all.
func (s *handler) callbackToken(app string) (token string, signed bool) {
	if t, ok := s.opts.CallbackTokens[app]; ok {
		return t, true
	}
	if t, ok := s.opts.CallbackTokens[""]; ok {
		return t, true
	}
	return s.opts.CallbackToken, s.opts.CallbackToken != "" || len(s.opts.CallbackTokens) > 0
}

// retryStore runs store until it succeeds or its budget ends: the whole
// store timeout without a spool, SpoolAfter with one (the rest of Tencent's
// 2 s is the spool's).
func (s *handler) retryStore(ctx context.Context, store func(context.Context) error) error {
	if s.Spool != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.SpoolAfter)
		defer cancel()
	}
	wait := 20 * time.Millisecond
	for {
		err := store(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func (s *handler) countSkipped(cb tencent.Callback) {
	s.Metrics.follows.WithLabelValues("skipped_invalid").Add(float64(cb.Invalid))
	s.Metrics.follows.WithLabelValues("skipped").Add(float64(cb.Skipped - cb.Invalid))
}

func (s *handler) storeFollows(ctx context.Context, app string, cb tencent.Callback) error {
	follows := make([]tasks.Follow, len(cb.To))
	for i, to := range cb.To {
		follows[i] = tasks.Follow{AppID: app, From: cb.From, To: to, EventTime: cb.EventTime}
	}
	start := time.Now()
	res, err := s.Enqueuer.EnqueueFollows(ctx, follows)
	s.Metrics.enqueueDuration.Observe(time.Since(start).Seconds())
	s.Metrics.follows.WithLabelValues("enqueued").Add(float64(res.Enqueued))
	s.Metrics.follows.WithLabelValues("duplicate").Add(float64(res.Duplicate))
	if err != nil {
		return fmt.Errorf("store %d follows (%d stored): %w", len(follows), res.Enqueued+res.Duplicate, err)
	}
	if res.Duplicate > 0 {
		s.Logger.Info("repeated follow webhook", slog.String("from_account", cb.From), slog.Int("duplicates", res.Duplicate))
	}
	return nil
}

func (m *Metrics) observeWebhook(command, result string, d time.Duration) {
	if m == nil || result == "" {
		return
	}
	m.webhooks.WithLabelValues(command, result).Inc()
	m.webhookDuration.WithLabelValues(command).Observe(d.Seconds())
}

// Webhook error codes (the ErrorCode of a FAIL answer). Tencent only needs
// them to be non-zero; they are stable so operators can grep for them.
const (
	codeBadRequest   = 4000
	codeUnauthorized = 4010
	codeUnknownApp   = 4030
	codeTooLarge     = 4130
	codeUnavailable  = 5030
)

// webhook results, used as the "result" metric label.
const (
	resultOK           = "ok"
	resultIgnored      = "ignored"
	resultSpooled      = "spooled"
	resultUnauthorized = "unauthorized"
	resultForbidden    = "forbidden"
	resultBadRequest   = "bad_request"
	resultTooLarge     = "too_large"
	resultUnavailable  = "unavailable"
)

// Failure maps a webhook problem to its HTTP status, Tencent error code
// and metric result (followpush_webhooks_total): the one place that does
// so. Authentication comes first (403 unknown app, 401 signature), then
// the body (413, 400); anything else is a failure to store (503).
func Failure(err error) (status, code int, result string) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, errUnknownApp):
		return http.StatusForbidden, codeUnknownApp, resultForbidden
	case errors.Is(err, tencent.ErrMissingSign), errors.Is(err, tencent.ErrBadSign), errors.Is(err, tencent.ErrStaleRequest):
		return http.StatusUnauthorized, codeUnauthorized, resultUnauthorized
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, codeTooLarge, resultTooLarge
	case errors.Is(err, tencent.ErrMalformed), errors.Is(err, errUnreadableBody):
		return http.StatusBadRequest, codeBadRequest, resultBadRequest
	}
	return http.StatusServiceUnavailable, codeUnavailable, resultUnavailable
}

var (
	errUnknownApp     = errors.New("unknown SdkAppid")
	errUnreadableBody = errors.New("unreadable body")
)
