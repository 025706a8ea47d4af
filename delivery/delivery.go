// Package delivery keeps the per-event records that make delivery
// exactly-once where it can be: which devices already got a follow's push,
// whether the follow is finished, and unfollows that cancel pending pushes.
// It also keeps the state of the notification policies (cooldown,
// per-recipient cap, aggregation into summary pushes): see [Policy].
//
// The receiver writes cancellations ([Store.Cancel]); the worker reads a
// follow's [Record] before sending ([Store.Load]), asks the policies whether
// to push it now ([Store.Admit]) and writes back what it did
// ([Store.MarkSent], [Store.MarkDone]). Summary pushes take their followers
// with [Store.TakeDigest].
//
// Key layout (prefix defaults to "followpush:"). Keys that one script
// touches share a hash tag, so every operation works on Redis Cluster:
//
//	{prefix}{ev:<event id>}          HASH  "done" -> 1, "s:<token hash>" -> 1, "q" -> quota retries, "a" -> admitted (a digest: taken),
//	                                       "f" -> "<verdict>:<due>" folded into a summary; TTL = Options.RecordTTL
//	                                       (event id: a follow's tasks.Follow.ID or a digest's tasks.Digest.ID)
//	{prefix}{cx:<app,from,to hash>}  ZSET  one member "t" scored with the latest unfollow EventTime; TTL = Options.CancelTTL
//	{prefix}{ag:<followee>}          ZSET  pending followers of the next summary push, scored with their follow's EventTime
//	{prefix}{ag:<followee>}:win      HASH  "due" -> when the next summary is due (ms), "why" -> aggregated|capped, "opener" -> follow id
//	{prefix}{ag:<followee>}:cap      ZSET  pushes of the last hour (member: follow or digest id, score: when, ms)
//	{prefix}{ag:<followee>}:cd       ZSET  cooldown: follower -> EventTime of the follow that notified (or was folded)
//	{prefix}{ag:<followee>}:ux       ZSET  unfollows: follower -> latest unfollow EventTime; TTL = Options.CancelTTL
//	{prefix}{ag:<followee>}:snap:<due> ZSET  the followers a digest took, so its retries resend the same summary;
//	                                       TTL = the policy state's (see [Store.TakeDigest]), renewed by each retry
package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/tasks"
)

// Options configure a [Store].
type Options struct {
	// Prefix starts every key (default "followpush:").
	Prefix string
	// RecordTTL is how long a follow's record lives after its last write
	// (default 1 h). It must be at least the worker's maximum event age, or a
	// repeated webhook arriving after the record expired could push again.
	RecordTTL time.Duration
	// CancelTTL is how long an unfollow keeps cancelling (default 1 h): set it
	// to the maximum event age, after which a pending follow is stale anyway.
	CancelTTL time.Duration
}

// Store reads and writes delivery records in Redis. It is safe for
// concurrent use.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	recordTTL time.Duration
	cancelTTL time.Duration
}

// New returns a Store over rdb.
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = "followpush:"
	}
	if opts.RecordTTL <= 0 {
		opts.RecordTTL = time.Hour
	}
	if opts.CancelTTL <= 0 {
		opts.CancelTTL = time.Hour
	}
	return &Store{rdb: rdb, prefix: opts.Prefix, recordTTL: opts.RecordTTL, cancelTTL: opts.CancelTTL}
}

// Event is anything with a delivery record: a follow ([tasks.Follow]) or a
// summary push ([tasks.Digest]). ID must be unique across both; Time is the
// event's own time (a follow's EventTime, a digest's due time).
type Event interface {
	ID() string
	Time() time.Time
}

// Record is what is known about one follow event's (or digest's) delivery.
type Record struct {
	// Done: the follow was fully handled (pushed, or nothing to push); a
	// repeat must do nothing.
	Done bool
	// Cancelled: an unfollow of the same pair, later than the follow, arrived.
	Cancelled bool
	// Finished holds the hashes ([TokenKey]) of devices that need nothing
	// more for this follow: sent, or dropped for good.
	Finished map[string]bool
	// QuotaRetries counts retries caused by FCM quota errors, which asynq
	// does not count (they are not failures), so that their backoff can grow.
	QuotaRetries int
	// Admitted: the notification policies let this follow through to be
	// pushed on its own ([Store.MarkAdmitted]); a retry sends without asking
	// them again. For a digest: an earlier attempt took its followers
	// ([Store.TakeDigest]), so a retry that finds no snapshot lost it.
	Admitted bool
	// Folded is the summary push the policies folded this follow into, when
	// scheduling that summary failed ([Store.MarkFolded]): a retry schedules
	// it without asking the policies again. Zero otherwise.
	Folded Admission
}

