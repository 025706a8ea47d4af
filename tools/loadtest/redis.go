package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/syncbuf"
	"github.com/followpush/followpush/tasks"
)

// redisTarget is the Redis the harness drives: one it started, or one named
// by -redis. Either way it is on loopback and its database is flushed
// between phases.
type redisTarget struct {
	URL  string // REDIS_URL for the programs
	Addr string // host:port
	DB   int
	rdb  *redis.Client
	pid  int // redis-server's pid (from INFO), for CPU accounting

	cmd    *exec.Cmd // nil for an external Redis
	exited chan struct{}
	dir    string
	log    *syncbuf.Buffer
}

// startRedis starts redis-server on a free loopback port with a fresh data
// directory: no RDB snapshots, and no AOF unless aof names an appendfsync
// policy ("everysec", "always", "no").
func startRedis(ctx context.Context, aof string) (*redisTarget, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not on PATH (apt-get install redis-server), or pass -redis: %w", err)
	}
	dir, err := os.MkdirTemp("", "followpush-loadtest-redis-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 { // a free port can be taken between finding and binding it
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--daemonize", "no", "--protected-mode", "no",
			"--maxmemory-policy", "noeviction",
		}
		if aof == "" {
			args = append(args, "--appendonly", "no")
		} else {
			args = append(args, "--appendonly", "yes", "--appendfsync", aof)
		}
		r := &redisTarget{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, log: &syncbuf.Buffer{}}
		r.URL = "redis://" + r.Addr + "/0"
		r.cmd = exec.Command(bin, args...)
		r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
		if lastErr = r.cmd.Start(); lastErr != nil {
			break
		}
		r.exited = make(chan struct{})
		go func() { _ = r.cmd.Wait(); close(r.exited) }()
		if lastErr = r.connect(ctx); lastErr == nil {
			return r, nil
		}
		r.dir = "" // keep the directory for the next attempt
		r.Close()
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

// checkRedisURL accepts only redis:// URLs of a loopback address: the
// harness talks to nothing else.
func checkRedisURL(rawURL string) error {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(opt.Addr)
	if err != nil {
		return err
	}
	if !isLoopback(host) {
		return fmt.Errorf("%s is not a loopback address; the harness only talks to this machine", host)
	}
	if u, _ := url.Parse(rawURL); u == nil || u.Scheme != "redis" {
		return errors.New("only redis:// URLs (no TLS on loopback)")
	}
	return nil
}

// useRedis targets the Redis at rawURL (checked by checkRedisURL).
func useRedis(ctx context.Context, rawURL string) (*redisTarget, error) {
	if err := checkRedisURL(rawURL); err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	opt, _ := redis.ParseURL(rawURL)
	r := &redisTarget{URL: rawURL, Addr: opt.Addr, DB: opt.DB}
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (r *redisTarget) connect(ctx context.Context) error {
	r.rdb = redis.NewClient(&redis.Options{Addr: r.Addr, DB: r.DB, PoolSize: 64, DialTimeout: time.Second})
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := r.rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			break
		}
		if r.exited != nil {
			select {
			case <-r.exited:
				return fmt.Errorf("redis-server exited: %s", r.log.String())
			default:
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis at %s does not answer PING: %w", r.Addr, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	if info, err := r.info(ctx, "server"); err == nil {
		r.pid, _ = strconv.Atoi(info["process_id"])
	}
	return nil
}

// Close stops a redis-server the harness started (SIGTERM, then SIGKILL
// after 10 s) and removes its data directory; for an external Redis it
// only closes the client.
func (r *redisTarget) Close() {
	if r.rdb != nil {
		_ = r.rdb.Close()
	}
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(os.Interrupt)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// flush empties the database and registers the follow queue again, so that
// asynq's Inspector finds it even when only the receiver (whose client
// remembers having registered it) enqueues afterwards.
func (r *redisTarget) flush(ctx context.Context) error {
	if err := r.rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush redis: %w", err)
	}
	if err := r.rdb.SAdd(ctx, "asynq:queues", tasks.QueueFollow).Err(); err != nil {
		return fmt.Errorf("register queue: %w", err)
	}
	return nil
}

// info returns one section of INFO as a map.
func (r *redisTarget) info(ctx context.Context, section string) (map[string]string, error) {
	s, err := r.rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m, nil
}

// usedMemory is INFO memory used_memory in bytes.
func (r *redisTarget) usedMemory(ctx context.Context) (int64, error) {
	m, err := r.info(ctx, "memory")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(m["used_memory"], 10, 64)
}

// commandCalls returns INFO commandstats as command -> calls so far
// (commands run by Lua scripts included).
func (r *redisTarget) commandCalls(ctx context.Context) (map[string]int64, error) {
	m, err := r.info(ctx, "commandstats")
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(v, ",")
		n, err := strconv.ParseInt(strings.TrimPrefix(calls, "calls="), 10, 64)
		if err == nil {
			out[name] = n
		}
	}
	return out, nil
}

// asynqOpt is the asynq connection to the same database.
func (r *redisTarget) asynqOpt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: r.Addr, DB: r.DB, PoolSize: 64}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
