package notifier_test

// The reference model of the delivery contract: what the worker does with
// follows, unfollows and summaries, written as plain Go over maps, step by
// step as the handler does it (read, commit, send, settle). The model test
// (modelcheck_test.go) drives the real handler and this model with the
// same events and compares what each pushed after every step.
//
// The model knows nothing of Redis or Lua: it is the rules, stated once
// more in the simplest form, so that a difference between the two is a
// bug in one of them.

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/tasks"
)

const modelApp = "1400000000"

// mFollow is one follow event.
type mFollow struct {
	From, To string
	ET       int64 // ms
}

func (f mFollow) task() tasks.Follow {
	return tasks.Follow{AppID: modelApp, From: f.From, To: f.To, EventTime: f.ET}
}

func (f mFollow) id() string { return f.task().ID() }

// mClaim is a pair's claim: the follow holding it (its EventTime and id)
// and its state: 'h' to be pushed on its own (in flight until till), 'f'
// folded into a summary, 'r' reached a device.
type mClaim struct {
	et    int64
	owner string
	state byte
	till  int64
}

type mWindow struct {
	due    int64
	why    string
	opener string
	hold   int64 // ms: the largest Policy.Hold of its follows
}

// mUser is one followee's policy state.
type mUser struct {
	pending map[string]int64 // follower -> follow EventTime; empty = no key
	win     *mWindow
	capLog  map[string]int64 // follow or digest id -> when
	claims  map[string]*mClaim
	ux      map[string]int64 // follower -> latest unfollow EventTime
	snaps   map[int64]map[string]int64
	sending map[int64]int64 // summaries in flight: due -> until
	lastDue int64           // the latest due a window had
}

// open opens the next summary window, due at due or, when a window had
// that due already, right after the latest one.
func (u *mUser) open(due int64, why, opener string) int64 {
	due = max(due, u.lastDue+1)
	u.lastDue = due
	u.win = &mWindow{due: due, why: why, opener: opener}
	return due
}

// mRecord is an event's delivery record.
type mRecord struct {
	done, reached, taken bool
	finished             map[string]bool
	q                    int
	hold                 int64 // a digest's: the hold of its followers (ms)
}

func (r *mRecord) clone() mRecord {
	c := *r
	c.finished = maps.Clone(r.finished)
	return c
}

// model is the whole state: policies, per-followee state, records and the
// device registry.
type model struct {
	p         delivery.Policy
	maxAge    int64 // ms
	recordTTL int64 // ms
	cancelTTL int64 // ms
	lease     int64 // ms

	users   map[string]*mUser
	records map[string]*mRecord
	devices map[string][]string // followee -> tokens

	// The users' own preferences, when the worker reads them (prefsOn):
	// summaryWindow is HandlerOptions.SummaryWindow.
	prefsOn       bool
	summaryWindow int64 // ms
	prefs         map[string]preferences.Preferences
}

func newModel(p delivery.Policy, maxAge, lease time.Duration, devices map[string][]string) *model {
	m := &model{
		p: p, maxAge: maxAge.Milliseconds(), recordTTL: maxAge.Milliseconds(), cancelTTL: delivery.UnfollowTTL(maxAge).Milliseconds(),
		lease: lease.Milliseconds(), users: map[string]*mUser{}, records: map[string]*mRecord{}, devices: map[string][]string{},
		prefs: map[string]preferences.Preferences{},
	}
	for u, toks := range devices {
		m.devices[u] = slices.Clone(toks)
	}
	return m
}

func (m *model) user(to string) *mUser {
	u := m.users[to]
	if u == nil {
		u = &mUser{pending: map[string]int64{}, capLog: map[string]int64{}, claims: map[string]*mClaim{},
			ux: map[string]int64{}, snaps: map[int64]map[string]int64{}, sending: map[int64]int64{}}
		m.users[to] = u
	}
	return u
}

func (m *model) record(id string) *mRecord {
	r := m.records[id]
	if r == nil {
		r = &mRecord{finished: map[string]bool{}}
		m.records[id] = r
	}
	return r
}

func (m *model) active() bool { return m.p.Active() }

func (m *model) claimKeep(p delivery.Policy) int64 {
	keep := m.recordTTL + p.Window.Milliseconds() + p.Hold.Milliseconds()
	if p.MaxPerHour > 0 {
		keep += delivery.CapWindow.Milliseconds()
	}
	return p.Cooldown.Milliseconds() + keep + delivery.ClockSkewMargin.Milliseconds()
}

