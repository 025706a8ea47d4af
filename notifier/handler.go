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
	Unregister(ctx context.Context, userID, token string) error
}

// RecordStore is what the handler needs of the delivery records
// (delivery.Store). The event of MarkSent, MarkDone and AddQuotaRetry is a
// tasks.Follow or, for summary pushes, a tasks.Digest.
type RecordStore interface {
	Load(ctx context.Context, f tasks.Follow) (delivery.Record, error)
	MarkSent(ctx context.Context, e delivery.Event, tokens []string) error
	MarkDone(ctx context.Context, e delivery.Event) error
	Finish(ctx context.Context, e delivery.Event, tokens []string) error
	AddQuotaRetry(ctx context.Context, e delivery.Event) (int, error)
}

// HandlerOptions tune a [Handler].
type HandlerOptions struct {
	// MaxEventAge: a follow older than this (from its EventTime) is dropped,
	// not sent (default 1 h).
	MaxEventAge time.Duration
	// SendTimeout bounds one task's FCM sends, the SDK's own retries
	// included (default 10 s).
	SendTimeout time.Duration
	// Content renders title and body per device locale (default: the
	// built-in texts, English DefaultContent's for devices without a
	// locale).
	Content *Templates
	// Message holds the per-platform settings of every push (default: the
	// zero MessageOptions, see its fields).
	Message MessageOptions
	// Policy is the notification policies: cooldown, per-recipient cap,
	// aggregation (default: the zero Policy, all off: one push per follow,
	// at once). Any policy on needs Policies, and the cap or aggregation
	// need Scheduler.
	Policy delivery.Policy
	// Policies keeps the policies' state (a *delivery.Store). Default: the
	// RecordStore, when it is one.
	Policies PolicyStore
	// Scheduler enqueues digest tasks (an *asynq.Client); required with
	// the per-recipient cap or aggregation.
	Scheduler Scheduler
	// Limiter is the send rate limit shared by all workers (a *RateLimit);
	// default nil: unlimited.
	Limiter SendLimiter
	// Names resolves the followers' display names for the texts (a
	// *TencentProfiles); default nil: followers are named by UserID.
	Names NameResolver
	// MismatchBreaker decides whether tokens FCM answered
	// SENDER_ID_MISMATCH for are deleted: past its limit, our credentials
	// or project are wrong, not the tokens, and no worker deletes for that
	// reason until a send succeeds again, so the registry is not wiped.
	// Workers share one through Redis. Default: one kept in this process,
	// with the default limit.
	MismatchBreaker *MismatchBreaker
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler is the asynq handler of [tasks.TypeFollow] tasks
// ([Handler.ProcessTask]) and, with notification policies, of
// [tasks.TypeDigest] tasks ([Handler.ProcessDigest]).
type Handler struct {
	log      *slog.Logger
	devices  DeviceStore
	records  RecordStore
	sender   Sender
	metrics  *Metrics
	opts     HandlerOptions
	mismatch *MismatchBreaker
	joint    *jointStores // nil: records and devices are read separately
}

// NewHandler returns a Handler. metrics may be nil (not exported then).
func NewHandler(log *slog.Logger, devs DeviceStore, records RecordStore, sender Sender, metrics *Metrics, opts HandlerOptions) (*Handler, error) {
	if opts.MaxEventAge <= 0 {
		opts.MaxEventAge = time.Hour
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 10 * time.Second
	}
	if opts.MismatchBreaker == nil {
		opts.MismatchBreaker = NewMismatchBreaker(nil, "", MismatchBreakerOptions{})
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
	if opts.Policies == nil {
		opts.Policies, _ = records.(PolicyStore)
	}
	if opts.Policy.Active() && opts.Policies == nil {
		return nil, errors.New("notification policies need a PolicyStore (HandlerOptions.Policies)")
	}
	if (opts.Policy.MaxPerHour > 0 || opts.Policy.Window > 0) && opts.Scheduler == nil {
		return nil, errors.New("the per-recipient cap and aggregation need a Scheduler (HandlerOptions.Scheduler)")
	}
	metrics.watchBreaker(opts.MismatchBreaker)
	return &Handler{
		log: log, devices: devs, records: records, sender: sender, metrics: metrics, opts: opts,
		mismatch: opts.MismatchBreaker,
		joint:    joinStores(records, devs, opts.Policies),
	}, nil
}

// ProcessTask sends f's push to every device of the followee that has not
// had it yet, and returns the retry policy as its error (see the package
// documentation).
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	f, err := tasks.ParseFollow(t)
	if err != nil {
		h.metrics.tasks.WithLabelValues("invalid").Inc()
		h.log.Error("invalid follow task: archived", "task_id", taskID(ctx), "err", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log := h.log.With(slog.String("task_id", f.TaskID()), slog.String("from_account", f.From), slog.String("to_account", f.To))
	err = h.process(ctx, log, f)
	reportResult(log, h.metrics.tasks, err, "push will be retried", "follow task failed")
	return err
}

// taskID is the id of the asynq task ctx belongs to ("" outside a task),
// for log lines about a task whose payload could not be read.
func taskID(ctx context.Context) string {
	id, _ := asynq.GetTaskID(ctx)
	return id
}

// reportResult counts and logs the error a task handler returns: a retry
// (a [*RetryError]) as a warning, anything else as an error.
func reportResult(log *slog.Logger, counter *prometheus.CounterVec, err error, retryMsg, failMsg string) {
	var re *RetryError
	switch {
	case errors.As(err, &re):
		counter.WithLabelValues("retry").Inc()
		log.Warn(retryMsg, "err", err)
	case err != nil:
		counter.WithLabelValues("error").Inc()
		log.Error(failMsg, "err", err)
	}
}

func (h *Handler) process(ctx context.Context, log *slog.Logger, f tasks.Follow) (err error) {
	now := h.opts.Now()
	if age := now.Sub(f.Time()); age > h.opts.MaxEventAge {
		h.metrics.tasks.WithLabelValues("stale").Inc()
		log.Warn("follow too old: dropped", "age", age.Round(time.Second).String(), "max_age", h.opts.MaxEventAge.String())
		return nil
	}
	rec, devs, err := h.load(ctx, f)
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
	case rec.Folded.Verdict != "":
		// An earlier attempt folded f into a summary but could not schedule
		// it: schedule it, without asking the policies again.
		return h.notSent(ctx, log, f, rec.Folded)
	}
	if err := devs.Err(); err != nil {
		return err // retried: a failed read is not "no devices"
	}
	if devs.Listed() == 0 {
		return h.noDevices(ctx, log, f)
	}

	// The tokens' owners, and the policies' verdict, in one round trip.
	// Should no listed token turn out to be the followee's (a move to
	// another user left an entry behind), or every one have had this push
	// already, the follow has still counted for the policies: a cooldown
	// started, a cap slot taken, an aggregation window opened. Rare, and
	// it only errs on the side of fewer pushes.
	needAdmit := h.opts.Policy.Active() && !rec.Admitted
	var adm *delivery.AdmitQuery
	if h.joint != nil {
		p := h.joint.rdb.Pipeline()
		devs.QueueOwners(ctx, p)
		if needAdmit && h.joint.admits {
			adm = h.joint.records.QueueAdmit(ctx, p, f, h.opts.Policy, now)
		}
		_, _ = p.Exec(ctx) // errors are in the queries' commands
	}
	admitted := false // by this attempt: a later failure must not lose it
	defer func() {
		if admitted && err != nil {
			// The retry must send, whatever the policies say by then.
			bctx, cancel := bookkeeping(ctx)
			defer cancel()
			if err := h.opts.Policies.MarkAdmitted(bctx, f); err != nil {
				log.Error("could not record the follow as admitted", "err", err)
			}
		}
	}()
	if needAdmit {
		var a delivery.Admission
		if adm != nil {
			a, err = adm.Result(ctx)
		} else {
			a, err = h.opts.Policies.Admit(ctx, f, h.opts.Policy, now)
		}
		if err != nil {
			return err
		}
		if a.Verdict != delivery.VerdictSend {
			return h.notSent(ctx, log, f, a)
		}
		admitted = true
	}
	all, err := devs.Result(ctx)
	if err != nil {
		return err
	}
	targets := pending(all, rec)
	if len(targets) == 0 {
		return h.noDevices(ctx, log, f)
	}

	n, err := h.deliver(ctx, log, f.To, h.followPush(log, f, h.displayNames(ctx, f.AppID, f.From)[f.From]), targets)
	if err != nil {
		var re *RetryError
		if errors.As(err, &re) && h.opts.Policy.Active() {
			admitted = true // also when an earlier attempt admitted it
		}
		return err
	}
	h.metrics.tasks.WithLabelValues("sent").Inc()
	log.Info("follow delivered", "devices", n)
	return nil
}

// noDevices ends a follow whose followee has no device that needs it.
func (h *Handler) noDevices(ctx context.Context, log *slog.Logger, f tasks.Follow) error {
	h.metrics.tasks.WithLabelValues("no_devices").Inc()
	log.Debug("no devices to push to")
	return h.records.MarkDone(ctx, f)
}

// bookkeeping returns the context for recording what was sent: it survives
// the task's cancellation (asynq giving up on it at shutdown), or the next
// attempt would send it again, and lasts bookkeepingTimeout.
func bookkeeping(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
}

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
	// event names the delivery record.
	event delivery.Event
	// since is observed by followpush_push_delay_seconds when FCM accepts;
	// zero: not observed.
	since time.Time
	// render returns the text for a device locale.
	render func(locale string) (Content, error)
	// message builds the FCM message for one device.
	message func(token, platform string, c Content) *messaging.Message
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
		event: f,
		since: f.Time(),
		render: func(locale string) (Content, error) {
			// A display name is whatever the follower chose: a template that
			// fails on it must not lose the push. The built-in text says it.
			c, failed, err := h.opts.Content.renderFollowOrBuiltin(locale, f, fromName)
			if failed != nil {
				log.Error("follow template failed: built-in text sent", "locale", locale, "err", failed)
			}
			return c, err
		},
		message: func(token, platform string, c Content) *messaging.Message {
			return h.opts.Message.FollowMessage(f, token, platform, c)
		},
	}
}

