package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The smoke scenario runs the real receiver and workers against a real
// redis-server and the fake FCM, and passes only when every follow produced
// exactly one push, every webhook was answered 200 OK, and the policies
// phase (aggregation on) delivered every follow exactly once, some of them
// only in a summary's count.
func TestSmoke(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH")
	}
	// A bound against a hang, not a speed check: building the programs and
	// the run took 1.5 min on a 2-core machine with two busy neighbours.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	jsonPath := filepath.Join(t.TempDir(), "smoke.json")
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"loadtest", "-scenario", "smoke", "-json", jsonPath}, os.Getenv, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) > 0 {
		t.Errorf("failures: %v", rep.Failures)
	}
	checked := 0
	for _, p := range rep.Phases {
		if p.Delivery == nil {
			continue
		}
		checked++
		if d := *p.Delivery; !d.ok() || d.Expected == 0 || d.Received != d.Expected {
			t.Errorf("%s: %v", p.Name, d)
		}
	}
	if checked < 4 { // process, scaling ×2, e2e
		t.Errorf("%d phases checked delivery, want at least 4", checked)
	}
	policies := 0
	for _, p := range rep.Phases {
		raw, ok := p.Extra["tally"]
		if !ok {
			continue
		}
		policies++
		var tl policyTally
		if b, err := json.Marshal(raw); err != nil {
			t.Fatal(err)
		} else if err := json.Unmarshal(b, &tl); err != nil {
			t.Fatal(err)
		}
		if tl.Follows != 300 || tl.Lost != 0 || tl.Uncovered != 0 || tl.Extra != 0 || tl.NamedTwice != 0 ||
			tl.Unexpected != 0 || tl.Foreign != 0 || tl.Silent != 0 || tl.Delay.N != tl.Follows {
			t.Errorf("%s: %+v, want 300 follows, each delivered exactly once", p.Name, tl)
		}
		if tl.Summaries == 0 || tl.CountOnly == 0 || tl.Pushes >= tl.Follows {
			t.Errorf("%s: %d pushes, %d summaries, %d follows only counted: want aggregation with count-only follows", p.Name, tl.Pushes, tl.Summaries, tl.CountOnly)
		}
	}
	if policies != 1 {
		t.Errorf("%d policies phases, want 1", policies)
	}
	if t.Failed() {
		t.Logf("stdout:\n%s", stdout.String())
	}
}

func TestMatchPushes(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1767225600, 0)
	k := func(from, to string) followKey { return followKey{from: from, to: to, t: "1"} }
	expected := map[followKey]time.Time{k("a", "b"): t0, k("a", "c"): t0, k("d", "e"): t0}
	maybe := map[followKey]time.Time{k("x", "y"): t0}
	pushes := []push{
		{k("a", "b"), t0.Add(10 * time.Millisecond)},
		{k("a", "b"), t0.Add(20 * time.Millisecond)}, // duplicate
		{k("a", "c"), t0.Add(30 * time.Millisecond)},
		{k("x", "y"), t0.Add(40 * time.Millisecond)}, // from a failed webhook: allowed
		{k("q", "r"), t0.Add(50 * time.Millisecond)}, // never sent
	}
	d := matchPushes(expected, maybe, pushes, time.Time{}, true)
	want := delivery{Expected: 3, Received: 5, Missing: 1, Duplicates: 1, Unexpected: 1}
	if d.Expected != want.Expected || d.Received != want.Received || d.Missing != want.Missing ||
		d.Duplicates != want.Duplicates || d.Unexpected != want.Unexpected {
		t.Errorf("matchPushes = %v, want %v", d, want)
	}
	if d.ok() {
		t.Error("ok() with missing, duplicate and unexpected pushes")
	}
	if d.Latency.N != 2 || d.Latency.MaxMs != 30 {
		t.Errorf("latency = %+v, want 2 samples, max 30 ms", d.Latency)
	}
}

func TestLatencies(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := latencies(d)
	want := latencyStats{N: 100, P50ms: 50, P90ms: 90, P99ms: 99, MaxMs: 100,
		Hist: map[string]int{"≤1": 1, "≤2": 1, "≤5": 3, "≤10": 5, "≤20": 10, "≤50": 30, "≤100": 50}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("latencies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(latencyStats{}, latencies(nil)); diff != "" {
		t.Errorf("latencies(nil) (-want +got):\n%s", diff)
	}
}

func TestSamplerDistinct(t *testing.T) {
	t.Parallel()
	for _, dist := range []string{"uniform", "zipf"} {
		sample := population{users: 30, dist: dist, zipfS: 1.5}.sampler(1)
		for range 100 {
			got := sample(20, nil)
			seen := map[int]bool{}
			for _, u := range got {
				if u < 0 || u >= 30 || seen[u] {
					t.Fatalf("%s: sample(20) = %v: not 20 distinct users of 30", dist, got)
				}
				seen[u] = true
			}
			if len(got) != 20 {
				t.Fatalf("%s: sample(20) has %d users", dist, len(got))
			}
		}
	}
}

func TestFlagErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-scenario", "nope"},
		{"-dist", "pareto"},
		{"-users", "5", "-followees", "10"},
		{"-redis", "redis://10.0.0.1:6379/0"},
		{"-growth-sizes", "a,b"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"loadtest"}, args...), os.Getenv, &out, &out)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

func TestWindows(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1767225600, 0)
	var samples []timedLatency
	for sec := range 3 {
		d := 2 * time.Millisecond
		if sec == 1 {
			d = 50 * time.Millisecond // the slow second
		}
		for i := range 100 {
			samples = append(samples, timedLatency{At: t0.Add(time.Duration(sec)*time.Second + time.Duration(i)*10*time.Millisecond), D: d})
		}
	}
	noise := []noiseSample{{At: t0.Add(1 * time.Second), Others: 0.1}, {At: t0.Add(2 * time.Second), Others: 1.5}, {At: t0.Add(3 * time.Second), Others: 0.3}}
	got := windows(samples, noise, 10*time.Millisecond)
	want := windowStats{Windows: 3, Over: 1, TargetMs: 10, MedianP99ms: 2, WorstP99ms: 50, OthersOverTarget: 1.5, OthersRest: 0.2}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("windows (-want +got):\n%s", diff)
	}
}
