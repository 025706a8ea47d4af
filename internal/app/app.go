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
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
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

// Listen opens addr; an address with port 0 gets a free port. The bound
// address is logged under name.
func Listen(addr, name string, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	log.Info("listening", "server", name, "addr", ln.Addr().String())
	return ln, nil
}

// Serve serves h on ln until ctx is done, then shuts down gracefully: it
// stops accepting, lets in-flight requests finish within shutdownTimeout,
// and returns. The server has read, header, write and idle timeouts so a
// slow client cannot hold a connection (slowloris): 5 s to read a request's
// header (a client that stalls or trickles its header is disconnected then),
// 10 s to read the whole request, 15 s to write the answer, and 120 s for a
// keep-alive connection to sit idle. name labels its logs and the error it
// returns when the server fails ("metrics server: accept ...").
func Serve(ctx context.Context, ln net.Listener, name string, h http.Handler, shutdownTimeout time.Duration, log *slog.Logger) error {
	return serve(ctx, ln, name, h, shutdownTimeout, serveTimeouts(), log)
}

// timeouts bounds how long an HTTP connection may take over each part of
// its life: the http.Server fields of the same names.
type timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// serveTimeouts returns the timeouts of [Serve].
func serveTimeouts() timeouts {
	return timeouts{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 15 * time.Second, Idle: 120 * time.Second}
}

// serve is [Serve] with the given timeouts.
func serve(ctx context.Context, ln net.Listener, name string, h http.Handler, shutdownTimeout time.Duration, to timeouts, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: to.ReadHeader,
		ReadTimeout:       to.Read,
		WriteTimeout:      to.Write,
		IdleTimeout:       to.Idle,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	fresh := trackFreshConns(srv)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s server: %w", name, err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "server", name, "timeout", shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Run once Shutdown has marked the server as shutting down: from then
	// on, net/http itself refuses a request whose header is not read yet.
	srv.RegisterOnShutdown(func() { fresh.closeUnused(sctx) })
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("%s server shutdown: %w", name, err)
	}
	return nil
}

// freshConns tracks connections whose first request header has not been
// read yet (http.StateNew). http.Server.Shutdown treats such a connection
// as busy until it is 5 s old, so a client or load balancer that opened a
// spare connection just before SIGTERM would hold a graceful shutdown for
// 5 s, and past a shorter SHUTDOWN_TIMEOUT turn it into a failed one.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]time.Time // accepted at
}

// unusedAge is how long a connection must have been without a request
// before shutdown closes it: a client that has just dialled is about to
// send its request.
const unusedAge = 250 * time.Millisecond

func trackFreshConns(srv *http.Server) *freshConns {
	f := &freshConns{conns: map[net.Conn]time.Time{}}
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if s == http.StateNew {
			f.conns[c] = time.Now()
		} else {
			delete(f.conns, c)
		}
	}
	return f
}

// closeUnused closes, until ctx ends, every connection still without a
// request header after unusedAge. Once shutdown began, net/http would not
// serve a request read from it anyway, so closing it loses nothing
// (Shutdown does the same to idle keep-alive connections).
func (f *freshConns) closeUnused(ctx context.Context) {
	tick := time.NewTicker(unusedAge / 5)
	defer tick.Stop()
	for {
		now := time.Now()
		f.mu.Lock()
		for c, at := range f.conns {
			if now.Sub(at) >= unusedAge {
				_ = c.Close()
				delete(f.conns, c)
			}
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
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
