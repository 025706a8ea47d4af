package notifier

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"firebase.google.com/go/v4/messaging"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/tasks"
)

// The follow history (package history): the Report middleware gathers
// what a task decided and did into its story, through the small notes
// below that the handlers make, and hands one entry per task attempt to
// HandlerOptions.History when the task ends. Nothing here touches Redis
// in the task's path.

// NamingSender is a [Sender] that also returns the names FCM gave the
// messages it accepted; [fcm.Sender] is one. With the history on, the
// names go into it.
type NamingSender interface {
	SendNamed(ctx context.Context, msgs []*messaging.Message) (names []string, errs []error)
}

// story is what one task attempt decided and did, for its history entry.
type story struct {
	// task, from and to are the task id, the follower (follows only) and
	// the followee, from the attributes the handler reports.
	task, from, to string
	// result is the result counted for the task ("" until one is).
	result    string
	devices   []history.Device
	summary   string
	due       int64
	followers []string
}

// storyOf returns the story of the task ctx belongs to, nil when the
// history is off or ctx is not a task's.
func storyOf(ctx context.Context) *story {
	r, _ := ctx.Value(reportKey{}).(*taskReport)
	if r == nil {
		return nil
	}
	return r.story
}

// noteAttrs takes the follower and followee out of the attributes a
// handler reports (from_account, to_account).
func (s *story) noteAttrs(attrs []any) {
	for _, a := range attrs {
		if at, ok := a.(slog.Attr); ok {
			switch at.Key {
			case "task_id":
				s.task = at.Value.String()
			case "from_account":
				s.from = at.Value.String()
			case "to_account":
				s.to = at.Value.String()
			}
		}
	}
}

// count counts result on counter, one of the task counters
// (followpush_tasks_total, followpush_digests_total), and makes it the
// task's result in its history entry. Every result a handler counts goes
// through here.
func (h *Handler) count(ctx context.Context, counter *prometheus.CounterVec, result string) {
	counter.WithLabelValues(result).Inc()
	if s := storyOf(ctx); s != nil {
		s.result = result
	}
}

// send sends msgs, with their names when the history wants them and the
// sender can tell.
func (h *Handler) send(ctx context.Context, msgs []*messaging.Message) (names []string, errs []error) {
	if ns, ok := h.sender.(NamingSender); ok && storyOf(ctx) != nil {
		return ns.SendNamed(ctx, msgs)
	}
	return nil, h.sender.Send(ctx, msgs)
}

// noteSend records FCM's answer for each device of an attempt.
func noteSend(ctx context.Context, targets []devices.Device, names []string, errs []error) {
	s := storyOf(ctx)
	if s == nil {
		return
	}
	for i, d := range targets {
		dev := history.Device{Token: fcm.MaskToken(d.Token), Outcome: string(fcm.Classify(errs[i]))}
		if i < len(names) {
			dev.Message = names[i]
		}
		s.devices = append(s.devices, dev)
	}
}

// noteRemoved records that the dead token was removed from the registry.
func noteRemoved(ctx context.Context, token string) {
	s := storyOf(ctx)
	if s == nil {
		return
	}
	m := fcm.MaskToken(token)
	for i := range s.devices {
		if s.devices[i].Token == m && !s.devices[i].Removed && fcm.Outcome(s.devices[i].Outcome).DropsToken() {
			s.devices[i].Removed = true
			return
		}
	}
}

// noteSummary records the summary push a follow was folded into.
func noteSummary(ctx context.Context, d tasks.Summary) {
	if s := storyOf(ctx); s != nil {
		s.summary, s.due = d.TaskID(), d.Due
	}
}

// noteFollowers records the followers a summary push names and counts.
func noteFollowers(ctx context.Context, followers []string) {
	if s := storyOf(ctx); s != nil {
		s.followers = append([]string(nil), followers...)
	}
}

// tell hands the history entry of the task attempt that ended with err to
// the history writer: its result (counted by the handler, else the retry
// policy's: retry, exhausted, invalid, error; "completed" for a handler
// that counted nothing), with a retry's next attempt time, chosen here
// with [RetryDelay] (asynq's own call then gets the same).
func (h *Handler) tell(ctx context.Context, t *asynq.Task, s *story, result string, err error) {
	if s.to == "" || s.task == "" {
		return // a payload that could not be read: no followee
	}
	e := history.Entry{To: s.to, From: s.from, TaskID: s.task, Event: s.result}
	if result != "" {
		e.Event = result
	}
	if e.Event == "" {
		e.Event = "completed"
	}
	d := history.Detail{Devices: s.devices, Summary: s.summary, Due: s.due, Followers: s.followers}
	n, _, _ := h.retries(ctx)
	d.Attempt = n
	var re *RetryError
	if errors.As(err, &re) {
		if result == "retry" {
			RetryDelay(n, err, t)
			// asynq keeps retry times in whole seconds (and runs a retry
			// once its second has begun).
			d.NextRetry = re.Next.Truncate(time.Second).UnixMilli()
		}
		d.Why = re.Reason
		if d.Why == "" && re.Throttled {
			d.Why = "put off by the send rate limit"
		}
	}
	e.Detail = d
	h.opts.History.Add(e)
}
