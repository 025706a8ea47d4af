// Package delivery keeps the state that makes delivery exactly-once where
// it can be, and the state of the notification policies:
//
//   - per event (a follow, or a summary push): which devices already got
//     its push, whether any device accepted it, whether it is finished;
//   - per followee: the unfollows that cancel pending pushes, and the
//     policies' state: the claim each (follower, followee) pair holds on a
//     push (the cooldown), the per-recipient cap, the pending summary and
//     the snapshots of summaries being sent. See [Policy].
//
// The receiver writes unfollows ([Store.Cancel]); the worker reads an
// event's [Record] before sending ([Store.QueueLoad]), commits to a push
// ([Store.QueueAdmit] for a follow, [Store.TakeSummary] for a summary) and
// settles each attempt ([Store.Settle], [Store.SettleSummary]).
//
// Key layout (prefix defaults to "followpush:"). Everything about one
// followee shares the hash tag {ag:<followee>}, so every script and
// transaction works on Redis Cluster:
//
//	{prefix}{ag:<followee>}:ev:<id>    HASH  one event's record: "done" -> 1, "s:<token hash>" -> 1 (device needs nothing more),
//	                                         "r" -> 1 (a device accepted the push), "q" -> quota retries, "a" -> 1 (a summary took
//	                                         its followers), "hold" -> ms (a summary's: Take.Hold); TTL see Options.RecordTTL
//	                                         (id: tasks.Follow.ID or tasks.Summary.ID)
//	{prefix}{ag:<followee>}:ux         ZSET  unfollows: follower -> latest unfollow EventTime; TTL Options.CancelTTL
//	{prefix}{ag:<followee>}:cd         ZSET  claims: follower -> EventTime of the follow that holds the pair's claim
//	{prefix}{ag:<followee>}:cl         HASH  claims not settled yet: follower -> "<follow id> h <in flight until ms>" (to be
//	                                         pushed on its own) or "<follow id> f 0" (folded into a summary); a claim in :cd
//	                                         without an entry here reached a device
//	{prefix}{ag:<followee>}            ZSET  pending followers of the next summary push, scored with their follow's EventTime
//	{prefix}{ag:<followee>}:win        HASH  "due" -> when the next summary is due (ms), "why" -> aggregated|capped|quiet_hours,
//	                                         "opener" -> follow id, "hold" -> ms (the largest Policy.Hold of its follows)
//	{prefix}{ag:<followee>}:last       STRING the latest due time a summary window had: a new window is due later, so
//	                                         its digest (named by followee and due time) is never one that ran already
//	{prefix}{ag:<followee>}:cap        ZSET  pushes of the last hour (member: follow or digest id, score: when, ms)
//	{prefix}{ag:<followee>}:snap:<due> ZSET  the followers a summary took, so its retries resend the same summary
//	{prefix}{ag:<followee>}:inflight   ZSET  the summaries being sent right now: due time (ms) -> in flight until (ms);
//	                                         more than one when a retry overlaps another summary of the followee
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

	"github.com/followpush/followpush/internal/rediskey"
	"github.com/followpush/followpush/tasks"
)

// ClockSkewMargin is added to every lifetime that must outlast an event's
// stale cutoff (records, unfollows, claims), so that workers and Redis
// whose clocks differ by up to half of it still agree: a repeat that one
// worker finds fresh always finds the record another worker wrote.
const ClockSkewMargin = 10 * time.Minute

// DefaultMaxEventAge is the default age (from its EventTime) past which a
// follow is stale: dropped, not pushed (the setting MAX_EVENT_AGE).
const DefaultMaxEventAge = time.Hour

// Defaults of [Options].
const (
	// DefaultRecordTTL is Options.RecordTTL's default.
	DefaultRecordTTL = DefaultMaxEventAge
	// DefaultCancelTTL is Options.CancelTTL's default: UnfollowTTL of
	// [DefaultMaxEventAge].
	DefaultCancelTTL = 2*DefaultMaxEventAge + CapWindow
	// DefaultPrefix is Options.Prefix's default.
	DefaultPrefix = rediskey.DefaultPrefix
)

