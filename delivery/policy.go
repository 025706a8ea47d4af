package delivery

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/tasks"
)

// CapWindow is the period of [Policy.MaxPerHour]: a sliding hour.
const CapWindow = time.Hour

// Policy is the set of notification policies a worker applies to a
// followee's pushes. The zero Policy has everything off: every follow is
// pushed on its own as soon as it is handled, which is what a worker does
// without policies.
//
// All of a followee's policy state lives under one hash tag
// ({prefix}{ag:<followee>}, see the package documentation), so each decision
// is one atomic script, also on Redis Cluster.
type Policy struct {
	// Cooldown: once a follow of a pair (follower, followee; whatever the
	// app) notified, or was folded into a pending summary, other follows of
	// the same pair with an EventTime less than Cooldown later notify nothing
	// (follow → unfollow → follow again does not push twice). An unfollow
	// that undoes a still-pending folded follow lifts its cooldown, since it
	// notified nobody. 0 = off.
	Cooldown time.Duration
	// MaxPerHour caps the follower pushes (single or summary) one followee
	// gets in any sliding hour ([CapWindow]); follows beyond it are folded
	// into the followee's next summary push, due when the cap allows one
	// more. 0 = unlimited.
	MaxPerHour int
	// Window is the aggregation window: follows of the same followee within
	// it become one summary push at its end, and a summary sent opens the
	// next window, so a steady stream of follows gives one push per Window.
	// 0 = off (one push per follow).
	Window time.Duration
	// FirstImmediate: with a Window, the first follow after a quiet period
	// (no window open) is pushed at once and opens the window; otherwise it
	// waits for the window's summary like the rest.
	FirstImmediate bool
}

// Active reports whether any policy is on; an inactive Policy needs no
// call to [Store.Admit].
func (p Policy) Active() bool { return p.Cooldown > 0 || p.MaxPerHour > 0 || p.Window > 0 }

// Verdict is what [Store.Admit] decided for a follow.
type Verdict string

// The verdicts of [Store.Admit].
const (
	// VerdictSend: push the follow on its own, now.
	VerdictSend Verdict = "send"
	// VerdictCooldown: the pair notified recently; push nothing.
	VerdictCooldown Verdict = "cooldown"
	// VerdictCancelled: an unfollow later than the follow arrived (after
	// the follow's record was loaded); push nothing.
	VerdictCancelled Verdict = "cancelled"
	// VerdictAggregated: the follow was folded into the followee's pending
	// summary, which is due at [Admission.Due].
	VerdictAggregated Verdict = "aggregated"
	// VerdictCapped: the followee is at its per-hour cap; the follow was
	// folded into the pending summary, due at [Admission.Due].
	VerdictCapped Verdict = "capped"
)

// Admission is the answer of [Store.Admit].
type Admission struct {
	Verdict Verdict
	// Due is when the summary push the follow was folded into is due, in
	// milliseconds since the epoch (VerdictAggregated, VerdictCapped; 0
	// otherwise). The caller makes sure a [tasks.Digest] task for it
	// exists; scheduling the same digest twice is harmless.
	Due int64
}

