package logwriter

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingWriter records each Write call.
type countingWriter struct {
	mu     sync.Mutex
	writes int
	b      bytes.Buffer
	wrote  chan struct{}
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	c.b.Write(p)
	if c.wrote != nil {
		select {
		case c.wrote <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (c *countingWriter) state() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.b.String()
}

// Many lines go out in one write, in order, and none is lost at Close.
func TestLogWriterBatchesLinesAndFlushesOnClose(t *testing.T) {
	out := &countingWriter{}
	lw := New(out, time.Hour) // no periodic flush during the test
	var want strings.Builder
	for i := range 1000 {
		line := strings.Repeat("x", i%50) + "\n"
		want.WriteString(line)
		if _, err := lw.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := out.state(); n != 0 {
		t.Fatalf("%d writes before the flush, want 0", n)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	n, got := out.state()
	if got != want.String() {
		t.Fatalf("output differs from the lines written (%d vs %d bytes)", len(got), want.Len())
	}
	if n != 1 {
		t.Fatalf("%d writes for 1000 lines, want 1", n)
	}
	// After Close a line goes out at once.
	if _, err := lw.Write([]byte("late\n")); err != nil {
		t.Fatal(err)
	}
	if _, got := out.state(); !strings.HasSuffix(got, "late\n") {
		t.Fatal("a line written after Close was held back")
	}
}

// Lines go out by themselves every interval, and at once when 64 KiB are
// pending.
func TestLogWriterFlushesPeriodicallyAndWhenFull(t *testing.T) {
	out := &countingWriter{wrote: make(chan struct{}, 1)}
	lw := New(out, 10*time.Millisecond)
	defer lw.Close()
	if _, err := lw.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	<-out.wrote // the ticker's flush
	if _, got := out.state(); got != "one\n" {
		t.Fatalf("after the periodic flush: %q", got)
	}

	full := &countingWriter{}
	big := New(full, time.Hour)
	defer big.Close()
	line := bytes.Repeat([]byte("y"), 1024)
	for range logBufferMax / len(line) {
		if _, err := big.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if n, got := full.state(); n != 1 || len(got) != logBufferMax {
		t.Fatalf("a full buffer: %d writes of %d bytes, want 1 of %d", n, len(got), logBufferMax)
	}
}
