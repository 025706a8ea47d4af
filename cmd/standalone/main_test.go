package main

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/internal/testrig/syncbuf"
)

// The README's Quick start shows the walkthrough standalone prints with
// its defaults, line for line.
func TestReadmeShowsTheWalkthrough(t *testing.T) {
	t.Parallel()
	cfg, err := config.LoadStandalone(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printWalkthrough(&b, cfg, "http://127.0.0.1:8080", true) // on loopback: mounted
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, quickStart, ok := strings.Cut(string(readme), "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no ## Quick start section")
	}
	quickStart, _, _ = strings.Cut(quickStart, "\n## ")
	want := "```sh\n" + strings.Trim(b.String(), "\n") + "\n```\n"
	if !strings.Contains(quickStart, want) {
		t.Errorf("README.md's Quick start lacks the walkthrough standalone prints:\n%s", want)
	}
}

// The walkthrough names the asynqmon URL only when /monitoring/ is
// mounted: on loopback (no auth) or with MONITORING_USER; on another
// address without MONITORING_USER it says it is not mounted, and the
// path answers 404.
func TestWalkthroughNamesMonitoringOnlyWhenMounted(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		env     map[string]string
		mounted bool
	}{
		{"loopback", map[string]string{"LISTEN_ADDR": "127.0.0.1:0"}, true},
		{"all interfaces, no MONITORING_USER", map[string]string{"LISTEN_ADDR": "0.0.0.0:0"}, false},
		{"all interfaces, MONITORING_USER", map[string]string{"LISTEN_ADDR": "0.0.0.0:0",
			"MONITORING_USER": "ops", "MONITORING_PASSWORD": "monitoring-password-0123"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, port := startStandalone(t, tt.env)
			said := ""
			for line := range strings.Lines(out) {
				if s, ok := strings.CutPrefix(line, "#   queues (asynqmon): "); ok {
					said = strings.TrimSpace(s)
				}
			}
			if named := strings.HasPrefix(said, "http://") && strings.HasSuffix(said, "/monitoring/"); named != tt.mounted {
				t.Errorf("walkthrough's asynqmon line says %q; want its URL named: %v\n%s", said, tt.mounted, out)
			}
			resp, err := http.Get("http://127.0.0.1:" + port + "/monitoring/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if mounted := resp.StatusCode != http.StatusNotFound; mounted != tt.mounted {
				t.Errorf("GET /monitoring/ = %d; want it mounted: %v", resp.StatusCode, tt.mounted)
			}
		})
	}
}

// startStandalone runs standalone (run) with env until the test ends, and
// returns its stdout once the walkthrough is printed, and its port.
func startStandalone(t *testing.T, env map[string]string) (stdout, port string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, logs syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"standalone"}, func(k string) string { return env[k] }, &out, &logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if t.Failed() {
			t.Logf("standalone's log:\n%s", logs.String())
		}
	})
	// The walkthrough is printed in one write once the listener is open;
	// its last line is step 3. Starting takes a few seconds at most.
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(out.String(), "\n# 3. ") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("standalone stopped: %v\n%s", err, logs.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no walkthrough printed in a minute:\n%s", logs.String())
		}
	}
	m := regexp.MustCompile(`is up on http://\S+:(\d+)\n`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("walkthrough names no address:\n%s", out.String())
	}
	return out.String(), m[1]
}
