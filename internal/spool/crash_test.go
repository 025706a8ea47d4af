package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	crashDirEnv  = "SPOOL_CRASH_HELPER_DIR"
	crashModeEnv = "SPOOL_CRASH_HELPER_MODE"
	crashRecords = 400
	crashWriters = 4
)

func crashOpts(dir string) Options { return Options{Dir: dir, SegmentBytes: 64 << 10} }

// crashPayload is record i of the crash test: its id and up to 24 KiB of
// filler, so that writes are big enough to be caught half done.
func crashPayload(i int) []byte {
	return fmt.Appendf(nil, "crash-%06d:%s", i, bytes.Repeat([]byte{byte('a' + i%26)}, i*7919%(24<<10)))
}

// crashID returns the id of a crash-test record and checks its bytes.
func crashID(r []byte) (int, error) {
	head, _, ok := bytes.Cut(r, []byte(":"))
	if !ok {
		return 0, fmt.Errorf("record %.20q has no id", r)
	}
	id, err := strconv.Atoi(strings.TrimPrefix(string(head), "crash-"))
	if err != nil {
		return 0, fmt.Errorf("record %.20q: %v", r, err)
	}
	if !bytes.Equal(r, crashPayload(id)) {
		return 0, fmt.Errorf("record %d has the wrong bytes", id)
	}
	return id, nil
}

// TestHelperProcess is the child of TestCrashKill, not a test of its own.
// It appends crashRecords records from crashWriters goroutines, printing
// "acked i" after each Append returns, and drains them (while appending, or
// after, depending on the mode), printing "drained i" from the callback,
// until it is killed or done.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child process of TestCrashKill")
	}
	if err := crashChild(dir, os.Getenv(crashModeEnv), os.Stdout); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
}

func crashChild(dir, mode string, w io.Writer) error {
	s, err := Open(crashOpts(dir))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, format+"\n", args...)
	}
	kick := make(chan struct{}, 1)
	appended := make(chan struct{})
	errc := make(chan error, crashWriters)
	var wg sync.WaitGroup
	for g := range crashWriters {
		wg.Go(func() {
			for i := g; i < crashRecords; i += crashWriters {
				if err := s.Append(crashPayload(i)); err != nil {
					errc <- err
					return
				}
				say("acked %d", i)
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		})
	}
	go func() { wg.Wait(); close(appended) }()
	if mode == "append-then-drain" {
		<-appended
	}
	for {
		n, err := s.Drain(context.Background(), func(_ context.Context, records [][]byte) error {
			for _, r := range records {
				id, err := crashID(r)
				if err != nil {
					return err
				}
				say("drained %d", id)
			}
			return nil
		}, 5)
		if err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		select {
		case err := <-errc:
			return err
		case <-kick:
		case <-appended:
			if s.Len() == 0 {
				say("done")
				return s.Close()
			}
		}
	}
}

// TestCrashKill runs TestHelperProcess in a child process, SIGKILLs it after
// a random number of output lines, reopens its spool and checks that every
// acknowledged record is either pending or was drained before the kill.
func TestCrashKill(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts child processes")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SPOOL_CRASH_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("SPOOL_CRASH_SEED=%d", seed)
	for round := range 8 {
		mode := []string{"concurrent", "append-then-drain"}[round%2]
		t.Run(fmt.Sprintf("%d %s", round, mode), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, uint64(round)))
			killAfter := 1 + rng.IntN(2*crashRecords) // acked + drained lines
			dir := t.TempDir()
			acked, drained, killed := runCrashChild(t, dir, mode, killAfter)

			s := openSpool(t, crashOpts(dir))
			rep := s.Recovery()
			if rep.CorruptBytes != 0 || rep.PositionReset {
				t.Errorf("a crash looked like disk damage: %+v", rep)
			}
			pendingLen := s.Len()
			pending := map[int]int{}
			for _, r := range drainRecords(t, s) {
				id, err := crashID(r)
				if err != nil {
					t.Errorf("pending record damaged: %v", err)
					continue
				}
				pending[id]++
			}
			if len(pending) != pendingLen {
				t.Errorf("Len() was %d after reopen, drained %d records", pendingLen, len(pending))
			}
			for id, n := range pending {
				if n > 1 {
					t.Errorf("record %d stored %d times", id, n)
				}
			}
			var lost []int
			for id := range acked {
				if !drained[id] && pending[id] == 0 {
					lost = append(lost, id)
				}
			}
			if len(lost) > 0 {
				t.Errorf("acknowledged records lost: %v", lost)
			}
			t.Logf("killed %v after %d lines: %d acked, %d drained, %d pending after reopen, %+v",
				killed, killAfter, len(acked), len(drained), len(pending), rep)

			if err := s.Append(crashPayload(7)); err != nil {
				t.Fatalf("Append after reopen: %v", err)
			}
			var after []string
			for _, r := range drainRecords(t, s) {
				after = append(after, string(r[:12]))
			}
			if diff := cmp.Diff([]string{"crash-000007"}, after); diff != "" {
				t.Errorf("records after reopen and append (-want +got):\n%s", diff)
			}
		})
	}
}

func drainRecords(t *testing.T, s *Spool) [][]byte {
	t.Helper()
	got, _ := drainAll(t, s, 50)
	return got
}

// runCrashChild runs the helper in dir and kills it with SIGKILL once it has
// printed killAfter acked/drained lines. It returns what the child reported
// before it died.
func runCrashChild(t *testing.T, dir, mode string, killAfter int) (acked, drained map[int]bool, killed bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashModeEnv+"="+mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked, drained = map[int]bool{}, map[int]bool{}
	lines := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		verb, arg, _ := strings.Cut(sc.Text(), " ")
		switch verb {
		case "acked", "drained":
			id, err := strconv.Atoi(arg)
			if err != nil {
				t.Errorf("child said %q", sc.Text())
				continue
			}
			if verb == "acked" {
				acked[id] = true
			} else {
				drained[id] = true
			}
			lines++
		case "error":
			t.Errorf("child failed: %s", arg)
		}
		if lines == killAfter && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		return acked, drained, true
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	return acked, drained, false
}
