package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// rec is the i-th test record; every rec(i) with i < 10000 frames to recSize
// bytes.
func rec(i int) []byte { return fmt.Appendf(nil, "event-%04d", i) }

const recSize = headerSize + 10

func recs(from, to int) [][]byte {
	var out [][]byte
	for i := from; i < to; i++ {
		out = append(out, rec(i))
	}
	return out
}

func strs(records [][]byte) []string {
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = string(r)
	}
	return out
}

func openSpool(tb testing.TB, opts Options) *Spool {
	tb.Helper()
	s, err := Open(opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func appendAll(t *testing.T, s *Spool, records [][]byte, per int) {
	t.Helper()
	for len(records) > 0 {
		n := min(per, len(records))
		if err := s.Append(records[:n]...); err != nil {
			t.Fatalf("Append: %v", err)
		}
		records = records[n:]
	}
}

// drainAll drains s completely in batches of batch and returns the records
// and the size of each batch.
func drainAll(t *testing.T, s *Spool, batch int) (records [][]byte, sizes []int) {
	t.Helper()
	for {
		n, err := s.Drain(t.Context(), func(_ context.Context, rs [][]byte) error {
			records = append(records, rs...)
			return nil
		}, batch)
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
		if n == 0 {
			return records, sizes
		}
		sizes = append(sizes, n)
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), segSuffix) {
			out = append(out, e.Name())
		}
	}
	return out
}

type counts struct {
	Len   int
	Bytes int64
}

func countsOf(s *Spool) counts { return counts{s.Len(), s.Bytes()} }

func TestAppendDrainOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		segmentBytes int64
		n, per       int // records, records per Append
		batch        int
		wantSizes    []int
		wantSegs     int // segment files before draining
	}{
		{name: "one segment", n: 10, per: 1, batch: 3, wantSizes: []int{3, 3, 3, 1}, wantSegs: 1},
		{name: "batch larger than pending", n: 10, per: 1, batch: 100, wantSizes: []int{10}, wantSegs: 1},
		{name: "batches across segments", segmentBytes: 3 * recSize, n: 10, per: 1, batch: 4, wantSizes: []int{4, 4, 2}, wantSegs: 4},
		{name: "batch of one across segments", segmentBytes: 2 * recSize, n: 5, per: 1, batch: 1, wantSizes: []int{1, 1, 1, 1, 1}, wantSegs: 3},
		{name: "multi-record appends fill segments", segmentBytes: 4 * recSize, n: 12, per: 3, batch: 5, wantSizes: []int{5, 5, 2}, wantSegs: 4},
		{name: "one append is never split", segmentBytes: 3 * recSize, n: 10, per: 10, batch: 4, wantSizes: []int{4, 4, 2}, wantSegs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openSpool(t, Options{Dir: dir, SegmentBytes: tt.segmentBytes})
			appendAll(t, s, recs(0, tt.n), tt.per)
			if diff := cmp.Diff(counts{tt.n, int64(tt.n) * recSize}, countsOf(s)); diff != "" {
				t.Errorf("after append, counts (-want +got):\n%s", diff)
			}
			if got := len(segFiles(t, dir)); got != tt.wantSegs {
				t.Errorf("after append, %d segment files, want %d", got, tt.wantSegs)
			}

			var got [][]byte
			var sizes []int
			left := tt.n
			for {
				n, err := s.Drain(t.Context(), func(_ context.Context, rs [][]byte) error {
					got = append(got, rs...)
					return nil
				}, tt.batch)
				if err != nil {
					t.Fatalf("Drain: %v", err)
				}
				if n == 0 {
					break
				}
				sizes = append(sizes, n)
				left -= n
				if diff := cmp.Diff(counts{left, int64(left) * recSize}, countsOf(s)); diff != "" {
					t.Errorf("after drain %d, counts (-want +got):\n%s", len(sizes), diff)
				}
			}
			if diff := cmp.Diff(strs(recs(0, tt.n)), strs(got)); diff != "" {
				t.Errorf("drained records (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSizes, sizes); diff != "" {
				t.Errorf("batch sizes (-want +got):\n%s", diff)
			}
			// Only the newest segment survives a full drain, and it is
			// replaced by the next Append.
			before := segFiles(t, dir)
			if len(before) != 1 {
				t.Errorf("after full drain, segment files %v, want one", before)
			}
			if err := s.Append(rec(99)); err != nil {
				t.Fatal(err)
			}
			after := segFiles(t, dir)
			if len(after) != 1 || slices.Equal(before, after) {
				t.Errorf("after appending to a drained spool, segment files %v (before %v), want one new one", after, before)
			}
			more, _ := drainAll(t, s, tt.batch)
			if diff := cmp.Diff([]string{string(rec(99))}, strs(more)); diff != "" {
				t.Errorf("drain after refill (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFull(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		segmentBytes int64
		drain        int // records drained after filling up
		wantRoom     int // records that fit afterwards
	}{
		// A drained segment that is not the newest is deleted at once.
		{name: "partial drain frees whole segments", segmentBytes: 3 * recSize, drain: 4, wantRoom: 3},
		// The newest segment is freed once it is fully drained...
		{name: "full drain frees the newest segment", drain: 5, wantRoom: 5},
		// ...and not before: its drained bytes still take disk space.
		{name: "partial drain of the newest segment frees nothing", drain: 3, wantRoom: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openSpool(t, Options{Dir: t.TempDir(), MaxBytes: 5 * recSize, SegmentBytes: tt.segmentBytes})
			appendAll(t, s, recs(0, 5), 1)
			if err := s.Append(rec(5)); !errors.Is(err, ErrFull) {
				t.Fatalf("Append beyond MaxBytes: %v, want ErrFull", err)
			}
			if diff := cmp.Diff(counts{5, 5 * recSize}, countsOf(s)); diff != "" {
				t.Errorf("a refused Append changed the counts (-want +got):\n%s", diff)
			}
			if _, err := s.Drain(t.Context(), func(context.Context, [][]byte) error { return nil }, tt.drain); err != nil {
				t.Fatal(err)
			}
			room := 0
			for ; room < 10; room++ {
				err := s.Append(rec(100 + room))
				if errors.Is(err, ErrFull) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if room != tt.wantRoom {
				t.Errorf("after draining %d, %d records fit, want %d", tt.drain, room, tt.wantRoom)
			}
			got, _ := drainAll(t, s, 100)
			want := append(recs(tt.drain, 5), recs(100, 100+room)...)
			if diff := cmp.Diff(strs(want), strs(got)); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendErrors(t *testing.T) {
	t.Parallel()
	nop := func(context.Context, [][]byte) error { return nil }
	tests := []struct {
		name string
		do   func(s *Spool) error
		want error
	}{
		{name: "record over 1 MiB", do: func(s *Spool) error { return s.Append(rec(1), make([]byte, MaxRecordBytes+1)) }, want: ErrTooLarge},
		{name: "batch over MaxBytes", do: func(s *Spool) error { return s.Append(recs(0, 11)...) }, want: ErrFull},
		{name: "append after Close", do: func(s *Spool) error { s.Close(); return s.Append(rec(1)) }, want: fs.ErrClosed},
		{name: "drain after Close", do: func(s *Spool) error { s.Close(); _, err := s.Drain(context.Background(), nop, 1); return err }, want: fs.ErrClosed},
		{name: "drain with done context", do: func(s *Spool) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := s.Drain(ctx, nop, 1)
			return err
		}, want: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openSpool(t, Options{Dir: t.TempDir(), MaxBytes: 10 * recSize})
			if err := s.Append(rec(0)); err != nil {
				t.Fatal(err)
			}
			if err := tt.do(s); !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
			if diff := cmp.Diff(counts{1, recSize}, countsOf(s)); diff != "" {
				t.Errorf("a failed call changed the counts (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("exactly 1 MiB and empty records are fine", func(t *testing.T) {
		t.Parallel()
		s := openSpool(t, Options{Dir: t.TempDir()})
		big := bytes.Repeat([]byte{'x'}, MaxRecordBytes)
		if err := s.Append(big, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(); err != nil {
			t.Fatalf("empty Append: %v", err)
		}
		got, _ := drainAll(t, s, 10)
		if len(got) != 2 || !bytes.Equal(got[0], big) || len(got[1]) != 0 {
			t.Errorf("drained %d records, want the 1 MiB one and the empty one", len(got))
		}
	})
	t.Run("drain batch below one", func(t *testing.T) {
		t.Parallel()
		s := openSpool(t, Options{Dir: t.TempDir()})
		if _, err := s.Drain(t.Context(), nop, 0); err == nil {
			t.Error("Drain(batch 0) succeeded")
		}
	})
}

func TestOpenOptions(t *testing.T) {
	t.Parallel()
	for _, opts := range []Options{
		{},
		{Dir: t.TempDir(), MaxBytes: -1},
		{Dir: t.TempDir(), SegmentBytes: -1},
	} {
		if s, err := Open(opts); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", opts)
		}
	}

	dir := filepath.Join(t.TempDir(), "a", "spool")
	s := openSpool(t, Options{Dir: dir})
	if s.maxBytes != DefaultMaxBytes || s.segBytes != DefaultSegmentBytes {
		t.Errorf("defaults: MaxBytes %d, SegmentBytes %d", s.maxBytes, s.segBytes)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("created dir with mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(Options{Dir: dir}); !errors.Is(err, syscall.EWOULDBLOCK) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("second Open: %v, want EWOULDBLOCK", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s = openSpool(t, Options{Dir: dir})
	if err := s.Append(rec(0)); err != nil {
		t.Errorf("Append after reopening a released dir: %v", err)
	}
}

func TestReopen(t *testing.T) {
	t.Parallel()
	for _, drained := range []int{0, 2, 3, 4, 9, 10} {
		t.Run(fmt.Sprintf("drained %d", drained), func(t *testing.T) {
			t.Parallel()
			opts := Options{Dir: t.TempDir(), SegmentBytes: 3 * recSize}
			s := openSpool(t, opts)
			appendAll(t, s, recs(0, 10), 1)
			if drained > 0 {
				if _, err := s.Drain(t.Context(), func(context.Context, [][]byte) error { return nil }, drained); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s = openSpool(t, opts)
			if diff := cmp.Diff(Recovery{}, s.Recovery()); diff != "" {
				t.Errorf("clean reopen reported repairs (-want +got):\n%s", diff)
			}
			left := 10 - drained
			if diff := cmp.Diff(counts{left, int64(left) * recSize}, countsOf(s)); diff != "" {
				t.Errorf("counts after reopen (-want +got):\n%s", diff)
			}
			if err := s.Append(rec(10)); err != nil {
				t.Fatal(err)
			}
			got, _ := drainAll(t, s, 4)
			if diff := cmp.Diff(strs(recs(drained, 11)), strs(got)); diff != "" {
				t.Errorf("records after reopen (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConcurrentAppend(t *testing.T) {
	t.Parallel()
	const writers, perWriter = 16, 60
	for _, concurrentDrain := range []bool{false, true} {
		t.Run(fmt.Sprintf("drain while appending %v", concurrentDrain), func(t *testing.T) {
			t.Parallel()
			s := openSpool(t, Options{Dir: t.TempDir(), SegmentBytes: 1 << 10})
			kick := make(chan struct{}, 1)
			appended := make(chan struct{})
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := 0; i < perWriter; {
						// Every third Append carries two records.
						n := 1 + min(i%3/2, perWriter-i-1)
						var batch [][]byte
						for j := range n {
							batch = append(batch, fmt.Appendf(nil, "w%02d-%03d", w, i+j))
						}
						if err := s.Append(batch...); err != nil {
							t.Errorf("Append: %v", err)
							return
						}
						i += n
						select {
						case kick <- struct{}{}:
						default:
						}
					}
				})
			}
			go func() { wg.Wait(); close(appended) }()
			if !concurrentDrain {
				<-appended
			}

			var got []string
			for {
				n, err := s.Drain(t.Context(), func(_ context.Context, rs [][]byte) error {
					got = append(got, strs(rs)...)
					return nil
				}, 7)
				if err != nil {
					t.Fatalf("Drain: %v", err)
				}
				if n > 0 {
					continue
				}
				select {
				case <-kick:
					continue
				case <-appended:
				}
				if s.Len() == 0 {
					break
				}
			}

			// Exactly once overall, in order per writer.
			var want []string
			for w := range writers {
				var mine []string
				for _, r := range got {
					if strings.HasPrefix(r, fmt.Sprintf("w%02d-", w)) {
						mine = append(mine, r)
					}
				}
				var wantMine []string
				for i := range perWriter {
					wantMine = append(wantMine, fmt.Sprintf("w%02d-%03d", w, i))
				}
				if diff := cmp.Diff(wantMine, mine); diff != "" {
					t.Errorf("writer %d's records as drained (-want +got):\n%s", w, diff)
				}
				want = append(want, wantMine...)
			}
			if len(got) != len(want) {
				t.Errorf("drained %d records, want %d", len(got), len(want))
			}
			if diff := cmp.Diff(counts{}, countsOf(s)); diff != "" {
				t.Errorf("counts after full drain (-want +got):\n%s", diff)
			}
			t.Logf("%d records committed with %d segment fsyncs", len(got), s.syncs.Load())
		})
	}
}

// FuzzOpen feeds arbitrary bytes as the only segment: Open must keep exactly
// the longest prefix of whole, valid records and cut the rest.
func FuzzOpen(f *testing.F) {
	valid := appendFrame(appendFrame(nil, []byte(`{"from":"a","to":"b"}`)), nil)
	f.Add(valid)
	f.Add(append(slices.Clone(valid), 1, 2, 3))
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{})
	f.Add(make([]byte, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x%s", 1, segSuffix)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		torn := s.Recovery().TornBytes
		got, _ := drainAll(t, s, 1000)
		var reframed []byte
		for _, r := range got {
			reframed = appendFrame(reframed, r)
		}
		if !bytes.Equal(reframed, data[:int64(len(data))-torn]) {
			t.Errorf("kept records do not re-encode to the kept prefix (%d of %d bytes kept)", len(reframed), len(data))
		}
		if err := s.Append([]byte("after")); err != nil {
			t.Errorf("Append after repair: %v", err)
		}
	})
}

// BenchmarkAppend measures one-record Appends, from one goroutine and from
// many: with group commit the parallel case shares fsyncs (records/fsync).
func BenchmarkAppend(b *testing.B) {
	record := bytes.Repeat([]byte("x"), 256)
	for _, bc := range []struct {
		name        string
		parallelism int // goroutines per GOMAXPROCS; 0 is serial
	}{
		{name: "serial"},
		{name: "parallel-x4", parallelism: 4},
		{name: "parallel-x32", parallelism: 32},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openSpool(b, Options{Dir: b.TempDir(), MaxBytes: 1 << 40, SegmentBytes: 64 << 20})
			if bc.parallelism == 0 {
				for b.Loop() {
					if err := s.Append(record); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(bc.parallelism)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.Append(record); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(s.Len())/float64(s.syncs.Load()), "records/fsync")
		})
	}
}