// recordExpiry is when e's record may go: RecordTTL after the later of now
// and e's time, so that a record outlives the stale cutoff even for an
// event stamped in the future (clock skew): a repeat can never find it gone
// while the event is still fresh enough to push.
func (s *Store) recordExpiry(e Event) time.Time {
	return maxTime(time.Now(), e.Time()).Add(s.recordTTL)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TokenKey is the short, stable name of a device token inside a record.
func TokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

func (s *Store) eventKey(e Event) string { return s.prefix + "{ev:" + e.ID() + "}" }

func (s *Store) cancelKey(app, from, to string) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(len(app)) + ":" + app + strconv.Itoa(len(from)) + ":" + from + to))
	return s.prefix + "{cx:" + hex.EncodeToString(sum[:16]) + "}"
}

// Cancel records that from unfollowed each of to in app at eventTime (ms):
// a pending follow of the same pair with an earlier EventTime will not be
// pushed. An older unfollow never overwrites a newer one, so retries that
// arrive out of order cannot resurrect a cancelled push.
//
// Cancel also undoes a follow already folded into a followee's pending
// summary push (aggregation, or over the per-recipient cap): when from is
// pending there with a follow older than the unfollow, it is removed (a
// summary left with nobody is not sent), and the cooldown that follow
// started is lifted, since it notified nobody; and the unfollow is noted
// under the followee's hash tag, so that [Store.Admit] refuses a follow
// task that loaded its record just before. All of it is one pipeline.
func (s *Store) Cancel(ctx context.Context, app, from string, to []string, eventTime int64) error {
	if len(to) == 0 {
		return nil
	}
	run := func(undo func(p redis.Pipeliner, keys []string, args ...any) *redis.Cmd) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, t := range to {
				k := s.cancelKey(app, from, t)
				p.ZAddGT(ctx, k, redis.Z{Score: float64(eventTime), Member: "t"})
				p.PExpire(ctx, k, s.cancelTTL)
				undo(p, []string{s.pendingKey(t), s.cooldownKey(t), s.unfollowsKey(t)},
					from, eventTime, s.cancelTTL.Milliseconds(), "("+strconv.FormatInt(eventTime-s.cancelTTL.Milliseconds(), 10))
			}
			return nil
		})
		return err
	}
	err := run(func(p redis.Pipeliner, keys []string, args ...any) *redis.Cmd {
		return undoScript.EvalSha(ctx, p, keys, args...)
	})
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The script cache was empty (a restarted or new Redis): send the
		// script itself once. Every command above is idempotent.
		err = run(func(p redis.Pipeliner, keys []string, args ...any) *redis.Cmd {
			return undoScript.Eval(ctx, p, keys, args...)
		})
	}
	if err != nil {
		return fmt.Errorf("record unfollow: %w", err)
	}
	return nil
}

// Load returns f's record, with Cancelled set when a later unfollow of the
// same pair was recorded. A follow never seen before has a zero Record.
func (s *Store) Load(ctx context.Context, f tasks.Follow) (Record, error) {
	p := s.rdb.Pipeline()
	q := s.QueueLoad(ctx, p, f)
	_, _ = p.Exec(ctx) // errors are in q's commands
	return q.Result()
}

// LoadQuery is a [Store.Load] riding on a caller's pipeline, so that it
// shares a round trip with other reads: queue it with [Store.QueueLoad],
// run the pipeline, then call Result.
type LoadQuery struct {
	f  tasks.Follow
	ev *redis.MapStringStringCmd
	cx *redis.FloatCmd
}

// QueueLoad queues the reads of f's record and cancellation on p.
func (s *Store) QueueLoad(ctx context.Context, p redis.Pipeliner, f tasks.Follow) *LoadQuery {
	return &LoadQuery{
		f:  f,
		ev: p.HGetAll(ctx, s.eventKey(f)),
		cx: p.ZScore(ctx, s.cancelKey(f.AppID, f.From, f.To), "t"),
	}
}

