package app

import (
	"io"
	"log/slog"
	"sync"
	"time"
)

// LogFlushInterval is how often the programs' LogWriter writes out log
// lines: the most a line is delayed.
const LogFlushInterval = 50 * time.Millisecond

// StartLogging sets up a program's logging: JSON lines at level (see
// [NewLogger]) written to w in batches every [LogFlushInterval] (see
// [LogWriter]), with go-redis's own lines routed in ([RouteRedisLogs]).
// The program defers the returned func, which writes out what is pending.
func StartLogging(w io.Writer, level string) (*slog.Logger, func()) {
	lw := NewLogWriter(w, LogFlushInterval)
	log := NewLogger(lw, level)
	RouteRedisLogs(log)
	return log, func() { _ = lw.Close() }
}

// logBufferMax is how many bytes of log lines a LogWriter holds before it
// writes them out at once, whatever the time.
const logBufferMax = 64 << 10

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
func NewLogWriter(w io.Writer, interval time.Duration) *LogWriter {
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
