// Package app holds the wiring shared by the followpush programs: logging,
// exit codes, the receiver's and the worker's assembly from their
// configuration, HTTP serving with graceful shutdown, and the Redis settings
// check. cmd/ calls it; nothing else should.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrBadConfig marks a configuration error: the program exits with code 2.
var ErrBadConfig = errors.New("bad configuration")

// ExitCode maps run's error to the process exit code: 0 for nil or -h, 2 for
// bad settings or flags, 1 otherwise. It prints the error to stderr.
func ExitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrBadConfig):
		// One line per problem, each naming its setting.
		for _, line := range strings.Split(strings.TrimPrefix(err.Error(), ErrBadConfig.Error()+":\n"), "\n") {
			fmt.Fprintln(stderr, "bad setting:", line)
		}
		return 2
	}
	fmt.Fprintln(stderr, "error:", err)
	return 1
}

// BadConfig wraps err (the joined setting problems) as [ErrBadConfig].
func BadConfig(err error) error { return fmt.Errorf("%w:\n%w", ErrBadConfig, err) }

// ParseFlags parses args (args[0] is the program) for -h; usage is printed to
// stdout. It returns flag.ErrHelp after -h, or a bad-config error for
// unknown flags.
func ParseFlags(args []string, stdout io.Writer, usage func(io.Writer)) error {
	name := "followpush"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return flag.ErrHelp
		}
		return BadConfig(fmt.Errorf("flags: %v (settings come from the environment; -h lists them)", err))
	}
	if fs.NArg() > 0 {
		return BadConfig(fmt.Errorf("flags: unexpected argument %q (settings come from the environment; -h lists them)", fs.Arg(0)))
	}
	return nil
}

// NewLogger returns the JSON logger of a program at level (debug, info,
// warn, error).
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// CheckRedisSettings warns (once Redis answers; it retries in the background
// until ctx ends) when the server runs without appendonly yes or with a
// maxmemory-policy other than noeviction: then acknowledged events can be
// lost on a crash, or evicted under memory pressure. When Redis refuses
// CONFIG GET (an ACL user without the permission, NOPERM; the command
// renamed or disabled, as managed Redis services do) it warns once that the
// settings could not be verified, naming why, and gives up.
func CheckRedisSettings(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) {
	checkRedisSettings(ctx, rdb, log, func() {})
}

func checkRedisSettings(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger, done func()) {
	check := func(ctx context.Context, c *redis.Client) error {
		addr := c.Options().Addr
		vals, err := c.ConfigGet(ctx, "*").Result()
		if reason := configRefused(err); reason != "" {
			log.Warn("could not verify the Redis settings: make sure Redis runs with appendonly yes and maxmemory-policy noeviction, or queued follows can be lost",
				"redis", addr, "reason", reason, "err", err)
			return nil
		}
		if err != nil {
			return err
		}
		if v := vals["appendonly"]; v != "yes" {
			log.Warn("Redis runs without appendonly yes: a Redis crash loses queued follows", "redis", addr, "appendonly", v)
		}
		if v := vals["maxmemory-policy"]; v != "noeviction" {
			log.Warn("Redis maxmemory-policy is not noeviction: queued follows can be evicted", "redis", addr, "maxmemory-policy", v)
		}
		return nil
	}
	go func() {
		defer done()
		for delay := 500 * time.Millisecond; ; delay = min(2*delay, 30*time.Second) {
			var err error
			switch c := rdb.(type) {
			case *redis.ClusterClient:
				err = c.ForEachMaster(ctx, check)
			case *redis.Client:
				err = check(ctx, c)
			default:
				return
			}
			if err == nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
	}()
}

// configRefused says why Redis answered CONFIG GET with an error that asking
// again will not change, or returns "" for no error, a transport error, or a
// passing state (loading, failover, too many clients, authentication) that a
// retry can outlast.
func configRefused(err error) string {
	var rerr redis.Error
	switch {
	case !errors.As(err, &rerr):
		return ""
	case redis.IsPermissionError(err):
		return "the Redis user may not run CONFIG GET (NOPERM)"
	case redis.IsLoadingError(err), redis.IsTryAgainError(err), redis.IsClusterDownError(err),
		redis.IsMasterDownError(err), redis.IsMaxClientsError(err), redis.IsAuthError(err):
		return ""
	}
	return "Redis refused CONFIG GET (the command is unknown, renamed or disabled)"
}

// Main runs run with a root context cancelled on SIGINT/SIGTERM and exits
// with [ExitCode].
func Main(run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error) {
	ctx, stop := signalContext()
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(ExitCode(err, os.Stderr))
}

// RouteRedisLogs sends go-redis's own log lines (reconnects, sentinel
// switches) into log as JSON warnings. go-redis keeps one process-wide
// logger, so only a program's run calls this.
func RouteRedisLogs(log *slog.Logger) {
	redis.SetLogger(redisLogger{log.With("component", "go-redis")})
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.Warn(fmt.Sprintf(format, v...))
}
