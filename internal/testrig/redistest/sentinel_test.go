package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/testrig/redistest"
)

// A failover promotes the replica: the sentinel names it, data written
// before is there, a failover client writes to the new master, and the old
// master comes back as a replica of the new one.
func TestSentinelFailoverPromotesReplica(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	if got := s.MasterName(); got != redistest.SentinelMaster {
		t.Errorf("MasterName() = %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	servers := s.Servers()
	if addr, err := s.MasterAddr(ctx); err != nil || addr != servers[0].Addr() {
		t.Fatalf("master before failover = %q, %v; want %s", addr, err, servers[0].Addr())
	}
	c := s.Client(t)
	if err := c.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// WAIT: the replica has the write before it is promoted.
	if n, err := c.Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 replica = %d, %v", n, err)
	}

	if got := s.Failover(t); got != servers[1].Addr() {
		t.Fatalf("after failover the sentinel names %s, want the replica %s", got, servers[1].Addr())
	}
	// The new master is checked directly: a failover client learns of the
	// switch asynchronously (sentinel pub/sub), so right after Failover it
	// may still write to the old master.
	promoted := servers[1].Client(t)
	if role, err := promoted.Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Errorf("ROLE of the promoted replica = %v, %v", role, err)
	}
	if got, err := promoted.Get(ctx, "before").Result(); err != nil || got != "1" {
		t.Errorf("GET before on the new master = %q, %v", got, err)
	}
	if err := promoted.Set(ctx, "after", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.WaitReplica(t)
	if got, err := servers[0].Client(t).Get(ctx, "after").Result(); err != nil || got != "2" {
		t.Errorf("GET after on the demoted master = %q, %v; want the new master's data", got, err)
	}
	if got, err := c.Get(ctx, "after").Result(); err != nil || got != "2" {
		t.Errorf("GET after through the failover client = %q, %v", got, err)
	}
}
