package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"firebase.google.com/go/v4/messaging"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
)

// Sender sends FCM messages, returning one error per message (nil = FCM
// accepted it). [fcm.Sender] and [fcm.LogSender] implement it.
type Sender interface {
	// Send sends msgs, returning one error per message, in order.
	Send(ctx context.Context, msgs []*messaging.Message) []error
}

// DefaultSendTimeout is HandlerOptions.SendTimeout's default.
const DefaultSendTimeout = 10 * time.Second

// DefaultSummaryWindow is HandlerOptions.SummaryWindow's default when
// aggregation is off.
const DefaultSummaryWindow = 10 * time.Minute

// resultPreferenceOff is the result of a follow (or summary) its
// followee's preference "off" stopped.
const resultPreferenceOff = "preference_off"

// HandlerOptions tune a [Handler].
type HandlerOptions struct {
	// MaxEventAge: a follow older than this (from its EventTime) is dropped,
	// not sent (default [delivery.DefaultMaxEventAge]).
	MaxEventAge time.Duration
	// SendTimeout bounds one task's FCM sends, the SDK's own retries
	// included (default [DefaultSendTimeout]).
	SendTimeout time.Duration
	// pushtext.Content renders title and body per device locale (default: the
	// built-in texts, English pushtext.DefaultContent's for devices without a
	// locale).
	Content *pushtext.Templates
	// Message holds the per-platform settings of every push (default: the
	// zero fcm.MessageOptions, see its fields).
	Message fcm.MessageOptions
	// Policy is the notification policies: cooldown, per-recipient cap,
	// aggregation (default: the zero Policy, all off: one push per follow,
	// at once). The cap and aggregation need Scheduler.
	Policy delivery.Policy
	// Scheduler enqueues digest tasks (an *asynq.Client); required with
	// the per-recipient cap or aggregation.
	Scheduler Scheduler
	// Shards routes digest tasks to their followee's queue, the rule the
	// receivers route follows by (FOLLOW_QUEUE_SHARDS); the zero Shards is
	// the single queue tasks.QueueFollow.
	Shards tasks.Shards
	// Limiter is the send rate limit shared by all workers (a *RateLimit);
	// default nil: unlimited.
	Limiter SendLimiter
	// Names resolves the followers' display names for the texts (a
	// *TencentProfiles); default nil: followers are named by UserID.
	Names NameResolver
	// Preferences are the users' own settings (pushes off, summary only,
	// quiet hours); nil: every user has the defaults. A follow's followee's
	// preferences are read in the round trip that loads its record.
	Preferences *preferences.Store
	// SummaryWindow is how long a summary push waits for more follows when
	// its followee asked for summaries only (preference "summary"); default
	// Policy.Window when aggregation is on, else [DefaultSummaryWindow].
	SummaryWindow time.Duration
	// MismatchBreaker decides whether tokens FCM answered
	// SENDER_ID_MISMATCH for are deleted: past its limit, our credentials
	// or project are wrong, not the tokens, and no worker deletes for that
	// reason until a send succeeds again, so the registry is not wiped.
	// Workers share one through Redis. Default: one kept in this process,
	// with the default limit.
	MismatchBreaker *MismatchBreaker
	// Now is the clock (default time.Now).
	Now func() time.Time
	// History, when set, gets one entry per task attempt: the follow's
	// (or summary's) result, the devices sent to, the summary a follow
	// was folded into (see package history). Default nil: no history.
	History *history.Async
}

// Handler is the asynq handler of the worker's tasks ([Handler.ProcessTask],
// or the routes of [Handler.NewServeMux]): follow tasks and, with
// notification policies, summary tasks.
//
// A push goes through the same steps whatever it is for (a follow, a
// summary): read what is known (the event's record, the followee's
// devices); commit to the push in Redis (the last point where an unfollow
// stops it, and where the policies decide); send; settle the attempt (the
// devices that need nothing more, whether any device accepted, done or to
// be retried). The policies' claims settle with the attempt: see
// delivery.Store.Settle.
type Handler struct {
	log      *slog.Logger
	devices  *devices.Registry
	store    *delivery.Store
	sender   Sender
	metrics  *Metrics
	opts     HandlerOptions
	mismatch *MismatchBreaker
	// lease is how long a committed push counts as in flight: the send,
	// the rate limit's wait and the settling, with room to spare.
	lease time.Duration

	// step, when set (tests), is called at each step boundary of a task.
	step func(ctx context.Context, step string)
	// retries reports a task's retry count and budget (asynq's, from ctx).
	retries func(ctx context.Context) (retried, max int, ok bool)
	// mux routes a task to its handler through the Report middleware.
	mux *asynq.ServeMux
}