// Options configure a [Store].
type Options struct {
	// Prefix starts every key (default [DefaultPrefix]).
	Prefix string
	// RecordTTL is how long an event's record lives after its last write,
	// counted from the later of that write and the event's own time, plus
	// [ClockSkewMargin] (default [DefaultRecordTTL]). It must be at least
	// the worker's maximum event age, or a repeated webhook arriving after
	// the record expired could push again.
	RecordTTL time.Duration
	// CancelTTL is how long an unfollow keeps cancelling, plus
	// [ClockSkewMargin] (default [DefaultCancelTTL]): set it to
	// [UnfollowTTL] of the maximum event age, after which no follow older
	// than the unfollow can be pushed anymore.
	CancelTTL time.Duration
}

// UnfollowTTL is how long an unfollow must be remembered when follows go
// stale maxEventAge after their EventTime: a follow folded into a summary
// can be pushed up to the aggregation window (shorter than maxEventAge)
// and a [CapWindow] later still, so 2 × maxEventAge + CapWindow covers
// every policy setting. The receiver, which records unfollows, does not
// know the workers' policies.
func UnfollowTTL(maxEventAge time.Duration) time.Duration {
	return 2*maxEventAge + CapWindow
}

// Store reads and writes delivery records and policy state in Redis. It is
// safe for concurrent use.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	recordTTL time.Duration
	cancelTTL time.Duration
}

// New returns a Store over rdb.
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.RecordTTL <= 0 {
		opts.RecordTTL = DefaultRecordTTL
	}
	if opts.CancelTTL <= 0 {
		opts.CancelTTL = DefaultCancelTTL
	}
	return &Store{rdb: rdb, prefix: opts.Prefix, recordTTL: opts.RecordTTL, cancelTTL: opts.CancelTTL}
}

// Redis returns the Store's Redis client: a pipeline on it can carry
// [Store.QueueLoad] and [Store.QueueAdmit] together with other reads of
// the same Redis.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// Event is anything with a delivery record: a follow ([tasks.Follow]) or a
// summary push ([tasks.Summary]). ID must be unique across both; Time is the
// event's own time (a follow's EventTime, a digest's due time); Followee
// is the user the push goes to, under whose hash tag the record lives.
type Event interface {
	// ID names the event's record; unique across follows and summaries.
	ID() string
	// Time is the event's own time: its records live from it.
	Time() time.Time
	// Followee is the user the push goes to.
	Followee() string
}

// Record is what is known about one event's delivery.
type Record struct {
	// Done: the event was fully handled (pushed, or nothing to push); a
	// repeat must do nothing.
	Done bool
	// Cancelled: an unfollow of the same pair, later than the follow, was
	// recorded (users share one namespace across apps, so an unfollow
	// from any app counts). Always false for a summary.
	Cancelled bool
	// Finished holds the hashes ([TokenKey]) of devices that need nothing
	// more for this event: sent, or dropped for good.
	Finished map[string]bool
	// Reached: FCM accepted this event's push for at least one device in
	// an earlier attempt.
	Reached bool
	// QuotaRetries counts retries caused by FCM quota errors, which asynq
	// does not count (they are not failures), so that their backoff can grow.
	QuotaRetries int
	// Taken (summaries only): an earlier attempt took the summary's
	// followers ([Store.TakeSummary]), so a retry that finds no snapshot
	// lost it.
	Taken bool
}

// TokenKey is the short, stable name of a device token inside a record.
func TokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

func (s *Store) tag(followee string) string    { return s.prefix + "{ag:" + followee + "}" }
func (s *Store) eventKey(e Event) string       { return s.tag(e.Followee()) + ":ev:" + e.ID() }
func (s *Store) unfollowsKey(to string) string { return s.tag(to) + ":ux" }

