package delivery

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/tasks"
)

// CapWindow is the period of [Policy.MaxPerHour]: a sliding hour.
const CapWindow = time.Hour

// DefaultCooldown is the cooldown the programs apply unless configured
// (FOLLOW_COOLDOWN); the zero Policy has none.
const DefaultCooldown = time.Hour

// Policy is the set of notification policies a worker applies to a
// followee's pushes. The zero Policy has everything off: every follow is
// pushed on its own as soon as it is handled, which is what a worker does
// without policies.
//
// All of a followee's policy state lives under one hash tag
// ({prefix}{ag:<followee>}, see the package documentation), so each decision
// is one atomic script, also on Redis Cluster.
type Policy struct {
	// Cooldown: once a push for a follow of a pair (follower, followee;
	// whatever the app) reached a device, other follows of the same pair
	// with an EventTime less than Cooldown later push nothing (follow →
	// unfollow → follow again does not push twice). A follow that has not
	// reached a device yet holds no cooldown: see [Store.QueueAdmit].
	// 0 = off.
	Cooldown time.Duration
	// MaxPerHour caps the follower pushes (single or summary) one followee
	// gets in any sliding hour ([CapWindow]); follows beyond it are folded
	// into the followee's next summary push, due when the cap allows one
	// more. A push that ends without reaching any device gives its slot
	// back. 0 = unlimited.
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
	// Quiet is set for one admission, not configured: the followee is in
	// quiet hours (their own preference), and Window is the time left until
	// they end. A follow is then never pushed on its own: it is folded into
	// the followee's pending summary, or opens one due when Window ends,
	// with the verdict [VerdictQuiet].
	Quiet bool
	// Hold is set for one admission, not configured: how much longer than
	// the policies alone the followee's folded follows may wait for their
	// summary (their own summary window, their quiet hours). Their claims
	// and pending summary are kept that much longer, and a follow folded
	// under it records it with the pending summary, whose followers then
	// go stale that much later ([Take.Hold]), whatever the preferences
	// say when the summary goes out.
	Hold time.Duration
}

// Active reports whether any policy is on. With none on, a follow's
// admission only checks for a later unfollow.
func (p Policy) Active() bool { return p.Cooldown > 0 || p.MaxPerHour > 0 || p.Window > 0 }

// Verdict is what [Store.QueueAdmit] decided for a follow.
type Verdict string

// The verdicts of an admission.
const (
	// VerdictSend: push the follow on its own, now. With policies on, the
	// follow holds its pair's claim, in flight until [Admission.Until].
	VerdictSend Verdict = "send"
	// VerdictCancelled: an unfollow of the pair later than the follow was
	// recorded; push nothing.
	VerdictCancelled Verdict = "cancelled"
	// VerdictCooldown: a push for an earlier follow of the pair reached a
	// device less than Policy.Cooldown before; push nothing.
	VerdictCooldown Verdict = "cooldown"
	// VerdictSuperseded: a newer follow of the same pair holds the claim
	// and will notify; push nothing.
	VerdictSuperseded Verdict = "superseded"
	// VerdictWait: another follow of the pair (or a summary naming it) is
	// being sent right now; ask again after [Admission.Until], when its
	// outcome decides (a push that reached a device starts the cooldown;
	// one that did not leaves the pair to this follow).
	VerdictWait Verdict = "wait"
	// VerdictAggregated: the follow is folded into the followee's pending
	// summary, which is due at [Admission.Due]. A retry of a follow folded
	// earlier gets this answer again while the summary is pending: the
	// follow is folded only once.
	VerdictAggregated Verdict = "aggregated"
	// VerdictCapped: the followee is at its per-hour cap; the follow is
	// folded into the pending summary, due at [Admission.Due].
	VerdictCapped Verdict = "capped"
	// VerdictSummarized: the follow was folded earlier and a summary has
	// taken it; nothing more to do.
	VerdictSummarized Verdict = "summarized"
	// VerdictQuiet: the followee is in quiet hours (Policy.Quiet); the
	// follow is folded into a summary due when they end, at
	// [Admission.Due].
	VerdictQuiet Verdict = "quiet_hours"
)

