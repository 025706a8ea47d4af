package redistest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/followpush/followpush/internal/testrig/redistest"
)

// A 3-master cluster serves every slot: keys written through a cluster
// client land on all three nodes and read back.
func TestClusterServesAllSlots(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	if n := len(c.Addrs()); n != 3 {
		t.Fatalf("Addrs() has %d entries, want 3", n)
	}
	ctx := context.Background()
	rc := c.Client(t)
	const keys = 300
	for i := 0; i < keys; i++ {
		if err := rc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET k%d: %v", i, err)
		}
	}
	total := int64(0)
	for _, n := range c.Nodes() {
		size, err := n.Client(t).DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if size == 0 {
			t.Errorf("node %s holds no keys: the slots are not spread", n.Addr())
		}
		total += size
	}
	if total != keys {
		t.Errorf("nodes hold %d keys in all, want %d", total, keys)
	}
	if got, err := rc.Get(ctx, "k7").Result(); err != nil || got != "7" {
		t.Errorf("GET k7 = %q, %v", got, err)
	}
}
