package app

import (
	"io"
	"log/slog"
	"time"

	"github.com/followpush/followpush/internal/logwriter"
)

// LogFlushInterval is how often the programs' LogWriter writes out log
// lines: the most a line is delayed.
const LogFlushInterval = 50 * time.Millisecond

// StartLogging sets up a program's logging: JSON lines at level (see
// [NewLogger]) written to w in batches every [LogFlushInterval] (see
// [LogWriter]), with go-redis's own lines routed in ([RouteRedisLogs]).
// The program defers the returned func, which writes out what is pending.
func StartLogging(w io.Writer, level string) (*slog.Logger, func()) {
	lw := logwriter.New(w, LogFlushInterval)
	log := NewLogger(lw, level)
	RouteRedisLogs(log)
	return log, func() { _ = lw.Close() }
}