// admitScript decides one follow. It never pushes a follow twice on its
// own: a retry of a follow it let through (found in the cap log or as the
// window's opener) is let through again.
//
// KEYS[1] pending ZSET, KEYS[2] window HASH, KEYS[3] cap ZSET, KEYS[4] cooldown ZSET,
// KEYS[5] unfollows ZSET
// ARGV[1] follower, ARGV[2] EventTime ms, ARGV[3] follow id, ARGV[4] now ms,
// ARGV[5] cooldown ms (0 = off), ARGV[6] "(" cooldown prune bound,
// ARGV[7] cap (0 = off), ARGV[8] cap window ms, ARGV[9] cap prune bound (inclusive),
// ARGV[10] window ms (0 = off), ARGV[11] "1" first immediate, ARGV[12] now+window ms,
// ARGV[13] key TTL ms
var admitScript = redis.NewScript(`
local from, et, id, now = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local cd, cap, win = tonumber(ARGV[5]), tonumber(ARGV[7]), tonumber(ARGV[10])
if cap > 0 and redis.call('ZSCORE', KEYS[3], id) then return {'send', 0} end
if win > 0 and redis.call('HGET', KEYS[2], 'opener') == id then return {'send', 0} end
local u = redis.call('ZSCORE', KEYS[5], from)
if u and tonumber(u) > et then return {'cancelled', 0} end
if cd > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[6])
  local c = redis.call('ZSCORE', KEYS[4], from)
  if c and tonumber(c) ~= et then return {'cooldown', 0} end
end
local function claim()
  if cd > 0 then
    redis.call('ZADD', KEYS[4], ARGV[2], from)
    redis.call('PEXPIRE', KEYS[4], ARGV[5])
  end
end
local function fold(due, why)
  redis.call('ZADD', KEYS[1], 'GT', ARGV[2], from)
  redis.call('PEXPIRE', KEYS[1], ARGV[13])
  claim()
  return {why, due}
end
local function open(due, why, opener)
  redis.call('HSET', KEYS[2], 'due', due, 'why', why, 'opener', opener)
  redis.call('PEXPIRE', KEYS[2], ARGV[13])
end
local due = redis.call('HGET', KEYS[2], 'due')
if due and (now < tonumber(due) or redis.call('ZCARD', KEYS[1]) > 0) then
  return fold(due, redis.call('HGET', KEYS[2], 'why') or 'aggregated')
end
if win > 0 and ARGV[11] ~= '1' then
  open(ARGV[12], 'aggregated', '')
  return fold(ARGV[12], 'aggregated')
end
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[9])
  if redis.call('ZCARD', KEYS[3]) >= cap then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    local free = tonumber(oldest[2]) + tonumber(ARGV[8])
    local d = ARGV[12]
    if free > tonumber(ARGV[12]) then d = string.format('%d', free) end
    open(d, 'capped', '')
    return fold(d, 'capped')
  end
  redis.call('ZADD', KEYS[3], ARGV[4], id)
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
end
if win > 0 then open(ARGV[12], 'aggregated', id) end
claim()
return {'send', 0}
`)

// takeScript takes the followers of one digest. Whether it takes them now
// or answers a retry from the snapshot an earlier run took, it first drops
// every follower whose unfollow (in the unfollows set) is later than their
// follow: an unfollow is honoured until the summary goes out, also while
// the summary is being retried. A retry renews the snapshot's expiry.
//
// KEYS[1] pending ZSET, KEYS[2] window HASH, KEYS[3] cap ZSET, KEYS[4] snapshot ZSET,
// KEYS[5] unfollows ZSET
// ARGV[1] digest due ms, ARGV[2] now ms, ARGV[3] cap (0 = off), ARGV[4] cap prune bound (inclusive),
// ARGV[5] cap window ms, ARGV[6] window ms (0 = off), ARGV[7] digest id,
// ARGV[8] key TTL ms, ARGV[9] snapshot TTL ms, ARGV[10] now+window ms
//
// Answers: {'send', followers with scores, 'new'|'retake'}, {'empty', 'new'|'retake'},
// {'later', due}, {'superseded', due, pending count}.
var takeScript = redis.NewScript(`
local function drop_undone(k)
  local n, nu = redis.call('ZCARD', k), redis.call('ZCARD', KEYS[5])
  if n == 0 or nu == 0 then return end
  if nu < n then
    local ux = redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES')
    for i = 1, #ux, 2 do
      local s = redis.call('ZSCORE', k, ux[i])
      if s and tonumber(s) < tonumber(ux[i + 1]) then redis.call('ZREM', k, ux[i]) end
    end
  else
    local m = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
    for i = 1, #m, 2 do
      local u = redis.call('ZSCORE', KEYS[5], m[i])
      if u and tonumber(u) > tonumber(m[i + 1]) then redis.call('ZREM', k, m[i]) end
    end
  end
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  drop_undone(KEYS[4])
  if redis.call('ZCARD', KEYS[4]) == 0 then return {'empty', 'retake'} end
  redis.call('PEXPIRE', KEYS[4], ARGV[9])
  return {'send', redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'), 'retake'}
end
local due = redis.call('HGET', KEYS[2], 'due')
if due and tonumber(due) ~= tonumber(ARGV[1]) then
  return {'superseded', due, redis.call('ZCARD', KEYS[1])}
end
drop_undone(KEYS[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return {'empty', 'new'}
end
local cap = tonumber(ARGV[3])
if cap > 0 and not redis.call('ZSCORE', KEYS[3], ARGV[7]) then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
  if redis.call('ZCARD', KEYS[3]) >= cap then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    local free = tonumber(oldest[2]) + tonumber(ARGV[5])
    if free <= tonumber(ARGV[1]) then free = tonumber(ARGV[1]) + 1 end
    local d = string.format('%d', free)
    redis.call('HSET', KEYS[2], 'due', d, 'why', 'capped', 'opener', '')
    redis.call('PEXPIRE', KEYS[2], ARGV[8])
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
    return {'later', d}
  end
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[7])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
redis.call('RENAME', KEYS[1], KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[9])
if tonumber(ARGV[6]) > 0 then
  redis.call('HSET', KEYS[2], 'due', ARGV[10], 'why', 'aggregated', 'opener', '')
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
else
  redis.call('DEL', KEYS[2])
end
return {'send', redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'), 'new'}
`)