// deliver sends p to the targets (devices of user), within the global send
// rate limit, records the devices that need nothing more and returns how
// many they are, or a *RetryError when some should be tried again.
func (h *Handler) deliver(ctx context.Context, log *slog.Logger, user string, p push, targets []devices.Device) (int, error) {
	contents := map[string]Content{}
	msgs := make([]*messaging.Message, len(targets))
	for i, d := range targets {
		locale := h.opts.Content.Locale(d.Locale)
		c, ok := contents[locale]
		if !ok {
			var err error
			if c, err = p.render(locale); err != nil {
				return 0, fmt.Errorf("render push content: %w: %w", err, asynq.SkipRetry)
			}
			contents[locale] = c
		}
		msgs[i] = p.message(d.Token, d.Platform, c)
	}
	if h.opts.Limiter != nil {
		wait, err := h.opts.Limiter.Wait(ctx, len(msgs))
		if err != nil {
			return 0, err
		}
		if wait > 0 {
			h.metrics.rateLimited.Add(float64(len(msgs)))
			return 0, &RetryError{Outcome: OutcomeRateLimited, After: wait, Throttled: true, Devices: len(msgs)}
		}
	}
	sendCtx, cancel := context.WithTimeout(ctx, h.opts.SendTimeout)
	errs := h.sender.Send(sendCtx, msgs)
	cancel()
	accepted := h.opts.Now()
	h.sendSucceeded(ctx, log, errs) // before any SENDER_ID_MISMATCH of errs is judged

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
			if !p.since.IsZero() {
				h.metrics.delay.Observe(accepted.Sub(p.since).Seconds())
			}
		case outcome.Retryable():
			retry = retry.add(outcome, RetryAfter(errs[i], accepted))
			dlog.Info("push failed, will retry", "err", errs[i])
		case outcome.DropsToken():
			finished = append(finished, d.Token)
			h.dropToken(ctx, dlog, user, d.Token, outcome, errs[i])
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
	ctx, cancelBookkeeping := bookkeeping(ctx)
	defer cancelBookkeeping()
	if retry == nil {
		// Done: the sent devices and the done flag in one round trip,
		// tried until bookkeepingTimeout. If that fails the task is
		// retried and sends again (the collapse id makes a repeat
		// replace, not stack).
		return len(finished), persist(ctx, func(ctx context.Context) error { return h.records.Finish(ctx, p.event, finished) })
	}
	if err := persist(ctx, func(ctx context.Context) error { return h.records.MarkSent(ctx, p.event, finished) }); err != nil {
		// The pushes went out; without the record the retry repeats them.
		log.Error("could not record sent devices", "err", err)
	}
	if retry.AnyQuota {
		if n, err := h.records.AddQuotaRetry(ctx, p.event); err == nil {
			retry.QuotaRetries = n
		}
	}
	return len(finished), retry
}

