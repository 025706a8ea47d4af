package notifier

import (
	"context"
	"fmt"
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
type RateLimit struct {
	limiter *redis_rate.Limiter
	key     string
	limit   redis_rate.Limit
	maxWait time.Duration
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
		res, err := r.limiter.AllowN(ctx, r.key, r.limit, n)
		if err != nil {
			return 0, fmt.Errorf("global send rate limit: %w", err)
		}
		if res.Allowed > 0 {
			return 0, nil
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
