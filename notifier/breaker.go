package notifier

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// MismatchBreaker decides whether a token FCM answered SENDER_ID_MISMATCH
// for may be deleted. It is shared by every worker process through one
// Redis key.
//
// A few such answers are normal: the token was made for another Firebase
// project (an old build of the app), and deleting it is right. Many are
// not: FCM answers SENDER_ID_MISMATCH for every token when the worker's
// own credentials or FCM_PROJECT_ID name the wrong project, and deleting
// would wipe the registry. So the breaker counts the answers of all
// workers together; while there have been at most Limit of them since the
// last successful send (and within Window), tokens are deleted. The answer
// that takes the count past Limit opens the breaker: from then on no
// worker deletes a token for SENDER_ID_MISMATCH (the tokens are kept and
// counted) until some worker's send succeeds again, which closes it and
// starts the count afresh. With wrong credentials nothing succeeds, so at
// most Limit tokens are ever deleted.
//
// Workers report successes at most once a second each, and after every
// SENDER_ID_MISMATCH they saw; so a few mismatches right after a success
// may still count towards the limit.
//
// A MismatchBreaker is safe for concurrent use.
type MismatchBreaker struct {
	store  breakerStore
	limit  int
	window time.Duration
	now    func() time.Time

	mu         sync.Mutex
	reportedAt time.Time // last success reported to the store
	sawMiss    bool      // a mismatch since then
	open       bool      // as last read from the store
	readAt     time.Time // when open was read
}

// MismatchBreakerOptions tune a [MismatchBreaker].
type MismatchBreakerOptions struct {
	// Limit is how many SENDER_ID_MISMATCH answers since the last
	// successful send lead to deletions; the next one opens the breaker
	// (default 100).
	Limit int
	// Window is how long a SENDER_ID_MISMATCH answer counts when no send
	// succeeds (default 24 h).
	Window time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults of [MismatchBreakerOptions].
const (
	DefaultMismatchLimit  = 100
	DefaultMismatchWindow = 24 * time.Hour
)

// NewMismatchBreaker returns a breaker kept in Redis under key, shared by
// every worker that uses the same key. rdb nil keeps it in this process
// only (for tests and tools; workers share one).
func NewMismatchBreaker(rdb redis.UniversalClient, key string, opts MismatchBreakerOptions) *MismatchBreaker {
	if opts.Limit <= 0 {
		opts.Limit = DefaultMismatchLimit
	}
	if opts.Window <= 0 {
		opts.Window = DefaultMismatchWindow
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var store breakerStore = &memBreaker{}
	if rdb != nil {
		store = redisBreaker{rdb: rdb, key: key}
	}
	return &MismatchBreaker{store: store, limit: opts.Limit, window: opts.Window, now: opts.Now}
}

// Mismatch records one SENDER_ID_MISMATCH answer and reports whether its
// token may be deleted, and whether this answer opened the breaker (true
// for exactly one caller among all workers). On an error the token must be
// kept.
func (b *MismatchBreaker) Mismatch(ctx context.Context) (deleteToken, opened bool, err error) {
	now := b.now()
	allowed, opened, err := b.store.mismatch(ctx, now, b.limit, b.window)
	b.mu.Lock()
	b.sawMiss = true
	if err == nil {
		b.open, b.readAt = !allowed, now
	}
	b.mu.Unlock()
	if err != nil {
		return false, false, fmt.Errorf("SENDER_ID_MISMATCH breaker: %w", err)
	}
	return allowed, opened, nil
}

// Succeeded records that a send succeeded: it closes the breaker if it is
// open and restarts the count. It reports whether this call closed it
// (true for exactly one caller among all workers). It asks Redis at most
// once a second, and after every SENDER_ID_MISMATCH this process saw.
func (b *MismatchBreaker) Succeeded(ctx context.Context) (closed bool, err error) {
	now := b.now()
	b.mu.Lock()
	due := b.sawMiss || now.Sub(b.reportedAt) >= time.Second
	if due {
		b.reportedAt, b.sawMiss = now, false
	}
	b.mu.Unlock()
	if !due {
		return false, nil
	}
	closed, err = b.store.succeeded(ctx)
	if err != nil {
		b.mu.Lock()
		b.sawMiss = true // report again next time
		b.mu.Unlock()
		return false, fmt.Errorf("SENDER_ID_MISMATCH breaker: %w", err)
	}
	b.mu.Lock()
	b.open, b.readAt = false, now
	b.mu.Unlock()
	return closed, nil
}

// Open reports whether the breaker is open, as Redis says (read at most
// once a second; on an error, the last state read).
func (b *MismatchBreaker) Open(ctx context.Context) bool {
	now := b.now()
	b.mu.Lock()
	fresh := now.Sub(b.readAt) < time.Second
	open := b.open
	b.mu.Unlock()
	if fresh {
		return open
	}
	open, err := b.store.isOpen(ctx)
	if err != nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.open
	}
	b.mu.Lock()
	b.open, b.readAt = open, now
	b.mu.Unlock()
	return open
}

// breakerStore keeps a MismatchBreaker's shared state.
type breakerStore interface {
	// mismatch counts one answer at now; allowed is false once the count
	// is past limit (the breaker is open), opened true for the answer
	// that opened it.
	mismatch(ctx context.Context, now time.Time, limit int, window time.Duration) (allowed, opened bool, err error)
	// succeeded closes the breaker and clears the count; closed is true
	// when it was open.
	succeeded(ctx context.Context) (closed bool, err error)
	isOpen(ctx context.Context) (bool, error)
}

// redisBreaker keeps the state in a Redis hash: count (answers since
// since), since (ms, start of the count) and, while open, open (ms, when
// it opened). The hash expires with the count's window while closed and
// is kept while open.
type redisBreaker struct {
	rdb redis.UniversalClient
	key string
}

// mismatchScript: KEYS[1] the hash; ARGV now (ms), limit, window (ms).
// Returns {allowed, opened}.
var mismatchScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'open') == 1 then
  return {0, 0}
