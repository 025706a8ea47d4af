package notifier

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/followpush/followpush/notifier/fcm"
	"github.com/hibiken/asynq"
)

// RetryError is returned by [Handler.ProcessTask] when some devices should be
// tried again. Devices that were already sent (or dropped) are recorded and
// are not sent again.
type RetryError struct {
	// fcm.Outcome is the last retryable outcome seen.
	Outcome fcm.Outcome
	// After is the longest Retry-After FCM asked for (0 if none).
	After time.Duration
	// Quota is true when every retryable failure was QUOTA_EXCEEDED: such a
	// retry does not count against the task's retry budget.
	Quota bool
	// AnyQuota is true when some retryable failure was QUOTA_EXCEEDED: the
	// retry then waits at least as long as a quota retry would, even when
	// other devices failed otherwise (Quota false: the retry counts).
	AnyQuota bool
	// QuotaRetries counts the quota retries of this follow so far, so their
	// backoff can grow although asynq's retry count does not.
	QuotaRetries int
	// Devices is how many devices need the retry.
	Devices int
	// Throttled is true when nothing was sent because the global send rate
	// limit had no room (fcm.Outcome [OutcomeRateLimited]), or because another
	// push for the same pair is in flight (Reason): the retry comes after
	// After (plus jitter) and does not count against the retry budget.
	Throttled bool
	// Exact: with Throttled, the retry comes exactly After later, without
	// jitter: the wait is for a time of day (the end of the followee's
	// quiet hours), not for a shared resource many tasks wait for.
	Exact bool
	// Reason, when set, says why nothing was tried (instead of a device
	// count and an outcome).
	Reason string
	// Next is when the next try is due, and Delay how long that was from
	// the moment [RetryDelay] chose it; both zero until then. asynq calls
	// RetryDelay before it stores the error's message as the task's last
	// error (asynqmon's "Last Error"), so that message says when the
	// retry really is.
	Next time.Time
	// Delay is the wait RetryDelay chose (see Next).
	Delay time.Duration
	// chosenFor is 1 + the retry count Next and Delay were chosen for (0:
	// not chosen), so that a second RetryDelay for the same retry keeps the
	// first one's choice (the history records it before asynq asks).
	chosenFor int
}

// Error says how many devices failed with what, the Retry-After FCM asked
// for (when it asked for one), or why nothing was tried, and when the next
// try is (once [RetryDelay] chose it), e.g. "2 device(s) failed with
// unavailable; FCM asked to wait 30s (Retry-After); next try in 33.1s, at
// 2026-11-26T10:00:03Z".
func (e *RetryError) Error() string {
	var b strings.Builder
	switch {
	case e.Reason != "":
		b.WriteString(e.Reason)
	case e.Throttled:
		fmt.Fprintf(&b, "%d device(s) put off by the send rate limit (FCM_RATE_LIMIT)", e.Devices)
	default:
		fmt.Fprintf(&b, "%d device(s) failed with %s", e.Devices, e.Outcome)
		if e.After > 0 {
			fmt.Fprintf(&b, "; FCM asked to wait %s (Retry-After)", e.After)
		}
	}
	if !e.Next.IsZero() {
		fmt.Fprintf(&b, "; next try in %s, at %s", e.Delay.Round(100*time.Millisecond), e.Next.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// add folds one more retryable failure into e (which may be nil).
func (e *RetryError) add(o fcm.Outcome, after time.Duration) *RetryError {
	if e == nil {
		e = &RetryError{Quota: true}
	}
	e.Devices++
	e.Outcome = o
	e.After = max(e.After, after)
	e.Quota = e.Quota && o == fcm.OutcomeQuota
	e.AnyQuota = e.AnyQuota || o == fcm.OutcomeQuota
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
// shorter than FCM's Retry-After. When Retry-After is the longer, the delay
// is Retry-After plus up to 25 % of it (at most 10 min) of jitter on top, so
// tasks told to come back at the same time do not all come back at once, and
// none comes back earlier than FCM asked. For quota errors: max(Retry-After,
// 60 s doubled with every quota retry, at most 30 min), plus up to 25 %
// jitter on top, so it is never shorter than FCM asked; a retry for other
// failures that also has a quota failure waits at least that long, and
// counts against the budget. The stale cutoff
// (MAX_EVENT_AGE) ends retries whatever their number. A retry for the
// global send rate limit comes after the wait the limiter named (at least
// 100 ms) plus up to 25 % jitter; one marked [RetryError.Exact] (a
// summary waiting for the end of its followee's quiet hours) comes exactly
// then.
//
// When err is a [*RetryError], RetryDelay also records the delay it chose
// in it ([RetryError.Next], [RetryError.Delay]), so that the error's
// message, which asynq stores right after, says when the retry is.
//
// Asked again for the same error and retry count, it answers what it
// chose the first time: the worker chooses before asynq asks when it
// records the retry in the follow's history.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var re *RetryError
	if errors.As(err, &re) && re.chosenFor == n+1 {
		return re.Delay
	}
	d := retryDelay(n, err, rand.N[time.Duration])
	if re != nil {
		re.Delay, re.Next, re.chosenFor = d, time.Now().Add(d), n+1
	}
	return d
}

// retryDelay is [RetryDelay] drawing its jitter from randN, which returns a
// duration in [0, d) for d > 0 (rand.N's contract).
func retryDelay(n int, err error, randN func(d time.Duration) time.Duration) time.Duration {
	var re *RetryError
	if errors.As(err, &re) && re.Throttled {
		d := max(re.After, 100*time.Millisecond)
		if re.Exact {
			return d
		}
		return d + randN(d/4+1)
	}
	if errors.As(err, &re) && re.Quota {
		return quotaDelay(re, randN)
	}
	d := time.Second << min(n, 10)
	d = jitter(min(d, maxRetryDelay), randN)
	if errors.As(err, &re) && re.After > d {
		d = re.After + randN(min(re.After/4, maxRetryDelay)+1)
	}
	if re != nil && re.AnyQuota {
		d = max(d, quotaDelay(re, randN))
	}
	return d
}

// quotaDelay is the delay of a quota retry: max(Retry-After, 60 s doubled
// with every quota retry, at most 30 min) plus up to 25 % jitter.
func quotaDelay(re *RetryError, randN func(time.Duration) time.Duration) time.Duration {
	d := min(minQuotaDelay<<min(max(re.QuotaRetries-1, 0), 5), maxQuotaDelay)
	d = max(d, re.After)
	return d + randN(d/4+1)
}

// IsFailure is the asynq IsFailure function: a quota retry, or one for the
// global send rate limit, is not a failure, so it does not use up the retry
// budget.
func IsFailure(err error) bool {
	var re *RetryError
	return !(errors.As(err, &re) && (re.Quota || re.Throttled))
}

// jitter returns a duration in [d/2, d), drawn with randN.
func jitter(d time.Duration, randN func(time.Duration) time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + randN(d/2)
}
