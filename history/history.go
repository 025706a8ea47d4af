package history

import (
	"context"
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/rediskey"
	"github.com/followpush/followpush/tasks"
)

// Defaults of [Options] and of the settings FOLLOW_HISTORY,
// FOLLOW_HISTORY_MAX_EVENTS and FOLLOW_HISTORY_TTL.
const (
	// DefaultEnabled is FOLLOW_HISTORY's default: on. The history answers
	// "why did I get no notification?", a question asked after the fact:
	// off by default, it would be empty when it is needed. It costs about
	// 190 bytes of Redis per event (19 KB for a user at the default cap)
	// and a few per cent of a worker's processing (BENCHMARKS.md).
	DefaultEnabled = true
	// DefaultMaxEvents is Options.MaxEvents's default: the entries kept
	// per followee (Redis trims to about this many, in whole stream nodes).
	// A follow takes 2 to 4 entries (received, result, and retries), so
	// this is the last 30 to 50 follows.
	DefaultMaxEvents = 100
	// DefaultTTL is Options.TTL's default: a followee's history is deleted
	// a week after its last entry.
	DefaultTTL = 7 * 24 * time.Hour
	// DefaultPrefix is Options.Prefix's default (delivery's).
	DefaultPrefix = rediskey.DefaultPrefix
)

// Bounds of the settings.
const (
	MinMaxEvents = 10
	MaxMaxEvents = 10000
	MinTTL       = time.Minute
	MaxTTL       = 90 * 24 * time.Hour
)

// Options configure a [Store].
type Options struct {
	// Prefix starts every key (default [DefaultPrefix]): REDIS_KEY_PREFIX.
	Prefix string
	// MaxEvents is the approximate number of entries kept per followee
	// (XADD MAXLEN ~; default [DefaultMaxEvents]).
	MaxEvents int
	// TTL is how long a followee's history lives after its last entry
	// (default [DefaultTTL]).
	TTL time.Duration
}

// Event values of the receiver's entries; the worker's are its task
// results.
const (
	EventFollow   = "follow"
	EventUnfollow = "unfollow"
)

// Detail is the JSON of an entry's "d" field. Every field is optional.
type Detail struct {
	// At is the follow's or unfollow's EventTime (ms), in the receiver's
	// entries.
	At int64 `json:"at,omitempty"`
	// Devices are the devices an attempt sent to, with FCM's answer.
	Devices []Device `json:"devices,omitempty"`
	// NextRetry is when the task's next attempt is due (ms), for a retry.
	NextRetry int64 `json:"next_retry,omitempty"`
	// Attempt is the attempt's number (0: the first), when it is not the
	// first.
	Attempt int `json:"attempt,omitempty"`
	// Why says why a task ended or will be retried, when its result does
	// not say it all (the retry's reason, an error).
	Why string `json:"why,omitempty"`
	// Summary is the task id of the summary push a follow was folded into
	// ("digest:<id>"), and Due when that summary is due (ms).
	Summary string `json:"summary,omitempty"`
	Due     int64  `json:"due,omitempty"`
	// Followers are the followers a summary push names and counts.
	Followers []string `json:"followers,omitempty"`
}

// Device is one device of an attempt.
type Device struct {
	// Token is the device's registration token, masked ("abcdef…wxyz").
	Token string `json:"token"`
	// Outcome is FCM's answer as the worker classifies it (sent,
	// unavailable, unregistered, quota_exceeded, ...).
	Outcome string `json:"outcome"`
	// Message is the name FCM gave the message it accepted
	// ("projects/<project>/messages/<id>").
	Message string `json:"message,omitempty"`
	// Removed: the token was dead and removed from the device registry.
	Removed bool `json:"removed,omitempty"`
}

// Entry is one history entry about a followee.
type Entry struct {
	// To is the followee whose history it goes to.
	To string
	// Event is what happened (see the package documentation).
	Event string
	// From is the follower ("" for a summary).
	From string
	// TaskID is the asynq task id the entry is about ("" for an unfollow).
	TaskID string
	// Detail is the rest.
	Detail Detail
}

// Store writes and reads followees' histories. It is safe for concurrent
// use.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	maxEvents int64
	ttl       time.Duration
	metrics   *Metrics
}

// New returns a Store over rdb that counts its failed writes in metrics
// (nil: counted nowhere).
func New(rdb redis.UniversalClient, opts Options, metrics *Metrics) *Store {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = DefaultMaxEvents
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Store{rdb: rdb, prefix: opts.Prefix, maxEvents: int64(opts.MaxEvents), ttl: opts.TTL, metrics: metrics}
}

// Key is the Redis key of followee's history.
func (s *Store) Key(followee string) string { return s.prefix + "{ag:" + followee + "}:hist" }

// MaxEvents is the approximate number of entries kept per followee.
func (s *Store) MaxEvents() int { return int(s.maxEvents) }

// queue queues the writes of es on p and returns what to call once p ran:
// it counts the entries whose write failed.
func (s *Store) queue(ctx context.Context, p redis.Pipeliner, es []Entry) (done func()) {
	cmds := make([]*redis.StringCmd, len(es))
	expire := map[string]*redis.BoolCmd{}
	for i, e := range es {
		var d string
		if b, _ := json.Marshal(e.Detail); string(b) != "{}" { // plain data: cannot fail
			d = string(b)
		}
		key := s.Key(e.To)
		cmds[i] = p.XAdd(ctx, &redis.XAddArgs{
			Stream: key, MaxLen: s.maxEvents, Approx: true,
			Values: []string{"e", e.Event, "u", e.From, "t", e.TaskID, "d", d},
		})
		if expire[key] == nil {
			expire[key] = p.PExpire(ctx, key, s.ttl)
		}
	}
	return func() {
		failed := 0
		for _, c := range cmds {
			if c.Err() != nil {
				failed++
			}
		}
		s.metrics.failures.Add(float64(failed))
	}
}

// QueueFollows queues the receiver's entries of follows on p, the
// pipeline that stores their tasks, and returns what to call once p ran
// (it counts failed writes; their errors are not the pipeline's caller's
// concern). Queue them before the tasks, so that an entry is never later
// than what a worker writes about its task.
func (s *Store) QueueFollows(ctx context.Context, p redis.Pipeliner, follows []tasks.Follow) (done func()) {
	es := make([]Entry, len(follows))
	for i, f := range follows {
		es[i] = Entry{To: f.To, Event: EventFollow, From: f.From, TaskID: f.TaskID(), Detail: Detail{At: f.EventTime}}
	}
	return s.queue(ctx, p, es)
}

// QueueUnfollows queues the receiver's entries of an unfollow of each of
// to by from at eventTime (ms) on p, the pipeline that records the
// unfollows, and returns what to call once p ran (see QueueFollows).
func (s *Store) QueueUnfollows(ctx context.Context, p redis.Pipeliner, from string, to []string, eventTime int64) (done func()) {
	es := make([]Entry, len(to))
	for i, t := range to {
		es[i] = Entry{To: t, Event: EventUnfollow, From: from, Detail: Detail{At: eventTime}}
	}
	return s.queue(ctx, p, es)
}

// Write writes es in one pipeline, counting the entries whose write
// failed, and returns the pipeline's first error.
func (s *Store) Write(ctx context.Context, es ...Entry) error {
	if len(es) == 0 {
		return nil
	}
	p := s.rdb.Pipeline()
	done := s.queue(ctx, p, es)
	_, err := p.Exec(ctx)
	done()
	return err
}
