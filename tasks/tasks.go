// Package tasks is the vocabulary shared by the receiver and the worker: the
// asynq task types, their payloads, and the constructors that give every task
// its queue, retry budget, timeout and deterministic id.
//
// The receiver builds tasks with [FollowSpec] (or [NewFollowTask]); the
// worker reads them back with [ParseFollow]. The worker itself schedules
// [TypeSummary] tasks ([NewSummaryTask], [ParseSummary]) when notification
// policies fold follows into one summary push. Nothing else crosses the
// queue.
package tasks

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/followpush/followpush/tencent"
	"github.com/hibiken/asynq"
)

// TypeFollow is the asynq task type of "send the followee a new-follower push".
const TypeFollow = "follow:notify"

// QueueFollow is the asynq queue that holds follow and digest tasks with
// one shard (FOLLOW_QUEUE_SHARDS=1, the default). It is a plain asynq
// queue, so asynqmon and the asynq CLI show it under this name. With more
// shards, [Shards] names the queues.
const QueueFollow = "follow"

// Defaults for the asynq options set by [NewFollowTask].
const (
	// DefaultMaxRetry is the retry budget of a follow task. Failures that are
	// not counted (FCM quota) do not use it up; the stale cutoff bounds the
	// total time regardless.
	DefaultMaxRetry = 25
	// DefaultTimeout bounds one attempt of a follow task, FCM sends included.
	DefaultTimeout = 60 * time.Second
)

// Follow is the payload of a [TypeFollow] task: From followed To in app AppID
// at EventTime (milliseconds since the Unix epoch, as Tencent reports it).
type Follow struct {
	// AppID is the SDKAppID the webhook came from.
	AppID string `json:"app"`
	// From is the follower (From_Account).
	From string `json:"from"`
	// To is the followed user, who gets the push.
	To string `json:"to"`
	// EventTime is when the follow happened, in ms since the Unix epoch.
	EventTime int64 `json:"t"`
}

// ErrInvalidFollow is returned (wrapped) by [Follow.Validate], [NewFollowTask]
// and [ParseFollow] for a payload that can never be delivered.
var ErrInvalidFollow = errors.New("invalid follow")

// Validate reports whether f can be turned into a push. It returns an error
// wrapping [ErrInvalidFollow] naming the first bad field.
func (f Follow) Validate() error {
	switch {
	case f.AppID == "":
		return fmt.Errorf("%w: empty app", ErrInvalidFollow)
	case tencent.ValidateUserID(f.From) != nil:
		return fmt.Errorf("%w: bad from_account %q", ErrInvalidFollow, f.From)
	case tencent.ValidateUserID(f.To) != nil:
		return fmt.Errorf("%w: bad to_account %q", ErrInvalidFollow, f.To)
	case f.From == f.To:
		return fmt.Errorf("%w: self-follow", ErrInvalidFollow)
	case f.EventTime <= 0:
		return fmt.Errorf("%w: event time %d", ErrInvalidFollow, f.EventTime)
	}
	return nil
}