// targets returns the followee's devices that still need this push. The
// registry's List returns only tokens whose owner index names the followee
// (the token index is the source of truth), read right before the send: a
// token that moved to another user does not get this user's push.
func (h *Handler) targets(ctx context.Context, to string, rec delivery.Record) ([]devices.Device, error) {
	devs, err := h.devices.List(ctx, to)
	if err != nil {
		return nil, err
	}
	return pending(devs, rec), nil
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

// deviceQuery is the followee's device list, read in two round trips that
// can carry other commands: the entries (with the delivery record), then
// their owners. See [devices.ListQuery].
type deviceQuery interface {
	Err() error
	Listed() int
	QueueOwners(ctx context.Context, p redis.Pipeliner)
	Result(ctx context.Context) ([]devices.Device, error)
}

// listed is a deviceQuery over a list already read.
type listed []devices.Device

func (listed) Err() error                                         { return nil }
func (l listed) Listed() int                                      { return len(l) }
func (listed) QueueOwners(context.Context, redis.Pipeliner)       {}
func (l listed) Result(context.Context) ([]devices.Device, error) { return l, nil }

// load reads f's delivery record and, when the record store and the
// device registry share one Redis, the first reads of the followee's
// devices in the same round trip. Otherwise it lists the devices itself.
func (h *Handler) load(ctx context.Context, f tasks.Follow) (delivery.Record, deviceQuery, error) {
	if h.joint == nil {
		rec, err := h.records.Load(ctx, f)
		if err != nil || rec.Done || rec.Cancelled {
			return rec, listed(nil), err
		}
		devs, err := h.devices.List(ctx, f.To)
		return rec, listed(devs), err
	}
	p := h.joint.rdb.Pipeline()
	lq := h.joint.records.QueueLoad(ctx, p, f)
	dq := h.joint.devices.QueueList(ctx, p, f.To)
	_, _ = p.Exec(ctx) // errors are in the queries' commands
	rec, err := lq.Result()
	return rec, dq, err
}

// jointStores are a delivery.Store and a devices.Registry on the same
// Redis client, read together by [Handler.load].
type jointStores struct {
	rdb     redis.UniversalClient
	records *delivery.Store
	devices *devices.Registry
	admits  bool // records is also the PolicyStore: admissions ride along
}

// joinStores returns the stores as jointStores when they are a
// *delivery.Store and a *devices.Registry sharing one Redis client.
func joinStores(records RecordStore, devs DeviceStore, policies PolicyStore) *jointStores {
	st, ok1 := records.(*delivery.Store)
	reg, ok2 := devs.(*devices.Registry)
	if !ok1 || !ok2 || st.Redis() != reg.Redis() {
		return nil
	}
	ps, _ := policies.(*delivery.Store)
	return &jointStores{rdb: st.Redis(), records: st, devices: reg, admits: ps == st}
}

func (h *Handler) dropToken(ctx context.Context, log *slog.Logger, user, token string, outcome Outcome, sendErr error) {
	if outcome == OutcomeSenderIDMismatch {
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
