package notifier

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
)

// RetryError is returned by [Handler.ProcessTask] when some devices should be
// tried again. Devices that were already sent (or dropped) are recorded and
// are not sent again.
type RetryError struct {
	// Outcome is the last retryable outcome seen.
	Outcome Outcome
	// After is the longest Retry-After FCM asked for (0 if none).
	After time.Duration
	// Quota is true when every retryable failure was QUOTA_EXCEEDED: such a
	// retry does not count against the task's retry budget.
	Quota bool
	// QuotaRetries counts the quota retries of this follow so far, so their
	// backoff can grow although asynq's retry count does not.
	QuotaRetries int
	// Devices is how many devices need the retry.
	Devices int
	// Throttled is true when nothing was sent because the global send rate
	// limit had no room (Outcome [OutcomeRateLimited]): the retry comes
	// after After (plus jitter) and does not count against the retry budget.
	Throttled bool
}

// Error says how many devices failed with what.
func (e *RetryError) Error() string {
	return fmt.Sprintf("%d device(s) failed with %s (retry after %s)", e.Devices, e.Outcome, e.After)
}

// add folds one more retryable failure into e (which may be nil).
func (e *RetryError) add(o Outcome, after time.Duration) *RetryError {
	if e == nil {
		e = &RetryError{Quota: true}
	}
	e.Devices++
	e.Outcome = o
	e.After = max(e.After, after)
	e.Quota = e.Quota && o == OutcomeQuota
	return e
}

// Backoff bounds.
const (
	minQuotaDelay = 60 * time.Second
	maxRetryDelay = 10 * time.Minute
	maxQuotaDelay = 30 * time.Minute
)

// RetryDelay is the asynq RetryDelayFunc of follow tasks: exponential backoff
// from 1 s (doubling per retry, at most 10 min) with equal jitter, never
// shorter than FCM's Retry-After. For quota errors: max(Retry-After, 60 s
// doubled with every quota retry, at most 30 min), plus up to 25 % jitter on
// top, so it is never shorter than FCM asked. The stale cutoff
// (MAX_EVENT_AGE) ends retries whatever their number. A retry for the
// global send rate limit comes after the wait the limiter named (at least
// 100 ms) plus up to 25 % jitter.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var re *RetryError
	if errors.As(err, &re) && re.Throttled {
		d := max(re.After, 100*time.Millisecond)
		return d + rand.N(d/4+1)
	}
	if errors.As(err, &re) && re.Quota {
		d := min(minQuotaDelay<<min(max(re.QuotaRetries-1, 0), 5), maxQuotaDelay)
		d = max(d, re.After)
		return d + rand.N(d/4+1)
	}
	d := time.Second << min(n, 10)
	d = jitter(min(d, maxRetryDelay))
	if errors.As(err, &re) && re.After > d {
		return re.After
	}
	return d
}

// IsFailure is the asynq IsFailure function: a quota retry, or one for the
// global send rate limit, is not a failure, so it does not use up the retry
// budget.
func IsFailure(err error) bool {
	var re *RetryError
	return !(errors.As(err, &re) && (re.Quota || re.Throttled))
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}