// policyFor is the policy a follow of a followee with preferences pr is
// admitted under at now: inside their quiet hours, folded into a summary
// due when they end; with "summary", folded into a summary at least
// summaryWindow long; else the configured policy.
func (m *model) policyFor(pr preferences.Preferences, now int64) delivery.Policy {
	p := m.p
	p.Hold = m.holdFor(pr)
	if q := pr.QuietHours; q != nil {
		if quiet, _, end := q.At(time.UnixMilli(now)); quiet {
			p.Window, p.FirstImmediate, p.Quiet = time.Duration(max(end.UnixMilli()-now, 1000))*time.Millisecond, false, true
			return p
		}
	}
	if pr.Mode() == preferences.ModeSummary {
		p.Window, p.FirstImmediate = max(p.Window, time.Duration(m.summaryWindow)*time.Millisecond), false
	}
	return p
}

// holdFor is how much longer than the policies alone a followee with
// preferences pr lets their folded follows wait: the quiet period and an
// hour, and how much longer their summary-only window is.
func (m *model) holdFor(pr preferences.Preferences) time.Duration {
	var d time.Duration
	if q := pr.QuietHours; q != nil {
		d += q.Length() + time.Hour
	}
	if pr.Mode() == preferences.ModeSummary {
		d += max(time.Duration(m.summaryWindow)*time.Millisecond-m.p.Window, 0)
	}
	return d
}

// unfollow is the receiver's unfollow (delivery.Store.Cancel).
func (m *model) unfollow(from, to string, et int64) {
	u := m.user(to)
	if old, ok := u.ux[from]; !ok || et > old {
		u.ux[from] = et
	}
	bound := et - (m.cancelTTL + delivery.ClockSkewMargin.Milliseconds())
	for f, s := range u.ux {
		if s < bound {
			delete(u.ux, f)
		}
	}
	if s, ok := u.pending[from]; ok && s < et {
		delete(u.pending, from)
		if c := u.claims[from]; c != nil && c.et == s && c.state == 'f' {
			delete(u.claims, from)
		}
	}
}

// mAdmission is an admission's answer.
type mAdmission struct {
	verdict delivery.Verdict
	due     int64
	until   int64
}