// Admission is the answer of an admission.
type Admission struct {
	// Verdict is what to do with the follow.
	Verdict Verdict
	// Due is when the summary push the follow is folded into is due, in
	// milliseconds since the epoch (VerdictAggregated, VerdictCapped, VerdictQuiet; 0
	// otherwise). The caller makes sure a [tasks.Summary] task for it
	// exists; scheduling the same digest twice is harmless.
	Due int64
	// Until is when the push blocking a VerdictWait ends at the latest.
	Until time.Time
}

// admitScript decides one follow and, when it is to be pushed, commits to
// the push: the follow takes its pair's claim, in flight until the lease
// ends. See [Store.QueueAdmit] for the rules.
//
// KEYS[1] pending ZSET, KEYS[2] window HASH, KEYS[3] cap ZSET, KEYS[4] claims ZSET,
// KEYS[5] unsettled claims HASH, KEYS[6] unfollows ZSET, KEYS[7] in-flight summaries ZSET,
// KEYS[8] the follow's record HASH, KEYS[9] last due STRING
// ARGV[1] follower, ARGV[2] EventTime ms, ARGV[3] follow id, ARGV[4] now ms,
// ARGV[5] cooldown ms (0 = off), ARGV[6] claim prune bound (inclusive),
// ARGV[7] cap (0 = off), ARGV[8] cap window ms, ARGV[9] cap prune bound (inclusive),
// ARGV[10] window ms (0 = off), ARGV[11] "1" first immediate, ARGV[12] now+window ms,
// ARGV[13] state TTL ms, ARGV[14] in flight until ms, ARGV[15] claims TTL ms,
// ARGV[16] why a window opened now is opened ('aggregated', 'quiet_hours'),
// ARGV[17] the hold ms (Policy.Hold) a folded follow records with the pending summary
var admitScript = redis.NewScript(`
local from, et, id, now = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local cd, cap, win = tonumber(ARGV[5]), tonumber(ARGV[7]), tonumber(ARGV[10])
local quiet = ARGV[16] == 'quiet_hours'
local u = redis.call('ZSCORE', KEYS[6], from)
if u and tonumber(u) > et then return {'cancelled', 0} end
-- the window, read once (nothing below changes it before reading it)
local w = redis.call('HMGET', KEYS[2], 'due', 'why', 'hold')
local wdue, wwhy, whold = w[1], w[2] or 'aggregated', tonumber(w[3] or '0')
-- the pending summary may hold follows longer than this admission's
-- hold (the followee's preferences changed since): its keys, and the
-- claims, are kept that much longer
local more = math.max(whold - tonumber(ARGV[17]), 0)
local state_ttl, claims_ttl = tonumber(ARGV[13]) + more, tonumber(ARGV[15]) + more
-- why a follow folded into a summary opened for why waits: inside quiet
-- hours for them, after them for the summary the quiet hours held
local function reason(why)
  if quiet then return 'quiet_hours' end
  if why == 'quiet_hours' then return 'aggregated' end
  return why
end
local function hold()
  if tonumber(ARGV[17]) > whold then redis.call('HSET', KEYS[2], 'hold', ARGV[17]) end
end
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[6]) - more, 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('ZREM', KEYS[4], unpack(old))
  redis.call('HDEL', KEYS[5], unpack(old))
end
local function claim(state)
  redis.call('ZADD', KEYS[4], et, from)
  redis.call('HSET', KEYS[5], from, id .. ' ' .. state)
  redis.call('PEXPIRE', KEYS[4], claims_ttl)
  redis.call('PEXPIRE', KEYS[5], claims_ttl)
end
local function pending_summary()
  if not wdue then return nil end
  return {reason(wwhy), wdue}
end
local c = redis.call('ZSCORE', KEYS[4], from)
if c then
  c = tonumber(c)
  local v = redis.call('HGET', KEYS[5], from)
  local owner, state, till = nil, 'r', 0
  if v then
    local o, s, t = string.match(v, '^(%S+) (%a) (%d+)$')
    owner, state, till = o, s, tonumber(t)
  end
  if (v and owner == id) or (not v and c == et) then
    if state == 'f' then
      local s = redis.call('ZSCORE', KEYS[1], from)
      local ps = pending_summary()
      if s and tonumber(s) == et and ps then hold() return ps end
      return {'summarized', 0}
    end
    if state == 'r' and redis.call('HEXISTS', KEYS[8], 'r') == 0 then
      return {'summarized', 0} -- a summary naming f reached a device
    end
    if state ~= 'h' then return {'send', 0} end
    if not quiet then
      redis.call('HSET', KEYS[5], from, id .. ' h ' .. ARGV[14])
      return {'send', 0}
    end
    -- a retry of f, whose push reached no device, inside the followee's
    -- quiet hours: f gives its cap slot back and is folded below
    redis.call('ZREM', KEYS[3], id)
  elseif c > et then return {'superseded', 0}
  elseif state == 'r' then
    if cd > 0 and et - c < cd then return {'cooldown', 0} end
  elseif state == 'h' then
    if till > now then return {'wait', till} end
    redis.call('ZREM', KEYS[3], owner)
  else
    local s = redis.call('ZSCORE', KEYS[1], from)
    local ps = pending_summary()
    if s and tonumber(s) == c and ps then
      redis.call('ZADD', KEYS[1], et, from)
      redis.call('PEXPIRE', KEYS[1], state_ttl)
      claim('f 0')
      hold()
      return ps
    end
    -- summaries in flight (more than one when a retry overlaps another
    -- summary of the followee): wait if one names the older follow
    local sv = redis.call('ZRANGEBYSCORE', KEYS[7], '(' .. ARGV[4], '+inf', 'WITHSCORES')
    for i = 1, #sv, 2 do
      local ss = redis.call('ZSCORE', KEYS[1] .. ':snap:' .. sv[i], from)
      if ss and tonumber(ss) == c then return {'wait', sv[i + 1]} end
    end
  end
end
local function fold(due, why)
  redis.call('ZADD', KEYS[1], et, from)
  redis.call('PEXPIRE', KEYS[1], state_ttl)
  claim('f 0')
  hold()
  return {why, due}
end
local function open(due, why, opener)
  local last = tonumber(redis.call('GET', KEYS[9]) or '0')
  if tonumber(due) <= last then due = string.format('%d', last + 1) end
  redis.call('SET', KEYS[9], due, 'PX', state_ttl)
  redis.call('HSET', KEYS[2], 'due', due, 'why', why, 'opener', opener, 'hold', 0)
  redis.call('PEXPIRE', KEYS[2], state_ttl)
  whold = 0
  return due
end
if wdue and (now < tonumber(wdue) or redis.call('ZCARD', KEYS[1]) > 0) then
  return fold(wdue, reason(wwhy))
end
if win > 0 and ARGV[11] ~= '1' then
  return fold(open(ARGV[12], ARGV[16], ''), ARGV[16])
end
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[9])
  if redis.call('ZCARD', KEYS[3]) >= cap then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    local free = tonumber(oldest[2]) + tonumber(ARGV[8])
    local d = ARGV[12]
    if free > tonumber(ARGV[12]) then d = string.format('%d', free) end
    return fold(open(d, 'capped', ''), 'capped')
  end
  redis.call('ZADD', KEYS[3], ARGV[4], id)
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
end
if win > 0 then open(ARGV[12], 'aggregated', id) end
claim('h ' .. ARGV[14])
return {'send', 0}
`)

