package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/followpush/followpush/tasks"
)

func (s *server) handleWebhook(w http.ResponseWriter, r *http.Request) {
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
		status, code, res := webhookFailure(err)
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
		writeTencent(w, status, code, info)
		return
	}
	writeTencent(w, http.StatusOK, 0, "")
}

// acceptWebhook authenticates, parses and stores one callback. It returns the
// parsed callback (as far as it got), the metric result and the error that
// decides the answer.
func (s *server) acceptWebhook(w http.ResponseWriter, r *http.Request, app, command string) (Callback, string, error) {
	// Authenticate first: a request both unauthenticated and malformed gets
	// the authentication answer.
	if !s.apps[app] {
		return Callback{}, "", fmt.Errorf("%w %q", errUnknownApp, app)
	}
	if token, signed := s.callbackToken(app); signed {
		if token == "" {
			return Callback{}, "", fmt.Errorf("%w: no callback token for SdkAppid %s", ErrBadSign, app)
		}
		q := r.URL.Query()
		if err := VerifySign(token, q.Get("RequestTime"), q.Get("Sign"), s.opts.Now(), s.opts.RequestTimeWindow); err != nil {
			return Callback{}, "", err
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return Callback{}, "", err
		}
		return Callback{}, "", fmt.Errorf("%w: %v", errUnreadableBody, err)
	}
	cb, err := Parse(command, body, Limits{MaxFollows: s.opts.MaxFollows})
	if err != nil {
		return cb, "", err
	}
	if cb.EventTime > s.opts.Now().Add(MaxClockSkew).UnixMilli() {
		return cb, "", fmt.Errorf("%w: EventTime %d is more than %s in the future", ErrMalformed, cb.EventTime, MaxClockSkew)
	}

	// Store the event even if Tencent hangs up: a half-stored callback would
	// only be completed by a retry that may never come.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.opts.StoreTimeout)
	defer cancel()
	switch cb.Command {
	case CommandFollowAdd:
		s.countSkipped(cb)
		if len(cb.To) == 0 {
			return cb, resultOK, nil
		}
		err = s.retryStore(ctx, func(ctx context.Context) error { return s.storeFollows(ctx, app, cb) })
	case CommandFollowDelete:
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
func (s *server) callbackToken(app string) (token string, signed bool) {
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
func (s *server) retryStore(ctx context.Context, store func(context.Context) error) error {
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

func (s *server) countSkipped(cb Callback) {
	s.Metrics.follows.WithLabelValues("skipped_invalid").Add(float64(cb.Invalid))
	s.Metrics.follows.WithLabelValues("skipped").Add(float64(cb.Skipped - cb.Invalid))
}

func (s *server) storeFollows(ctx context.Context, app string, cb Callback) error {
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
