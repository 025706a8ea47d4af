package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/redistest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// The start-up check warns about exactly the Redis settings that risk losing
// queued follows, and is quiet when they are right.
func TestCheckRedisSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []redistest.Option
		want []string // setting names warned about
	}{
		{"no AOF, allkeys-lru", []redistest.Option{redistest.Arg("--maxmemory-policy", "allkeys-lru")}, []string{"appendonly", "maxmemory-policy"}},
		{"AOF and noeviction", []redistest.Option{redistest.AOF("everysec")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			red := redistest.Start(t, tt.opts...)
			var buf syncBuffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			checkRedisSettings(ctx, red.Client(t), slog.New(slog.NewJSONHandler(&buf, nil)), func() { close(done) })
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("check did not finish")
			}
			var got []string
			for _, l := range buf.lines() {
				for _, k := range []string{"appendonly", "maxmemory-policy"} {
					if _, ok := l[k]; ok {
						got = append(got, k)
					}
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("warned about %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{BadConfig(errors.Join(errors.New("A: bad"), errors.New("B: bad"))), 2},
		{errors.New("boom"), 1},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err, &stderr); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
	if !strings.Contains(stderr.String(), "bad setting: A: bad\nbad setting: B: bad\n") {
		t.Errorf("stderr = %q, want one line per bad setting", stderr.String())
	}
}