// liveFollowers is the part of takeScript that drops from a set of
// followers (a pending set or a snapshot) those who unfollowed after
// their follow, and those whose pair's claim a newer follow holds (that
// follow notifies instead). An unfollowed follower's claim goes with it,
// unless it reached a device already (an earlier attempt of the summary
// did): then its cooldown runs.
const liveFollowers = `
local function keep_live(k)
  local m = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  for i = 1, #m, 2 do
    local f, s = m[i], tonumber(m[i + 1])
    local u = redis.call('ZSCORE', KEYS[5], f)
    local c = redis.call('ZSCORE', KEYS[6], f)
    if u and tonumber(u) > s then
      redis.call('ZREM', k, f)
      local v = redis.call('HGET', KEYS[7], f)
      if c and tonumber(c) == s and v and string.find(v, ' f ', 1, true) then
        redis.call('ZREM', KEYS[6], f)
        redis.call('HDEL', KEYS[7], f)
      end
    elseif c and tonumber(c) ~= s then
      redis.call('ZREM', k, f)
    end
  end
end
`

// takeScript takes the followers of one summary. Whether it takes them
// now or answers a retry from the snapshot an earlier run took, it first
// keeps only live followers (see liveFollowers): an unfollow is honoured
// until the summary goes out, also while it is being retried. With a
// lease, the answer commits to sending: the summary is in flight until the
// lease ends (or [Store.SettleSummary]). A retry renews the snapshot's
// expiry.
//
// KEYS[1] pending ZSET, KEYS[2] window HASH, KEYS[3] cap ZSET, KEYS[4] snapshot ZSET,
// KEYS[5] unfollows ZSET, KEYS[6] claims ZSET, KEYS[7] unsettled claims HASH,
// KEYS[8] digest record HASH, KEYS[9] in-flight summaries ZSET, KEYS[10] last due STRING
// ARGV[1] digest due ms, ARGV[2] now ms, ARGV[3] cap (0 = off), ARGV[4] cap prune bound (inclusive),
// ARGV[5] cap window ms, ARGV[6] window ms (0 = off), ARGV[7] digest id,
// ARGV[8] state TTL ms, ARGV[9] snapshot TTL ms, ARGV[10] now+window ms,
// ARGV[11] in flight until ms (0: not committing), ARGV[12] record TTL ms
//
// Answers: {'send', followers with scores, 'new'|'retake', hold ms}, {'empty', 'new'|'retake'},
// {'later', due}, {'superseded', due, pending count}.
var takeScript = redis.NewScript(liveFollowers + `
local function commit()
  if ARGV[11] == '0' then return end
  redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', ARGV[2])
  redis.call('ZADD', KEYS[9], ARGV[11], ARGV[1])
  redis.call('PEXPIRE', KEYS[9], ARGV[8])
end
local function extend(k, ttl)
  if redis.call('PTTL', k) < tonumber(ttl) then redis.call('PEXPIRE', k, ttl) end
end
local function open(due, why)
  local last = tonumber(redis.call('GET', KEYS[10]) or '0')
  if tonumber(due) <= last then due = string.format('%d', last + 1) end
  redis.call('SET', KEYS[10], due, 'PX', math.max(redis.call('PTTL', KEYS[10]), tonumber(ARGV[8])))
  redis.call('HSET', KEYS[2], 'due', due, 'why', why, 'opener', '')
  extend(KEYS[2], ARGV[8])
  return due
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  keep_live(KEYS[4])
  if redis.call('ZCARD', KEYS[4]) == 0 then return {'empty', 'retake'} end
  extend(KEYS[4], ARGV[9])
  commit()
  return {'send', redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'), 'retake', redis.call('HGET', KEYS[8], 'hold') or '0'}
end
local due = redis.call('HGET', KEYS[2], 'due')
if due and tonumber(due) ~= tonumber(ARGV[1]) then
  return {'superseded', due, redis.call('ZCARD', KEYS[1])}
end
keep_live(KEYS[1])
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
    local d = open(string.format('%d', free), 'capped')
    extend(KEYS[1], ARGV[8])
    return {'later', d}
  end
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[7])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
local hold = redis.call('HGET', KEYS[2], 'hold') or '0'
redis.call('RENAME', KEYS[1], KEYS[4])
extend(KEYS[4], ARGV[9])
redis.call('HSET', KEYS[8], 'a', 1, 'hold', hold)
redis.call('PEXPIRE', KEYS[8], ARGV[12])
if tonumber(ARGV[6]) > 0 then
  open(ARGV[10], 'aggregated')
  redis.call('HSET', KEYS[2], 'hold', 0)
else
  redis.call('DEL', KEYS[2])
end
commit()
return {'send', redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'), 'new', hold}
`)

