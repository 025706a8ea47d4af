package spool

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// segPathN is the path of the i-th segment file (0-based, oldest first).
func segPathN(t *testing.T, dir string, i int) string {
	t.Helper()
	segs := segFiles(t, dir)
	if i >= len(segs) {
		t.Fatalf("no segment %d in %v", i, segs)
	}
	return filepath.Join(dir, segs[i])
}

func appendToFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// flipByte corrupts the byte at off of path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRepairsDamage writes nine records in segments of three, damages
// the files the way a crash or a bad disk would, and reopens.
func TestOpenRepairsDamage(t *testing.T) {
	t.Parallel()
	torn := appendFrame(nil, rec(99))
	tests := []struct {
		name    string
		drain   int // records drained before the damage
		damage  func(t *testing.T, dir string)
		want    Recovery
		wantIDs []int // records left after reopening
	}{
		{
			name:    "partial header",
			damage:  func(t *testing.T, dir string) { appendToFile(t, segPathN(t, dir, 2), torn[:3]) },
			want:    Recovery{TornBytes: 3},
			wantIDs: ids(0, 9),
		},
		{
			name:    "partial payload",
			damage:  func(t *testing.T, dir string) { appendToFile(t, segPathN(t, dir, 2), torn[:len(torn)-2]) },
			want:    Recovery{TornBytes: recSize - 2},
			wantIDs: ids(0, 9),
		},
		{
			name: "garbage",
			damage: func(t *testing.T, dir string) {
				appendToFile(t, segPathN(t, dir, 2), []byte("\xde\xad\xbe\xef not a record at all"))
			},
			want:    Recovery{TornBytes: 24},
			wantIDs: ids(0, 9),
		},
		{
			// What a crash can leave after the file size was updated but
			// not the data blocks.
			name:    "zeros",
			damage:  func(t *testing.T, dir string) { appendToFile(t, segPathN(t, dir, 2), make([]byte, 64)) },
			want:    Recovery{TornBytes: 64},
			wantIDs: ids(0, 9),
		},
		{
			name: "length beyond the record limit",
			damage: func(t *testing.T, dir string) {
				appendToFile(t, segPathN(t, dir, 2), []byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 1})
			},
			want:    Recovery{TornBytes: 9},
			wantIDs: ids(0, 9),
		},
		{
			name:    "bad checksum in the last record",
			damage:  func(t *testing.T, dir string) { flipByte(t, segPathN(t, dir, 2), 2*recSize+headerSize) },
			want:    Recovery{TornBytes: recSize},
			wantIDs: ids(0, 8),
		},
		{
			// Indistinguishable from a torn write: the rest of the newest
			// segment goes.
			name:    "bad checksum mid newest segment",
			damage:  func(t *testing.T, dir string) { flipByte(t, segPathN(t, dir, 2), headerSize+3) },
			want:    Recovery{TornBytes: 3 * recSize},
			wantIDs: ids(0, 6),
		},
		{
			name:    "bad checksum in an older segment",
			damage:  func(t *testing.T, dir string) { flipByte(t, segPathN(t, dir, 0), recSize+headerSize+3) },
			want:    Recovery{CorruptBytes: 2 * recSize},
			wantIDs: append([]int{0}, ids(3, 9)...),
		},
		{
			name:    "bad length in an older segment",
			damage:  func(t *testing.T, dir string) { flipByte(t, segPathN(t, dir, 1), 0) },
			want:    Recovery{CorruptBytes: 3 * recSize},
			wantIDs: append(ids(0, 3), ids(6, 9)...),
		},
		{
			name:    "torn tail after a partial drain",
			drain:   4,
			damage:  func(t *testing.T, dir string) { appendToFile(t, segPathN(t, dir, 1), torn[:10]) },
			want:    Recovery{TornBytes: 10},
			wantIDs: ids(4, 9),
		},
		{
			name:    "damage before the read position is not looked at",
			drain:   5,
			damage:  func(t *testing.T, dir string) { flipByte(t, segPathN(t, dir, 0), headerSize+3) },
			wantIDs: ids(5, 9),
		},
		{
			name:  "damaged position file re-offers the oldest segment",
			drain: 4,
			damage: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, posName), []byte("garbage"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want:    Recovery{PositionReset: true},
			wantIDs: ids(3, 9),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Dir: t.TempDir(), SegmentBytes: 3 * recSize}
			s := openSpool(t, opts)
			appendAll(t, s, recs(0, 9), 1)
			if tt.drain > 0 {
				if _, err := s.Drain(t.Context(), func(context.Context, [][]byte) error { return nil }, tt.drain); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, opts.Dir)

			s = openSpool(t, opts)
			if diff := cmp.Diff(tt.want, s.Recovery()); diff != "" {
				t.Errorf("Recovery (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(counts{len(tt.wantIDs), int64(len(tt.wantIDs)) * recSize}, countsOf(s)); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			if err := s.Append(rec(100)); err != nil {
				t.Fatalf("Append after repair: %v", err)
			}
			got, _ := drainAll(t, s, 4)
			want := strs(recsOf(append(tt.wantIDs, 100)))
			if diff := cmp.Diff(want, strs(got)); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}

			// The repair is durable: a second reopen finds nothing to do.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openSpool(t, opts)
			if diff := cmp.Diff(Recovery{}, s.Recovery()); diff != "" {
				t.Errorf("second reopen reported repairs (-want +got):\n%s", diff)
			}
		})
	}
}