// undoScript removes a follower from a followee's pending summary when its
// folded follow is older than the unfollow, and lifts the cooldown that
// follow started. It also notes the unfollow in the followee's slot, so a
// follow task that loaded its record before the unfollow and asks Admit
// after it is cancelled there (the {cx:} key lives on another slot).
//
// KEYS[1] pending ZSET, KEYS[2] cooldown ZSET, KEYS[3] unfollows ZSET;
// ARGV[1] follower, ARGV[2] unfollow EventTime ms, ARGV[3] unfollows TTL ms,
// ARGV[4] unfollows prune bound (exclusive)
var undoScript = redis.NewScript(`
redis.call('ZADD', KEYS[3], 'GT', ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) < tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  local c = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if c and tonumber(c) == tonumber(s) then redis.call('ZREM', KEYS[2], ARGV[1]) end
  return 1
end
return 0
`)

func (s *Store) pendingKey(to string) string   { return s.prefix + "{ag:" + to + "}" }
func (s *Store) windowKey(to string) string    { return s.pendingKey(to) + ":win" }
func (s *Store) capKey(to string) string       { return s.pendingKey(to) + ":cap" }
func (s *Store) cooldownKey(to string) string  { return s.pendingKey(to) + ":cd" }
func (s *Store) unfollowsKey(to string) string { return s.pendingKey(to) + ":ux" }
func (s *Store) snapshotKey(d tasks.Digest) string {
	return s.pendingKey(d.To) + ":snap:" + strconv.FormatInt(d.Due, 10)
}

// stateTTL is how long a followee's pending set and window outlive their
// last write, and a digest's snapshot its take or latest retry: long enough
// for a digest delayed by the cap and then retried up to the stale cutoff
// of its followers (MaxEventAge + Window + CapWindow, and MaxEventAge is at
// most the record TTL).
func (s *Store) stateTTL(p Policy) time.Duration {
	return p.Window + CapWindow + s.recordTTL
}

func ms(d time.Duration) string    { return strconv.FormatInt(d.Milliseconds(), 10) }
func itoa(n int64) string          { return strconv.FormatInt(n, 10) }
func excl(n int64) string          { return "(" + strconv.FormatInt(n, 10) }
func boolArg(b bool) string        { return map[bool]string{true: "1", false: "0"}[b] }
func toInt64(v any) (int64, error) { return strconv.ParseInt(fmt.Sprint(v), 10, 64) }

// Admit applies p to follow f at now and returns what to do with it. With
// an inactive p it returns [VerdictSend] without touching Redis. The order:
//
//  1. a retry of a follow Admit already let through is let through again;
//     an unfollow later than f (recorded by [Store.Cancel]) → [VerdictCancelled];
//  2. cooldown: the pair notified (or was folded) within p.Cooldown of f's
//     EventTime → [VerdictCooldown];
//  3. a summary is pending for the followee (a window is open, or follows
//     wait for the cap) → folded into it;
//  4. aggregation without FirstImmediate → folded, opening a window;
//  5. the followee is at p.MaxPerHour → [VerdictCapped], folded into a
//     summary due when the cap allows one more push;
//  6. otherwise [VerdictSend]; with aggregation, f opens a window.
//
// Folding a follow and letting it through both start its pair's cooldown.
func (s *Store) Admit(ctx context.Context, f tasks.Follow, p Policy, now time.Time) (Admission, error) {
	if !p.Active() {
		return Admission{Verdict: VerdictSend}, nil
	}
	keys, args := s.admitArgs(f, p, now)
	return parseAdmission(admitScript.Run(ctx, s.rdb, keys, args...))
}

