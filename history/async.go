package history

import (
	"context"
	"sync"
	"time"
)

// DefaultAsyncBuffer is how many entries an [Async] writer holds before
// it drops new ones (counted as failed writes).
const DefaultAsyncBuffer = 4096

// asyncBatch is the most entries one background pipeline writes.
const asyncBatch = 256

// asyncWriteTimeout bounds one background pipeline.
const asyncWriteTimeout = 2 * time.Second

// asyncLinger is how long the writer waits for more entries after the
// first of a batch: a few more entries per pipeline cost Redis and the
// worker far less than one pipeline each (BENCHMARKS.md).
const asyncLinger = 5 * time.Millisecond

// Async writes entries in the background, many per pipeline, for the
// worker: [Async.Add] never blocks and never fails; an entry that cannot
// be written (the buffer is full, Redis fails) is counted as a failed
// write and dropped. Entries are written in the order they were added.
type Async struct {
	s    *Store
	ch   chan item
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// item is an entry to write, or a flush marker (flushed != nil).
type item struct {
	e       Entry
	flushed chan struct{}
}

// Async starts a background writer over s holding up to buffer entries
// ([DefaultAsyncBuffer] when buffer < 1). Stop it with [Async.Close].
func (s *Store) Async(buffer int) *Async {
	if buffer < 1 {
		buffer = DefaultAsyncBuffer
	}
	a := &Async{s: s, ch: make(chan item, buffer), stop: make(chan struct{}), done: make(chan struct{})}
	go a.run()
	return a
}

// Add hands e to the writer. It does not wait: a full buffer, or a closed
// writer, drops e and counts it as a failed write.
func (a *Async) Add(e Entry) {
	select {
	case <-a.stop:
		a.s.metrics.failures.Inc()
		return
	default:
	}
	select {
	case a.ch <- item{e: e}:
	default:
		a.s.metrics.failures.Inc()
	}
}

// Flush waits until every entry added before it has been written (or
// failed), or ctx ends.
func (a *Async) Flush(ctx context.Context) error {
	f := make(chan struct{})
	select {
	case a.ch <- item{flushed: f}:
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-f:
		return nil
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what the writer holds, within ctx, and stops it. Entries
// added after Close are dropped (and counted).
func (a *Async) Close(ctx context.Context) error {
	err := a.Flush(ctx)
	a.once.Do(func() { close(a.stop) })
	select {
	case <-a.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

func (a *Async) run() {
	defer close(a.done)
	batch := make([]Entry, 0, asyncBatch)
	var flushed []chan struct{}
	for {
		var it item
		select {
		case it = <-a.ch:
		case <-a.stop:
			return
		}
		batch, flushed = a.take(batch[:0], flushed[:0], it)
		linger := time.NewTimer(asyncLinger)
	more:
		for len(batch) < asyncBatch && len(flushed) == 0 {
			select {
			case it = <-a.ch:
				batch, flushed = a.take(batch, flushed, it)
			case <-linger.C:
				break more
			case <-a.stop:
				break more
			}
		}
		linger.Stop()
		if len(batch) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), asyncWriteTimeout)
			_ = a.s.Write(ctx, batch...) // failures are counted
			cancel()
		}
		for _, f := range flushed {
			close(f)
		}
	}
}

func (a *Async) take(batch []Entry, flushed []chan struct{}, it item) ([]Entry, []chan struct{}) {
	if it.flushed != nil {
		return batch, append(flushed, it.flushed)
	}
	return append(batch, it.e), flushed
}