// recordLife is the relative lifetime of e's record written at now: until
// RecordTTL after the later of now and e's time (an event stamped in the
// future by a fast clock keeps its record that much longer), plus
// [ClockSkewMargin]. Relative, so Redis's own clock does not matter.
func (s *Store) recordLife(e Event, now time.Time) time.Duration {
	return max(e.Time().Sub(now), 0) + s.recordTTL + ClockSkewMargin
}

// Cancel records that from unfollowed each of to at eventTime (ms): a
// pending follow of the same pair with an earlier EventTime will not be
// pushed, whatever app either came from. An older unfollow never
// overwrites a newer one, so retries that arrive out of order cannot
// resurrect a cancelled push.
//
// Cancel also undoes a follow already folded into a followee's pending
// summary push: when from is pending there with a follow older than the
// unfollow, it is removed (a summary left with nobody is not sent) and
// the claim that follow held is dropped. It is one pipeline of one script
// per followee.
func (s *Store) Cancel(ctx context.Context, app, from string, to []string, eventTime int64) error {
	return s.CancelAlso(ctx, app, from, to, eventTime, nil)
}

// CancelAlso is [Store.Cancel] that also queues, through also (when not
// nil), the caller's own commands on its first pipeline: they share its
// round trip, and their errors are not Cancel's (the caller reads them
// from its commands).
func (s *Store) CancelAlso(ctx context.Context, app, from string, to []string, eventTime int64, also func(redis.Pipeliner)) error {
	if len(to) == 0 {
		return nil
	}
	ttl := s.cancelTTL + ClockSkewMargin
	run := func(eval func(p redis.Pipeliner, keys []string, args ...any) *redis.Cmd) error {
		p := s.rdb.Pipeline()
		if also != nil {
			also(p)
			also = nil
		}
		cmds := make([]*redis.Cmd, len(to))
		for i, t := range to {
			cmds[i] = eval(p, []string{s.pendingKey(t), s.cooldownKey(t), s.claimKey(t), s.unfollowsKey(t)},
				from, eventTime, ttl.Milliseconds(), excl(eventTime-ttl.Milliseconds()))
		}
		_, _ = p.Exec(ctx) // errors are in the commands
		for _, c := range cmds {
			if err := c.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	err := run(func(p redis.Pipeliner, keys []string, args ...any) *redis.Cmd {
		return undoScript.EvalSha(ctx, p, keys, args...)
	})
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The script cache was empty (a restarted or new Redis): send the
		// script itself once. The script is idempotent.
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
	ux *redis.FloatCmd
}

// QueueLoad queues the reads of f's record and of the pair's latest
// unfollow on p.
func (s *Store) QueueLoad(ctx context.Context, p redis.Pipeliner, f tasks.Follow) *LoadQuery {
	return &LoadQuery{
		f:  f,
		ev: p.HGetAll(ctx, s.eventKey(f)),
		ux: p.ZScore(ctx, s.unfollowsKey(f.To), f.From),
	}
}

// Result returns what [Store.Load] returns, once the pipeline holding q
// ran.
func (q *LoadQuery) Result() (Record, error) {
	if err := q.ev.Err(); err != nil {
		return Record{}, fmt.Errorf("load delivery record: %w", err)
	}
	at, err := q.ux.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Record{}, fmt.Errorf("load delivery record: %w", err)
	}
	rec := parseRecord(q.ev.Val())
	rec.Cancelled = err == nil && int64(at) > q.f.EventTime
	return rec, nil
}

// LoadSummary returns the delivery record of summary d. A summary never
// seen before has a zero Record.
func (s *Store) LoadSummary(ctx context.Context, d tasks.Summary) (Record, error) {
	p := s.rdb.Pipeline()
	q := s.QueueLoadSummary(ctx, p, d)
	_, _ = p.Exec(ctx) // errors are in q's command
	return q.Result()
}

// SummaryLoadQuery is the read of a digest's record riding on a caller's
// pipeline ([Store.QueueLoadSummary]).
type SummaryLoadQuery struct{ ev *redis.MapStringStringCmd }

// QueueLoadSummary queues the read of digest d's record on p, so that it
// shares a round trip with the caller's other reads.
func (s *Store) QueueLoadSummary(ctx context.Context, p redis.Pipeliner, d tasks.Summary) *SummaryLoadQuery {
	return &SummaryLoadQuery{ev: p.HGetAll(ctx, s.eventKey(d))}
}

// Result returns what [Store.LoadSummary] returns, once the pipeline
// holding q ran.
func (q *SummaryLoadQuery) Result() (Record, error) {
	ev, err := q.ev.Result()
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
		case k == "r":
			rec.Reached = true
		case k == "a":
			rec.Taken = true
		case k == "q":
			rec.QuotaRetries, _ = strconv.Atoi(v)
		case strings.HasPrefix(k, "s:"):
			rec.Finished[k[2:]] = true
		}
	}
	return rec
}