// undoScript records an unfollow under the followee's hash tag, and
// removes the follower from the followee's pending summary when its folded
// follow is older than the unfollow, dropping the claim that follow held.
//
// KEYS[1] pending ZSET, KEYS[2] claims ZSET, KEYS[3] unsettled claims HASH, KEYS[4] unfollows ZSET;
// ARGV[1] follower, ARGV[2] unfollow EventTime ms, ARGV[3] unfollows TTL ms,
// ARGV[4] unfollows prune bound (exclusive)
var undoScript = redis.NewScript(`
redis.call('ZADD', KEYS[4], 'GT', ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[4])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) < tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  local c = redis.call('ZSCORE', KEYS[2], ARGV[1])
  local v = redis.call('HGET', KEYS[3], ARGV[1])
  if c and tonumber(c) == tonumber(s) and v and string.find(v, ' f ', 1, true) then
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('HDEL', KEYS[3], ARGV[1])
  end
  return 1
end
return 0
`)

func (s *Store) pendingKey(to string) string  { return s.tag(to) }
func (s *Store) windowKey(to string) string   { return s.tag(to) + ":win" }
func (s *Store) capKey(to string) string      { return s.tag(to) + ":cap" }
func (s *Store) cooldownKey(to string) string { return s.tag(to) + ":cd" }
func (s *Store) claimKey(to string) string    { return s.tag(to) + ":cl" }
func (s *Store) inflightKey(to string) string { return s.tag(to) + ":inflight" }
func (s *Store) lastDueKey(to string) string  { return s.tag(to) + ":last" }
func (s *Store) snapshotKey(d tasks.Summary) string {
	return s.tag(d.To) + ":snap:" + strconv.FormatInt(d.Due, 10)
}