// Result returns what [Store.Load] returns, once the pipeline holding q
// ran.
func (q *LoadQuery) Result() (Record, error) {
	if err := q.ev.Err(); err != nil {
		return Record{}, fmt.Errorf("load delivery record: %w", err)
	}
	at, err := q.cx.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Record{}, fmt.Errorf("load delivery record: %w", err)
	}
	rec := parseRecord(q.ev.Val())
	if err == nil && int64(at) > q.f.EventTime {
		rec.Cancelled = true
	}
	return rec, nil
}

// Redis returns the Store's Redis client: a pipeline on it can carry
// [Store.QueueLoad] together with other reads of the same Redis.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// LoadRecord returns e's record without looking for cancellations (a
// digest's). An event never seen before has a zero Record.
func (s *Store) LoadRecord(ctx context.Context, e Event) (Record, error) {
	ev, err := s.rdb.HGetAll(ctx, s.eventKey(e)).Result()
	if err != nil {
		return Record{}, fmt.Errorf("load delivery record: %w", err)
	}
	return parseRecord(ev), nil
}

func parseRecord(fields map[string]string) Record {
	rec := Record{Finished: map[string]bool{}}
	for k, v := range fields {
		switch {
		case k == "done":
			rec.Done = true
		case k == "a":
			rec.Admitted = true
		case k == "q":
			rec.QuotaRetries, _ = strconv.Atoi(v)
		case k == "f":
			rec.Folded = parseFolded(v)
		case strings.HasPrefix(k, "s:"):
			rec.Finished[k[2:]] = true
		}
	}
	return rec
}

// MarkSent records that the devices with these tokens need nothing more
// for e (they were sent the push, or dropped for good).
func (s *Store) MarkSent(ctx context.Context, e Event, tokens []string) error {
	if len(tokens) == 0 {
		return nil
	}
	if err := s.mark(ctx, e, tokens, false); err != nil {
		return fmt.Errorf("mark devices sent: %w", err)
	}
	return nil
}

// MarkDone records that e is fully handled: a repeat of the same event
// (same app, follower, followee and EventTime; or the same digest) does
// nothing until the record expires.
func (s *Store) MarkDone(ctx context.Context, e Event) error {
	if err := s.mark(ctx, e, nil, true); err != nil {
		return fmt.Errorf("mark follow done: %w", err)
	}
	return nil
}

// Finish is MarkSent and MarkDone in one transaction (one round trip): how
// a delivery that needs no retry ends.
func (s *Store) Finish(ctx context.Context, e Event, tokens []string) error {
	if err := s.mark(ctx, e, tokens, true); err != nil {
		return fmt.Errorf("mark follow done: %w", err)
	}
	return nil
}

// mark sets the sent flags of tokens and, with done, the done flag of e's
// record, and renews its expiry.
func (s *Store) mark(ctx context.Context, e Event, tokens []string, done bool) error {
	fields := make([]any, 0, 2*len(tokens)+2)
	for _, t := range tokens {
		fields = append(fields, "s:"+TokenKey(t), 1)
	}
	if done {
		fields = append(fields, "done", 1)
	}
	k := s.eventKey(e)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, fields...)
		p.PExpireAt(ctx, k, s.recordExpiry(e))
		return nil
	})
	return err
}

// AddQuotaRetry counts one more quota-caused retry of e and returns the new
// count.
func (s *Store) AddQuotaRetry(ctx context.Context, e Event) (int, error) {
	k := s.eventKey(e)
	var n *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.HIncrBy(ctx, k, "q", 1)
		p.PExpireAt(ctx, k, s.recordExpiry(e))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count quota retry: %w", err)
	}
	return int(n.Val()), nil
}

// MarkAdmitted records that the notification policies let e through to be
// pushed on its own ([Record.Admitted]), so that its retries do not ask
// them again; for a digest, that its followers were taken.
func (s *Store) MarkAdmitted(ctx context.Context, e Event) error {
	k := s.eventKey(e)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "a", 1)
		p.PExpireAt(ctx, k, s.recordExpiry(e))
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark follow admitted: %w", err)
	}
	return nil
}
