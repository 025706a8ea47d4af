package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
)

// Spool is a durable local queue (internal/spool.Spool) that takes events
// the receiver could not store in Redis, so it can still answer 200. A
// [Drainer] moves them into Redis later.
type Spool interface {
	// Append stores records durably before it returns.
	Append(records ...[]byte) error
	// Drain hands fn up to batch records at a time, oldest first, and
	// forgets them once fn succeeds; it returns how many it drained.
	Drain(ctx context.Context, fn func(ctx context.Context, records [][]byte) error, batch int) (int, error)
	// Len is how many records are waiting.
	Len() int
	// Bytes is how much disk they take.
	Bytes() int64
}

// spooledEvent is one accepted callback as stored in the spool.
type spooledEvent struct {
	Command   string   `json:"cmd"`
	App       string   `json:"app"`
	From      string   `json:"from"`
	To        []string `json:"to"`
	EventTime int64    `json:"t"`
}

func encodeEvent(app string, cb tencent.Callback) ([]byte, error) {
	return json.Marshal(spooledEvent{Command: cb.Command, App: app, From: cb.From, To: cb.To, EventTime: cb.EventTime})
}

// DefaultDrainBatch is how many events one drain step moves when
// Drainer.Batch is not set.
const DefaultDrainBatch = 100

// Drainer moves spooled events into Redis: follows become tasks, unfollows
// cancellations. Draining is at-least-once (a crash mid-drain re-offers the
// batch), which is harmless: a repeated follow maps onto the same task id
// and delivery record, a repeated unfollow onto the same cancellation.
type Drainer struct {
	// Spool is drained (required).
	Spool Spool
	// Enqueuer and Canceller store the drained follows and unfollows
	// (required).
	Enqueuer Enqueuer
	// Canceller stores the drained unfollows.
	Canceller Canceller
	// Logger and Metrics report progress (required; Metrics may be
	// NewMetrics(nil)).
	Logger *slog.Logger
	// Metrics gets the spool's depth and size.
	Metrics *Metrics
	// Batch is how many events one drain step moves ([DefaultDrainBatch]; the
	// receiver's SPOOL_DRAIN_BATCH). A step stores its events in Redis and
	// then saves the spool's read position, so a crash re-offers at most
	// one step. Each step is logged ("spool drained into Redis", with the
	// events moved and those still pending).
	Batch int
	// Idle is how often an empty spool is looked at (default 1 s); after a
	// failure the wait doubles up to 30 s.
	Idle time.Duration
}

// Run drains until ctx is done.
func (d *Drainer) Run(ctx context.Context) {
	if d.Batch <= 0 {
		d.Batch = DefaultDrainBatch
	}
	if d.Idle <= 0 {
		d.Idle = time.Second
	}
	wait := d.Idle
	for {
		d.Metrics.ObserveSpool(d.Spool)
		if d.Spool.Len() > 0 {
			n, err := d.Spool.Drain(ctx, d.move, d.Batch)
			if err == nil {
				d.Logger.Info("spool drained into Redis", "events", n, "pending", d.Spool.Len())
				wait = d.Idle
				continue
			}
			if ctx.Err() != nil {
				return
			}
			d.Logger.Warn("spool drain failed; will retry", "err", err, "pending", d.Spool.Len(), "retry_in", wait.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 30*time.Second)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.Idle):
		}
	}
}

func (d *Drainer) move(ctx context.Context, records [][]byte) error {
	var follows []tasks.Follow
	for _, r := range records {
		var ev spooledEvent
		if err := json.Unmarshal(r, &ev); err != nil {
			// Cannot happen for records this package wrote; skipping keeps
			// one bad record from blocking the spool forever.
			d.Logger.Error("unreadable spooled event skipped", "err", err)
			continue
		}
		switch ev.Command {
		case tencent.CommandFollowAdd:
			for _, to := range ev.To {
				follows = append(follows, tasks.Follow{AppID: ev.App, From: ev.From, To: to, EventTime: ev.EventTime})
			}
		case tencent.CommandFollowDelete:
			if err := d.Canceller.Cancel(ctx, ev.App, ev.From, ev.To, ev.EventTime); err != nil {
				return err
			}
		}
	}
	if len(follows) == 0 {
		return nil
	}
	if _, err := d.Enqueuer.EnqueueFollows(ctx, follows); err != nil {
		return fmt.Errorf("enqueue %d spooled follows: %w", len(follows), err)
	}
	return nil
}

// spoolEvent stores cb in the spool after Redis failed with storeErr.
func (s *handler) spoolEvent(app string, cb tencent.Callback, storeErr error) error {
	rec, err := encodeEvent(app, cb)
	if err == nil {
		err = s.Spool.Append(rec)
	}
	s.Metrics.ObserveSpool(s.Spool)
	if err != nil {
		return errors.Join(storeErr, fmt.Errorf("spool: %w", err))
	}
	s.Logger.Warn("Redis unavailable: event spooled to disk", "from_account", cb.From, "followees", len(cb.To), "err", storeErr)
	return nil
}
