package notifier

import (
	"context"
	"errors"
	"log/slog"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/tasks"
)

// ProcessTask makes [Handler] an asynq.Handler: it serves every task kind
// of the queue through [Handler.NewServeMux] (follow and summary tasks).
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	return h.mux.ProcessTask(ctx, t)
}

// NewServeMux returns the worker's asynq ServeMux: [tasks.TypeFollow] and
// [tasks.TypeSummary] tasks to their handlers, each through the
// middleware that counts and logs its result ([Handler.Report]).
func (h *Handler) NewServeMux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Use(h.Report)
	mux.HandleFunc(tasks.TypeFollow, h.follow)
	mux.HandleFunc(tasks.TypeSummary, h.summary)
	return mux
}

// taskReport is what a task's handler tells the middleware about the task:
// the logger with the task's attributes (its id, follower, followee), and
// with the history on, the story of the attempt (see history.go).
type taskReport struct {
	log   *slog.Logger
	story *story
	// taskID: the logger has the task_id attribute already (the
	// middleware's, from asynq); a handler's own is not added again.
	taskID bool
}

type reportKey struct{}

// reported adds attrs to the logger the middleware reports the task's
// result with, and returns it for the handler's own lines.
func reported(ctx context.Context, attrs ...any) *slog.Logger {
	r, _ := ctx.Value(reportKey{}).(*taskReport)
	if r == nil {
		return slog.New(slog.DiscardHandler)
	}
	if r.story != nil {
		r.story.noteAttrs(attrs)
	}
	if r.taskID {
		attrs = slices.DeleteFunc(slices.Clone(attrs), func(a any) bool {
			attr, ok := a.(slog.Attr)
			return ok && attr.Key == "task_id"
		})
	}
	r.log = r.log.With(attrs...)
	return r.log
}

// Report is the middleware of every task handler: it counts the task's
// result when the handler returns an error (followpush_tasks_total or
// followpush_digests_total by the task's kind: retry, exhausted when the
// retry budget is used up and asynq archives the task, invalid for a
// payload that can never be pushed, else error) and logs it, with the
// attributes the handler added (task_id, from_account, to_account). The
// results of tasks that end without an error are counted by the handlers
// ([Handler.count]). With the history on (HandlerOptions.History), it
// also hands the attempt's history entry to the history writer.
func (h *Handler) Report(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		r := &taskReport{log: h.log}
		if h.opts.History != nil {
			r.story = &story{}
		}
		if id := taskID(ctx); id != "" {
			r.log, r.taskID = r.log.With(slog.String("task_id", id)), true
		}
		err := next.ProcessTask(context.WithValue(ctx, reportKey{}, r), t)
		counter, kind := h.metrics.tasks, "follow"
		if t.Type() == tasks.TypeSummary {
			counter, kind = h.metrics.summaries, "summary"
		}
		result := h.reportResult(ctx, r.log, counter, kind, err)
		if r.story != nil {
			h.tell(ctx, t, r.story, result, err)
		}
		return err
	})
}

// reportResult counts and logs the error a task handler returns: a retry
// (a [*RetryError]) as a warning, the last one (asynq archives the task)
// as an error, an invalid payload and anything else as an error. It
// returns the result counted ("" for nil).
func (h *Handler) reportResult(ctx context.Context, log *slog.Logger, counter *prometheus.CounterVec, kind string, err error) string {
	var re *RetryError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, tasks.ErrInvalidFollow) || errors.Is(err, tasks.ErrInvalidSummary):
		counter.WithLabelValues("invalid").Inc()
		log.Error("invalid "+kind+" task: archived", "err", err)
		return "invalid"
	case errors.As(err, &re) && h.lastAttempt(ctx, err):
		counter.WithLabelValues("exhausted").Inc()
		log.Error("retries used up: the task is archived, the push not sent", "err", err)
		return "exhausted"
	case errors.As(err, &re):
		counter.WithLabelValues("retry").Inc()
		log.Warn(map[string]string{"follow": "push will be retried", "summary": "summary push will be retried"}[kind], "err", err)
		return "retry"
	default:
		counter.WithLabelValues("error").Inc()
		log.Error(kind+" task failed", "err", err)
		return "error"
	}
}
