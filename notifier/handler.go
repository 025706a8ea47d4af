package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"firebase.google.com/go/v4/messaging"
	"github.com/hibiken/asynq"
	"golang.org/x/time/rate"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/tasks"
)

// Sender sends FCM messages, returning one error per message (nil = FCM
// accepted it). [FCMSender] and [LogSender] implement it.
type Sender interface {
	Send(ctx context.Context, msgs []*messaging.Message) []error
}

// DeviceStore is what the handler needs of the device registry
// (devices.Registry).
type DeviceStore interface {
	List(ctx context.Context, userID string) ([]devices.Device, error)
	Owners(ctx context.Context, tokens []string) (map[string]string, error)
	Unregister(ctx context.Context, userID, token string) error
}

// RecordStore is what the handler needs of the delivery records
// (delivery.Store).
type RecordStore interface {
	Load(ctx context.Context, f tasks.Follow) (delivery.Record, error)
	MarkSent(ctx context.Context, f tasks.Follow, tokens []string) error
	MarkDone(ctx context.Context, f tasks.Follow) error
	AddQuotaRetry(ctx context.Context, f tasks.Follow) (int, error)
}

// HandlerOptions tune a [Handler].
type HandlerOptions struct {
	// MaxEventAge: a follow older than this (from its EventTime) is dropped,
	// not sent (default 1 h).
	MaxEventAge time.Duration
	// SendTimeout bounds one task's FCM sends, the SDK's own retries
	// included (default 10 s).
	SendTimeout time.Duration
	// Content renders title and body (default DefaultContent's texts).
	Content *Templates
	// MismatchDeletesPerMinute bounds how many tokens per minute a worker
	// deletes for SENDER_ID_MISMATCH (default 100). A spike past it means our
	// credentials or project are wrong, not the tokens: deleting stops and an
	// error is logged, so the registry is not wiped.
	MismatchDeletesPerMinute int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler is the asynq handler of [tasks.TypeFollow] tasks.
type Handler struct {
	log      *slog.Logger
	devices  DeviceStore
	records  RecordStore
	sender   Sender
	metrics  *Metrics
	opts     HandlerOptions
	mismatch *rate.Limiter
}

// NewHandler returns a Handler. metrics may be nil (not exported then).
func NewHandler(log *slog.Logger, devs DeviceStore, records RecordStore, sender Sender, metrics *Metrics, opts HandlerOptions) (*Handler, error) {
	if opts.MaxEventAge <= 0 {
		opts.MaxEventAge = time.Hour
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 10 * time.Second
	}
	if opts.MismatchDeletesPerMinute <= 0 {
		opts.MismatchDeletesPerMinute = 100
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Content == nil {
		t, err := NewTemplates("", "")
		if err != nil {
			return nil, err
		}
		opts.Content = t
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	per := rate.Every(time.Minute / time.Duration(opts.MismatchDeletesPerMinute))
	return &Handler{
		log: log, devices: devs, records: records, sender: sender, metrics: metrics, opts: opts,
		mismatch: rate.NewLimiter(per, opts.MismatchDeletesPerMinute),
	}, nil
}

// ProcessTask sends f's push to every device of the followee that has not
// had it yet, and returns the retry policy as its error (see the package
// documentation).
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	f, err := tasks.ParseFollow(t)
	if err != nil {
		h.metrics.tasks.WithLabelValues("invalid").Inc()
		h.log.Error("invalid follow task: archived", "err", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log := h.log.With(slog.String("task_id", f.TaskID()), slog.String("from_account", f.From), slog.String("to_account", f.To))
	err = h.process(ctx, log, f)
	var re *RetryError
	if errors.As(err, &re) {
		h.metrics.tasks.WithLabelValues("retry").Inc()
		log.Warn("push will be retried", "err", err)
	} else if err != nil {
		h.metrics.tasks.WithLabelValues("error").Inc()
		log.Error("follow task failed", "err", err)
	}
	return err
}

func (h *Handler) process(ctx context.Context, log *slog.Logger, f tasks.Follow) error {
	now := h.opts.Now()
	if age := now.Sub(f.Time()); age > h.opts.MaxEventAge {
		h.metrics.tasks.WithLabelValues("stale").Inc()
		log.Warn("follow too old: dropped", "age", age.Round(time.Second).String(), "max_age", h.opts.MaxEventAge.String())
		return nil
	}
	rec, err := h.records.Load(ctx, f)
	if err != nil {
		return err
	}
	switch {
	case rec.Done:
		h.metrics.tasks.WithLabelValues("duplicate").Inc()
		log.Info("follow already handled: nothing sent")
		return nil
	case rec.Cancelled:
		h.metrics.tasks.WithLabelValues("cancelled").Inc()
		log.Info("unfollowed before the push: nothing sent")
		return h.records.MarkDone(ctx, f)
	}

	targets, err := h.targets(ctx, f, rec)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		h.metrics.tasks.WithLabelValues("no_devices").Inc()
		log.Debug("no devices to push to")
		return h.records.MarkDone(ctx, f)
	}

	content, err := h.opts.Content.Render(f)
	if err != nil {
		return fmt.Errorf("render push content: %w: %w", err, asynq.SkipRetry)
	}
	msgs := make([]*messaging.Message, len(targets))
	for i, d := range targets {
		msgs[i] = BuildMessage(f, d.Token, d.Platform, content)
	}
	sendCtx, cancel := context.WithTimeout(ctx, h.opts.SendTimeout)
	errs := h.sender.Send(sendCtx, msgs)
	cancel()
	accepted := h.opts.Now()

	var (
		finished []string
		retry    *RetryError
	)
	for i, d := range targets {
		outcome := Classify(errs[i])
		h.metrics.pushes.WithLabelValues(string(outcome)).Inc()
		dlog := log.With(slog.String("token", MaskToken(d.Token)), slog.String("outcome", string(outcome)))
		switch {
		case outcome == OutcomeSent:
			finished = append(finished, d.Token)
			h.metrics.delay.Observe(accepted.Sub(f.Time()).Seconds())
		case outcome.Retryable():
			retry = retry.add(outcome, RetryAfter(errs[i], accepted))
			dlog.Info("push failed, will retry", "err", errs[i])
		case outcome.DropsToken():
			finished = append(finished, d.Token)
			h.dropToken(ctx, dlog, f.To, d.Token, outcome, errs[i])
		case outcome == OutcomeInvalidMessage:
			finished = append(finished, d.Token)
			dlog.Error("FCM rejected our message: a bug in followpush, not retried", "err", errs[i])
		case outcome == OutcomeThirdPartyAuth:
			finished = append(finished, d.Token)
			dlog.Error("FCM third-party auth error: check the APNs/web-push credentials in the Firebase project", "err", errs[i])
		default:
			finished = append(finished, d.Token)
			dlog.Error("push failed, not retried", "err", errs[i])
		}
	}
	// Record what was sent even if asynq gave up on the task meanwhile
	// (shutdown): otherwise the next attempt would send it again.
	ctx, cancelBookkeeping := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancelBookkeeping()
	if err := h.records.MarkSent(ctx, f, finished); err != nil {
		// The pushes went out; without the record a retry would repeat them
		// (the collapse id makes a repeat replace, not stack).
		log.Error("could not record sent devices", "err", err)
	}
	if retry != nil {
		if retry.Quota {
			if n, err := h.records.AddQuotaRetry(ctx, f); err == nil {
				retry.QuotaRetries = n
			}
		}
		return retry
	}
	h.metrics.tasks.WithLabelValues("sent").Inc()
	log.Info("follow delivered", "devices", len(finished))
	return h.records.MarkDone(ctx, f)
}

// targets returns the followee's devices that still need this push and that
// the followee still owns (the token index is the source of truth: a token
// that moved to another user must not get this user's push).
func (h *Handler) targets(ctx context.Context, f tasks.Follow, rec delivery.Record) ([]devices.Device, error) {
	devs, err := h.devices.List(ctx, f.To)
	if err != nil || len(devs) == 0 {
		return nil, err
	}
	pending := devs[:0:0]
	tokens := make([]string, 0, len(devs))
	for _, d := range devs {
		if !rec.Finished[delivery.TokenKey(d.Token)] {
			pending = append(pending, d)
			tokens = append(tokens, d.Token)
		}
	}
	if len(pending) == 0 {
		return nil, nil
	}
	owners, err := h.devices.Owners(ctx, tokens)
	if err != nil {
		return nil, err
	}
	out := pending[:0]
	for _, d := range pending {
		if owners[d.Token] == f.To {
			out = append(out, d)
		}
	}
	return out, nil
}

func (h *Handler) dropToken(ctx context.Context, log *slog.Logger, user, token string, outcome Outcome, sendErr error) {
	if outcome == OutcomeSenderIDMismatch && !h.mismatch.Allow() {
		h.metrics.tokensKept.WithLabelValues(string(outcome)).Inc()
		log.Error("SENDER_ID_MISMATCH spike: token kept; check FCM credentials and project", "err", sendErr)
		return
	}
	if err := h.devices.Unregister(ctx, user, token); err != nil {
		log.Error("could not delete dead token", "err", err)
		return
	}
	h.metrics.tokensDeleted.WithLabelValues(string(outcome)).Inc()
	log.Info("dead token deleted", "err", sendErr)
}
