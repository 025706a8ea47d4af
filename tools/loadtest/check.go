package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/tasks"
)

// followKey identifies one follow in a push's data payload.
type followKey struct{ from, to, t string }

func keyOf(f tasks.Follow) followKey {
	return followKey{from: f.From, to: f.To, t: strconv.FormatInt(f.EventTime, 10)}
}

// expectFollows lists the follows of the webhooks that were answered OK,
// each with the time its webhook was sent, and those of webhooks that were
// not: these may or may not have been stored (a 503 can come after some of
// a webhook's followees were), so a push for them is neither missing nor
// unexpected.
func expectFollows(r *loadResult) (expected, maybe map[followKey]time.Time) {
	expected, maybe = make(map[followKey]time.Time), make(map[followKey]time.Time)
	for _, s := range r.Sent {
		m := expected
		if !s.OK {
			m = maybe
		}
		t := strconv.FormatInt(s.EventTime, 10)
		for _, u := range s.To {
			m[followKey{from: s.From, to: userID(u), t: t}] = s.Start
		}
	}
	return expected, maybe
}

// delivery compares the pushes the sink received with the follows that
// should each have produced exactly one (every followee has one device).
type delivery struct {
	Expected   int          `json:"expected"`
	Received   int          `json:"received"`
	Missing    int          `json:"missing"`
	Duplicates int          `json:"duplicates"` // pushes beyond the first for a follow
	Unexpected int          `json:"unexpected"` // pushes for follows not sent
	Latency    latencyStats `json:"latency"`    // webhook sent -> push received (e2e only)
	// PushesPerS is the push rate from the start time to the last push.
	PushesPerS float64       `json:"pushes_per_s"`
	Span       time.Duration `json:"span"`
	// Windows splits Latency into one-second windows (e2e only).
	Windows windowStats `json:"windows"`

	samples []timedLatency
}

func (d delivery) ok() bool { return d.Missing == 0 && d.Duplicates == 0 && d.Unexpected == 0 }

func (d delivery) String() string {
	return fmt.Sprintf("%d follows, %d pushes: %d missing, %d duplicate, %d unexpected", d.Expected, d.Received, d.Missing, d.Duplicates, d.Unexpected)
}

// matchPushes checks pushes against expected. start, when not zero, is the
// moment processing could begin (for the push rate); latency is measured
// from each follow's time in expected when withLatency is set.
func matchPushes(expected, maybe map[followKey]time.Time, pushes []push, start time.Time, withLatency bool) delivery {
	d := delivery{Expected: len(expected), Received: len(pushes)}
	seen := make(map[followKey]int, len(expected))
	var lat []time.Duration
	var first, last time.Time
	for _, p := range pushes {
		sentAt, ok := expected[p.key]
		if !ok {
			if _, ok := maybe[p.key]; !ok {
				d.Unexpected++
			}
			continue
		}
		seen[p.key]++
		if seen[p.key] > 1 {
			d.Duplicates++
			continue
		}
		if withLatency {
			lat = append(lat, p.received.Sub(sentAt))
			d.samples = append(d.samples, timedLatency{At: sentAt, D: p.received.Sub(sentAt)})
		}
		if first.IsZero() || p.received.Before(first) {
			first = p.received
		}
		if p.received.After(last) {
			last = p.received
		}
	}
	d.Missing = len(expected) - len(seen)
	if start.IsZero() {
		start = first
	}
	d.Span = last.Sub(start)
	if d.Span > 0 {
		d.PushesPerS = float64(len(seen)) / d.Span.Seconds()
	}
	d.Latency = latencies(lat)
	return d
}

// waitDrained waits until the follow queue is empty (nothing pending,
// active, scheduled or retrying) and the sink has at least want sends, or
// until nothing changed for stall, or ctx ends. It returns an error for
// the last two and when a program exited.
func waitDrained(ctx context.Context, insp *asynq.Inspector, queue string, snk *sink, want int, stall time.Duration, st *stack) (asynq.QueueInfo, error) {
	lastProgress, lastCount, lastSize := time.Now(), -1, -1
	var info asynq.QueueInfo
	var lastInfo time.Time
	for {
		n := want
		if snk != nil {
			n = snk.count()
		}
		// The queue's state costs Redis a Lua script and MEMORY USAGE
		// samples: ask for it once the pushes are in, else once a second.
		if n >= want || time.Since(lastInfo) >= time.Second {
			qi, err := insp.GetQueueInfo(queue)
			if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
				return info, fmt.Errorf("queue info: %w", err)
			}
			if qi != nil {
				info = *qi
			}
			lastInfo = time.Now()
			if info.Size == 0 && n >= want {
				return info, nil
			}
		}
		if n != lastCount || info.Size != lastSize {
			lastProgress, lastCount, lastSize = time.Now(), n, info.Size
		} else if time.Since(lastProgress) > stall {
			return info, fmt.Errorf("no progress for %s: queue %q holds %d (pending %d, active %d, retry %d, scheduled %d), %d of %d pushes arrived",
				stall, queue, info.Size, info.Pending, info.Active, info.Retry, info.Scheduled, n, want)
		}
		if st != nil {
			if p := st.exited(); p != nil {
				return info, fmt.Errorf("%s exited (%v):\n%s", p.Name, p.ExitErr(), tail(p.Output(), 20))
			}
		}
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
