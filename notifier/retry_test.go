package notifier

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/followpush/followpush/notifier/fcm"
)

// seeded returns a randN for retryDelay drawing from a fixed-seed source, so
// the test sees the same draws every run.
func seeded(seed uint64) func(time.Duration) time.Duration {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(d time.Duration) time.Duration { return time.Duration(r.Int64N(int64(d))) }
}

// When FCM's Retry-After is longer than the backoff, the delay is never
// shorter than Retry-After, at most a bounded jitter longer, and spread:
// tasks that failed together with the same Retry-After must not all retry
// in the same instant: FCM asks senders to honour Retry-After and to back
// off exponentially with jitter.
func TestRetryDelayJittersRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		n         int
		after     time.Duration
		maxJitter time.Duration
	}{
		{"longer than the first backoff", 0, 42 * time.Second, 42 * time.Second / 4},
		{"just longer than the backoff", 3, 9 * time.Second, 9 * time.Second / 4},
		{"hours: jitter capped at 10 min", 30, 2 * time.Hour, maxRetryDelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := &RetryError{Outcome: fcm.OutcomeUnavailable, After: tt.after, Devices: 1}
			// The extremes of any source: the smallest draw gives exactly
			// Retry-After, the largest Retry-After plus the whole bound.
			low := retryDelay(tt.n, err, func(time.Duration) time.Duration { return 0 })
			high := retryDelay(tt.n, err, func(d time.Duration) time.Duration { return d - 1 })
			if low != tt.after {
				t.Errorf("smallest draw: delay %s, want Retry-After %s", low, tt.after)
			}
			if high != tt.after+tt.maxJitter {
				t.Errorf("largest draw: delay %s, want Retry-After + %s = %s", high, tt.maxJitter, tt.after+tt.maxJitter)
			}

			const draws = 1000
			randN := seeded(uint64(tt.n) + 1)
			seen := map[time.Duration]bool{}
			lo, hi := time.Duration(1<<62), time.Duration(0)
			for range draws {
				d := retryDelay(tt.n, err, randN)
				if d < tt.after || d > tt.after+tt.maxJitter {
					t.Fatalf("delay %s outside [%s, %s]", d, tt.after, tt.after+tt.maxJitter)
				}
				seen[d] = true
				lo, hi = min(lo, d), max(hi, d)
			}
			if len(seen) < draws*9/10 {
				t.Errorf("%d distinct delays in %d draws: retries of tasks that failed together would bunch", len(seen), draws)
			}
			// Uniform draws cover most of the jitter range.
			if spread := hi - lo; spread < tt.maxJitter*8/10 {
				t.Errorf("delays span %s (%s to %s), want most of the %s jitter range", spread, lo, hi, tt.maxJitter)
			}
		})
	}
}

// The backoff alone (no Retry-After, or a shorter one) keeps its equal
// jitter in [d/2, d): Retry-After's jitter does not leak into it.
func TestRetryDelayBackoffUnchangedByShortRetryAfter(t *testing.T) {
	t.Parallel()
	randN := seeded(7)
	for range 1000 {
		d := retryDelay(3, &RetryError{Outcome: fcm.OutcomeUnavailable, After: time.Second, Devices: 1}, randN)
		if d < 4*time.Second || d >= 8*time.Second {
			t.Fatalf("n=3 with a 1 s Retry-After: delay %s, want the backoff in [4s, 8s)", d)
		}
	}
}
