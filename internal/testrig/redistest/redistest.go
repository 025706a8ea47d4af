// Package redistest starts real redis-server processes for tests, each on a
// free loopback port with its own data directory, and stops them when the
// test ends.
//
// It needs redis-server on PATH (Debian: apt-get install redis-server); when
// it is missing the test fails with a message that says so, unless the
// environment variable REDISTEST_SKIP_MISSING=1 asks for a skip instead.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/syncbuf"
)

// Server is one running redis-server process.
type Server struct {
	t    testing.TB
	dir  string
	port int
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	log    *syncbuf.Buffer
}

// Option adds redis-server configuration, as "name value" pairs passed on the
// command line (for example AOF("everysec")).
type Option func(*[]string)

// AOF turns on the append-only file with the given appendfsync policy
// ("always", "everysec" or "no"), so that a [Server.Restart] keeps the data.
func AOF(fsync string) Option {
	return func(a *[]string) { *a = append(*a, "--appendonly", "yes", "--appendfsync", fsync) }
}

// Arg passes one raw "--name value..." option to redis-server.
func Arg(args ...string) Option {
	return func(a *[]string) { *a = append(*a, args...) }
}

// Start starts a redis-server on a free loopback port and registers its stop
// with t.Cleanup. It fails t if the server does not answer PING within 10 s.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("REDISTEST_SKIP_MISSING") == "1" {
			t.Skip("redis-server not on PATH")
		}
		t.Fatalf("redis-server not on PATH (install it: apt-get install redis-server): %v", err)
	}
	s := &Server{t: t, dir: t.TempDir()}
	for _, o := range opts {
		o(&s.args)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		if lastErr = s.start(bin); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func (s *Server) start(bin string) error {
	args := append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--daemonize", "no",
		"--protected-mode", "no",
		"--maxmemory-policy", "noeviction",
	}, s.args...)
	cmd := exec.Command(bin, args...)
	logBuf := &syncbuf.Buffer{}
	cmd.Stdout = logBuf
	cmd.Stderr = logBuf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()

	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	switch err := awaitPing(rdb.Ping, exited); {
	case errors.Is(err, errExited):
		err := fmt.Errorf("redis-server exited (%v): %s", waitErr, logBuf.String())
		if strings.Contains(logBuf.String(), "Address already in use") {
			err = fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return err
	case err != nil:
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server did not answer PING within 10s: %v", err)
	}
	s.mu.Lock()
	s.cmd, s.exited, s.log = cmd, exited, logBuf
	s.mu.Unlock()
	return nil
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the REDIS_URL of database db on this server.
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr(), db) }

// Client returns a go-redis client for database 0, closed at test cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop stops the server (SIGTERM, so an AOF is flushed) and waits for it to
// exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	cmd, exited := s.takeProcess()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Pause freezes the server (SIGSTOP): it keeps its connections but answers
// nothing, as a stalled or partitioned Redis would. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Kill stops the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	cmd, exited := s.takeProcess()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// takeProcess marks the server stopped and returns the process that ran
// it and the channel closed when that exits (cmd nil: it was stopped).
func (s *Server) takeProcess() (cmd *exec.Cmd, exited chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, exited = s.cmd, s.exited
	s.cmd = nil
	return cmd, exited
}

// Restart starts the server again on the same port and data directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	bin, _ := exec.LookPath("redis-server")
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.start(bin); err == nil {
			return
		}
		if errors.Is(err, errAddrInUse) {
			// The old socket can linger for a moment after exit; this is a
			// bounded retry of a bind, not a wait for a state change.
			time.Sleep(50 * time.Millisecond)
		}
	}
	s.t.Fatalf("restart redis-server: %v", err)
}

// Log returns what the server printed so far (for failure messages).
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

var errAddrInUse = errors.New("address in use")

// handedOut remembers every port given to a server in this test process, so
// that a stopped server's port is never given to another test's server
// while the first test still expects it to be down (or to come back).
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

func freePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("no unused free port found")
}

// errExited is awaitPing's error when the process exited.
var errExited = errors.New("exited")

// awaitPing calls ping, a second at the most each time, every 10 ms until
// it succeeds (nil), the process it asks exits (exited is closed:
// errExited) or 10 s have passed (the last ping's error).
func awaitPing[C interface{ Err() error }](ping func(context.Context) C, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errExited
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}
