package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/syncbuf"
)

// SentinelMaster is the master name the sentinels of [StartSentinel] watch.
const SentinelMaster = "mymaster"

// sentinelTimeout bounds each wait of StartSentinel and WaitReplica.
const sentinelTimeout = 30 * time.Second

// tiltPeriod is how long a sentinel takes no action after it entered TILT
// mode, which it does when its event loop stalled for over 2 s (on a busy
// machine, a config file's fsync can take that long): a failover started
// before it continues only after that.
const tiltPeriod = 30 * time.Second

// failoverTimeout bounds Failover: a failover, with a TILT period in it.
const failoverTimeout = sentinelTimeout + tiltPeriod

// Sentinel is a Sentinel-managed Redis: two redis-server processes (one
// started as master, one as its replica, both with an AOF) and one sentinel
// watching them with quorum 1 (down-after-milliseconds 1000,
// failover-timeout 5000).
type Sentinel struct {
	servers  []*Server // [0] started as the master, [1] as its replica
	sentinel *sentinelProcess
}

// StartSentinel starts a master, one replica and a sentinel, and waits
// until the replica is in sync and the sentinel knows it as a fit
// replacement, so that [Sentinel.Failover] can promote it. opts are added to
// both data servers' configuration (whichever is master at the time applies
// them). Everything stops when the test ends.
//
// The sentinel runs as `redis-server <config> --sentinel`, so only
// redis-server is needed on PATH (Debian's redis-sentinel package adds
// nothing but a service and a redis-sentinel link). It fails t if the set is
// not ready within 30 s.
func StartSentinel(t testing.TB, opts ...Option) *Sentinel {
	t.Helper()
	bin := lookPath(t, "redis-server")
	// Diskless sync without its default 5 s delay: a replica (and a demoted
	// master after a failover) syncs at once.
	base := []Option{AOF("everysec"), Arg("--repl-diskless-sync-delay", "0")}
	master := Start(t, append(base, opts...)...)
	replica := Start(t, append(append(base, opts...), Arg("--replicaof", "127.0.0.1", strconv.Itoa(master.port)))...)
	s := &Sentinel{servers: []*Server{master, replica}}

	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	if err := waitInfo(ctx, replica, "replication", map[string]string{"role": "slave", "master_link_status": "up"}); err != nil {
		t.Fatalf("replica did not sync: %v\n%s", err, replica.Log())
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if s.sentinel, err = startSentinelProcess(t, bin, master.port); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start sentinel: %v", err)
	}
	t.Cleanup(s.sentinel.stop)
	if err := s.waitFitReplica(ctx, replica.Addr()); err != nil {
		t.Fatalf("sentinel does not see a fit replica: %v\n%s", err, s.sentinel.log.String())
	}
	return s
}

// SentinelAddrs are the sentinels' "127.0.0.1:port" addresses: the value of
// REDIS_SENTINEL_ADDRS.
func (s *Sentinel) SentinelAddrs() []string { return []string{s.sentinel.addr()} }

// MasterName is the watched master's name ([SentinelMaster]): the value of
// REDIS_SENTINEL_MASTER.
func (s *Sentinel) MasterName() string { return SentinelMaster }

// Servers are the two data servers: [0] started as the master, [1] as its
// replica. Their roles swap with each failover.
func (s *Sentinel) Servers() []*Server { return append([]*Server(nil), s.servers...) }

