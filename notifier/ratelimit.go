package notifier

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/followpush/followpush/notifier/fcm"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// OutcomeRateLimited: the push was not sent because the global send rate
// limit ([RateLimit]) had no room for it; it is retried later and does not
// use up the retry budget. [fcm.Classify] never returns it.
const OutcomeRateLimited fcm.Outcome = "rate_limited"

// FCM_RATE_LIMIT's default and bound: sends per second of all workers
// together.
const (
	// DefaultFCMRateLimit is 480,000 a minute: below FCM's default quota of
	// 600,000 messages a minute per Firebase project, with room for the
	// project's other senders.
	DefaultFCMRateLimit = 8000
	// MaxFCMRateLimit is FCM's whole default quota (600,000 a minute).
	MaxFCMRateLimit = 10000
)

// DefaultRateLimitWait is how long a task waits in-process for room in the
// global send rate before it gives its worker slot back and retries later.
const DefaultRateLimitWait = 2 * time.Second

// RateLimit is a send budget shared by every worker process through Redis:
// a GCRA limiter (github.com/go-redis/redis_rate) over one key, whose name
// is "rate:" followed by the key given to [NewRateLimit] (redis_rate adds
// the "rate:" itself). Bursts up to one period's worth are allowed. It is
// safe for concurrent use.
//
// To spare a Redis round trip per push, a RateLimit takes grants from
// Redis several at a time and hands them out locally for up to a tenth of
// the period; grants not used by then lapse. Only one call fetches at a
// time. A fetch takes what the caller needs, or more while demand keeps
// up: the fetch size doubles when the previous grants ran out before
// lapsing and halves when some lapsed, between 1 and 1 % of the rate (at
// most 100). The shared budget is never exceeded (a send goes at most a
// tenth of a period after its grant); what lapses is lost to every
// worker, and the adaptive size keeps that small. A rate below 200 per
// period fetches one grant at a time.
type RateLimit struct {
	limiter *redis_rate.Limiter
	key     string
	limit   redis_rate.Limit
	maxWait time.Duration
	batch   int           // largest fetch
	hold    time.Duration // how long fetched grants stay usable

	mu         sync.Mutex // held while fetching: one fetch at a time
	fetch      int        // next fetch size, 1..batch
	spare      int        // grants fetched, not handed out yet
	spareUntil time.Time  // when spare lapses
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
		fetch:   1,
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
		retryAfter, err := r.take(ctx, n)
		if err != nil || retryAfter == 0 {
			return 0, err
		}
		if time.Now().Add(retryAfter).After(deadline) {
			return retryAfter, nil
		}
		t := time.NewTimer(retryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("global send rate limit: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// take hands out n grants, fetching from Redis when the spares fall
// short. It returns 0 when it took them, or how long to wait for room.
func (r *RateLimit) take(ctx context.Context, n int) (time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.After(r.spareUntil) {
		if r.spare > 0 {
			r.fetch = max(1, r.fetch/2) // grants lapsed: fetch fewer
		}
		r.spare = 0
	}
	if r.spare >= n {
		r.spare -= n
		return 0, nil
	}
	if !r.spareUntil.IsZero() && !now.After(r.spareUntil) {
		r.fetch = min(r.batch, r.fetch*2) // ran out while valid: fetch more
	}
	res, err := r.limiter.AllowAtMost(ctx, r.key, r.limit, max(n-r.spare, r.fetch))
	if err != nil {
		return 0, fmt.Errorf("global send rate limit: %w", err)
	}
	if res.Allowed > 0 {
		r.spare += res.Allowed
		r.spareUntil = now.Add(r.hold)
	}
	if r.spare >= n {
		r.spare -= n
		return 0, nil
	}
	if res.Allowed > 0 || res.RetryAfter <= 0 {
		// Fewer left than n: keep what was granted, ask again once
		// the missing ones have been emitted.
		return time.Duration(n-r.spare) * r.limit.Period / time.Duration(r.limit.Rate), nil
	}
	return res.RetryAfter, nil
}
