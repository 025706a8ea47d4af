package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a running Redis Cluster of masters only (no replicas), every
// node a redis-server process on loopback with its own data directory and
// an AOF (appendfsync everysec).
type Cluster struct {
	nodes []*Server
}

// clusterReadyTimeout bounds how long StartCluster waits for the cluster to
// form once redis-cli has assigned the slots.
const clusterReadyTimeout = 30 * time.Second

// StartCluster starts masters redis-server processes in cluster mode
// (cluster-node-timeout 2000 ms), joins them with
// `redis-cli --cluster create ... --cluster-replicas 0`, which spreads the
// 16384 slots evenly, and waits until every node reports cluster_state:ok
// and knows every other node. The processes stop when the test ends. opts
// are added to every node's configuration.
//
// masters must be at least 3 (redis-cli refuses smaller clusters). It needs
// redis-server and redis-cli on PATH (Debian: apt-get install redis-server,
// which pulls in redis-tools); see the package documentation for
// REDISTEST_SKIP_MISSING. It fails t if the cluster is not ready within 30 s.
func StartCluster(t testing.TB, masters int, opts ...Option) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("StartCluster: %d masters; Redis Cluster needs at least 3", masters)
	}
	bin := lookPath(t, "redis-server")
	cli := lookPath(t, "redis-cli")
	c := &Cluster{}
	for i := 0; i < masters; i++ {
		c.nodes = append(c.nodes, startClusterNode(t, bin, opts))
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitReady(ctx); err != nil {
		t.Fatalf("cluster not ready: %v\nredis-cli said:\n%s", err, out)
	}
	return c
}

// startClusterNode starts one cluster-mode redis-server on a free port and a
// free cluster bus port (not port+10000, which may be taken or above 65535).
func startClusterNode(t testing.TB, bin string, opts []Option) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir()}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		bus, err := freePort()
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		if bus == port {
			continue
		}
		s.port = port
		s.args = []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", // relative to --dir, which is s.dir
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(bus),
			"--appendonly", "yes", "--appendfsync", "everysec",
		}
		for _, o := range opts {
			o(&s.args)
		}
		if lastErr = s.start(bin); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("start cluster node: %v", lastErr)
	return nil
}

// waitReady polls CLUSTER INFO on every node until each reports
// cluster_state:ok, all slots assigned and every node known, or ctx ends.
func (c *Cluster) waitReady(ctx context.Context) error {
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": "16384",
		"cluster_known_nodes":    strconv.Itoa(len(c.nodes)),
	}
	clients := make([]*redis.Client, len(c.nodes))
	for i, n := range c.nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DialTimeout: time.Second})
		defer clients[i].Close()
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var notReady []string
		for i, rc := range clients {
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil {
				notReady = append(notReady, fmt.Sprintf("%s: %v", c.nodes[i].Addr(), err))
				continue
			}
			got := parseInfo(info)
			for k, v := range want {
				if got[k] != v {
					notReady = append(notReady, fmt.Sprintf("%s: %s=%s, want %s", c.nodes[i].Addr(), k, got[k], v))
				}
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), strings.Join(notReady, "; "))
		case <-tick.C:
		}
	}
}

// Addrs are the "127.0.0.1:port" addresses of the nodes, in start order:
// the value of REDIS_CLUSTER_ADDRS.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Nodes are the node processes, in the order of [Cluster.Addrs] (to stop,
// kill or inspect one).
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Client returns a go-redis cluster client over all nodes, closed at test
// cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// parseInfo turns "key:value" lines (INFO, CLUSTER INFO) into a map.
func parseInfo(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// lookPath finds a program on PATH or fails (or, with
// REDISTEST_SKIP_MISSING=1, skips) t.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("REDISTEST_SKIP_MISSING") == "1" {
			t.Skipf("%s not on PATH", name)
		}
		t.Fatalf("%s not on PATH (install it: apt-get install redis-server): %v", name, err)
	}
	return p
}
