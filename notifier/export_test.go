package notifier

import (
	"context"
	"time"
)

// SetTestHooks makes h call step at each step boundary of a task (after
// the first read, the commitment, the send, the settling; "scheduled"
// after a folded follow's summary was scheduled), and read a task's retry
// count and budget from retries instead of asynq's context (tests only).
func SetTestHooks(h *Handler, step func(ctx context.Context, step string), retries func(ctx context.Context) (int, int, bool)) {
	h.step = step
	if retries != nil {
		h.retries = retries
	}
}

// Lease is how long h keeps a committed push in flight.
func (h *Handler) Lease() time.Duration { return h.lease }