// Attempt is what one attempt at an event's push did, for [Store.Settle]
// and [Store.SettleSummary].
type Attempt struct {
	// Finished are the tokens of devices that need nothing more: FCM
	// accepted the push, or dropped them for good.
	Finished []string
	// Accepted: FCM accepted the push for at least one device.
	Accepted bool
	// Final: the event ends with this attempt (no retry follows): it is
	// marked done, or (FailedForGood) left for asynq to archive.
	Final bool
	// FailedForGood, with Final: the attempt failed and the task will be
	// archived (its retries are used up, or the failure is permanent), so
	// the record is not marked done: an operator may run it again.
	FailedForGood bool
	// QuotaRetry: the attempt is retried because of FCM quota errors; the
	// record counts it ([Record.QuotaRetries]).
	QuotaRetry bool
}

// Settle records what attempt a did for follow f at now, in one script: the
// finished devices, whether a device accepted, the done flag and the quota
// retry count (returned). It also settles the pair's claim when f holds it
// as a push of its own: once a device accepted, the claim stands (the
// cooldown runs); when f ends without any device accepting (cancelled,
// stale, no devices, every device dead, retries used up) the claim and
// f's cap slot are released, so another follow of the pair is pushed; on
// a retry the claim stays, no longer in flight.
func (s *Store) Settle(ctx context.Context, f tasks.Follow, a Attempt, now time.Time) (int, error) {
	keys := []string{s.eventKey(f), s.cooldownKey(f.To), s.claimKey(f.To), s.capKey(f.To)}
	args := append([]any{f.From, boolArg(a.Final && !a.FailedForGood), boolArg(a.Final),
		boolArg(a.Accepted), boolArg(a.QuotaRetry), ms(s.recordLife(f, now)), f.ID()}, tokenArgs(a.Finished)...)
	q, err := settleScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("record delivery: %w", err)
	}
	return q, nil
}

// SettleSummary records what attempt a did for summary d at now, like
// [Store.Settle], and settles the claims of the followers it named: cutoff
// (ms) is the oldest follow it named, older ones were left out as stale.
// Once a device accepted, the named followers' claims stand; when the
// summary ends without any device accepting, their claims and its cap
// slot are released. It also ends the summary's in-flight lease.
func (s *Store) SettleSummary(ctx context.Context, d tasks.Summary, a Attempt, cutoff int64, now time.Time) (int, error) {
	keys := []string{s.eventKey(d), s.snapshotKey(d), s.cooldownKey(d.To), s.claimKey(d.To), s.capKey(d.To), s.inflightKey(d.To)}
	args := append([]any{d.ID(), boolArg(a.Final && !a.FailedForGood), boolArg(a.Final),
		boolArg(a.Accepted), boolArg(a.QuotaRetry), ms(s.recordLife(d, now)), itoa(cutoff), itoa(d.Due)}, tokenArgs(a.Finished)...)
	q, err := settleSummaryScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("record summary delivery: %w", err)
	}
	return q, nil
}

func tokenArgs(tokens []string) []any {
	out := make([]any, len(tokens))
	for i, t := range tokens {
		out[i] = TokenKey(t)
	}
	return out
}

