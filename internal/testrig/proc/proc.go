// Package proc runs followpush programs as child processes for end-to-end
// tests and the load harness: it starts a binary with a given environment,
// keeps its JSON log lines, and lets the caller wait for a line, read the
// address a server bound, signal and stop it.
package proc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is one running program.
type Process struct {
	// Name names the process in the test's messages.
	Name string
	cmd  *exec.Cmd

	mu      sync.Mutex
	lines   []map[string]any
	raw     []string
	changed chan struct{} // closed and replaced on every new line
	exited  chan struct{}
	waitErr error
	echo    io.Writer
	killed  bool
}

// Start runs bin with env (on top of nothing but PATH and HOME) and args.
// echo, when not nil, receives every output line prefixed with name (for
// test logs).
func Start(name, bin string, env map[string]string, echo io.Writer, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Process{Name: name, cmd: cmd, changed: make(chan struct{}), exited: make(chan struct{}), echo: echo}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go p.read(pr)
	go func() {
		err := cmd.Wait()
		pw.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.exited)
	}()
	return p, nil
}

// StartTest starts a program as [Start] does, for the test t: a failure
// to start fails t at once. When t ends, the program is stopped
// ([Process.Stop], 10 s; a failure fails t) and, if t failed and the
// output was not echoed, its output is logged.
func StartTest(t testing.TB, name, bin string, env map[string]string, echo io.Writer, args ...string) *Process {
	t.Helper()
	p, err := Start(name, bin, env, echo, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if t.Failed() && echo == nil {
			t.Logf("%s output:\n%s", name, p.Output())
		}
	})
	return p
}

func (p *Process) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			m = nil
		}
		p.mu.Lock()
		p.raw = append(p.raw, line)
		if m != nil {
			p.lines = append(p.lines, m)
		}
		close(p.changed)
		p.changed = make(chan struct{})
		echo := p.echo
		p.mu.Unlock()
		if echo != nil {
			fmt.Fprintf(echo, "[%s] %s\n", p.Name, line)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// ErrExited is returned by waits when the process exited first.
var ErrExited = errors.New("process exited")

// WaitLine waits until a JSON log line satisfies match, and returns it.
func (p *Process) WaitLine(ctx context.Context, match func(map[string]any) bool) (map[string]any, error) {
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if match(p.lines[seen]) {
				l := p.lines[seen]
				p.mu.Unlock()
				return l, nil
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.exited:
			// Drain what was printed before exiting, then give up.
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if seen >= n {
				return nil, fmt.Errorf("%s: %w (%v) before the awaited log line; output:\n%s", p.Name, ErrExited, p.ExitErr(), p.Output())
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w while waiting for a log line; output:\n%s", p.Name, ctx.Err(), p.Output())
		}
	}
}

// Msg matches a log line by its msg and, pairwise, further string fields.
func Msg(msg string, kv ...string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		if m["msg"] != msg {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(m[kv[i]]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// Addr waits for the "listening" line of the named server and returns the
// address it bound.
func (p *Process) Addr(ctx context.Context, server string) (string, error) {
	l, err := p.WaitLine(ctx, Msg("listening", "server", server))
	if err != nil {
		return "", err
	}
	return fmt.Sprint(l["addr"]), nil
}

// Lines returns the JSON log lines matching match.
func (p *Process) Lines(match func(map[string]any) bool) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, l := range p.lines {
		if match(l) {
			out = append(out, l)
		}
	}
	return out
}

// Output returns everything the process printed.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.raw, "\n")
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the exit. A later Stop returns nil.
func (p *Process) Kill() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop sends SIGTERM and waits up to timeout for the exit, then kills.
// It returns the exit error (nil for exit code 0).
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.ExitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s after SIGTERM", p.Name, timeout)
	}
	return p.ExitErr()
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr is the process's exit error once it exited (nil before, for exit
// code 0, and after Kill).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed {
		return nil
	}
	return p.waitErr
}

// ExitCode returns the exit code once the process exited, -1 before.
func (p *Process) ExitCode() int {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}
