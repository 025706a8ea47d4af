package notifier

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// OutcomeRateLimited: the push was not sent because the global send rate
// limit ([RateLimit]) had no room for it; it is retried later and does not
// use up the retry budget. [Classify] never returns it.
const OutcomeRateLimited Outcome = "rate_limited"

// DefaultRateLimitWait is how long a task waits in-process for room in the
// global send rate before it gives its worker slot back and retries later.
const DefaultRateLimitWait = 2 * time.Second

// RateLimit is a send budget shared by every worker process through Redis:
// a GCRA limiter (github.com/go-redis/redis_rate) over one key, whose name
// is "rate:" followed by the key given to [NewRateLimit] (redis_rate adds
// the "rate:" itself). Bursts up to one period's worth are allowed. It is
// safe for concurrent use.
//
// To spare a Redis round trip per push, a RateLimit takes sends from Redis
// in batches of 1 % of the rate (at most 100) and hands them out locally
// for up to a tenth of the period; what is not used by then lapses. The
// shared budget is never exceeded: a batch only moves sends a little
// earlier within it. A rate below 200 per period takes one send at a time.
type RateLimit struct {
	limiter *redis_rate.Limiter
	key     string
	limit   redis_rate.Limit
	maxWait time.Duration
	batch   int
	hold    time.Duration

	mu         sync.Mutex
	spare      int       // sends taken from Redis, not handed out yet
	spareUntil time.Time // when spare lapses
}

// NewRateLimit returns a budget of rate sends per period (burst: rate) for
// every worker that shares rdb and key. [RateLimit.Wait] waits at most
// maxWait for room (default [DefaultRateLimitWait] when maxWait is 0;
// negative: never waits).
func NewRateLimit(rdb redis.UniversalClient, key string, rate int, period time.Duration, maxWait time.Duration) *RateLimit {
	if maxWait == 0 {
		maxWait = DefaultRateLimitWait
	}
	return &RateLimit{
		limiter: redis_rate.NewLimiter(rdb),
		key:     key,
		limit:   redis_rate.Limit{Rate: rate, Burst: rate, Period: period},
		maxWait: max(maxWait, 0),
		batch:   min(max(rate/100, 1), 100),
		hold:    period / 10,
	}
}

// Wait takes n sends from the budget (at most the burst, so a task with
// more devices than one period allows can still go). It returns 0 once
// they are taken, after waiting for room up to the RateLimit's maximum
// wait; otherwise it takes nothing and returns how long to wait before
// asking again. The error is Redis's, or ctx's when it ends while waiting.
func (r *RateLimit) Wait(ctx context.Context, n int) (time.Duration, error) {
	n = max(1, min(n, r.limit.Burst))
	deadline := time.Now().Add(r.maxWait)
	for {
		if r.takeSpare(n) {
			return 0, nil
		}
		// At most a batch (or n) sends; fewer when fewer are left. What is
		// granted goes to the spares, which this or another call takes.
		res, err := r.limiter.AllowAtMost(ctx, r.key, r.limit, max(n, r.batch))
		if err != nil {
			return 0, fmt.Errorf("global send rate limit: %w", err)
		}
		if res.Allowed > 0 {
			r.addSpare(res.Allowed)
			continue
		}
		if time.Now().Add(res.RetryAfter).After(deadline) {
			return res.RetryAfter, nil
		}
		t := time.NewTimer(res.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("global send rate limit: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// takeSpare hands out n locally held sends, if there are that many.
func (r *RateLimit) takeSpare(n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spare < n || time.Now().After(r.spareUntil) {
		return false
	}
	r.spare -= n
	return true
}

// addSpare keeps k sends taken from Redis for later calls.
func (r *RateLimit) addSpare(k int) {
	if k <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.After(r.spareUntil) {
		r.spare = 0
	}
	r.spare += k
	r.spareUntil = now.Add(r.hold)
}
