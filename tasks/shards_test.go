package tasks_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/quick"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/tasks"
)

// The slot function is Redis Cluster's: known answers of CLUSTER KEYSLOT
// (test/e2e checks the shard names against a real cluster too).
func TestClusterSlot(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]int{"foo": 12182, "bar": 5061, "123456789": 12739, "": 0, "follow": 850, "follow-0of6-2": 1546} {
		if got := tasks.ClusterSlot(key); got != want {
			t.Errorf("ClusterSlot(%q) = %d, want %d", key, got, want)
		}
	}
}

// One shard is today's queue; the names and routes of more shards are
// pinned: every process (receivers, workers, old and new releases) must
// compute the same, so a change here strands queued tasks.
func TestShardsArePinned(t *testing.T) {
	t.Parallel()
	var zero tasks.Shards
	one, err := tasks.NewShards(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []tasks.Shards{zero, one} {
		if s.N() != 1 || s.Queue("alice") != tasks.QueueFollow || !cmp.Equal(s.Names(), []string{tasks.QueueFollow}) {
			t.Errorf("single shard: N %d, queue %q, names %v; want 1, %q, [%s]", s.N(), s.Queue("alice"), s.Names(), tasks.QueueFollow, tasks.QueueFollow)
		}
	}
	six, err := tasks.NewShards(6)
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"follow-0of6-2", "follow-1of6-3", "follow-2of6-3", "follow-3of6-0", "follow-4of6-1", "follow-5of6-1"}
	if d := cmp.Diff(wantNames, six.Names()); d != "" {
		t.Errorf("names of 6 shards (-want +got):\n%s", d)
	}
	for user, want := range map[string]int{"alice": 5, "bob": 0, "u0001": 5, "用户": 3} {
		if got := six.Index(user); got != want {
			t.Errorf("6 shards: Index(%q) = %d, want %d", user, got, want)
		}
		if got := six.Queue(user); got != wantNames[want] {
			t.Errorf("6 shards: Queue(%q) = %q, want %q", user, got, wantNames[want])
		}
	}
	for _, n := range []int{0, -1, tasks.MaxFollowQueueShards + 1} {
		if _, err := tasks.NewShards(n); err == nil {
			t.Errorf("NewShards(%d) accepted", n)
		}
	}
}

// Shard i's queue name hashes into the i-th of N equal slot ranges, for
// every N, and is recognised as a follow queue; other names are not.
func TestShardQueueSlots(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for n := 2; n <= tasks.MaxFollowQueueShards; n++ {
		s, err := tasks.NewShards(n)
		if err != nil {
			t.Fatal(err)
		}
		for i, name := range s.Names() {
			slot := tasks.ClusterSlot(name)
			if lo, hi := i*16384/n, (i+1)*16384/n; slot < lo || slot >= hi {
				t.Errorf("shard %d of %d: %q has slot %d, outside [%d, %d)", i, n, name, slot, lo, hi)
			}
			if !tasks.IsFollowQueue(name) {
				t.Errorf("IsFollowQueue(%q) = false", name)
			}
			if seen[name] {
				t.Errorf("queue name %q used twice", name)
			}
			seen[name] = true
		}
	}
	if !tasks.IsFollowQueue(tasks.QueueFollow) {
		t.Errorf("IsFollowQueue(%q) = false", tasks.QueueFollow)
	}
	for _, name := range []string{"", "default", "follow-", "follow-0of6", "follow-0of6-0", "follow-6of6-2", "follow-0of1-0",
		"follow-0of65-0", "follow-00of6-2", "follow-0of06-2", "followers", "follow-0of6-2x", "follow--1of6-2"} {
		if tasks.IsFollowQueue(name) {
			t.Errorf("IsFollowQueue(%q) = true", name)
		}
	}
}

// Routing is stable (the same followee, the same shard, on every call and
// from a fresh Shards) and spreads: over many random UserIDs every shard
// gets its share of 1/N within 10 % of it.
func TestShardsRouteStablyAndSpread(t *testing.T) {
	t.Parallel()
	stable := func(user string, n uint8) bool {
		k := int(n)%tasks.MaxFollowQueueShards + 1
		a, _ := tasks.NewShards(k)
		b, _ := tasks.NewShards(k)
		i := a.Index(user)
		return i >= 0 && i < k && i == b.Index(user) && i == a.Index(user) && a.Queue(user) == b.Names()[i]
	}
	if err := quick.Check(stable, &quick.Config{MaxCount: 5000}); err != nil {
		t.Error(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const users = 200_000
	ids := make([]string, users)
	for i := range ids {
		switch i % 3 {
		case 0: // sequential ids, as many apps make them
			ids[i] = fmt.Sprintf("user%d", i)
		case 1:
			ids[i] = fmt.Sprintf("%x", rng.Uint64())
		default:
			ids[i] = fmt.Sprintf("u_%d_%d", rng.IntN(1000), i)
		}
	}
	for _, n := range []int{2, 3, 4, 6, 9, 16, 64} {
		s, err := tasks.NewShards(n)
		if err != nil {
			t.Fatal(err)
		}
		count := make([]int, n)
		for _, id := range ids {
			count[s.Index(id)]++
		}
		want := float64(users) / float64(n)
		for i, c := range count {
			if d := float64(c)/want - 1; d < -0.10 || d > 0.10 {
				t.Errorf("%d shards: shard %d got %d of %d ids (%.1f%% off its share)", n, i, c, users, 100*d)
			}
		}
	}
}