// stateTTL is how long a followee's pending set and window outlive their
// last write, and a digest's snapshot its take or latest retry: long enough
// for a digest delayed by the cap and then retried up to the stale cutoff
// of its followers (MaxEventAge + Window + CapWindow, and MaxEventAge is at
// most the record TTL), plus [ClockSkewMargin].
func (s *Store) stateTTL(p Policy) time.Duration {
	return p.Window + p.Hold + CapWindow + s.recordTTL + ClockSkewMargin
}

// claimKeep is how long a pair's claim is kept after its follow's
// EventTime, measured on the clock of the worker handling a later follow:
// as long as its own follow can still be pushed (on its own until its
// record goes, in a summary up to a window and, with a cap, an hour
// later), and, with a cooldown, as long as a follow less than the
// cooldown younger can still be handled.
func (s *Store) claimKeep(p Policy) time.Duration {
	pushable := s.recordTTL + p.Window + p.Hold
	if p.MaxPerHour > 0 {
		pushable += CapWindow
	}
	return p.Cooldown + pushable + ClockSkewMargin
}

func ms(d time.Duration) string    { return strconv.FormatInt(d.Milliseconds(), 10) }
func itoa(n int64) string          { return strconv.FormatInt(n, 10) }
func excl(n int64) string          { return "(" + strconv.FormatInt(n, 10) }
func boolArg(b bool) string        { return map[bool]string{true: "1", false: "0"}[b] }
func toInt64(v any) (int64, error) { return strconv.ParseInt(fmt.Sprint(v), 10, 64) }

// Admit is [Store.QueueAdmit] in a round trip of its own.
func (s *Store) Admit(ctx context.Context, f tasks.Follow, p Policy, now time.Time, lease time.Duration) (Admission, error) {
	pipe := s.rdb.Pipeline()
	q := s.QueueAdmit(ctx, pipe, f, p, now, lease)
	_, _ = pipe.Exec(ctx) // errors are in q's command
	return q.Result(ctx)
}

// AdmitQuery is an admission riding on a caller's pipeline, so that it
// shares a round trip with other commands: queue it with
// [Store.QueueAdmit], run the pipeline, then call Result.
type AdmitQuery struct {
	s     *Store
	f     tasks.Follow
	p     Policy
	now   time.Time
	lease time.Duration
	cmd   *redis.Cmd      // the script (policies on)
	ux    *redis.FloatCmd // the pair's latest unfollow (policies off)
	claim *redis.FloatCmd // the pair's claim (policies off)
}