// MarkFolded records in f's record that [Store.Admit] folded f into the
// summary push of a ([VerdictAggregated] or [VerdictCapped], due a.Due), for
// when scheduling that summary failed: f's retry finds it in
// [Record.Folded] and schedules the summary again instead of asking Admit,
// which could fold f a second time (into the next summary, once this one
// went out) or push it on its own.
func (s *Store) MarkFolded(ctx context.Context, f tasks.Follow, a Admission) error {
	k := s.eventKey(f)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "f", string(a.Verdict)+":"+itoa(a.Due))
		p.PExpireAt(ctx, k, s.recordExpiry(f))
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark follow folded: %w", err)
	}
	return nil
}

// parseFolded reads [Record.Folded] as [Store.MarkFolded] wrote it; zero
// when malformed.
func parseFolded(v string) Admission {
	verdict, due, _ := strings.Cut(v, ":")
	d, err := strconv.ParseInt(due, 10, 64)
	if err != nil || (verdict != string(VerdictAggregated) && verdict != string(VerdictCapped)) {
		return Admission{}
	}
	return Admission{Verdict: Verdict(verdict), Due: d}
}

// AdmitQuery is a [Store.Admit] riding on a caller's pipeline, so that it
// shares a round trip with other commands: queue it with
// [Store.QueueAdmit], run the pipeline, then call Result.
type AdmitQuery struct {
	s   *Store
	f   tasks.Follow
	p   Policy
	now time.Time
	cmd *redis.Cmd // nil: no policy active
}

// QueueAdmit queues f's admission on pipe (pipe must be on the Store's
// Redis). With no policy active it queues nothing.
func (s *Store) QueueAdmit(ctx context.Context, pipe redis.Pipeliner, f tasks.Follow, p Policy, now time.Time) *AdmitQuery {
	q := &AdmitQuery{s: s, f: f, p: p, now: now}
	if p.Active() {
		keys, args := s.admitArgs(f, p, now)
		q.cmd = admitScript.EvalSha(ctx, pipe, keys, args...)
	}
	return q
}

// Result returns what [Store.Admit] returns, once the pipeline holding q
// ran. When Redis did not have the script cached (it restarted), the
// script did not run: Result runs Admit itself.
func (q *AdmitQuery) Result(ctx context.Context) (Admission, error) {
	if q.cmd == nil {
		return Admission{Verdict: VerdictSend}, nil
	}
	if redis.HasErrorPrefix(q.cmd.Err(), "NOSCRIPT") {
		return q.s.Admit(ctx, q.f, q.p, q.now)
	}
	return parseAdmission(q.cmd)
}

func (s *Store) admitArgs(f tasks.Follow, p Policy, now time.Time) ([]string, []any) {
	n := now.UnixMilli()
	keys := []string{s.pendingKey(f.To), s.windowKey(f.To), s.capKey(f.To), s.cooldownKey(f.To), s.unfollowsKey(f.To)}
	args := []any{
		f.From, itoa(f.EventTime), f.ID(), itoa(n),
		ms(p.Cooldown), excl(n - p.Cooldown.Milliseconds()),
		p.MaxPerHour, ms(CapWindow), itoa(n - CapWindow.Milliseconds()),
		ms(p.Window), boolArg(p.FirstImmediate), itoa(n + p.Window.Milliseconds()),
		ms(s.stateTTL(p)),
	}
	return keys, args
}

func parseAdmission(cmd *redis.Cmd) (Admission, error) {
	res, err := cmd.Slice()
	if err != nil {
		return Admission{}, fmt.Errorf("apply notification policies: %w", err)
	}
	if len(res) != 2 {
		return Admission{}, fmt.Errorf("apply notification policies: unexpected answer %v", res)
	}
	due, err := toInt64(res[1])
	if err != nil {
		return Admission{}, fmt.Errorf("apply notification policies: bad due time %v", res[1])
	}
	return Admission{Verdict: Verdict(fmt.Sprint(res[0])), Due: due}, nil
}

// BatchVerdict is what [Store.TakeDigest] found.
type BatchVerdict string