// ID is the deterministic identity of this follow event: the same app,
// follower, followee and event time always give the same ID, so a repeated
// webhook maps onto the same task and the same delivery record. It is 32
// lowercase hex characters.
func (f Follow) ID() string {
	h := sha256.New()
	var n [8]byte
	for _, s := range []string{f.AppID, f.From, f.To} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	binary.BigEndian.PutUint64(n[:], uint64(f.EventTime))
	h.Write(n[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Time returns EventTime as a time.Time.
func (f Follow) Time() time.Time { return time.UnixMilli(f.EventTime) }

// Followee returns To: the user the follow's push goes to.
func (f Follow) Followee() string { return f.To }

// TaskID returns the asynq task id of f's task: "follow:" followed by [Follow.ID].
func (f Follow) TaskID() string { return "follow:" + f.ID() }

// Spec is everything this service sets on an asynq task: its type and
// payload and the options Queue, TaskID, MaxRetry, Timeout and Retention. [Spec.Task]
// turns it into an *asynq.Task; the receiver also stores specs directly,
// in batches (internal/asynqbatch, whose Task has the same fields so that
// a Spec converts to it), and both paths must write the same task.
type Spec struct {
	// Type is the asynq task type ([TypeFollow], [TypeSummary]).
	Type string
	// Payload is the task's JSON payload.
	Payload []byte
	// ID is the deterministic asynq task id (asynq.TaskID).
	ID string
	// Queue is the asynq queue ([QueueFollow]).
	Queue string
	// MaxRetry is the retry budget (asynq.MaxRetry).
	MaxRetry int
	// Timeout bounds one processing attempt (asynq.Timeout).
	Timeout time.Duration
	// Retention keeps the task in Redis as completed for this long after it
	// succeeded (asynq.Retention, whole seconds), so that asynqmon and the
	// asynq CLI show it; 0 (the default) deletes it at once.
	Retention time.Duration
}

// Options are the asynq options s describes (asynq.Retention only when
// Retention is set).
func (s Spec) Options() []asynq.Option {
	opts := []asynq.Option{
		asynq.Queue(s.Queue),
		asynq.TaskID(s.ID),
		asynq.MaxRetry(s.MaxRetry),
		asynq.Timeout(s.Timeout),
	}
	if s.Retention > 0 {
		opts = append(opts, asynq.Retention(s.Retention))
	}
	return opts
}

// Task returns the asynq task s describes; opts are appended to
// [Spec.Options] and so override them.
func (s Spec) Task(opts ...asynq.Option) *asynq.Task {
	return asynq.NewTask(s.Type, s.Payload, append(s.Options(), opts...)...)
}

// FollowSpec returns the task for f: type [TypeFollow], f as JSON, queue
// [QueueFollow] (with several shards the caller sets Queue to
// [Shards.Queue] of f.To), task id [Follow.TaskID], retry budget [DefaultMaxRetry]
// and timeout [DefaultTimeout]. It returns an error wrapping
// [ErrInvalidFollow] when f does not validate.
func FollowSpec(f Follow) (Spec, error) {
	if err := f.Validate(); err != nil {
		return Spec{}, err
	}
	payload, err := json.Marshal(f)
	if err != nil {
		return Spec{}, fmt.Errorf("encode follow payload: %w", err)
	}
	return Spec{
		Type:     TypeFollow,
		Payload:  payload,
		ID:       f.TaskID(),
		Queue:    QueueFollow,
		MaxRetry: DefaultMaxRetry,
		Timeout:  DefaultTimeout,
	}, nil
}

// NewFollowTask returns the asynq task for f described by [FollowSpec];
// opts are appended and so override its options. It returns an error
// wrapping [ErrInvalidFollow] when f does not validate.
//
// Enqueuing the same follow twice while the first task still exists fails
// with asynq.ErrTaskIDConflict, which callers treat as success.
func NewFollowTask(f Follow, opts ...asynq.Option) (*asynq.Task, error) {
	s, err := FollowSpec(f)
	if err != nil {
		return nil, err
	}
	return s.Task(opts...), nil
}

// ParseFollow decodes the payload of a [TypeFollow] task. A payload that does
// not decode or validate returns an error wrapping [ErrInvalidFollow]: such a
// task can never succeed and should not be retried.
func ParseFollow(t *asynq.Task) (Follow, error) {
	var f Follow
	if t.Type() != TypeFollow {
		return f, fmt.Errorf("%w: task type %q", ErrInvalidFollow, t.Type())
	}
	if err := json.Unmarshal(t.Payload(), &f); err != nil {
		return f, fmt.Errorf("%w: %v", ErrInvalidFollow, err)
	}
	return f, f.Validate()
}

// TypeSummary is the asynq task type of "send the followee one push that sums
// up the follows folded into its pending set" (aggregation, or follows over
// the per-recipient cap).
const TypeSummary = "follow:digest"

// Summary is the payload of a [TypeSummary] task: send To the summary of its
// pending followers that is due at Due (milliseconds since the Unix epoch,
// the end of the aggregation window or the time the per-recipient cap frees
// up). AppID is the app of the follow that scheduled it (users share one
// namespace across apps; the app only reaches the push templates).
type Summary struct {
	// AppID is the SDKAppID of the follow that scheduled the summary.
	AppID string `json:"app"`
	// To is the followee, who gets the push.
	To string `json:"to"`
	// Due is when the summary is due, in ms since the Unix epoch.
	Due int64 `json:"at"`
}

// ErrInvalidSummary is returned (wrapped) by [Summary.Validate],
// [NewSummaryTask] and [ParseSummary] for a payload that can never be
// delivered.
var ErrInvalidSummary = errors.New("invalid digest")

// Validate reports whether d can be turned into a push. It returns an error
// wrapping [ErrInvalidSummary] naming the first bad field.
func (d Summary) Validate() error {
	switch {
	case d.AppID == "":
		return fmt.Errorf("%w: empty app", ErrInvalidSummary)
	case tencent.ValidateUserID(d.To) != nil:
		return fmt.Errorf("%w: bad to_account %q", ErrInvalidSummary, d.To)
	case d.Due <= 0:
		return fmt.Errorf("%w: due time %d", ErrInvalidSummary, d.Due)
	}
	return nil
}

// ID is the deterministic identity of this digest: the same followee and
// due time always give the same ID whatever the app, so only one digest per
// followee and window exists. It is 32 lowercase hex characters, from a
// hash domain-separated from [Follow.ID].
func (d Summary) ID() string {
	h := sha256.New()
	h.Write([]byte("digest\x00"))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(d.To)))
	h.Write(n[:])
	h.Write([]byte(d.To))
	binary.BigEndian.PutUint64(n[:], uint64(d.Due))
	h.Write(n[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Time returns Due as a time.Time.
func (d Summary) Time() time.Time { return time.UnixMilli(d.Due) }

// Followee returns To: the user the summary push goes to.
func (d Summary) Followee() string { return d.To }

// TaskID returns the asynq task id of d's task: "digest:" followed by
// [Summary.ID].
func (d Summary) TaskID() string { return "digest:" + d.ID() }

// NewSummaryTask returns the asynq task for d, with queue [QueueFollow]
// (with several shards callers pass asynq.Queue of [Shards.Queue] of d.To),
// task id [Summary.TaskID], processing time Due, retry budget [DefaultMaxRetry]
// and timeout [DefaultTimeout]; opts are appended and so override these. It
// returns an error wrapping [ErrInvalidSummary] when d does not validate.
//
// Enqueuing the same digest twice while the first task still exists fails
// with asynq.ErrTaskIDConflict, which callers treat as success.
func NewSummaryTask(d Summary, opts ...asynq.Option) (*asynq.Task, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode digest payload: %w", err)
	}
	all := append([]asynq.Option{
		asynq.Queue(QueueFollow),
		asynq.TaskID(d.TaskID()),
		asynq.ProcessAt(d.Time()),
		asynq.MaxRetry(DefaultMaxRetry),
		asynq.Timeout(DefaultTimeout),
	}, opts...)
	return asynq.NewTask(TypeSummary, payload, all...), nil
}

// ParseSummary decodes the payload of a [TypeSummary] task. A payload that
// does not decode or validate returns an error wrapping [ErrInvalidSummary].
func ParseSummary(t *asynq.Task) (Summary, error) {
	var d Summary
	if t.Type() != TypeSummary {
		return d, fmt.Errorf("%w: task type %q", ErrInvalidSummary, t.Type())
	}
	if err := json.Unmarshal(t.Payload(), &d); err != nil {
		return d, fmt.Errorf("%w: %v", ErrInvalidSummary, err)
	}
	return d, d.Validate()
}
