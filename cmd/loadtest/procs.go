package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/followpush/followpush/internal/proc"
)

// buildPrograms builds receiver and worker into a new temporary directory,
// from the module that contains the current directory, and returns the
// directory (the caller removes it).
func buildPrograms(ctx context.Context, stderr io.Writer) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (run from the repository, or pass -bin)", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the followpush module: run from the repository, or pass -bin")
	}
	dir, err := os.MkdirTemp("", "followpush-loadtest-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/receiver", "./cmd/worker")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build receiver and worker: %w", err)
	}
	return dir, nil
}

// program is one running receiver or worker with its bookkeeping.
type program struct {
	*proc.Process
	kind string // "receiver" or "worker"
}

// stack starts and stops the product's programs and remembers every one,
// so that all of them are stopped on any exit path.
type stack struct {
	binDir string
	env    map[string]string
	echo   io.Writer

	mu       sync.Mutex
	running  []*program
	seq      int
	problems map[string]int // "program level msg" -> count, from stopped programs
	peakRSS  map[string]int64
}

func newStack(binDir string, env map[string]string, echo io.Writer) *stack {
	return &stack{binDir: binDir, env: env, echo: echo, problems: map[string]int{}, peakRSS: map[string]int64{}}
}

func (s *stack) start(kind string, extra map[string]string) (*program, error) {
	env := make(map[string]string, len(s.env)+len(extra))
	for k, v := range s.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	s.mu.Lock()
	s.seq++
	name := fmt.Sprintf("%s-%d", kind, s.seq)
	s.mu.Unlock()
	p, err := proc.Start(name, filepath.Join(s.binDir, kind), env, s.echo)
	if err != nil {
		return nil, err
	}
	pg := &program{Process: p, kind: kind}
	s.mu.Lock()
	s.running = append(s.running, pg)
	s.mu.Unlock()
	return pg, nil
}

// startReceiver starts the receiver and waits until it answers /readyz;
// it returns the receiver and its base URL.
func (s *stack) startReceiver(ctx context.Context) (*program, string, error) {
	p, err := s.start("receiver", nil)
	if err != nil {
		return nil, "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addr, err := p.Addr(wctx, "http")
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	for {
		req, _ := http.NewRequestWithContext(wctx, http.MethodGet, base+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, base, nil
			}
		}
		select {
		case <-wctx.Done():
			return nil, "", fmt.Errorf("receiver not ready: %w (last: %v)", wctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startWorkers starts n workers and waits until each logged "worker started".
func (s *stack) startWorkers(ctx context.Context, n int) ([]*program, error) {
	ws := make([]*program, 0, n)
	for range n {
		w, err := s.start("worker", nil)
		if err != nil {
			return ws, err
		}
		ws = append(ws, w)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, w := range ws {
		if _, err := w.WaitLine(wctx, proc.Msg("worker started")); err != nil {
			return ws, err
		}
	}
	return ws, nil
}

// stop stops p (SIGTERM, SIGKILL after 15 s), first recording its peak RSS
// and its warning and error log lines.
func (s *stack) stop(p *program) error {
	if hwm, ok := peakRSS(p.Pid()); ok {
		s.mu.Lock()
		s.peakRSS[p.kind] = max(s.peakRSS[p.kind], hwm)
		s.mu.Unlock()
	}
	err := p.Stop(15 * time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range p.Lines(func(m map[string]any) bool { return m["level"] == "WARN" || m["level"] == "ERROR" }) {
		s.problems[fmt.Sprintf("%s %v %v", p.kind, l["level"], l["msg"])]++
	}
	for i, q := range s.running {
		if q == p {
			s.running = append(s.running[:i], s.running[i+1:]...)
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	return nil
}

// stopAll stops every running program, workers first.
func (s *stack) stopAll() error {
	s.mu.Lock()
	ps := append([]*program(nil), s.running...)
	s.mu.Unlock()
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].kind == "worker" && ps[j].kind != "worker" })
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.stop(p); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("stopping programs: %v", errs)
	}
	return nil
}

// exited returns the first running program that exited on its own.
func (s *stack) exited() *program {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.running {
		select {
		case <-p.Exited():
			return p
		default:
		}
	}
	return nil
}

// logProblems returns the warning and error lines of stopped programs,
// counted, most frequent first.
func (s *stack) logProblems() []logProblem {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]logProblem, 0, len(s.problems))
	for k, n := range s.problems {
		out = append(out, logProblem{Line: k, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Line < out[j].Line
	})
	return out
}

type logProblem struct {
	Line  string `json:"line"`
	Count int    `json:"count"`
}

// peakRSS is VmHWM of /proc/pid/status in bytes.
func peakRSS(pid int) (int64, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// clockTicks is USER_HZ, the unit of /proc/pid/stat times: 100 on every
// Linux this runs on (reading sysconf(_SC_CLK_TCK) would need cgo).
const clockTicks = 100

// cpuTime is the user+system CPU time a process used so far, from
// /proc/pid/stat.
func cpuTime(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may contain spaces; fields after its
	// closing parenthesis are fixed.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clockTicks, true
}

// cpuMeter measures how many cores each process used over an interval.
type cpuMeter struct {
	start time.Time
	pids  map[string][]int
	t0    map[int]time.Duration
}

func newCPUMeter(pids map[string][]int) *cpuMeter {
	m := &cpuMeter{start: time.Now(), pids: pids, t0: map[int]time.Duration{}}
	for _, ps := range pids {
		for _, pid := range ps {
			if t, ok := cpuTime(pid); ok {
				m.t0[pid] = t
			}
		}
	}
	return m
}

// cores returns, per name, the CPU time used since the meter started
// divided by the wall time (1.0 = one core busy).
func (m *cpuMeter) cores() map[string]float64 {
	wall := time.Since(m.start)
	out := map[string]float64{}
	for name, ps := range m.pids {
		var used time.Duration
		for _, pid := range ps {
			if t, ok := cpuTime(pid); ok {
				used += t - m.t0[pid]
			}
		}
		out[name] = used.Seconds() / wall.Seconds()
	}
	return out
}