end
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local since = tonumber(redis.call('HGET', KEYS[1], 'since'))
local count = tonumber(redis.call('HGET', KEYS[1], 'count')) or 0
if not since or now - since >= window then
  since, count = now, 0
end
count = count + 1
if count > limit then
  redis.call('HSET', KEYS[1], 'count', count, 'since', since, 'open', now)
  redis.call('PERSIST', KEYS[1])
  return {0, 1}
end
redis.call('HSET', KEYS[1], 'count', count, 'since', since)
redis.call('PEXPIRE', KEYS[1], since + window - now)
return {1, 0}
`)

// succeededScript: KEYS[1] the hash. Returns 1 when the breaker was open.
var succeededScript = redis.NewScript(`
local open = redis.call('HEXISTS', KEYS[1], 'open')
redis.call('DEL', KEYS[1])
return open
`)

func (r redisBreaker) mismatch(ctx context.Context, now time.Time, limit int, window time.Duration) (bool, bool, error) {
	res, err := mismatchScript.Run(ctx, r.rdb, []string{r.key}, now.UnixMilli(), limit, window.Milliseconds()).Int64Slice()
	if err != nil {
		return false, false, err
	}
	if len(res) != 2 {
		return false, false, fmt.Errorf("breaker script returned %v", res)
	}
	return res[0] == 1, res[1] == 1, nil
}

func (r redisBreaker) succeeded(ctx context.Context) (bool, error) {
	n, err := succeededScript.Run(ctx, r.rdb, []string{r.key}).Int64()
	return n == 1, err
}

func (r redisBreaker) isOpen(ctx context.Context) (bool, error) {
	return r.rdb.HExists(ctx, r.key, "open").Result()
}

// memBreaker is redisBreaker's logic in this process's memory.
type memBreaker struct {
	mu     sync.Mutex
	count  int
	since  int64 // ms; 0: no count
	opened bool
}

func (m *memBreaker) mismatch(_ context.Context, now time.Time, limit int, window time.Duration) (bool, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.opened {
		return false, false, nil
	}
	if ms := now.UnixMilli(); m.since == 0 || ms-m.since >= window.Milliseconds() {
		m.since, m.count = ms, 0
	}
	m.count++
	if m.count > limit {
		m.opened = true
		return false, true, nil
	}
	return true, false, nil
}

func (m *memBreaker) succeeded(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.opened
	m.count, m.since, m.opened = 0, 0, false
	return was, nil
}

func (m *memBreaker) isOpen(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opened, nil
}
