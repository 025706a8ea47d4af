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
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
)

// Scheduler enqueues tasks; *asynq.Client implements it.
type Scheduler interface {
	// EnqueueContext stores t (asynq.ErrTaskIDConflict: it exists already).
	EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// SendLimiter bounds the sends of all workers together; [*RateLimit]
// implements it. Wait takes n sends and returns 0, or takes nothing and
// returns how long to wait before asking again.
type SendLimiter interface {
	// Wait takes room for n sends (0), or says how long to wait (> 0).
	Wait(ctx context.Context, n int) (time.Duration, error)
}

// folded ends a follow the policies folded into a summary push: it makes
// sure the summary's digest task exists, then marks f done. Should that
// fail, f's retry asks the policies again and gets the same summary (a
// follow is folded once).
func (h *Handler) folded(ctx context.Context, log *slog.Logger, f tasks.Follow, adm delivery.Admission, now time.Time) error {
	if err := h.schedule(ctx, tasks.Summary{AppID: f.AppID, To: f.To, Due: adm.Due}); err != nil {
		return err
	}
	noteSummary(ctx, tasks.Summary{AppID: f.AppID, To: f.To, Due: adm.Due})
	h.at(ctx, "scheduled")
	if err := h.end(ctx, f, now); err != nil {
		return err
	}
	h.count(ctx, h.metrics.tasks, string(adm.Verdict))
	log.Info("follow folded into a summary push", "reason", string(adm.Verdict), "due", time.UnixMilli(adm.Due).UTC().Format(time.RFC3339Nano))
	return nil
}

// schedule makes sure digest d's task exists; one that exists already (the
// same followee and due time) is left alone.
func (h *Handler) schedule(ctx context.Context, d tasks.Summary) error {
	if h.opts.Scheduler == nil {
		return fmt.Errorf("summary push without a scheduler (no cap or aggregation configured): %w", asynq.SkipRetry)
	}
	t, err := tasks.NewSummaryTask(d, asynq.Queue(h.opts.Shards.Queue(d.To)))
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if _, err := h.opts.Scheduler.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("schedule summary push: %w", err)
	}
	return nil
}

// summary is the asynq handler of [tasks.TypeSummary] tasks: it sends the
// followee one summary push naming the first followers folded into it and
// counting the rest (see [delivery.Store.TakeSummary]), in each device's
// locale, with the collapse identity [fcm.SummaryCollapseID]. Followers
// whose follow is older than MaxEventAge plus the aggregation window (plus
// an hour with the per-recipient cap) are left out, and so are followers
// who unfollowed before the push went out (also between retries). Its
// error is the retry policy, as for follow tasks.
func (h *Handler) summary(ctx context.Context, t *asynq.Task) error {
	d, err := tasks.ParseSummary(t)
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log := reported(ctx, slog.String("task_id", d.TaskID()), slog.String("to_account", d.To))
	return h.processSummary(ctx, log, d)
}