// recordFields is the part of settleScript and settleDigestScript that
// writes the record: ARGV[2] "1" done, ARGV[4] "1" accepted, ARGV[5] "1"
// quota retry, ARGV[6] record TTL ms, ARGV[first..] token hashes. It
// leaves q (the quota retry count) and reached (a device accepted, now or
// earlier) set. The fields go in one HSET (one per 1,000 devices): a
// record is written once per attempt, so each command saved here is saved
// on every push.
const recordFields = `
local fields = {}
local function write()
  if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
  fields = {}
end
for i = FIRST_TOKEN, #ARGV do
  fields[#fields + 1] = 's:' .. ARGV[i]
  fields[#fields + 1] = 1
  if #fields >= 2000 then write() end -- unpack takes a few thousand at most
end
if ARGV[4] == '1' then fields[#fields + 1] = 'r'; fields[#fields + 1] = 1 end
if ARGV[2] == '1' then fields[#fields + 1] = 'done'; fields[#fields + 1] = 1 end
write()
local q = 0
if ARGV[5] == '1' then q = redis.call('HINCRBY', KEYS[1], 'q', 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local reached = ARGV[4] == '1' or redis.call('HEXISTS', KEYS[1], 'r') == 1
`

// settleScript settles one attempt of a follow.
//
// KEYS[1] record HASH, KEYS[2] claims ZSET, KEYS[3] unsettled claims HASH, KEYS[4] cap ZSET
// ARGV[1] follower, ARGV[2] "1" mark done, ARGV[3] "1" final, ARGV[4] "1" accepted,
// ARGV[5] "1" quota retry, ARGV[6] record TTL ms, ARGV[7] follow id, ARGV[8..] token hashes
var settleScript = redis.NewScript(strings.ReplaceAll(`
local from, id = ARGV[1], ARGV[7]
`+recordFields+`
local v = redis.call('HGET', KEYS[3], from)
if v and string.sub(v, 1, #id + 3) == id .. ' h ' then
  if reached then
    redis.call('HDEL', KEYS[3], from)
  elseif ARGV[3] == '1' then
    redis.call('ZREM', KEYS[2], from)
    redis.call('HDEL', KEYS[3], from)
  else
    redis.call('HSET', KEYS[3], from, id .. ' h 0')
  end
end
if ARGV[3] == '1' and not reached then redis.call('ZREM', KEYS[4], id) end
return q
`, "FIRST_TOKEN", "8"))

// settleSummaryScript settles one attempt of a summary.
//
// KEYS[1] record HASH, KEYS[2] snapshot ZSET, KEYS[3] claims ZSET, KEYS[4] unsettled claims HASH,
// KEYS[5] cap ZSET, KEYS[6] in-flight summaries ZSET
// ARGV[1] digest id, ARGV[2] "1" mark done, ARGV[3] "1" final, ARGV[4] "1" accepted,
// ARGV[5] "1" quota retry, ARGV[6] record TTL ms, ARGV[7] cutoff ms, ARGV[8] due ms, ARGV[9..] token hashes
var settleSummaryScript = redis.NewScript(strings.ReplaceAll(`
`+recordFields+`
redis.call('ZREM', KEYS[6], ARGV[8])
local confirm, release = ARGV[4] == '1', ARGV[3] == '1' and not reached
if confirm or release then
  local cutoff = tonumber(ARGV[7])
  local m = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #m, 2 do
    local c = redis.call('ZSCORE', KEYS[3], m[i])
    if c and tonumber(c) == tonumber(m[i + 1]) then
      local v = redis.call('HGET', KEYS[4], m[i])
      if v and string.find(v, ' f ', 1, true) then
        if confirm and tonumber(m[i + 1]) >= cutoff then
          redis.call('HDEL', KEYS[4], m[i])
        elseif release or confirm then
          redis.call('ZREM', KEYS[3], m[i])
          redis.call('HDEL', KEYS[4], m[i])
        end
      end
    end
  end
end
if release then redis.call('ZREM', KEYS[5], ARGV[1]) end
return q
`, "FIRST_TOKEN", "9"))