func ids(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func recsOf(ids []int) [][]byte {
	var out [][]byte
	for _, i := range ids {
		out = append(out, rec(i))
	}
	return out
}

// TestDrainCorruptAfterOpen damages a record under an open spool: Drain
// reports it and advances nothing.
func TestDrainCorruptAfterOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, Options{Dir: dir})
	appendAll(t, s, recs(0, 3), 1)
	flipByte(t, segPathN(t, dir, 0), recSize+headerSize)
	var offered [][]byte
	_, err := s.Drain(t.Context(), func(_ context.Context, rs [][]byte) error {
		offered = append(offered, rs...)
		return nil
	}, 10)
	if !errors.Is(err, errCorrupt) {
		t.Errorf("Drain over a damaged record: %v, want errCorrupt", err)
	}
	if len(offered) != 0 {
		t.Errorf("Drain offered %q despite the damage", offered)
	}
	if diff := cmp.Diff(counts{3, 3 * recSize}, countsOf(s)); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

func TestDrainFailureAdvancesNothing(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("redis down")
	tests := []struct {
		name string
		ctx  func() context.Context
		fn   func(context.Context, [][]byte) error
		want error
	}{
		{
			name: "fn fails",
			ctx:  context.Background,
			fn:   func(context.Context, [][]byte) error { return errBoom },
			want: errBoom,
		},
		{
			name: "fn sees its context cancelled",
			ctx: func() context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx
			},
			fn:   func(ctx context.Context, _ [][]byte) error { return ctx.Err() },
			want: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Dir: t.TempDir(), SegmentBytes: 2 * recSize}
			s := openSpool(t, opts)
			appendAll(t, s, recs(0, 5), 1)
			for range 2 {
				n, err := s.Drain(tt.ctx(), tt.fn, 3)
				if !errors.Is(err, tt.want) || n != 0 {
					t.Fatalf("Drain = %d, %v; want 0, %v", n, err, tt.want)
				}
			}
			if diff := cmp.Diff(counts{5, 5 * recSize}, countsOf(s)); diff != "" {
				t.Errorf("counts after failed drains (-want +got):\n%s", diff)
			}
			if got := len(segFiles(t, opts.Dir)); got != 3 {
				t.Errorf("%d segment files after failed drains, want 3", got)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openSpool(t, opts)
			got, _ := drainAll(t, s, 3)
			if diff := cmp.Diff(strs(recs(0, 5)), strs(got)); diff != "" {
				t.Errorf("records after failed drains and reopen (-want +got):\n%s", diff)
			}
		})
	}
}

// copyDir copies the files of src into a new directory: what a crash at
// that instant would leave on disk (the writes it copies were fsync'd).
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
	}
	return dst
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

// TestCrashPoints snapshots the directory at the instants a crash matters
// and opens the snapshot, as the restarted process would.
func TestCrashPoints(t *testing.T) {
	t.Parallel()
	nop := func(context.Context, [][]byte) error { return nil }

	t.Run("after Append returns", func(t *testing.T) {
		t.Parallel()
		s := openSpool(t, Options{Dir: t.TempDir(), SegmentBytes: 2 * recSize})
		appendAll(t, s, recs(0, 5), 1)
		snap := openSpool(t, Options{Dir: copyDir(t, s.dir), SegmentBytes: 2 * recSize})
		got, _ := drainAll(t, snap, 10)
		if diff := cmp.Diff(strs(recs(0, 5)), strs(got)); diff != "" {
			t.Errorf("records (-want +got):\n%s", diff)
		}
	})

	t.Run("after fn succeeded, before the position is saved", func(t *testing.T) {
		t.Parallel()
		s := openSpool(t, Options{Dir: t.TempDir(), SegmentBytes: 2 * recSize})
		appendAll(t, s, recs(0, 5), 1)
		var snapDir string
		if _, err := s.Drain(t.Context(), func(context.Context, [][]byte) error {
			snapDir = copyDir(t, s.dir)
			return nil
		}, 3); err != nil {
			t.Fatal(err)
		}
		snap := openSpool(t, Options{Dir: snapDir, SegmentBytes: 2 * recSize})
		got, _ := drainAll(t, snap, 10)
		if diff := cmp.Diff(strs(recs(0, 5)), strs(got)); diff != "" {
			t.Errorf("the crashed drain's records were not offered again (-want +got):\n%s", diff)
		}
		got, _ = drainAll(t, s, 10)
		if diff := cmp.Diff(strs(recs(3, 5)), strs(got)); diff != "" {
			t.Errorf("records left in the live spool (-want +got):\n%s", diff)
		}
	})

	t.Run("after the position is saved, before segments are deleted", func(t *testing.T) {
		t.Parallel()
		opts := Options{Dir: t.TempDir(), SegmentBytes: 3 * recSize}
		s := openSpool(t, opts)
		appendAll(t, s, recs(0, 9), 1)
		before := copyDir(t, opts.Dir)
		if _, err := s.Drain(t.Context(), nop, 6); err != nil {
			t.Fatal(err)
		}
		// The old segments with the new position.
		copyFile(t, filepath.Join(opts.Dir, posName), filepath.Join(before, posName))
		snap := openSpool(t, Options{Dir: before, SegmentBytes: 3 * recSize})
		if diff := cmp.Diff(segFiles(t, opts.Dir), segFiles(t, before)); diff != "" {
			t.Errorf("Open left drained segments (-live +reopened):\n%s", diff)
		}
		got, _ := drainAll(t, snap, 10)
		if diff := cmp.Diff(strs(recs(6, 9)), strs(got)); diff != "" {
			t.Errorf("records (-want +got):\n%s", diff)
		}
	})
}