// admit is the admission of follow f at now under p
// (delivery.Store.QueueAdmit).
func (m *model) admit(f mFollow, now int64, p delivery.Policy) mAdmission {
	u := m.user(f.To)
	if x, ok := u.ux[f.From]; ok && x > f.ET {
		return mAdmission{verdict: delivery.VerdictCancelled}
	}
	if !p.Active() {
		// Only a follow whose pair's claim it or a newer follow holds
		// (admitted under policies before they changed) is decided by
		// the rules.
		if c := u.claims[f.From]; c == nil || c.et < f.ET {
			return mAdmission{verdict: delivery.VerdictSend}
		}
	}
	// A pending summary holding follows longer than p.Hold keeps their
	// claims that much longer.
	var more int64
	if u.win != nil {
		more = max(u.win.hold-p.Hold.Milliseconds(), 0)
	}
	bound := now - m.claimKeep(p) - more
	for from, c := range u.claims {
		if c.et <= bound && p.Active() { // with no policy active, none is pruned
			delete(u.claims, from)
		}
	}
	id := f.id()
	// reason is why a follow folded into a summary opened for why waits.
	reason := func(why string) delivery.Verdict {
		switch {
		case p.Quiet:
			return delivery.VerdictQuiet
		case why == string(delivery.VerdictQuiet):
			return delivery.VerdictAggregated
		}
		return delivery.Verdict(why)
	}
	hold := func() { u.win.hold = max(u.win.hold, p.Hold.Milliseconds()) }
	pendingSummary := func() (mAdmission, bool) {
		if u.win == nil {
			return mAdmission{}, false
		}
		return mAdmission{verdict: reason(u.win.why), due: u.win.due}, true
	}
	claim := func(state byte, till int64) {
		u.claims[f.From] = &mClaim{et: f.ET, owner: id, state: state, till: till}
	}
	if c := u.claims[f.From]; c != nil {
		own := (c.state != 'r' && c.owner == id) || (c.state == 'r' && c.et == f.ET)
		if own {
			switch {
			case c.state == 'f':
				if s, ok := u.pending[f.From]; ok && s == f.ET {
					if a, ok := pendingSummary(); ok {
						hold()
						return a
					}
				}
				return mAdmission{verdict: delivery.VerdictSummarized}
			case c.state == 'r' && !m.record(id).reached:
				return mAdmission{verdict: delivery.VerdictSummarized}
			case c.state == 'h' && !p.Quiet:
				c.till = now + m.lease
				return mAdmission{verdict: delivery.VerdictSend}
			case c.state != 'h':
				return mAdmission{verdict: delivery.VerdictSend}
			}
			// a retry inside quiet hours of a push that reached no device:
			// its cap slot back, folded below
			delete(u.capLog, id)
		} else if c.et > f.ET {
			return mAdmission{verdict: delivery.VerdictSuperseded}
		} else {
			switch c.state {
			case 'r':
				if cd := p.Cooldown.Milliseconds(); cd > 0 && f.ET-c.et < cd {
					return mAdmission{verdict: delivery.VerdictCooldown}
				}
			case 'h':
				if c.till > now {
					return mAdmission{verdict: delivery.VerdictWait, until: c.till}
				}
				delete(u.capLog, c.owner)
			case 'f':
				if s, ok := u.pending[f.From]; ok && s == c.et {
					if a, ok := pendingSummary(); ok {
						u.pending[f.From] = f.ET
						claim('f', 0)
						hold()
						return a
					}
				}
				for _, due := range slices.Sorted(maps.Keys(u.sending)) {
					if until := u.sending[due]; until > now {
						if s, ok := u.snaps[due][f.From]; ok && s == c.et {
							return mAdmission{verdict: delivery.VerdictWait, until: until}
						}
					}
				}
			}
		}
	}
	fold := func(due int64, why delivery.Verdict) mAdmission {
		u.pending[f.From] = f.ET
		claim('f', 0)
		hold()
		return mAdmission{verdict: why, due: due}
	}
	window := p.Window.Milliseconds()
	if u.win != nil && (now < u.win.due || len(u.pending) > 0) {
		return fold(u.win.due, reason(u.win.why))
	}
	if window > 0 && !p.FirstImmediate {
		why := delivery.VerdictAggregated
		if p.Quiet {
			why = delivery.VerdictQuiet
		}
		return fold(u.open(now+window, string(why), ""), why)
	}
	if limit := p.MaxPerHour; limit > 0 {
		m.pruneCap(u, now)
		if len(u.capLog) >= limit {
			free := m.oldestCap(u) + delivery.CapWindow.Milliseconds()
			return fold(u.open(max(now+window, free), "capped", ""), delivery.VerdictCapped)
		}
		u.capLog[id] = now
	}
	if window > 0 {
		u.open(now+window, "aggregated", id)
	}
	claim('h', now+m.lease)
	return mAdmission{verdict: delivery.VerdictSend}
}

func (m *model) pruneCap(u *mUser, now int64) {
	bound := now - delivery.CapWindow.Milliseconds()
	for id, at := range u.capLog {
		if at <= bound {
			delete(u.capLog, id)
		}
	}
}

func (m *model) oldestCap(u *mUser) int64 {
	oldest := int64(-1)
	for _, at := range u.capLog {
		if oldest < 0 || at < oldest {
			oldest = at
		}
	}
	return oldest
}

// mFollower is a follower in a summary.
type mFollower struct {
	id string
	et int64
}

// sortedFollowers orders a set as Redis orders a sorted set: by score,
// then by member.
func sortedFollowers(set map[string]int64) []mFollower {
	out := make([]mFollower, 0, len(set))
	for id, et := range set {
		out = append(out, mFollower{id, et})
	}
	slices.SortFunc(out, func(a, b mFollower) int { return cmp.Or(cmp.Compare(a.et, b.et), strings.Compare(a.id, b.id)) })
	return out
}

// mBatch is TakeSummary's answer.
type mBatch struct {
	verdict   delivery.TakeVerdict
	followers []mFollower
	next      int64
	retake    bool
	hold      int64 // ms
}