func (h *Handler) processSummary(ctx context.Context, log *slog.Logger, d tasks.Summary) error {
	if h.opts.Scheduler == nil || !h.opts.Policy.Active() && h.opts.Preferences == nil {
		return fmt.Errorf("digest task without notification policies configured: %w", asynq.SkipRetry)
	}
	// The record and the followee's preferences, in one round trip.
	pipe := h.store.Redis().Pipeline()
	lq := h.store.QueueLoadSummary(ctx, pipe, d)
	pq := h.queuePreferences(ctx, pipe, d.To)
	_, _ = pipe.Exec(ctx) // errors are in the queries' commands
	rec, err := lq.Result()
	if err != nil {
		return err
	}
	h.at(ctx, "loaded")
	if rec.Done {
		h.count(ctx, h.metrics.summaries, "duplicate")
		log.Info("summary push already handled: nothing sent")
		return nil
	}
	now := h.opts.Now()
	prefs, err := pq.Result()
	if err != nil {
		return err // retried: a failed read is not "the defaults"
	}
	pol := h.opts.Policy
	pol.Hold = h.holdFor(prefs)
	if err := h.holdForQuietHours(ctx, log, d, prefs, rec, pol, now); err != nil {
		return err
	}
	b, err := h.store.TakeSummary(ctx, d, pol, now, 0)
	if err != nil {
		return err
	}
	if b.Verdict != delivery.TakeSend {
		return h.summaryNotSent(ctx, log, d, b, rec.Taken, now)
	}
	if prefs.Mode() == preferences.ModeOff {
		h.count(ctx, h.metrics.summaries, resultPreferenceOff)
		log.Info("the followee turned follower pushes off: summary not sent")
		return h.endSummary(ctx, d, 0, now)
	}
	// Its followers waited as long as they were held (recorded when they
	// were folded, or put off), or as the followee's preferences now say.
	extra := max(b.Hold, pol.Hold)
	sum, cutoff, maxAge := h.summaryOf(d, b.Followers, now, extra)
	if len(sum.Followers) == 0 {
		h.count(ctx, h.metrics.summaries, "stale")
		log.Warn("every follow of the summary is too old: dropped", "max_age", maxAge.String())
		return h.endSummary(ctx, d, cutoff, now)
	}
	all, err := h.devices.List(ctx, d.To)
	if err != nil {
		return err
	}
	targets := pending(all, rec)
	if len(targets) == 0 {
		if err := h.endSummary(ctx, d, cutoff, now); err != nil || rec.Reached {
			return h.ended(ctx, log, h.metrics.summaries, true, 0, "summary push", err)
		}
		h.count(ctx, h.metrics.summaries, "no_devices")
		log.Debug("no devices to push to")
		return nil
	}
	p := h.summaryPush(ctx, log, sum)

	// The commitment: unfollows that arrived while the devices and the
	// display names were read count too, so the followers are read once
	// more, and the summary is in flight from here.
	committedAt := h.opts.Now()
	if err := h.holdForQuietHours(ctx, log, d, prefs, rec, pol, committedAt); err != nil {
		return err // they began while the devices and names were read
	}
	b, err = h.store.TakeSummary(ctx, d, pol, committedAt, h.lease)
	if err != nil {
		return err
	}
	if b.Verdict != delivery.TakeSend {
		return h.summaryNotSent(ctx, log, d, b, true, now)
	}
	if again, _, _ := h.summaryOf(d, b.Followers, now, extra); !slices.Equal(again.Followers, sum.Followers) {
		if len(again.Followers) == 0 {
			h.count(ctx, h.metrics.summaries, "stale")
			log.Warn("every follow of the summary is too old: dropped", "max_age", maxAge.String())
			return h.endSummary(ctx, d, cutoff, now)
		}
		sum, p = again, h.summaryPush(ctx, log, again)
	}
	h.at(ctx, "committed")
	noteFollowers(ctx, sum.Followers)
	a, retry, err := h.deliver(ctx, log, d.To, p, targets, committedAt)
	h.at(ctx, "sent")
	if err := h.settle(ctx, log, a, retry, err, func(ctx context.Context, a delivery.Attempt) (int, error) {
		return h.store.SettleSummary(ctx, d, a, cutoff, h.opts.Now())
	}); err != nil {
		return err
	}
	h.at(ctx, "settled")
	if err := firstErr(err, asRetry(retry)); err != nil {
		return err
	}
	if rec.Reached || a.Accepted {
		h.metrics.summarySize.Observe(float64(len(sum.Followers)))
	}
	return h.ended(ctx, log.With("followers", len(sum.Followers)), h.metrics.summaries, rec.Reached || a.Accepted, len(a.Finished), "summary push", nil)
}

// holdForQuietHours puts summary d off until the end of its followee's
// quiet hours when they are in them at now (a throttled retry exactly
// then), keeping its followers that long; nil otherwise, and for a
// summary that reached a device already: the rest of a push delivered in
// part goes out as it is.
func (h *Handler) holdForQuietHours(ctx context.Context, log *slog.Logger, d tasks.Summary, prefs preferences.Preferences, rec delivery.Record, pol delivery.Policy, now time.Time) error {
	q := prefs.QuietHours
	if q == nil || prefs.Mode() == preferences.ModeOff || rec.Reached {
		return nil
	}
	quiet, _, end := q.At(now)
	if !quiet {
		return nil
	}
	if err := h.store.Hold(ctx, d, pol, end, now); err != nil {
		return err
	}
	// The wait counts from the clock now: after a stall, the retry still
	// comes at the end of the quiet hours, not that much later.
	wait := max(end.Sub(h.opts.Now()), time.Second)
	log.Info("the followee is in quiet hours: the summary push waits for their end", "wait", wait.String())
	return &RetryError{Reason: "the followee is in quiet hours", After: wait, Throttled: true, Exact: true}
}

// endSummary settles a summary that ends without being sent in this
// attempt: it is done, and its followers' claims and its cap slot are
// released unless an earlier attempt reached a device.
func (h *Handler) endSummary(ctx context.Context, d tasks.Summary, cutoff int64, now time.Time) error {
	_, err := h.store.SettleSummary(ctx, d, delivery.Attempt{Final: true}, cutoff, now)
	return err
}