// QueueAdmit queues, on pipe (on the Store's Redis), the decision about
// follow f at now under p, and, when the answer is [VerdictSend], the
// commitment to push it: an unfollow recorded after this point no longer
// stops the push (it was attempted before). The rules, in order:
//
//  1. an unfollow of the pair later than f → [VerdictCancelled];
//  2. (policies on) the pair's claim, held by at most one follow of the
//     pair at a time:
//     - f holds it: a retry of f. Pushed on its own: [VerdictSend] again
//     (to the devices that still need it), unless its push has reached
//     no device and p.Quiet: then f gives its cap slot back and is
//     folded as in rule 3 or 4 (a retry waits for the end of the quiet
//     hours too); folded: the same summary's verdict while it is
//     pending, [VerdictSummarized] once taken (or once the summary
//     reached a device);
//     - a newer follow holds it → [VerdictSuperseded];
//     - an older follow whose push reached a device less than
//     p.Cooldown before f → [VerdictCooldown];
//     - an older follow being pushed right now (or a summary naming it
//     being sent) → [VerdictWait];
//     - an older follow folded into the still pending summary: f takes
//     its place there (the follower is named once) → that summary's verdict;
//     - otherwise the older follow's claim lapses (it was undone, went
//     stale, or its push has not reached anyone yet and is superseded by
//     f; it gives its cap slot back) and f is decided as below;
//  3. a summary is pending for the followee (a window is open, or follows
//     wait for the cap) → folded into it;
//  4. aggregation without FirstImmediate → folded, opening a window
//     ([VerdictQuiet] and a window ending with the quiet hours when
//     p.Quiet);
//  5. the followee is at p.MaxPerHour → [VerdictCapped], folded into a
//     summary due when the cap allows one more push;
//  6. otherwise [VerdictSend]; with aggregation, f opens a window.
//
// A folded follow's verdict says why it waits: [VerdictQuiet] whenever
// p.Quiet, else the reason its summary was opened for ([VerdictAggregated]
// for a summary the quiet hours opened, once they are over). Folding f
// records p.Hold with the pending summary (the largest of its follows'
// holds counts, see [Take.Hold]).
//
// Folding f, or sending it, gives f the pair's claim; a push takes a cap
// slot. The claim of a push to be sent is in flight until now + lease:
// another follow of the pair meanwhile waits for its outcome. With no
// policy active only rule 1 applies (and no policy key is written),
// unless the pair's claim is held by f or a newer follow: a follow of the
// pair was admitted under policies (the followee's preferences, or the
// configuration, changed since), and the rules decide f (in a round trip
// of its own, from [AdmitQuery.Result]), so that a follow folded into a
// summary that named it, or superseded by a newer one, is not pushed
// again on its own.
func (s *Store) QueueAdmit(ctx context.Context, pipe redis.Pipeliner, f tasks.Follow, p Policy, now time.Time, lease time.Duration) *AdmitQuery {
	q := &AdmitQuery{s: s, f: f, p: p, now: now, lease: lease}
	if !p.Active() {
		q.ux = pipe.ZScore(ctx, s.unfollowsKey(f.To), f.From)
		q.claim = pipe.ZScore(ctx, s.cooldownKey(f.To), f.From)
		return q
	}
	keys, args := s.admitArgs(f, p, now, lease)
	q.cmd = admitScript.EvalSha(ctx, pipe, keys, args...)
	return q
}

// Result returns the admission, once the pipeline holding q ran. When
// Redis did not have the script cached (it restarted), the script did not
// run: Result runs it itself; so it does with no policy active when the
// pair's claim is held by f or a newer follow (see [Store.QueueAdmit]).
func (q *AdmitQuery) Result(ctx context.Context) (Admission, error) {
	if q.ux != nil {
		at, err := q.ux.Result()
		switch {
		case err == redis.Nil:
		case err != nil:
			return Admission{}, fmt.Errorf("apply notification policies: %w", err)
		case int64(at) > q.f.EventTime:
			return Admission{Verdict: VerdictCancelled}, nil
		}
		c, err := q.claim.Result()
		switch {
		case err == redis.Nil || err == nil && int64(c) < q.f.EventTime:
			return Admission{Verdict: VerdictSend}, nil
		case err != nil:
			return Admission{}, fmt.Errorf("apply notification policies: %w", err)
		}
		// f, or a newer follow of the pair, holds the claim: an attempt
		// was admitted under policies; the script decides this one.
		return parseAdmission(q.run(ctx))
	}
	cmd := q.cmd
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd = q.run(ctx)
	}
	return parseAdmission(cmd)
}

// run runs the admission script in a round trip of its own.
func (q *AdmitQuery) run(ctx context.Context) *redis.Cmd {
	keys, args := q.s.admitArgs(q.f, q.p, q.now, q.lease)
	return admitScript.Run(ctx, q.s.rdb, keys, args...)
}

