// Package logwriter batches a program's log lines: a [LogWriter] holds
// what is written to it and writes it out in one write every interval (or
// when its buffer fills, or on Close), so that a busy process pays one
// write system call per batch instead of one per line.
package logwriter

import (
	"io"
	"sync"
	"time"
)

// LogWriter collects log lines and writes them to the underlying writer in
// one call every flush interval (or as soon as 64 KiB are pending), instead
// of one write system call per line: at a few thousand pushes per second
// the per-line writes cost a worker about a sixth of its throughput. A line
// reaches the output at most one interval late; Close writes what is
// pending. A process killed outright loses at most the last interval's
// lines. It is safe for concurrent use.
type LogWriter struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	err    error // the first write error; later lines are dropped
	closed bool  // after Close every line is written at once
	stop   chan struct{}
	done   chan struct{}
}

// NewLogWriter returns a LogWriter over w that flushes every interval.
func New(w io.Writer, interval time.Duration) *LogWriter {
	l := &LogWriter{w: w, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.Flush()
			}
		}
	}()
	return l
}

// Write queues p (one log line, as slog handlers write them).
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return 0, l.err
	}
	l.buf = append(l.buf, p...)
	if l.closed || len(l.buf) >= logBufferMax {
		l.flushLocked()
	}
	return len(p), nil
}

// Flush writes the pending lines now.
func (l *LogWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

func (l *LogWriter) flushLocked() {
	if len(l.buf) == 0 || l.err != nil {
		return
	}
	_, l.err = l.w.Write(l.buf)
	l.buf = l.buf[:0]
}

// Close stops the periodic flushing and writes the pending lines. Lines
// written after Close go out at once.
func (l *LogWriter) Close() error {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.flushLocked()
	return l.err
}

// logBufferMax is how many bytes of log lines a LogWriter holds before it
// writes them out at once, whatever the time.
const logBufferMax = 64 << 10