// Client returns a go-redis failover client through the sentinel, closed at
// test cleanup.
func (s *Sentinel) Client(t testing.TB) *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: s.SentinelAddrs()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// MasterAddr asks the sentinel for the current master's address.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	sc := s.sentinelClient()
	defer sc.Close()
	hp, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		return "", fmt.Errorf("SENTINEL get-master-addr-by-name: %w", err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("SENTINEL get-master-addr-by-name answered %q", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// Failover forces a failover (SENTINEL FAILOVER, no agreement needed) and
// waits until the sentinel names the promoted replica as master; it returns
// the new master's address. The old master keeps running and is turned into
// a replica by the sentinel some seconds later; [Sentinel.WaitReplica]
// waits for that. A failover the sentinel aborted (its 5 s failover-timeout
// passed, in a TILT period for example) is asked for again. It fails t
// after 60 s: a failover, with a TILT period of 30 s in it.
func (s *Sentinel) Failover(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failoverTimeout)
	defer cancel()
	old, err := s.MasterAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.sentinelClient()
	defer sc.Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	asked := false
	for {
		addr, err := s.MasterAddr(ctx)
		if err == nil && addr != old {
			return addr
		}
		// The sentinel refuses while a previous failover is in progress
		// (INPROG) or no replica is fit yet (NOGOODSLAVE): ask until it
		// takes it, and again when the failover it took ended without a
		// new master.
		if inProgress, ierr := failoverInProgress(ctx, sc); ierr == nil && !inProgress {
			if ferr := sc.Failover(ctx, SentinelMaster).Err(); ferr == nil {
				if asked {
					t.Logf("sentinel ended a failover without a new master; asked again")
				}
				asked = true
			} else {
				err = ferr
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("sentinel still names %s (%v) as master %s after asking for a failover\n%s", addr, err, failoverTimeout, s.sentinel.log.String())
		case <-tick.C:
		}
	}
}

// failoverInProgress says whether the sentinel has a failover of the
// master in progress (SENTINEL MASTER's flags).
func failoverInProgress(ctx context.Context, sc *redis.SentinelClient) (bool, error) {
	m, err := sc.Master(ctx, SentinelMaster).Result()
	if err != nil {
		return false, fmt.Errorf("SENTINEL MASTER: %w", err)
	}
	return strings.Contains(m["flags"], "failover_in_progress"), nil
}

// WaitReplica waits until the server that is not the current master is its
// replica, in sync: after a [Sentinel.Failover], until the sentinel has
// turned the old master into a replica (about 8 s after the failover, the
// sentinel's own delay) and it finished its sync. The sentinel itself may
// take up to 10 s more to see it as fit; a following Failover retries until
// it does. It fails t after 30 s.
func (s *Sentinel) WaitReplica(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	master, err := s.MasterAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replica := s.servers[0]
	if replica.Addr() == master {
		replica = s.servers[1]
	}
	_, port, _ := net.SplitHostPort(master)
	want := map[string]string{"role": "slave", "master_port": port, "master_link_status": "up"}
	if err := waitInfo(ctx, replica, "replication", want); err != nil {
		t.Fatalf("%s did not become a replica of %s: %v\n%s", replica.Addr(), master, err, s.sentinel.log.String())
	}
}

// waitFitReplica polls SENTINEL REPLICAS until addr is listed as a plain
// replica ("slave" flags, nothing down or disconnected) with its link to
// the master up.
func (s *Sentinel) waitFitReplica(ctx context.Context, addr string) error {
	sc := s.sentinelClient()
	defer sc.Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		replicas, err := sc.Replicas(ctx, SentinelMaster).Result()
		last := fmt.Sprintf("%v %v", replicas, err)
		for _, r := range replicas {
			if net.JoinHostPort(r["ip"], r["port"]) == addr && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last SENTINEL REPLICAS: %s", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (s *Sentinel) sentinelClient() *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: s.sentinel.addr(), MaxRetries: -1, DialTimeout: time.Second})
}

// waitInfo polls INFO section of srv until every field has its value.
func waitInfo(ctx context.Context, srv *Server, section string, want map[string]string) error {
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer rc.Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := rc.Info(ctx, section).Result()
		got := parseInfo(info)
		ok := err == nil
		for k, v := range want {
			ok = ok && got[k] == v
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: INFO %s of %s: %v %v", ctx.Err(), section, srv.Addr(), got, err)
		case <-tick.C:
		}
	}
}

// sentinelProcess is one running sentinel.
type sentinelProcess struct {
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	log    *syncbuf.Buffer
}

func (p *sentinelProcess) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// startSentinelProcess starts a sentinel on a free port watching the master
// on masterPort, and waits until it answers PING.
func startSentinelProcess(t testing.TB, bin string, masterPort int) (*sentinelProcess, error) {
	dir := memoryDir(t)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := strings.Join([]string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"protected-mode no",
		"daemonize no",
		`logfile ""`,
		"dir " + dir,
		"sentinel monitor " + SentinelMaster + " 127.0.0.1 " + strconv.Itoa(masterPort) + " 1",
		"sentinel down-after-milliseconds " + SentinelMaster + " 1000",
		"sentinel failover-timeout " + SentinelMaster + " 5000",
		"sentinel parallel-syncs " + SentinelMaster + " 1",
		"",
	}, "\n")
	path := filepath.Join(dir, "sentinel.conf") // the sentinel rewrites it: it must be writable
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p := &sentinelProcess{port: port, exited: make(chan struct{}), log: &syncbuf.Buffer{}}
	p.cmd = exec.Command(bin, path, "--sentinel")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	var waitErr error
	go func() { waitErr = p.cmd.Wait(); close(p.exited) }()

	sc := redis.NewSentinelClient(&redis.Options{Addr: p.addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer sc.Close()
	switch err := awaitPing(sc.Ping, p.exited); {
	case errors.Is(err, errExited):
		return nil, fmt.Errorf("sentinel exited (%v): %s", waitErr, p.log.String())
	case err != nil:
		p.stop()
		return nil, errors.New("sentinel did not answer PING within 10s: " + err.Error())
	}
	return p, nil
}

// memoryDir returns a new directory, removed at test cleanup, in memory
// (/dev/shm) where the machine has one, else t.TempDir(). A sentinel
// fsyncs its config file from its event loop at each failover: on a disk
// busy with other work that can stall it past 2 s, and it enters TILT mode
// (see tiltPeriod).
func memoryDir(t testing.TB) string {
	dir, err := os.MkdirTemp("/dev/shm", "redistest-sentinel-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// stop stops the sentinel (SIGTERM, SIGKILL after 10 s) and waits for it.
func (p *sentinelProcess) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