func (s *Store) admitArgs(f tasks.Follow, p Policy, now time.Time, lease time.Duration) ([]string, []any) {
	n := now.UnixMilli()
	keys := []string{s.pendingKey(f.To), s.windowKey(f.To), s.capKey(f.To), s.cooldownKey(f.To),
		s.claimKey(f.To), s.unfollowsKey(f.To), s.inflightKey(f.To), s.eventKey(f), s.lastDueKey(f.To)}
	keep := s.claimKeep(p)
	prune := n - keep.Milliseconds()
	if !p.Active() {
		// Run for a follow whose pair holds a claim from an admission
		// under policies: how long claims are kept is those policies'
		// business, not this admission's (it prunes none).
		prune = 0
	}
	args := []any{
		f.From, itoa(f.EventTime), f.ID(), itoa(n),
		ms(p.Cooldown), itoa(prune),
		p.MaxPerHour, ms(CapWindow), itoa(n - CapWindow.Milliseconds()),
		ms(p.Window), boolArg(p.FirstImmediate), itoa(n + p.Window.Milliseconds()),
		ms(s.stateTTL(p)), itoa(n + lease.Milliseconds()), ms(keep + ClockSkewMargin),
		map[bool]string{false: string(VerdictAggregated), true: string(VerdictQuiet)}[p.Quiet],
		ms(p.Hold),
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
	n, err := toInt64(res[1])
	if err != nil {
		return Admission{}, fmt.Errorf("apply notification policies: bad time %v", res[1])
	}
	a := Admission{Verdict: Verdict(fmt.Sprint(res[0]))}
	switch a.Verdict {
	case VerdictAggregated, VerdictCapped, VerdictQuiet:
		a.Due = n
	case VerdictWait:
		a.Until = time.UnixMilli(n)
	case VerdictSend, VerdictCancelled, VerdictCooldown, VerdictSuperseded, VerdictSummarized:
	default:
		return Admission{}, fmt.Errorf("apply notification policies: unknown verdict %q", a.Verdict)
	}
	return a, nil
}

// TakeVerdict is what [Store.TakeSummary] found.
type TakeVerdict string

// The verdicts of [Store.TakeSummary].
const (
	// TakeSend: send the summary of [Batch.Followers]. A retry of the same
	// digest gets the same followers, less those who unfollowed since and
	// those a newer follow of theirs superseded.
	TakeSend TakeVerdict = "send"
	// TakeEmpty: nobody is pending (every folded follow was undone), or,
	// with [Batch.Retake], everyone the digest took is gone since: send
	// nothing; the window closes.
	TakeEmpty TakeVerdict = "empty"
	// TakeLater: the followee is at its cap; the summary moved to
	// [Batch.Next], whose digest the caller schedules.
	TakeLater TakeVerdict = "later"
	// TakeSuperseded: another digest of the followee is the current one
	// (this one is a stale duplicate); when followers are pending,
	// [Batch.Next] is its due time, which the caller makes sure is
	// scheduled.
	TakeSuperseded TakeVerdict = "superseded"
)

// Follower is one follower in a summary push.
type Follower struct {
	// ID is the follower's UserID.
	ID string
	// EventTime is when they followed, in ms since the Unix epoch.
	EventTime int64
}

// Take is the answer of [Store.TakeSummary].
type Take struct {
	// Verdict is what to do with the summary.
	Verdict TakeVerdict
	// Followers are the followers to name, oldest follow first ([TakeSend]).
	Followers []Follower
	// Next is the due time (ms) of the digest to schedule, 0 for none.
	Next int64
	// Retake: the answer ([TakeSend] or [TakeEmpty]) comes from the followers
	// an earlier TakeSummary of the same summary took. A digest that was taken
	// before and gets another answer has lost its snapshot (it expired, or
	// Redis lost it).
	Retake bool
	// Hold is the largest [Policy.Hold] its followers were folded under,
	// or [Store.Hold] put it off for ([TakeSend]): how much longer than
	// the policies alone they may have waited.
	Hold time.Duration
}

// TakeSummary takes the followers of digest d at now under policy p: on the
// first run it moves the followee's pending set into a snapshot (so retries
// resend the same summary), counts the push against the cap and, with
// aggregation, opens the next window (follows within it wait for the next
// summary). When the cap is full the summary is put off instead
// ([TakeLater]).
//
// Every run, the first and each retry's, leaves out the followers who
// unfollowed (see [Store.Cancel]) after their follow, and those whose newer
// follow took over their claim; when nobody is left the answer is
// [TakeEmpty]. The snapshot lives as long as the policy state (at least
// the stale cutoff of a summary's followers) from the take, renewed by
// each retry.
//
// With lease > 0, a [TakeSend] answer commits to sending: the followers
// taken count as being pushed until now + lease or [Store.SettleSummary],
// and an unfollow recorded after this point no longer takes them out.
func (s *Store) TakeSummary(ctx context.Context, d tasks.Summary, p Policy, now time.Time, lease time.Duration) (Take, error) {
	n := now.UnixMilli()
	until := "0"
	if lease > 0 {
		until = itoa(n + lease.Milliseconds())
	}
	keys := []string{s.pendingKey(d.To), s.windowKey(d.To), s.capKey(d.To), s.snapshotKey(d), s.unfollowsKey(d.To),
		s.cooldownKey(d.To), s.claimKey(d.To), s.eventKey(d), s.inflightKey(d.To), s.lastDueKey(d.To)}
	args := []any{
		itoa(d.Due), itoa(n), p.MaxPerHour, itoa(n - CapWindow.Milliseconds()), ms(CapWindow),
		ms(p.Window), d.ID(), ms(s.stateTTL(p)), ms(s.stateTTL(p)), itoa(n + p.Window.Milliseconds()),
		until, ms(s.recordLife(d, now)),
	}
	res, err := takeScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil || len(res) == 0 {
		return Take{}, fmt.Errorf("take digest followers: %w (answer %v)", err, res)
	}
	b := Take{Verdict: TakeVerdict(fmt.Sprint(res[0]))}
	switch b.Verdict {
	case TakeEmpty:
		b.Retake = len(res) > 1 && res[1] == "retake"
	case TakeSend:
		b.Retake = len(res) > 2 && res[2] == "retake"
		if len(res) > 3 {
			hold, err := toInt64(res[3])
			if err != nil {
				return Take{}, fmt.Errorf("take digest followers: bad hold %v", res[3])
			}
			b.Hold = time.Duration(hold) * time.Millisecond
		}
		pairs, _ := res[1].([]any)
		for i := 0; i+1 < len(pairs); i += 2 {
			t, err := strconv.ParseFloat(fmt.Sprint(pairs[i+1]), 64)
			if err != nil {
				return Take{}, fmt.Errorf("take digest followers: bad score %v", pairs[i+1])
			}
			b.Followers = append(b.Followers, Follower{ID: fmt.Sprint(pairs[i]), EventTime: int64(t)})
		}
	case TakeLater:
		if b.Next, err = toInt64(res[1]); err != nil {
			return Take{}, fmt.Errorf("take digest followers: bad due time %v", res[1])
		}
	case TakeSuperseded:
		due, err := toInt64(res[1])
		if err != nil {
			return Take{}, fmt.Errorf("take digest followers: bad due time %v", res[1])
		}
		if pending, _ := toInt64(res[2]); pending > 0 {
			b.Next = due
		}
	default:
		return Take{}, fmt.Errorf("take digest followers: unknown verdict %q", b.Verdict)
	}
	return b, nil
}

// holdScript extends the lifetime of keys to at least ARGV[1] ms, and
// records the hold ARGV[2] ms, unless a larger one is there, with the
// followers it holds: those the digest took (its record HASH KEYS[8],
// when its snapshot KEYS[7] exists), else the pending ones (the window
// HASH KEYS[2], when it is the digest's: due ARGV[3]).
var holdScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  local t = redis.call('PTTL', k)
  if t >= 0 and t < tonumber(ARGV[1]) then redis.call('PEXPIRE', k, ARGV[1]) end
end
local k = nil
if redis.call('EXISTS', KEYS[7]) == 1 then
  k = KEYS[8]
elseif redis.call('HGET', KEYS[2], 'due') == ARGV[3] then
  k = KEYS[2]
end
if k and tonumber(redis.call('HGET', k, 'hold') or '0') < tonumber(ARGV[2]) then
  redis.call('HSET', k, 'hold', ARGV[2])
end
return 0
`)

// Hold keeps digest d's followers (the followee's pending summary, or
// those d took already), its window, their claims and the unfollows that
// may still undo them at least until until, and as long after it as a
// summary is kept under p; and it records p.Hold as their hold (see
// [Take.Hold]): a summary put off until then (the followee's quiet hours)
// must not find its followers expired, or stale.
func (s *Store) Hold(ctx context.Context, d tasks.Summary, p Policy, until, now time.Time) error {
	keep := until.Sub(now) + s.stateTTL(p)
	to := d.To
	keys := []string{s.pendingKey(to), s.windowKey(to), s.lastDueKey(to), s.cooldownKey(to), s.claimKey(to), s.unfollowsKey(to),
		s.snapshotKey(d), s.eventKey(d)}
	if err := holdScript.Run(ctx, s.rdb, keys, ms(keep), ms(p.Hold), itoa(d.Due)).Err(); err != nil {
		return fmt.Errorf("hold summary: %w", err)
	}
	return nil
}