// summaryNotSent does what a TakeSummary answer other than send asks and
// counts it. taken: an earlier attempt (or call) took d's followers, so an
// answer that does not come from their snapshot means the snapshot was
// lost: its followers are counted as stale, not as undone.
func (h *Handler) summaryNotSent(ctx context.Context, log *slog.Logger, d tasks.Summary, b delivery.Take, taken bool, now time.Time) error {
	var result string
	switch b.Verdict {
	case delivery.TakeEmpty:
		result = "empty"
	case delivery.TakeLater:
		result = "deferred"
	case delivery.TakeSuperseded:
		result = "superseded"
	default:
		return fmt.Errorf("take digest: unknown verdict %q", b.Verdict)
	}
	if b.Next != 0 {
		if err := h.schedule(ctx, tasks.Summary{AppID: d.AppID, To: d.To, Due: b.Next}); err != nil {
			return err
		}
	}
	if err := h.endSummary(ctx, d, 0, now); err != nil {
		return err
	}
	switch {
	case taken && !b.Retake:
		h.count(ctx, h.metrics.summaries, "stale")
		log.Warn("the followers the summary took are gone (expired, or lost by Redis): dropped", "verdict", string(b.Verdict))
	case b.Verdict == delivery.TakeEmpty:
		h.count(ctx, h.metrics.summaries, result)
		log.Info("every follow of the summary was undone: nothing sent")
	default:
		h.count(ctx, h.metrics.summaries, result)
		log.Info("summary push put off", "reason", result, "next", time.UnixMilli(b.Next).UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// summaryOf returns the summary of digest d naming followers, leaving out
// those too old at now, the oldest EventTime (ms) it names, and the age
// past which followers are too old. extra is how much longer the
// followee's own preferences held them (a longer summary window, quiet
// hours).
func (h *Handler) summaryOf(d tasks.Summary, followers []delivery.Follower, now time.Time, extra time.Duration) (fcm.Summary, int64, time.Duration) {
	// A summary is late by design (the window, the cap, the followee's
	// own summary-only preference and quiet hours): its followers go stale
	// that much later than a single follow.
	maxAge := h.opts.MaxEventAge + h.opts.Policy.Window + extra
	if h.opts.Policy.MaxPerHour > 0 {
		maxAge += delivery.CapWindow
	}
	cutoff := now.Add(-maxAge).UnixMilli()
	sum := fcm.Summary{Summary: d}
	for _, f := range followers {
		if f.EventTime < cutoff {
			continue
		}
		sum.Followers = append(sum.Followers, f.ID)
		sum.Latest = max(sum.Latest, f.EventTime)
	}
	return sum, cutoff, maxAge
}

func (h *Handler) summaryPush(ctx context.Context, log *slog.Logger, sum fcm.Summary) push {
	named := sum.Followers[:min(len(sum.Followers), pushtext.SummaryNames)]
	display := h.displayNames(ctx, sum.AppID, named...)
	names := make([]string, len(named))
	for i, id := range named {
		names[i] = display[id]
	}
	data := pushtext.SummaryData{
		From: names[0], To: sum.To, AppID: sum.AppID,
		Names: names, Count: len(sum.Followers), Others: len(sum.Followers) - len(names),
	}
	return push{
		render: func(locale string) (pushtext.Content, error) {
			// The followers are taken: a template that fails on them must not
			// lose the summary. The built-in text of the locale says it.
			c, failed, err := h.opts.Content.SummaryOrBuiltin(locale, data)
			if failed != nil {
				log.Error("summary template failed: built-in text sent", "locale", locale, "err", failed)
			}
			return c, err
		},
		message: func(token, platform string, c pushtext.Content) *messaging.Message {
			return h.opts.Message.SummaryMessage(sum, token, platform, c)
		},
	}
}

// policyFor is the policy a follow of a followee with preferences prefs
// is admitted under at now: the configured one, made to fold the follow
// into a summary when the followee asked for summaries only, and to hold
// it for the summary at the end of their quiet hours while they are in
// them.
func (h *Handler) policyFor(prefs preferences.Preferences, now time.Time) delivery.Policy {
	p := h.opts.Policy
	p.Hold = h.holdFor(prefs)
	if q := prefs.QuietHours; q != nil {
		if quiet, _, end := q.At(now); quiet {
			// The summary is due at end to the millisecond (Redis keeps ms).
			p.Window, p.FirstImmediate, p.Quiet = max(end.Sub(time.UnixMilli(now.UnixMilli())), time.Second), false, true
			return p
		}
	}
	if prefs.Mode() == preferences.ModeSummary {
		p.Window, p.FirstImmediate = max(p.Window, h.opts.SummaryWindow), false
	}
	return p
}

// holdFor is how much longer than the policies alone the folded follows
// of a followee with prefs may wait for their summary ([delivery.Policy.Hold]),
// and so how much later they go stale: with quiet hours, the length of
// the quiet period (a follow held for its end waited that long) plus an
// hour for a daylight-saving change; with "summary", how much longer the
// summary window is than the configured one.
func (h *Handler) holdFor(prefs preferences.Preferences) time.Duration {
	var d time.Duration
	if q := prefs.QuietHours; q != nil {
		d += q.Length() + time.Hour
	}
	if prefs.Mode() == preferences.ModeSummary {
		d += max(h.opts.SummaryWindow-h.opts.Policy.Window, 0)
	}
	return d
}
