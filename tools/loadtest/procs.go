package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/internal/testrig/proc"
)

// buildPrograms builds receiver and worker of the followpush repository
// into a new temporary directory and returns the directory (the caller
// removes it).
func buildPrograms(ctx context.Context, stderr io.Writer) (string, error) {
	// The harness is a module of its own whose go.mod points the product's
	// module at the repository (a replace directive): build from there.
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/followpush/followpush").Output()
	if err != nil {
		return "", fmt.Errorf("find the followpush module: %w (run from tools/loadtest, or pass -bin)", err)
	}
	root := strings.TrimSpace(string(out))
	if root == "" {
		return "", fmt.Errorf("the followpush module has no directory here: run from tools/loadtest, or pass -bin")
	}
	dir, err := os.MkdirTemp("", "followpush-loadtest-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/receiver", "./cmd/worker")
	cmd.Dir = root
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

// startReceiver starts the receiver on a free loopback port and waits until
// it answers /readyz; it returns the receiver and its base URL. It works at
// any LOG_LEVEL (it does not wait for info lines).
func (s *stack) startReceiver(ctx context.Context) (*program, string, error) {
	var lastErr error
	for range 3 { // the free port may be taken before the receiver binds it
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := s.start("receiver", map[string]string{"LISTEN_ADDR": addr})
		if err != nil {
			return nil, "", err
		}
		base := "http://" + addr
		if lastErr = s.waitReady(ctx, p, base); lastErr == nil {
			return p, base, nil
		}
		_ = s.stop(p)
	}
	return nil, "", lastErr
}

// waitReady polls base/readyz until it answers 200, p exits, or 30 s pass.
func (s *stack) waitReady(ctx context.Context, p *program, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		resp, err := readyClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		last = err
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited (%v):\n%s", p.Name, p.ExitErr(), tail(p.Output(), 20))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)", p.Name, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readyClient polls readiness on loopback (no proxy from the environment).
var readyClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}

// startWorkers starts n workers and waits until each one's asynq server
// has registered itself in Redis (asynq's heartbeat carries the pid). It
// works at any LOG_LEVEL.
func (s *stack) startWorkers(ctx context.Context, n int, insp *asynq.Inspector) ([]*program, error) {
	ws := make([]*program, 0, n)
	for range n {
		port, err := freePort()
		if err != nil {
			return ws, err
		}
		w, err := s.start("worker", map[string]string{"METRICS_ADDR": net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
		if err != nil {
			return ws, err
		}
		ws = append(ws, w)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		servers, err := insp.Servers()
		if err != nil {
			return ws, fmt.Errorf("list asynq servers: %w", err)
		}
		up := map[int]bool{}
		for _, sv := range servers {
			up[sv.PID] = true
		}
		missing := 0
		for _, w := range ws {
			select {
			case <-w.Exited():
				return ws, fmt.Errorf("%s exited (%v):\n%s", w.Name, w.ExitErr(), tail(w.Output(), 20))
			default:
			}
			if !up[w.Pid()] {
				missing++
			}
		}
		if missing == 0 {
			return ws, nil
		}
		if time.Now().After(deadline) {
			return ws, fmt.Errorf("%d of %d workers did not start within 30s", missing, n)
		}
		select {
		case <-ctx.Done():
			return ws, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
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

// machineBusy is the CPU time all processors spent outside idle and iowait
// since boot, from the first line of /proc/stat.
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are already in user
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, true
}

// cpuMeter measures how many cores each process used over an interval, and
// how many everything else on the machine used ("others": on a shared
// machine, the noise in the figures). With a Redis it also counts the
// commands Redis ran.
type cpuMeter struct {
	start time.Time
	pids  map[string][]int
	t0    map[int]time.Duration
	busy0 time.Duration
	redis *redisTarget
	cmds0 map[string]int64
}

// redisCalls returns the Redis commands run since the meter started,
// divided by per (the tasks of the phase), largest first, as "name n.n"
// pairs; "" without a Redis.
func (m *cpuMeter) redisCalls(ctx context.Context, per int) (map[string]float64, string) {
	if m.redis == nil || m.cmds0 == nil || per <= 0 {
		return nil, ""
	}
	now, err := m.redis.commandCalls(ctx)
	if err != nil {
		return nil, ""
	}
	out := map[string]float64{}
	total := 0.0
	for k, v := range now {
		if d := float64(v-m.cmds0[k]) / float64(per); d >= 0.05 && k != "info" {
			out[k] = d
			total += d
		}
	}
	names := make([]string, 0, len(out))
	for k := range out {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return out[names[i]] > out[names[j]] })
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, out[k]))
	}
	return out, fmt.Sprintf("%.1f in all: %s", total, strings.Join(parts, ", "))
}

func newCPUMeter(pids map[string][]int) *cpuMeter {
	m := &cpuMeter{start: time.Now(), pids: pids, t0: map[int]time.Duration{}}
	m.busy0, _ = machineBusy()
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
	if busy, ok := machineBusy(); ok && m.busy0 > 0 {
		ours := 0.0
		for _, v := range out {
			ours += v
		}
		out["others"] = max(0, (busy-m.busy0).Seconds()/wall.Seconds()-ours)
	}
	return out
}
