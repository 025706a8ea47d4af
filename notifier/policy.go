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

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/tasks"
)

// PolicyStore is what the handler needs of the notification policies'
// state (delivery.Store): the decision for a follow, the followers of a
// summary push, and the summary's delivery record.
type PolicyStore interface {
	Admit(ctx context.Context, f tasks.Follow, p delivery.Policy, now time.Time) (delivery.Admission, error)
	MarkAdmitted(ctx context.Context, e delivery.Event) error
	MarkFolded(ctx context.Context, f tasks.Follow, a delivery.Admission) error
	TakeDigest(ctx context.Context, d tasks.Digest, p delivery.Policy, now time.Time) (delivery.Batch, error)
	LoadDigest(ctx context.Context, d tasks.Digest) (delivery.Record, error)
}

// Scheduler enqueues tasks; *asynq.Client implements it.
type Scheduler interface {
	EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// SendLimiter bounds the sends of all workers together; [*RateLimit]
// implements it. Wait takes n sends and returns 0, or takes nothing and
// returns how long to wait before asking again.
type SendLimiter interface {
	Wait(ctx context.Context, n int) (time.Duration, error)
}

// notSent does what a verdict other than send asks (schedules the summary
// f was folded into, marks f done) and counts it. It also serves the retry
// of a follow folded by an earlier attempt ([delivery.Record.Folded]).
func (h *Handler) notSent(ctx context.Context, log *slog.Logger, f tasks.Follow, adm delivery.Admission) error {
	switch adm.Verdict {
	case delivery.VerdictCancelled:
		h.metrics.tasks.WithLabelValues("cancelled").Inc()
		log.Info("unfollowed before the push: nothing sent")
		return h.records.MarkDone(ctx, f)
	case delivery.VerdictCooldown:
		h.metrics.tasks.WithLabelValues("cooldown").Inc()
		log.Info("pair notified within the cooldown: nothing sent", "cooldown", h.opts.Policy.Cooldown.String())
		return h.records.MarkDone(ctx, f)
	case delivery.VerdictAggregated, delivery.VerdictCapped:
		if err := h.schedule(ctx, tasks.Digest{AppID: f.AppID, To: f.To, Due: adm.Due}); err != nil {
			// f is in the summary already: the retry must only schedule it.
			// Asking the policies again could fold f into the next summary
			// too, once this one went out, or push it on its own.
			bctx, cancel := bookkeeping(ctx)
			defer cancel()
			if merr := h.opts.Policies.MarkFolded(bctx, f, adm); merr != nil {
				log.Error("could not record the follow as folded", "err", merr)
			}
			return err
		}
		h.metrics.tasks.WithLabelValues(string(adm.Verdict)).Inc()
		log.Info("follow folded into a summary push", "reason", string(adm.Verdict), "due", time.UnixMilli(adm.Due).UTC().Format(time.RFC3339Nano))
		return h.records.MarkDone(ctx, f)
	}
	return fmt.Errorf("notification policies: unknown verdict %q", adm.Verdict)
}

// schedule makes sure digest d's task exists; one that exists already (the
// same followee and due time) is left alone.
func (h *Handler) schedule(ctx context.Context, d tasks.Digest) error {
	t, err := tasks.NewDigestTask(d)
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if _, err := h.opts.Scheduler.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("schedule summary push: %w", err)
	}
	return nil
}