// take is TakeSummary of summary d at now; until > 0 commits it.
func (m *model) take(d tasks.Summary, now, until int64) mBatch {
	u := m.user(d.To)
	keepLive := func(set map[string]int64) {
		for f, s := range set {
			x, unfollowed := u.ux[f]
			c := u.claims[f]
			switch {
			case unfollowed && x > s:
				delete(set, f)
				if c != nil && c.et == s && c.state == 'f' {
					delete(u.claims, f)
				}
			case c != nil && c.et != s:
				delete(set, f)
			}
		}
	}
	commit := func() {
		if until != 0 {
			maps.DeleteFunc(u.sending, func(_, till int64) bool { return till <= now })
			u.sending[d.Due] = until
		}
	}
	if snap := u.snaps[d.Due]; len(snap) > 0 {
		keepLive(snap)
		if len(snap) == 0 {
			delete(u.snaps, d.Due)
			return mBatch{verdict: delivery.TakeEmpty, retake: true}
		}
		commit()
		return mBatch{verdict: delivery.TakeSend, followers: sortedFollowers(snap), retake: true, hold: m.record(d.ID()).hold}
	}
	if u.win != nil && u.win.due != d.Due {
		b := mBatch{verdict: delivery.TakeSuperseded}
		if len(u.pending) > 0 {
			b.next = u.win.due
		}
		return b
	}
	keepLive(u.pending)
	if len(u.pending) == 0 {
		u.win = nil
		return mBatch{verdict: delivery.TakeEmpty}
	}
	id := d.ID()
	if limit := m.p.MaxPerHour; limit > 0 {
		if _, ok := u.capLog[id]; !ok {
			m.pruneCap(u, now)
			if len(u.capLog) >= limit {
				free := m.oldestCap(u) + delivery.CapWindow.Milliseconds()
				if free <= d.Due {
					free = d.Due + 1
				}
				var hold int64 // the pending followers keep theirs
				if u.win != nil {
					hold = u.win.hold
				}
				next := u.open(free, "capped", "")
				u.win.hold = hold
				return mBatch{verdict: delivery.TakeLater, next: next}
			}
			u.capLog[id] = now
		}
	}
	u.snaps[d.Due] = u.pending
	u.pending = map[string]int64{}
	var hold int64
	if u.win != nil {
		hold = u.win.hold
	}
	m.record(id).taken, m.record(id).hold = true, hold
	if w := m.p.Window.Milliseconds(); w > 0 {
		u.open(now+w, "aggregated", "")
	} else {
		u.win = nil
	}
	commit()
	return mBatch{verdict: delivery.TakeSend, followers: sortedFollowers(u.snaps[d.Due]), hold: hold}
}

// mAttempt is what one attempt did, as the handler settles it.
type mAttemptRecord struct {
	finished       []string
	accepted       bool
	final, failed  bool
	quota          bool
	skipSettlement bool
}

func (m *model) writeRecord(id string, a mAttemptRecord) *mRecord {
	r := m.record(id)
	for _, t := range a.finished {
		r.finished[t] = true
	}
	if a.accepted {
		r.reached = true
	}
	if a.final && !a.failed {
		r.done = true
	}
	if a.quota {
		r.q++
	}
	return r
}

// settle is Settle of follow f's attempt.
func (m *model) settle(f mFollow, a mAttemptRecord) {
	id := f.id()
	r := m.writeRecord(id, a)
	u := m.user(f.To)
	if c := u.claims[f.From]; c != nil && c.state == 'h' && c.owner == id {
		switch {
		case r.reached:
			c.state, c.till = 'r', 0
		case a.final:
			delete(u.claims, f.From)
		default:
			c.till = 0
		}
	}
	if a.final && !r.reached {
		delete(u.capLog, id)
	}
}

// settleDigest is SettleDigest of summary d's attempt.
func (m *model) settleDigest(d tasks.Summary, a mAttemptRecord, cutoff int64) {
	id := d.ID()
	r := m.writeRecord(id, a)
	u := m.user(d.To)
	delete(u.sending, d.Due)
	confirm, release := a.accepted, a.final && !r.reached
	if confirm || release {
		for f, s := range u.snaps[d.Due] {
			c := u.claims[f]
			if c == nil || c.et != s || c.state != 'f' {
				continue
			}
			if confirm && s >= cutoff {
				c.state = 'r'
			} else {
				delete(u.claims, f)
			}
		}
	}
	if release {
		delete(u.capLog, id)
	}
}

// unregister removes a dead token from the registry.
func (m *model) unregister(to, token string) {
	m.devices[to] = slices.DeleteFunc(m.devices[to], func(t string) bool { return t == token })
}