// The verdicts of [Store.TakeDigest].
const (
	// BatchSend: send the summary of [Batch.Followers]. A retry of the same
	// digest gets the same followers, less those who unfollowed since.
	BatchSend BatchVerdict = "send"
	// BatchEmpty: nobody is pending (every folded follow was undone), or,
	// with [Batch.Retake], everyone the digest took unfollowed since: send
	// nothing; the window closes.
	BatchEmpty BatchVerdict = "empty"
	// BatchLater: the followee is at its cap; the summary moved to
	// [Batch.Next], whose digest the caller schedules.
	BatchLater BatchVerdict = "later"
	// BatchSuperseded: another digest of the followee is the current one
	// (this one is a stale duplicate); when followers are pending,
	// [Batch.Next] is its due time, which the caller makes sure is
	// scheduled.
	BatchSuperseded BatchVerdict = "superseded"
)

// Follower is one follower in a summary push.
type Follower struct {
	ID        string
	EventTime int64 // ms
}

// Batch is the answer of [Store.TakeDigest].
type Batch struct {
	Verdict BatchVerdict
	// Followers are the followers to name, oldest follow first (BatchSend).
	Followers []Follower
	// Next is the due time (ms) of the digest to schedule, 0 for none.
	Next int64
	// Retake: the answer (BatchSend or BatchEmpty) comes from the followers
	// an earlier TakeDigest of the same digest took. A digest that was taken
	// before and gets another answer has lost its snapshot (it expired, or
	// Redis lost it).
	Retake bool
}

// TakeDigest takes the followers of digest d at now under policy p: on the
// first run it moves the followee's pending set into a snapshot (so retries
// resend the same summary), counts the push against the cap and, with
// aggregation, opens the next window (follows within it wait for the next
// summary). When the cap is full the summary is put off instead
// ([BatchLater]).
//
// Every run, the first and each retry's, leaves out the followers who
// unfollowed (see [Store.Cancel]) after their follow; when nobody is left
// the answer is [BatchEmpty]. The snapshot lives Window + [CapWindow] +
// RecordTTL (at least the stale cutoff of a summary's followers) from the
// take, renewed by each retry.
func (s *Store) TakeDigest(ctx context.Context, d tasks.Digest, p Policy, now time.Time) (Batch, error) {
	n := now.UnixMilli()
	keys := []string{s.pendingKey(d.To), s.windowKey(d.To), s.capKey(d.To), s.snapshotKey(d), s.unfollowsKey(d.To)}
	args := []any{
		itoa(d.Due), itoa(n), p.MaxPerHour, itoa(n - CapWindow.Milliseconds()), ms(CapWindow),
		ms(p.Window), d.ID(), ms(s.stateTTL(p)), ms(s.stateTTL(p)), itoa(n + p.Window.Milliseconds()),
	}
	res, err := takeScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil || len(res) == 0 {
		return Batch{}, fmt.Errorf("take digest followers: %w (answer %v)", err, res)
	}
	b := Batch{Verdict: BatchVerdict(fmt.Sprint(res[0]))}
	switch b.Verdict {
	case BatchEmpty:
		b.Retake = len(res) > 1 && res[1] == "retake"
	case BatchSend:
		b.Retake = len(res) > 2 && res[2] == "retake"
		pairs, _ := res[1].([]any)
		for i := 0; i+1 < len(pairs); i += 2 {
			t, err := strconv.ParseFloat(fmt.Sprint(pairs[i+1]), 64)
			if err != nil {
				return Batch{}, fmt.Errorf("take digest followers: bad score %v", pairs[i+1])
			}
			b.Followers = append(b.Followers, Follower{ID: fmt.Sprint(pairs[i]), EventTime: int64(t)})
		}
	case BatchLater:
		if b.Next, err = toInt64(res[1]); err != nil {
			return Batch{}, fmt.Errorf("take digest followers: bad due time %v", res[1])
		}
	case BatchSuperseded:
		due, err := toInt64(res[1])
		if err != nil {
			return Batch{}, fmt.Errorf("take digest followers: bad due time %v", res[1])
		}
		if pending, _ := toInt64(res[2]); pending > 0 {
			b.Next = due
		}
	}
	return b, nil
}

// LoadDigest returns the delivery record of digest d.
func (s *Store) LoadDigest(ctx context.Context, d tasks.Digest) (Record, error) {
	return s.LoadRecord(ctx, d)
}
