package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
)

// clusterFollows is how many follows TestClusterShardedQueues pushes per
// shard count: FOLLOWPUSH_CLUSTER_FOLLOWS, default 600 (CI's size). The
// figures in BENCHMARKS.md come from larger runs of the same test.
func clusterFollows(t *testing.T) int {
	v := os.Getenv("FOLLOWPUSH_CLUSTER_FOLLOWS")
	if v == "" {
		return 600
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 20 {
		t.Fatalf("FOLLOWPUSH_CLUSTER_FOLLOWS=%q: want a whole number of at least 20", v)
	}
	return n
}

// On a 3-master Redis Cluster, a receiver and two workers with
// FOLLOW_QUEUE_SHARDS=6 put the follow queues two on each master and
// every master serves 20 % to 47 % of the Redis commands of the run (from
// each master's INFO commandstats); with 1 shard the master holding the
// follow queue serves the most by far. Every follow is pushed exactly once
// either way.
func TestClusterShardedQueues(t *testing.T) {
	t.Parallel()
	follows := clusterFollows(t)
	for _, shards := range []int{6, 1} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			t.Parallel()
			cl := redistest.StartCluster(t, 3)
			rc := cl.Client(t)
			s := startStackOn(t, 2, map[string]string{"REDIS_CLUSTER_ADDRS": strings.Join(cl.Addrs(), ",")}, rc,
				map[string]string{"FOLLOW_QUEUE_SHARDS": strconv.Itoa(shards), "LOG_LEVEL": "info"})
			s.wantRedisMode("cluster")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()

			// Which master holds each queue: CLUSTER KEYSLOT agrees with
			// tasks.ClusterSlot, and the slot map names the master.
			owner := slotOwners(ctx, t, rc)
			sh, err := tasks.NewShards(shards)
			if err != nil {
				t.Fatal(err)
			}
			perMaster := map[string][]string{}
			for _, q := range sh.Names() {
				slot, err := rc.ClusterKeySlot(ctx, "asynq:{"+q+"}:pending").Result()
				if err != nil {
					t.Fatal(err)
				}
				if int(slot) != tasks.ClusterSlot(q) {
					t.Errorf("queue %s: CLUSTER KEYSLOT %d, tasks.ClusterSlot %d", q, slot, tasks.ClusterSlot(q))
				}
				perMaster[owner(int(slot))] = append(perMaster[owner(int(slot))], q)
			}
			if shards == 6 {
				for _, addr := range cl.Addrs() {
					if len(perMaster[addr]) != 2 {
						t.Errorf("master %s holds queues %v, want 2 of the 6 (all: %v)", addr, perMaster[addr], perMaster)
					}
				}
			}

			// Devices straight into Redis (the device API is not measured).
			followees := users("f", follows)
			reg := devices.NewRegistry(rc, devices.Options{Prefix: config.DefaultKeyPrefix})
			var g errgroup.Group
			g.SetLimit(16)
			for _, u := range followees {
				g.Go(func() error { return reg.Register(ctx, u, "tok-"+u, devices.Registration{Platform: "android"}) })
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}

			cpuBefore := map[string]float64{}
			for _, n := range cl.Nodes() {
				if err := n.Client(t).ConfigResetStat(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				cpuBefore[n.Addr()] = redisCPU(ctx, t, n.Client(t))
			}
			start := time.Now()
			const perWebhook = 20
			g.SetLimit(8)
			for i := 0; i < len(followees); i += perWebhook {
				body := followBody(fmt.Sprintf("fan-%d", i), nowMillis(), followees[i:min(i+perWebhook, len(followees))]...)
				g.Go(func() error {
					if status, b := s.webhook(tencent.CommandFollowAdd, body); status != http.StatusOK {
						return fmt.Errorf("follow webhook %d: %d %s", i/perWebhook, status, b)
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			// Wait on the FCM sink, not on Redis, so that the measurement
			// holds no commands of the test's own.
			for len(s.fcm.Requests()) < follows {
				select {
				case <-ctx.Done():
					t.Fatalf("%d of %d follows pushed", len(s.fcm.Requests()), follows)
				case <-time.After(20 * time.Millisecond):
				}
			}
			took := time.Since(start)
			calls := map[string]int64{}
			cpu := map[string]float64{}
			var total int64
			for _, n := range cl.Nodes() {
				info, err := n.Client(t).Info(ctx, "commandstats").Result()
				if err != nil {
					t.Fatal(err)
				}
				calls[n.Addr()] = commandCalls(info)
				total += calls[n.Addr()]
				cpu[n.Addr()] = redisCPU(ctx, t, n.Client(t)) - cpuBefore[n.Addr()]
			}
			var report []string
			for _, addr := range cl.Addrs() {
				share := float64(calls[addr]) / float64(total)
				report = append(report, fmt.Sprintf("%s %.1f%% (%d commands, %.0f µs CPU per push, queues %v)", addr, 100*share, calls[addr], 1e6*cpu[addr]/float64(follows), perMaster[addr]))
				if shards == 6 && (share < 0.20 || share > 0.47) {
					t.Errorf("6 shards: master %s served %.1f%% of the commands, want 20%% to 47%%", addr, 100*share)
				}
			}
			t.Logf("%d shards, %d follows in %s (%.0f/s), %.1f Redis commands per push; per master: %s",
				shards, follows, took.Round(time.Millisecond), float64(follows)/took.Seconds(), float64(total)/float64(follows), strings.Join(report, "; "))
			if shards == 1 {
				queueMaster := owner(tasks.ClusterSlot(tasks.QueueFollow))
				for _, addr := range cl.Addrs() {
					if addr != queueMaster && 2*calls[addr] > calls[queueMaster] {
						t.Errorf("1 shard: master %s served %d commands, more than half of the %d of %s, which holds the queue", addr, calls[addr], calls[queueMaster], queueMaster)
					}
				}
			}

			s.waitIdle(time.Minute)
			got := accepted(s.fcm.Requests(), func(fcmtest.Request) bool { return true })
			for _, u := range followees {
				if got["tok-"+u] != 1 {
					t.Errorf("%s pushed %d times, want once", u, got["tok-"+u])
				}
			}
			if len(got) != len(followees) {
				t.Errorf("pushes to %d tokens, want %d", len(got), len(followees))
			}
			// Each shard's queue processed tasks: the follows landed on all.
			for _, q := range sh.Names() {
				qi, err := s.insp.GetQueueInfo(q)
				if err != nil || qi.ProcessedTotal == 0 {
					t.Errorf("queue %s processed nothing (%v)", q, err)
				}
			}
		})
	}
}

// slotOwners returns the address of the master holding a slot.
func slotOwners(ctx context.Context, t *testing.T, rc *redis.ClusterClient) func(slot int) string {
	t.Helper()
	slots, err := rc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(slots, func(a, b redis.ClusterSlot) int { return a.Start - b.Start })
	return func(slot int) string {
		for _, s := range slots {
			if slot >= s.Start && slot <= s.End {
				return s.Nodes[0].Addr
			}
		}
		t.Fatalf("slot %d has no master", slot)
		return ""
	}
}

// commandCalls sums the calls of every command in an INFO commandstats
// answer (lines "cmdstat_<name>:calls=<n>,usec=...").
func commandCalls(info string) int64 {
	var total int64
	for _, line := range strings.Split(info, "\n") {
		_, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		v, err := strconv.ParseInt(n, 10, 64)
		if err == nil {
			total += v
		}
	}
	return total
}

// redisCPU returns the CPU seconds (user and system) the server has used,
// from INFO cpu.
func redisCPU(ctx context.Context, t *testing.T, c *redis.Client) float64 {
	t.Helper()
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("INFO cpu %s: %v", k, err)
			}
			sum += f
		}
	}
	return sum
}