// NewHandler returns a Handler over the device registry devs and the
// delivery store, which must share one Redis client (the handler reads
// both in the same pipelines). metrics may be nil (not exported then).
func NewHandler(log *slog.Logger, devs *devices.Registry, store *delivery.Store, sender Sender, metrics *Metrics, opts HandlerOptions) (*Handler, error) {
	if devs == nil || store == nil || devs.Redis() != store.Redis() {
		return nil, errors.New("the device registry and the delivery store must share one Redis client")
	}
	if opts.MaxEventAge <= 0 {
		opts.MaxEventAge = delivery.DefaultMaxEventAge
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = DefaultSendTimeout
	}
	if opts.SummaryWindow <= 0 {
		opts.SummaryWindow = opts.Policy.Window
		if opts.SummaryWindow <= 0 {
			opts.SummaryWindow = DefaultSummaryWindow
		}
	}
	if opts.MismatchBreaker == nil {
		opts.MismatchBreaker = NewMismatchBreaker(nil, "", MismatchBreakerOptions{})
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Content == nil {
		t, err := pushtext.NewTemplates("", "")
		if err != nil {
			return nil, err
		}
		opts.Content = t
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	if (opts.Policy.MaxPerHour > 0 || opts.Policy.Window > 0) && opts.Scheduler == nil {
		return nil, errors.New("the per-recipient cap and aggregation need a Scheduler (HandlerOptions.Scheduler)")
	}
	if opts.Preferences != nil && opts.Scheduler == nil {
		return nil, errors.New("users' preferences (summary only, quiet hours) need a Scheduler (HandlerOptions.Scheduler)")
	}
	metrics.watchBreaker(opts.MismatchBreaker)
	h := &Handler{
		log: log, devices: devs, store: store, sender: sender, metrics: metrics, opts: opts,
		mismatch: opts.MismatchBreaker,
		lease:    sendWindow + opts.SendTimeout + bookkeepingTimeout + 5*time.Second,
		retries:  asynqRetries,
	}
	h.mux = h.NewServeMux()
	return h, nil
}

// asynqRetries reads the retry count and budget asynq puts in a task's
// context.
func asynqRetries(ctx context.Context) (int, int, bool) {
	n, ok1 := asynq.GetRetryCount(ctx)
	m, ok2 := asynq.GetMaxRetry(ctx)
	return n, m, ok1 && ok2
}

// follow is the asynq handler of [tasks.TypeFollow] tasks: it sends the
// follow's push to every device of the followee that has not had it yet,
// and returns the retry policy as its error (see the package
// documentation).
func (h *Handler) follow(ctx context.Context, t *asynq.Task) error {
	f, err := tasks.ParseFollow(t)
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log := reported(ctx, slog.String("task_id", f.TaskID()), slog.String("from_account", f.From), slog.String("to_account", f.To))
	return h.process(ctx, log, f)
}

// taskID is the id of the asynq task ctx belongs to ("" outside a task),
// for log lines about a task whose payload could not be read.
func taskID(ctx context.Context) string {
	id, _ := asynq.GetTaskID(ctx)
	return id
}

// lastAttempt reports whether a task failing with err is not retried:
// err counts against the retry budget and the budget is used up.
func (h *Handler) lastAttempt(ctx context.Context, err error) bool {
	if !IsFailure(err) {
		return false
	}
	n, m, ok := h.retries(ctx)
	return ok && n >= m
}

// at marks a step boundary of a task (see Handler.step).
func (h *Handler) at(ctx context.Context, step string) {
	if h.step != nil {
		h.step(ctx, step)
	}
}

func (h *Handler) process(ctx context.Context, log *slog.Logger, f tasks.Follow) error {
	now := h.opts.Now()
	if age := now.Sub(f.Time()); age > h.opts.MaxEventAge {
		h.count(ctx, h.metrics.tasks, "stale")
		log.Warn("follow too old: dropped", "age", age.Round(time.Second).String(), "max_age", h.opts.MaxEventAge.String())
		if !h.opts.Policy.Active() && h.opts.Preferences == nil {
			return nil // nothing to settle: no claim, no cap slot
		}
		return h.end(ctx, f, now)
	}

	// What is known: the record, the pair's latest unfollow, the
	// followee's devices and preferences, in one round trip.
	rdb := h.store.Redis()
	pipe := rdb.Pipeline()
	lq := h.store.QueueLoad(ctx, pipe, f)
	dq := h.devices.QueueList(ctx, pipe, f.To)
	pq := h.queuePreferences(ctx, pipe, f.To)
	_, _ = pipe.Exec(ctx) // errors are in the queries' commands
	rec, err := lq.Result()
	if err != nil {
		return err
	}
	h.at(ctx, "loaded")
	switch {
	case rec.Done:
		h.count(ctx, h.metrics.tasks, "duplicate")
		log.Info("follow already handled: nothing sent")
		return nil
	case rec.Cancelled:
		h.count(ctx, h.metrics.tasks, "cancelled")
		log.Info("unfollowed before the push: nothing sent")
		return h.end(ctx, f, now)
	}
	prefs, err := pq.Result()
	if err != nil {
		return err // retried: a failed read is not "the defaults"
	}
	if prefs.Mode() == preferences.ModeOff {
		h.count(ctx, h.metrics.tasks, resultPreferenceOff)
		log.Info("the followee turned follower pushes off: nothing sent")
		return h.end(ctx, f, now)
	}
	if err := dq.Err(); err != nil {
		return err // retried: a failed read is not "no devices"
	}
	if dq.Listed() == 0 {
		h.count(ctx, h.metrics.tasks, "no_devices")
		log.Debug("no devices to push to")
		return h.end(ctx, f, now)
	}

	// The commitment: the tokens' owners and the admission (the last
	// unfollow check; with policies, their verdict and the pair's claim)
	// in one round trip.
	pipe = rdb.Pipeline()
	dq.QueueOwners(ctx, pipe)
	pol := h.policyFor(prefs, now)
	if rec.Reached {
		// An earlier attempt pushed to some devices: the rest get the same
		// push, whatever the preferences say now (summary only, quiet
		// hours); folding it would name the follow in a second push.
		pol.Window, pol.FirstImmediate, pol.Quiet = h.opts.Policy.Window, h.opts.Policy.FirstImmediate, false
	}
	aq := h.store.QueueAdmit(ctx, pipe, f, pol, now, h.lease)
	_, _ = pipe.Exec(ctx) // errors are in the queries' commands
	adm, err := aq.Result(ctx)
	if err != nil {
		return err
	}
	h.at(ctx, "committed")
	switch adm.Verdict {
	case delivery.VerdictSend:
	case delivery.VerdictWait:
		// The wait counts from the clock now, not from the start of the
		// attempt: an attempt stalled between its reads and its commitment
		// must not wait that much longer (its follow could go stale).
		wait := max(adm.Until.Sub(h.opts.Now()), 100*time.Millisecond)
		log.Info("another push for this pair is in flight: waiting for its outcome", "wait", wait.String())
		return &RetryError{Reason: "another push for the same pair is in flight", After: wait, Throttled: true}
	case delivery.VerdictAggregated, delivery.VerdictCapped, delivery.VerdictQuiet:
		return h.folded(ctx, log, f, adm, now)
	default:
		result, msg := verdictResult(adm.Verdict)
		h.count(ctx, h.metrics.tasks, result)
		log.Info(msg, "cooldown", h.opts.Policy.Cooldown.String())
		return h.end(ctx, f, now)
	}

	all, err := dq.Result(ctx)
	if err != nil {
		return err
	}
	targets := pending(all, rec)
	if len(targets) == 0 {
		// Nobody left to send to: every device had this push already (an
		// earlier attempt's record was written, its done flag was not), or
		// no listed token turned out to be the followee's.
		if err := h.end(ctx, f, now); err != nil || rec.Reached {
			return h.ended(ctx, log, h.metrics.tasks, true, 0, "follow", err)
		}
		h.count(ctx, h.metrics.tasks, "no_devices")
		log.Debug("no devices to push to")
		return nil
	}
	p := h.followPush(log, f, h.displayNames(ctx, f.AppID, f.From)[f.From])
	a, retry, err := h.deliver(ctx, log, f.To, p, targets, now)
	h.at(ctx, "sent")
	if err := h.settle(ctx, log, a, retry, err, func(ctx context.Context, a delivery.Attempt) (int, error) {
		return h.store.Settle(ctx, f, a, h.opts.Now())
	}); err != nil {
		return err
	}
	h.at(ctx, "settled")
	return h.ended(ctx, log, h.metrics.tasks, rec.Reached || a.Accepted, len(a.Finished), "follow", firstErr(err, asRetry(retry)))
}

// queuePreferences queues the read of user's preferences on pipe when the
// handler keeps them (HandlerOptions.Preferences); without a store it
// queues nothing, and the nil Query answers the defaults.
func (h *Handler) queuePreferences(ctx context.Context, pipe redis.Pipeliner, user string) *preferences.Query {
	if h.opts.Preferences == nil {
		return nil
	}
	return h.opts.Preferences.QueueGet(ctx, pipe, user)
}

// verdictResult names the result (followpush_tasks_total) and the log
// message of an admission that ends a follow without a push.
func verdictResult(v delivery.Verdict) (string, string) {
	switch v {
	case delivery.VerdictCancelled:
		return "cancelled", "unfollowed before the push: nothing sent"
	case delivery.VerdictCooldown:
		return "cooldown", "a push for this pair reached the followee within the cooldown: nothing sent"
	case delivery.VerdictSuperseded:
		return "superseded", "a newer follow of the same pair notifies instead: nothing sent"
	case delivery.VerdictSummarized:
		return "aggregated", "follow folded into a summary push earlier, and the summary took it"
	}
	return "error", "unknown verdict " + string(v)
}

// ended counts and logs how a push's task ended, once it is settled, and
// returns err (the task's retry policy; then it counts nothing): sent when
// a device accepted the push in any attempt (reached), undelivered when
// it ended without one. finished is how many devices this attempt
// finished.
func (h *Handler) ended(ctx context.Context, log *slog.Logger, counter *prometheus.CounterVec, reached bool, finished int, what string, err error) error {
	if err != nil {
		return err
	}
	if reached {
		h.count(ctx, counter, "sent")
		log.Info(what+" delivered", "devices", finished)
		return nil
	}
	h.count(ctx, counter, "undelivered")
	log.Warn(what + " not delivered: no device accepted the push (dead tokens, or FCM refused it for good)")
	return nil
}

// end settles a follow that ends without being sent in this attempt: the
// record is done, and a claim or cap slot the follow holds without having
// reached anyone is released.
func (h *Handler) end(ctx context.Context, f tasks.Follow, now time.Time) error {
	_, err := h.store.Settle(ctx, f, delivery.Attempt{Final: true}, now)
	return err
}

// settle records attempt a (what deliver returned: the attempt, the
// retry it asks for, its error) through write, until it succeeds or
// bookkeepingTimeout passes: the pushes went out, and without the record
// the next attempt would send them again. A retry whose budget is used up
// ends the event (failed for good); a quota retry is counted and its
// count lands in retry.
func (h *Handler) settle(ctx context.Context, log *slog.Logger, a delivery.Attempt, retry *RetryError, err error,
	write func(context.Context, delivery.Attempt) (int, error)) error {
	switch {
	case err != nil: // nothing sent: a render failure (permanent) or the limiter's error
		if !errors.Is(err, asynq.SkipRetry) {
			if !h.opts.Policy.Active() && h.opts.Preferences == nil {
				return nil // no claim was taken
			}
			// Let the claim go out of flight.
		} else {
			a.Final, a.FailedForGood = true, true
		}
	case retry == nil:
		a.Final = true
	case h.lastAttempt(ctx, retry):
		a.Final, a.FailedForGood = true, true
	default:
		a.QuotaRetry = retry.AnyQuota
		if retry.Throttled && len(a.Finished) == 0 && !h.opts.Policy.Active() && h.opts.Preferences == nil {
			return nil // nothing was sent and there is no claim to settle
		}
	}
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	var q int
	werr := persist(bctx, func(ctx context.Context) error {
		var err error
		q, err = write(ctx, a)
		return err
	})
	if werr != nil {
		// The pushes went out; without the record the retry repeats them
		// (the collapse id makes a repeat replace, not stack).
		log.Error("could not record what was sent", "err", werr)
		if retry == nil && err == nil {
			return werr
		}
	}
	if retry != nil && a.QuotaRetry && werr == nil {
		retry.QuotaRetries = q
	}
	return nil
}

func asRetry(r *RetryError) error {
	if r == nil {
		return nil
	}
	return r
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// bookkeeping returns the context for recording what was sent: it survives
// the task's cancellation (asynq giving up on it at shutdown), or the next
// attempt would send it again, and lasts bookkeepingTimeout.
func bookkeeping(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
}

// sendWindow is the most time an attempt may take from its commitment to
// the start of its send: reading the owners and the display names (2 s at
// most), rendering, the rate limit's wait (2 s at most). An attempt past it
// (a stalled process) does not send: its commitment may have lapsed, and
// another push for the same pair taken over. See Handler.lease.
const sendWindow = 10 * time.Second

// bookkeepingTimeout bounds how long a worker keeps trying to record pushes
// that went out (see persist): long enough for a Redis restart or a
// Sentinel failover, short against SHUTDOWN_TIMEOUT's default.
const bookkeepingTimeout = 10 * time.Second

// persist runs write, an idempotent record of pushes that went out, until
// it succeeds or ctx ends, waiting 50 ms, doubling up to 1 s, between
// tries. A short Redis outage right after a send then delays the record
// instead of losing it, which would make the task send again.
func persist(ctx context.Context, write func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		err := write(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return err
		case <-timer.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// push is one notification to one followee's devices: a single follow's or
// a summary's.
type push struct {
	// since is observed by followpush_push_delay_seconds when FCM accepts;
	// zero: not observed.
	since time.Time
	// render returns the text for a device locale.
	render func(locale string) (pushtext.Content, error)
	// message builds the FCM message for one device.
	message func(token, platform string, c pushtext.Content) *messaging.Message
}

// displayNames returns the display names of users (their UserIDs without
// a NameResolver).
func (h *Handler) displayNames(ctx context.Context, app string, users ...string) map[string]string {
	if h.opts.Names != nil {
		return h.opts.Names.DisplayNames(ctx, app, users)
	}
	names := make(map[string]string, len(users))
	for _, u := range users {
		names[u] = u
	}
	return names
}

func (h *Handler) followPush(log *slog.Logger, f tasks.Follow, fromName string) push {
	return push{
		since: f.Time(),
		render: func(locale string) (pushtext.Content, error) {
			// A display name is whatever the follower chose: a template that
			// fails on it must not lose the push. The built-in text says it.
			c, failed, err := h.opts.Content.FollowOrBuiltin(locale, f, fromName)
			if failed != nil {
				log.Error("follow template failed: built-in text sent", "locale", locale, "err", failed)
			}
			return c, err
		},
		message: func(token, platform string, c pushtext.Content) *messaging.Message {
			return h.opts.Message.FollowMessage(f, token, platform, c)
		},
	}
}

// deliver sends p to the targets (devices of user), within the global send
// rate limit, and returns what the attempt did (the devices that need
// nothing more, whether FCM accepted any) and a *RetryError when some
// devices should be tried again. Its error is a render failure (wrapping
// asynq.SkipRetry) or the rate limiter's: nothing was sent then. An
// attempt that comes to its send more than sendWindow after committedAt
// sends nothing and is retried.
func (h *Handler) deliver(ctx context.Context, log *slog.Logger, user string, p push, targets []devices.Device, committedAt time.Time) (delivery.Attempt, *RetryError, error) {
	contents := map[string]pushtext.Content{}
	msgs := make([]*messaging.Message, len(targets))
	for i, d := range targets {
		locale := h.opts.Content.Locale(d.Locale)
		c, ok := contents[locale]
		if !ok {
			var err error
			if c, err = p.render(locale); err != nil {
				return delivery.Attempt{}, nil, fmt.Errorf("render push content: %w: %w", err, asynq.SkipRetry)
			}
			contents[locale] = c
		}
		msgs[i] = p.message(d.Token, d.Platform, c)
	}
	if h.opts.Limiter != nil {
		wait, err := h.opts.Limiter.Wait(ctx, len(msgs))
		if err != nil {
			return delivery.Attempt{}, nil, err
		}
		if wait > 0 {
			h.metrics.rateLimited.Add(float64(len(msgs)))
			return delivery.Attempt{}, &RetryError{Outcome: OutcomeRateLimited, After: wait, Throttled: true, Devices: len(msgs)}, nil
		}
	}
	if late := h.opts.Now().Sub(committedAt); late > sendWindow {
		log.Warn("the attempt stalled between its commitment and its send: not sent, retried", "late", late.String())
		return delivery.Attempt{}, &RetryError{Reason: "the commitment to push lapsed before the send", After: time.Second, Throttled: true}, nil
	}
	sendCtx, cancel := context.WithTimeout(ctx, h.opts.SendTimeout)
	names, errs := h.send(sendCtx, msgs)
	cancel()
	accepted := h.opts.Now()
	h.sendSucceeded(ctx, log, errs) // before any SENDER_ID_MISMATCH of errs is judged
	noteSend(ctx, targets, names, errs)

	var (
		a     delivery.Attempt
		retry *RetryError
	)
	for i, d := range targets {
		outcome := fcm.Classify(errs[i])
		h.metrics.pushes.WithLabelValues(string(outcome)).Inc()
		dlog := log.With(slog.String("token", fcm.MaskToken(d.Token)), slog.String("outcome", string(outcome)))
		switch {
		case outcome == fcm.OutcomeSent:
			a.Finished = append(a.Finished, d.Token)
			a.Accepted = true
			if !p.since.IsZero() {
				h.metrics.delay.Observe(accepted.Sub(p.since).Seconds())
			}
		case outcome.Retryable():
			retry = retry.add(outcome, fcm.RetryAfter(errs[i], accepted))
			dlog.Info("push failed, will retry", "err", errs[i])
		case outcome.DropsToken():
			a.Finished = append(a.Finished, d.Token)
			h.dropToken(ctx, dlog, user, d.Token, outcome, errs[i])
		case outcome == fcm.OutcomeInvalidMessage:
			a.Finished = append(a.Finished, d.Token)
			dlog.Error("FCM rejected our message: a bug in followpush, not retried", "err", errs[i])
		case outcome == fcm.OutcomeThirdPartyAuth:
			a.Finished = append(a.Finished, d.Token)
			dlog.Error("FCM third-party auth error: check the APNs/web-push credentials in the Firebase project", "err", errs[i])
		default:
			a.Finished = append(a.Finished, d.Token)
			dlog.Error("push failed, not retried", "err", errs[i])
		}
	}
	return a, retry, nil
}

// pending returns the devices of devs that rec does not mark finished.
func pending(devs []devices.Device, rec delivery.Record) []devices.Device {
	out := devs[:0]
	for _, d := range devs {
		if !rec.Finished[delivery.TokenKey(d.Token)] {
			out = append(out, d)
		}
	}
	return out
}

func (h *Handler) dropToken(ctx context.Context, log *slog.Logger, user, token string, outcome fcm.Outcome, sendErr error) {
	if outcome == fcm.OutcomeSenderIDMismatch {
		del, opened, err := h.mismatch.Mismatch(ctx)
		if opened {
			log.Error("SENDER_ID_MISMATCH breaker opened: no worker deletes tokens for SENDER_ID_MISMATCH until a send succeeds; check GOOGLE_APPLICATION_CREDENTIALS and FCM_PROJECT_ID",
				"err", sendErr)
		}
		if !del {
			h.metrics.tokensKept.WithLabelValues(string(outcome)).Inc()
			if err != nil {
				log.Error("SENDER_ID_MISMATCH: token kept, the breaker's state is unknown", "err", sendErr, "breaker_err", err)
			} else {
				log.Warn("SENDER_ID_MISMATCH: token kept, the breaker is open", "err", sendErr)
			}
			return
		}
	}
	if err := h.devices.Unregister(ctx, user, token); err != nil {
		log.Error("could not delete dead token", "err", err)
		return
	}
	h.metrics.tokensDeleted.WithLabelValues(string(outcome)).Inc()
	noteRemoved(ctx, token)
	log.Info("dead token deleted", "err", sendErr)
}

// sendSucceeded tells the SENDER_ID_MISMATCH breaker that a send of this
// task succeeded (errs has a nil), which closes it if it is open.
func (h *Handler) sendSucceeded(ctx context.Context, log *slog.Logger, errs []error) {
	if !slices.Contains(errs, nil) {
		return
	}
	closed, err := h.mismatch.Succeeded(ctx)
	switch {
	case err != nil:
		log.Warn("could not report a successful send to the SENDER_ID_MISMATCH breaker", "err", err)
	case closed:
		log.Warn("SENDER_ID_MISMATCH breaker closed: a send succeeded; tokens are deleted for SENDER_ID_MISMATCH again")
	}
}
