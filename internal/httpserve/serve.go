// Package httpserve serves the programs' HTTP listeners: bound with
// [Listen] (port 0 picks a free one, logged), served with [Serve] under
// read, header, write and idle timeouts (a slow client cannot hold a
// connection), and shut down gracefully, closing connections that never
// sent a request so that they do not hold the shutdown.
package httpserve

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

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
