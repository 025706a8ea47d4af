package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// f was folded into, marks f done) and counts it.
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
// hour with the per-recipient cap) are left out. Its error is the retry
// policy, as for follow tasks.
func (h *Handler) ProcessDigest(ctx context.Context, t *asynq.Task) error {
	d, err := tasks.ParseDigest(t)
	if err != nil {
		h.metrics.digests.WithLabelValues("invalid").Inc()
		h.log.Error("invalid digest task: archived", "err", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log := h.log.With(slog.String("task_id", d.TaskID()), slog.String("to_account", d.To))
	err = h.processDigest(ctx, log, d)
	reportResult(log, h.metrics.digests, err, "summary push will be retried", "digest task failed")
	return err
}

func (h *Handler) processDigest(ctx context.Context, log *slog.Logger, d tasks.Digest) error {
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
	switch b.Verdict {
	case delivery.BatchSend:
	case delivery.BatchEmpty:
		h.metrics.digests.WithLabelValues("empty").Inc()
		log.Info("every follow of the summary was undone: nothing sent")
		return h.records.MarkDone(ctx, d)
	case delivery.BatchLater, delivery.BatchSuperseded:
		if b.Next != 0 {
			if err := h.schedule(ctx, tasks.Digest{AppID: d.AppID, To: d.To, Due: b.Next}); err != nil {
				return err
			}
		}
		result := map[delivery.BatchVerdict]string{delivery.BatchLater: "deferred", delivery.BatchSuperseded: "superseded"}[b.Verdict]
		h.metrics.digests.WithLabelValues(result).Inc()
		log.Info("summary push put off", "reason", result, "next", time.UnixMilli(b.Next).UTC().Format(time.RFC3339Nano))
		return h.records.MarkDone(ctx, d)
	default:
		return fmt.Errorf("take digest: unknown verdict %q", b.Verdict)
	}

	// A summary is late by design (the window, the cap): its followers go
	// stale that much later than a single follow.
	maxAge := h.opts.MaxEventAge + h.opts.Policy.Window
	if h.opts.Policy.MaxPerHour > 0 {
		maxAge += delivery.CapWindow
	}
	sum := Digest{Digest: d}
	for _, f := range b.Followers {
		if now.Sub(time.UnixMilli(f.EventTime)) > maxAge {
			continue
		}
		sum.Followers = append(sum.Followers, f.ID)
		sum.Latest = max(sum.Latest, f.EventTime)
	}
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
	n, err := h.deliver(ctx, log, d.To, h.digestPush(ctx, sum), targets)
	if err != nil {
		return err
	}
	h.metrics.digests.WithLabelValues("sent").Inc()
	h.metrics.digestSize.Observe(float64(len(sum.Followers)))
	log.Info("summary push delivered", "followers", len(sum.Followers), "devices", n)
	return nil
}

func (h *Handler) digestPush(ctx context.Context, sum Digest) push {
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
		event:  sum.Digest,
		render: func(locale string) (Content, error) { return h.opts.Content.RenderDigest(locale, data) },
		message: func(token, platform string, c Content) *messaging.Message {
			return h.opts.Message.DigestMessage(sum, token, platform, c)
		},
	}
}
