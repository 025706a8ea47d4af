package redistest_test

import (
	"context"
	"testing"

	"github.com/followpush/followpush/internal/testrig/redistest"
)

func TestRestartKeepsAOFData(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.AOF("always"))
	ctx := context.Background()
	if err := s.Client(t).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	got, err := s.Client(t).Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart GET k = %q, %v; want v", got, err)
	}
}

func TestStopMakesServerUnreachable(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	c := s.Client(t)
	s.Stop()
	if err := c.Ping(context.Background()).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
}
