// Package delivery keeps the per-event records that make delivery
// exactly-once where it can be: which devices already got a follow's push,
// whether the follow is finished, and unfollows that cancel pending pushes.
//
// The receiver writes cancellations ([Store.Cancel]); the worker reads a
// follow's [Record] before sending ([Store.Load]) and writes back what it did
// ([Store.MarkSent], [Store.MarkDone]).
//
// Key layout (prefix defaults to "followpush:"); each key is one hash slot,
// so every operation works on Redis Cluster:
//
//	{prefix}{ev:<follow id>}        HASH  "done" -> 1, "s:<token hash>" -> 1, "q" -> quota retries; TTL = Options.RecordTTL
//	{prefix}{cx:<app,from,to hash>} ZSET  one member "t" scored with the latest unfollow EventTime; TTL = Options.CancelTTL
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

// Record is what is known about one follow event's delivery.
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
}

// recordExpiry is when f's record may go: RecordTTL after the later of now
// and f's EventTime, so that a record outlives the stale cutoff even for an
// event stamped in the future (clock skew): a repeat can never find it gone
// while the event is still fresh enough to push.
func (s *Store) recordExpiry(f tasks.Follow) time.Time {
	return maxTime(time.Now(), f.Time()).Add(s.recordTTL)
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

func (s *Store) eventKey(f tasks.Follow) string { return s.prefix + "{ev:" + f.ID() + "}" }

func (s *Store) cancelKey(app, from, to string) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(len(app)) + ":" + app + strconv.Itoa(len(from)) + ":" + from + to))
	return s.prefix + "{cx:" + hex.EncodeToString(sum[:16]) + "}"
}

// Cancel records that from unfollowed each of to in app at eventTime (ms):
// a pending follow of the same pair with an earlier EventTime will not be
// pushed. An older unfollow never overwrites a newer one, so retries that
// arrive out of order cannot resurrect a cancelled push.
func (s *Store) Cancel(ctx context.Context, app, from string, to []string, eventTime int64) error {
	if len(to) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, t := range to {
			k := s.cancelKey(app, from, t)
			p.ZAddGT(ctx, k, redis.Z{Score: float64(eventTime), Member: "t"})
			p.PExpire(ctx, k, s.cancelTTL)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record unfollow: %w", err)
	}
	return nil
}

// Load returns f's record. A follow never seen before has a zero Record.
func (s *Store) Load(ctx context.Context, f tasks.Follow) (Record, error) {
	var (
		ev *redis.MapStringStringCmd
		cx *redis.FloatCmd
	)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		ev = p.HGetAll(ctx, s.eventKey(f))
		cx = p.ZScore(ctx, s.cancelKey(f.AppID, f.From, f.To), "t")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Record{}, fmt.Errorf("load delivery record: %w", err)
	}
	rec := Record{Finished: map[string]bool{}}
	for k, v := range ev.Val() {
		switch {
		case k == "done":
			rec.Done = true
		case k == "q":
			rec.QuotaRetries, _ = strconv.Atoi(v)
		case strings.HasPrefix(k, "s:"):
			rec.Finished[k[2:]] = true
		}
	}
	if at, err := cx.Result(); err == nil && int64(at) > f.EventTime {
		rec.Cancelled = true
	}
	return rec, nil
}

// MarkSent records that the devices with these tokens need nothing more
// for f (they were sent the push, or dropped for good).
func (s *Store) MarkSent(ctx context.Context, f tasks.Follow, tokens []string) error {
	if len(tokens) == 0 {
		return nil
	}
	fields := make([]any, 0, 2*len(tokens))
	for _, t := range tokens {
		fields = append(fields, "s:"+TokenKey(t), 1)
	}
	k := s.eventKey(f)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, fields...)
		p.PExpireAt(ctx, k, s.recordExpiry(f))
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark devices sent: %w", err)
	}
	return nil
}

// MarkDone records that f is fully handled: a repeat of the same event
// (same app, follower, followee and EventTime) does nothing until the record
// expires.
func (s *Store) MarkDone(ctx context.Context, f tasks.Follow) error {
	k := s.eventKey(f)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "done", 1)
		p.PExpireAt(ctx, k, s.recordExpiry(f))
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark follow done: %w", err)
	}
	return nil
}

// AddQuotaRetry counts one more quota-caused retry of f and returns the new
// count.
func (s *Store) AddQuotaRetry(ctx context.Context, f tasks.Follow) (int, error) {
	k := s.eventKey(f)
	var n *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.HIncrBy(ctx, k, "q", 1)
		p.PExpireAt(ctx, k, s.recordExpiry(f))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count quota retry: %w", err)
	}
	return int(n.Val()), nil
}
