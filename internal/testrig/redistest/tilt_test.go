package redistest

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A sentinel whose event loop stalls for over 2 s in the middle of a
// failover (on a busy machine, a slow fsync of its config file: seen in
// CI) enters TILT mode and takes no action for 30 s; then the failover
// goes on or is aborted. Failover waits that out and, if need be, asks
// again: it still returns the promoted replica.
func TestFailoverThroughTilt(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the sentinel's 30 s TILT period")
	}
	t.Parallel()
	s := StartSentinel(t)
	stalled := make(chan bool, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
		defer cancel()
		sc := s.sentinelClient()
		defer sc.Close()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if in, _ := failoverInProgress(ctx, sc); in {
				break
			}
			select {
			case <-ctx.Done():
				stalled <- false
				return
			case <-tick.C:
			}
		}
		p := s.sentinel.cmd.Process
		_ = p.Signal(syscall.SIGSTOP)
		time.Sleep(3 * time.Second) // the fault: the sentinel's event loop stands still for 3 s
		_ = p.Signal(syscall.SIGCONT)
		stalled <- true
	}()
	got := s.Failover(t)
	if !<-stalled {
		t.Fatal("no failover was seen in progress: the sentinel was not stalled")
	}
	if want := s.Servers()[1].Addr(); got != want {
		t.Errorf("after the failover the sentinel names %s, want the replica %s", got, want)
	}
	if !strings.Contains(s.sentinel.log.String(), "+tilt") {
		t.Errorf("the sentinel did not enter TILT mode: the stall did not test it\n%s", s.sentinel.log.String())
	}
}