// ProcessDigest is the asynq handler of [tasks.TypeDigest] tasks: it sends
// the followee one summary push naming the first followers folded into it
// and counting the rest (see [delivery.Store.TakeDigest]), in each device's
// locale, with the collapse identity [DigestCollapseID]. Followers whose
// follow is older than MaxEventAge plus the aggregation window (plus an
// hour with the per-recipient cap) are left out, and so are followers who
// unfollowed before the push went out (also between retries). Its error is
// the retry policy, as for follow tasks.
func (h *Handler) ProcessDigest(ctx context.Context, t *asynq.Task) error {
	d, err := tasks.ParseDigest(t)
	if err != nil {
		h.metrics.digests.WithLabelValues("invalid").Inc()
		h.log.Error("invalid digest task: archived", "task_id", taskID(ctx), "err", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log := h.log.With(slog.String("task_id", d.TaskID()), slog.String("to_account", d.To))
	err = h.processDigest(ctx, log, d)
	reportResult(log, h.metrics.digests, err, "summary push will be retried", "digest task failed")
	return err
}

func (h *Handler) processDigest(ctx context.Context, log *slog.Logger, d tasks.Digest) (err error) {
	if h.opts.Policies == nil || h.opts.Scheduler == nil {
		return fmt.Errorf("digest task without notification policies configured: %w", asynq.SkipRetry)
	}
	rec, err := h.opts.Policies.LoadDigest(ctx, d)
	if err != nil {
		return err
	}
	if rec.Done {
		h.metrics.digests.WithLabelValues("duplicate").Inc()
		log.Info("summary push already handled: nothing sent")
		return nil
	}
	now := h.opts.Now()
	b, err := h.opts.Policies.TakeDigest(ctx, d, h.opts.Policy, now)
	if err != nil {
		return err
	}
	if b.Verdict != delivery.BatchSend {
		return h.digestNotSent(ctx, log, d, b, rec.Admitted)
	}
	defer func() {
		if err != nil && !rec.Admitted {
			// The followers are taken: should the retry find no snapshot, it
			// was lost (not undone, not someone else's).
			bctx, cancel := bookkeeping(ctx)
			defer cancel()
			if merr := h.opts.Policies.MarkAdmitted(bctx, d); merr != nil {
				log.Error("could not record the summary as taken", "err", merr)
			}
		}
	}()

	sum, maxAge := h.digestOf(d, b.Followers, now)
	if len(sum.Followers) == 0 {
		h.metrics.digests.WithLabelValues("stale").Inc()
		log.Warn("every follow of the summary is too old: dropped", "max_age", maxAge.String())
		return h.records.MarkDone(ctx, d)
	}
	targets, err := h.targets(ctx, d.To, rec)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		h.metrics.digests.WithLabelValues("no_devices").Inc()
		log.Debug("no devices to push to")
		return h.records.MarkDone(ctx, d)
	}
	p := h.digestPush(ctx, log, sum)

	// Unfollows that arrived while the devices and the display names were
	// read count too: read the followers once more right before sending.
	b, err = h.opts.Policies.TakeDigest(ctx, d, h.opts.Policy, h.opts.Now())
	if err != nil {
		return err
	}
	if b.Verdict != delivery.BatchSend {
		return h.digestNotSent(ctx, log, d, b, true)
	}
	if again, _ := h.digestOf(d, b.Followers, now); !slices.Equal(again.Followers, sum.Followers) {
		if len(again.Followers) == 0 {
			h.metrics.digests.WithLabelValues("stale").Inc()
			log.Warn("every follow of the summary is too old: dropped", "max_age", maxAge.String())
			return h.records.MarkDone(ctx, d)
		}
		sum, p = again, h.digestPush(ctx, log, again)
	}
	n, err := h.deliver(ctx, log, d.To, p, targets)
	if err != nil {
		return err
	}
	h.metrics.digests.WithLabelValues("sent").Inc()
	h.metrics.digestSize.Observe(float64(len(sum.Followers)))
	log.Info("summary push delivered", "followers", len(sum.Followers), "devices", n)
	return nil
}

// digestNotSent does what a TakeDigest answer other than send asks and
// counts it. taken: an earlier attempt (or call) took d's followers, so an
// answer that does not come from their snapshot means the snapshot was
// lost: its followers are counted as stale, not as undone.
func (h *Handler) digestNotSent(ctx context.Context, log *slog.Logger, d tasks.Digest, b delivery.Batch, taken bool) error {
	var result string
	switch b.Verdict {
	case delivery.BatchEmpty:
		result = "empty"
	case delivery.BatchLater:
		result = "deferred"
	case delivery.BatchSuperseded:
		result = "superseded"
	default:
		return fmt.Errorf("take digest: unknown verdict %q", b.Verdict)
	}
	if b.Next != 0 {
		if err := h.schedule(ctx, tasks.Digest{AppID: d.AppID, To: d.To, Due: b.Next}); err != nil {
			return err
		}
	}
	switch {
	case taken && !b.Retake:
		h.metrics.digests.WithLabelValues("stale").Inc()
		log.Warn("the followers the summary took are gone (expired, or lost by Redis): dropped", "verdict", string(b.Verdict))
	case b.Verdict == delivery.BatchEmpty:
		h.metrics.digests.WithLabelValues(result).Inc()
		log.Info("every follow of the summary was undone: nothing sent")
	default:
		h.metrics.digests.WithLabelValues(result).Inc()
		log.Info("summary push put off", "reason", result, "next", time.UnixMilli(b.Next).UTC().Format(time.RFC3339Nano))
	}
	return h.records.MarkDone(ctx, d)
}

// digestOf returns the summary of digest d naming followers, leaving out
// those too old at now, and the age past which they are.
func (h *Handler) digestOf(d tasks.Digest, followers []delivery.Follower, now time.Time) (Digest, time.Duration) {
	// A summary is late by design (the window, the cap): its followers go
	// stale that much later than a single follow.
	maxAge := h.opts.MaxEventAge + h.opts.Policy.Window
	if h.opts.Policy.MaxPerHour > 0 {
		maxAge += delivery.CapWindow
	}
	sum := Digest{Digest: d}
	for _, f := range followers {
		if now.Sub(time.UnixMilli(f.EventTime)) > maxAge {
			continue
		}
		sum.Followers = append(sum.Followers, f.ID)
		sum.Latest = max(sum.Latest, f.EventTime)
	}
	return sum, maxAge
}

func (h *Handler) digestPush(ctx context.Context, log *slog.Logger, sum Digest) push {
	named := sum.Followers[:min(len(sum.Followers), DigestNames)]
	display := h.displayNames(ctx, sum.AppID, named...)
	names := make([]string, len(named))
	for i, id := range named {
		names[i] = display[id]
	}
	data := DigestData{
		From: names[0], To: sum.To, AppID: sum.AppID,
		Names: names, Count: len(sum.Followers), Others: len(sum.Followers) - len(names),
	}
	return push{
		event: sum.Digest,
		render: func(locale string) (Content, error) {
			// The followers are taken: a template that fails on them must not
			// lose the summary. The built-in text of the locale says it.
			c, failed, err := h.opts.Content.renderDigestOrBuiltin(locale, data)
			if failed != nil {
				log.Error("summary template failed: built-in text sent", "locale", locale, "err", failed)
			}
			return c, err
		},
		message: func(token, platform string, c Content) *messaging.Message {
			return h.opts.Message.DigestMessage(sum, token, platform, c)
		},
	}
}
