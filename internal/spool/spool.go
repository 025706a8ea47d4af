// Package spool is a durable, append-only, size-bounded queue of opaque
// records in a local directory. The receiver writes a webhook event to it
// when Redis cannot take it, answers the webhook once Append has returned,
// and a background drainer moves the records into Redis with Drain once
// Redis is back.
//
// # Guarantees
//
//   - A record is durable once Append returns nil: its bytes were written and
//     fsync'd, and every segment file it lives in was created and its
//     directory fsync'd before that. It survives a crash of the process (and
//     of the machine, as far as fsync does).
//   - Drain is at-least-once: the read position moves (durably) only after
//     the callback returned nil. A crash before that re-offers the same
//     records after Open. Records are offered in the order their Appends
//     committed; the records of one Append stay together and in order.
//   - A crash during Append loses at most the records of Appends that had not
//     returned: Open cuts the torn tail off the newest segment.
//
// # On-disk format
//
// The directory holds:
//
//	LOCK                  flock'd for as long as a Spool has the directory open
//	0000000000000001.seg  segments, numbered in hex, oldest first; the newest is
//	0000000000000002.seg  the one appended to
//	POS                   the committed read position (absent until the first Drain)
//
// A segment is a sequence of records, each framed as
//
//	uint32 length (LE) | uint32 CRC-32C (LE) of the 4 length bytes and payload | payload
//
// with no file header. POS is 20 bytes: uint64 segment number, uint64 byte
// offset into that segment (both LE) and the CRC-32C of those 16 bytes; it is
// replaced atomically (write POS.tmp, fsync, rename, fsync the directory). A
// position naming a segment that no longer exists means "the start of the
// next segment": segments are deleted only once fully drained.
//
// # Damage
//
// Open checks every pending record. A record that is cut short or fails its
// checksum ends the valid data of its segment: the segment is truncated there
// and the records before it are kept. In the newest segment that is the
// expected result of a crash mid-append and is counted in
// Recovery.TornBytes; in an older segment it can only be damage to data that
// was once acknowledged, so it is counted in Recovery.CorruptBytes (the rest
// of that segment is lost, later segments are kept). A damaged POS file
// restarts draining at the oldest segment (Recovery.PositionReset), which
// re-offers records rather than losing them.
package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults and limits.
const (
	// DefaultMaxBytes is the bound on segment bytes on disk when
	// Options.MaxBytes is zero: 64 MiB.
	DefaultMaxBytes = 64 << 20
	// DefaultSegmentBytes is the segment rotation size when
	// Options.SegmentBytes is zero: 4 MiB.
	DefaultSegmentBytes = 4 << 20
	// MaxRecordBytes is the largest record Append accepts: 1 MiB.
	MaxRecordBytes = 1 << 20
)

// ErrFull is returned by Append when the records would take the segment
// files past Options.MaxBytes. Nothing of that Append is stored; draining
// frees space.
var ErrFull = errors.New("spool full")

// ErrTooLarge is returned (wrapped) by Append for a record longer than
// MaxRecordBytes. Retrying cannot help.
var ErrTooLarge = errors.New("spool: record too large")

const (
	lockName   = "LOCK"
	posName    = "POS"
	posTmpName = "POS.tmp"
	segSuffix  = ".seg"
	posSize    = 20
)

// Options configures Open.
type Options struct {
	// Dir is the spool directory, created with mode 0700 if missing.
	// Required. One Spool (one process) uses a directory at a time.
	Dir string
	// MaxBytes bounds the bytes of all segment files, framing included,
	// pending or already drained but not yet deleted. Append returns ErrFull
	// rather than go past it. Zero means DefaultMaxBytes (64 MiB).
	MaxBytes int64
	// SegmentBytes is the size at which the next Append starts a new segment
	// file; an Append is never split, so a segment exceeds it only when one
	// Append does. Zero means DefaultSegmentBytes (4 MiB).
	SegmentBytes int64
}

// Recovery reports what Open repaired. The zero value means the spool was
// found intact.
type Recovery struct {
	// TornBytes were cut off the end of the newest segment: records whose
	// Append had not returned when the process died (a torn write). A
	// damaged record in the middle of the newest segment cannot be told
	// apart from a torn one and is counted here too.
	TornBytes int64
	// CorruptBytes were dropped from older segments, from a record that
	// failed its length or checksum check to the segment's end. They held
	// acknowledged records: this is disk damage, not a crash.
	CorruptBytes int64
	// PositionReset is true when the POS file was unreadable and draining
	// restarted at the oldest segment (records may be offered again).
	PositionReset bool
}

// Spool is an open spool directory. Its methods are safe for concurrent
// use; Drain calls are serialised.
type Spool struct {
	dir      string
	maxBytes int64
	segBytes int64
	lock     *os.File // holds the flock; closing it releases the lock
	recovery Recovery
	syncs    atomic.Int64 // segment fsyncs, for tests and benchmarks

	drainMu sync.Mutex // serialises Drain, and Close against Drain

	mu           sync.Mutex
	cond         sync.Cond // on mu: a queued Append finished or became leader
	queue        []*appendReq
	closed       bool
	werr         error     // sticky: a failed fsync leaves the file in doubt
	segs         []segment // ascending; the last one is appended to
	pos          position  // committed read position
	diskBytes    int64     // sum of segs[i].size
	pending      int       // records after pos
	pendingBytes int64     // framed bytes after pos

	// Owned by the group-commit leader (and by Open and Close, when there
	// is none).
	wf   *os.File // the newest segment, open for writing
	wbuf []byte
}

type segment struct {
	seq  uint64
	size int64 // bytes written and fsync'd
}

type position struct {
	seq uint64
	off int64
}

// appendReq is one Append waiting in the group-commit queue.
type appendReq struct {
	buf  []byte // framed records
	n    int    // number of records
	err  error  // result, set by the leader
	done bool   // guarded by Spool.mu
}

// Open opens the spool in opts.Dir, creating the directory if needed, and
// recovers its state: it finds the segments and the committed read
// position, deletes segments that were fully drained, and truncates damaged
// or torn records (see Recovery). It takes an exclusive flock on Dir/LOCK
// and fails, with an error wrapping syscall.EWOULDBLOCK, when another Spool
// (in this or another process) holds it. It also returns an error for
// invalid options and for any I/O failure.
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: Options.Dir is required")
	}
	if opts.MaxBytes < 0 || opts.SegmentBytes < 0 {
		return nil, fmt.Errorf("spool: negative MaxBytes (%d) or SegmentBytes (%d)", opts.MaxBytes, opts.SegmentBytes)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if err := makeDir(opts.Dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{dir: opts.Dir, maxBytes: opts.MaxBytes, segBytes: opts.SegmentBytes, lock: lock}
	s.cond.L = &s.mu
	if err := s.recover(); err != nil {
		if s.wf != nil {
			s.wf.Close()
		}
		lock.Close()
		return nil, fmt.Errorf("spool: open %s: %w", opts.Dir, err)
	}
	return s, nil
}

func makeDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spool: create dir: %w", err)
	}
	// Make the new directory entry itself durable.
	if err := syncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
		return fmt.Errorf("spool: create dir: %w", err)
	}
	return nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: open lock file: %w", err)
	}
	// A lock can be held for an instant after its owner closed it: a child
	// process forked at that moment shares the open file until it execs.
	// So a busy lock is tried again for up to 500 ms before Open gives up.
	var err2 error
	for wait := 5 * time.Millisecond; ; wait *= 2 {
		err2 = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err2 == nil {
			return f, nil
		}
		if !errors.Is(err2, syscall.EWOULDBLOCK) || wait > 320*time.Millisecond {
			break
		}
		time.Sleep(wait)
	}
	f.Close()
	return nil, fmt.Errorf("spool: lock %s (in use by another process?): %w", dir, err2)
}

// recover builds the in-memory state from the directory. It runs before
// the Spool is shared, so it does not lock.
func (s *Spool) recover() error {
	if err := os.Remove(filepath.Join(s.dir, posTmpName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	seqs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	pos, state, err := readPos(s.dir)
	if err != nil {
		return err
	}
	if state != posOK {
		// Nothing drained yet, or the position is lost: start at the
		// oldest segment.
		s.recovery.PositionReset = state == posDamaged
		pos = position{}
		if len(seqs) > 0 {
			pos.seq = seqs[0]
		}
	}
	dirty := false // the directory changed and must be fsync'd
	for len(seqs) > 0 && seqs[0] < pos.seq {
		if err := os.Remove(s.segPath(seqs[0])); err != nil {
			return err
		}
		seqs, dirty = seqs[1:], true
	}
	if len(seqs) == 0 {
		seq := pos.seq + 1
		f, err := os.OpenFile(s.segPath(seq), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		f.Close()
		seqs, dirty = []uint64{seq}, true
	}
	if pos.seq != seqs[0] {
		pos = position{seq: seqs[0]} // its segment was fully drained and deleted
	}
	for i, seq := range seqs {
		start := int64(0)
		if seq == pos.seq {
			start = pos.off
		}
		g, n, cut, err := s.scanSegment(seq, start, i == len(seqs)-1)
		if err != nil {
			return err
		}
		if g.size < start { // only if the position pointed past the data
			start, pos.off = g.size, g.size
		}
		if cut > 0 {
			if i == len(seqs)-1 {
				s.recovery.TornBytes += cut
			} else {
				s.recovery.CorruptBytes += cut
			}
		}
		s.segs = append(s.segs, g)
		s.diskBytes += g.size
		s.pending += n
		s.pendingBytes += g.size - start
	}
	s.pos = pos
	for _, g := range s.normalizeLocked() {
		if err := os.Remove(s.segPath(g.seq)); err != nil {
			return err
		}
		dirty = true
	}
	if dirty {
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	last := s.segs[len(s.segs)-1]
	s.wf, err = os.OpenFile(s.segPath(last.seq), os.O_RDWR, 0)
	return err
}

// scanSegment checks the records of segment seq from offset start and
// truncates the segment after the last valid one. It returns the segment,
// the number of valid records from start, and the bytes cut off.
func (s *Spool) scanSegment(seq uint64, start int64, last bool) (segment, int, int64, error) {
	f, err := os.OpenFile(s.segPath(seq), os.O_RDWR, 0)
	if err != nil {
		return segment{}, 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return segment{}, 0, 0, err
	}
	size := fi.Size()
	if start > size {
		start = size
	}
	fr := newFrameReader(io.NewSectionReader(f, start, size-start))
	var buf []byte
	n := 0
	for {
		buf, err = fr.next(buf)
		if err == io.EOF {
			return segment{seq: seq, size: size}, n, 0, nil
		}
		if errors.Is(err, errCorrupt) {
			break
		}
		if err != nil {
			return segment{}, 0, 0, fmt.Errorf("scan segment %d: %w", seq, err)
		}
		n++
	}
	end := start + fr.off
	if err := f.Truncate(end); err != nil {
		return segment{}, 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return segment{}, 0, 0, err
	}
	return segment{seq: seq, size: end}, n, size - end, nil
}

// normalizeLocked moves pos off the end of a segment that is not the newest
// onto the start of the next one, and removes the segments before pos from
// the state, returning them for the caller to delete. Deleting them before
// the new pos is persisted is safe: Open reads a position in a missing
// segment as the start of the next one.
func (s *Spool) normalizeLocked() []segment {
	i := 0
	for i < len(s.segs) && s.segs[i].seq < s.pos.seq {
		i++
	}
	for i < len(s.segs)-1 && s.segs[i].seq == s.pos.seq && s.pos.off == s.segs[i].size {
		i++
		s.pos = position{seq: s.segs[i].seq}
	}
	if i == 0 {
		return nil
	}
	drop := slices.Clone(s.segs[:i])
	s.segs = slices.Delete(s.segs, 0, i)
	for _, g := range drop {
		s.diskBytes -= g.size
	}
	return drop
}

// remove deletes drained segment files. A failure leaves a file that Open
// deletes next time, so it is not reported.
func (s *Spool) remove(drop []segment) {
	for _, g := range drop {
		_ = os.Remove(s.segPath(g.seq))
	}
}

// Append stores records as one batch, in order, and returns once they are
// fsync'd. Concurrent Appends are committed together with one write and one
// fsync per segment touched (group commit). It returns nil for no records,
// an error wrapping ErrTooLarge for a record over MaxRecordBytes, ErrFull
// when the batch does not fit in Options.MaxBytes, an error wrapping
// fs.ErrClosed after Close, and a wrapped I/O error otherwise; on any error
// none of the records is acknowledged. After a failed fsync every later
// Append fails too: Close and Open again to recover.
func (s *Spool) Append(records ...[]byte) error {
	if len(records) == 0 {
		return nil
	}
	var size int64
	for i, rec := range records {
		if len(rec) > MaxRecordBytes {
			return fmt.Errorf("spool: record %d has %d bytes, limit %d: %w", i, len(rec), MaxRecordBytes, ErrTooLarge)
		}
		size += frameSize(len(rec))
	}
	if size > s.maxBytes {
		return fmt.Errorf("spool: %d-byte batch exceeds MaxBytes %d: %w", size, s.maxBytes, ErrFull)
	}
	buf := make([]byte, 0, size)
	for _, rec := range records {
		buf = appendFrame(buf, rec)
	}
	r := &appendReq{buf: buf, n: len(records)}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("spool: append: %w", fs.ErrClosed)
	}
	s.queue = append(s.queue, r)
	for !r.done && s.queue[0] != r {
		s.cond.Wait()
	}
	if r.done {
		s.mu.Unlock()
		return r.err
	}
	// r is at the head of the queue: lead one commit for everything queued.
	batch := slices.Clone(s.queue)
	s.mu.Unlock()

	s.commit(batch)

	s.mu.Lock()
	for _, b := range batch {
		b.done = true
	}
	s.queue = slices.Delete(s.queue, 0, len(batch))
	s.cond.Broadcast()
	s.mu.Unlock()
	return r.err
}

// commit writes and fsyncs a batch of queued Appends and sets each one's
// err. Only the leader calls it, one at a time.
func (s *Spool) commit(batch []*appendReq) {
	s.mu.Lock()
	if s.werr != nil {
		for _, r := range batch {
			r.err = s.werr
		}
		s.mu.Unlock()
		return
	}
	active := s.segs[len(s.segs)-1]
	// A fully drained newest segment is replaced, and so deleted, before
	// writing: its bytes do not count against MaxBytes.
	reclaim := active.size > 0 && s.pos == position{seq: active.seq, off: active.size}
	used := s.diskBytes
	if reclaim {
		used -= active.size
	}
	accepted := make([]*appendReq, 0, len(batch))
	for _, r := range batch {
		if used+int64(len(r.buf)) > s.maxBytes {
			r.err = ErrFull
			continue
		}
		used += int64(len(r.buf))
		accepted = append(accepted, r)
	}
	s.mu.Unlock()
	if len(accepted) == 0 {
		return
	}

	fail := func(rs []*appendReq, err error) {
		for _, r := range rs {
			r.err = err
		}
	}
	off := active.size
	if reclaim {
		if err := s.rotate(); err != nil {
			fail(accepted, err)
			return
		}
		off = 0
	}
	start, end := 0, off
	for i, r := range accepted {
		if end > 0 && end+int64(len(r.buf)) > s.segBytes {
			if i > start {
				if err := s.flush(accepted[start:i], off); err != nil {
					fail(accepted[start:], err)
					return
				}
			}
			if err := s.rotate(); err != nil {
				fail(accepted[i:], err)
				return
			}
			start, off, end = i, 0, 0
		}
		end += int64(len(r.buf))
	}
	if err := s.flush(accepted[start:], off); err != nil {
		fail(accepted[start:], err)
	}
}

// flush writes rs at offset off of the newest segment, fsyncs it, and makes
// the records visible to Drain.
func (s *Spool) flush(rs []*appendReq, off int64) error {
	buf, n := rs[0].buf, rs[0].n
	if len(rs) > 1 {
		buf = s.wbuf[:0]
		n = 0
		for _, r := range rs {
			buf = append(buf, r.buf...)
			n += r.n
		}
		if cap(buf) <= DefaultSegmentBytes {
			s.wbuf = buf[:0]
		}
	}
	if _, err := s.wf.WriteAt(buf, off); err != nil {
		// Nothing was acknowledged; cut any partial write so the segment
		// stays a sequence of whole records.
		if terr := s.wf.Truncate(off); terr != nil {
			s.setSticky(fmt.Errorf("spool: segment in doubt after failed write: %w", terr))
		}
		return fmt.Errorf("spool: write segment: %w", err)
	}
	if err := s.wf.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages
		// and cleared the error: the file can no longer be trusted.
		err = fmt.Errorf("spool: sync segment: %w", err)
		s.setSticky(err)
		return err
	}
	s.syncs.Add(1)
	s.mu.Lock()
	s.segs[len(s.segs)-1].size += int64(len(buf))
	s.diskBytes += int64(len(buf))
	s.pending += n
	s.pendingBytes += int64(len(buf))
	s.mu.Unlock()
	return nil
}

func (s *Spool) setSticky(err error) {
	s.mu.Lock()
	if s.werr == nil {
		s.werr = err
	}
	s.mu.Unlock()
}

// rotate starts a new newest segment, durably, and deletes the old one if it
// was fully drained.
func (s *Spool) rotate() error {
	s.mu.Lock()
	seq := s.segs[len(s.segs)-1].seq + 1
	s.mu.Unlock()
	f, err := os.OpenFile(s.segPath(seq), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return fmt.Errorf("spool: create segment: %w", err)
	}
	// The old segment was fsync'd by its last flush; a close error cannot
	// lose acknowledged data.
	_ = s.wf.Close()
	s.wf = f
	s.mu.Lock()
	s.segs = append(s.segs, segment{seq: seq})
	drop := s.normalizeLocked()
	s.mu.Unlock()
	s.remove(drop)
	return nil
}

// Drain offers up to batch pending records, oldest first, to fn, and when
// fn returns nil durably moves the read position past them and deletes the
// segments that are then fully drained. It returns the number of records
// drained: 0, without calling fn, when none are pending. The records are
// fresh slices that fn may keep.
//
// If fn returns an error nothing is advanced and Drain returns it (wrapped):
// the same records are offered again. A crash after fn returned but before
// the position was persisted also offers them again after Open, so fn must
// be idempotent. Drain also returns ctx.Err() if ctx is done before it
// starts, an error for batch < 1, an error wrapping fs.ErrClosed after
// Close, and a wrapped I/O error, in which case nothing is advanced either.
// Concurrent Drain calls run one at a time.
func (s *Spool) Drain(ctx context.Context, fn func(ctx context.Context, records [][]byte) error, batch int) (int, error) {
	if batch < 1 {
		return 0, fmt.Errorf("spool: drain batch %d, want at least 1", batch)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.drainMu.Lock()
	defer s.drainMu.Unlock()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, fmt.Errorf("spool: drain: %w", fs.ErrClosed)
	}
	drop := s.normalizeLocked()
	pos := s.pos
	segs := slices.Clone(s.segs)
	s.mu.Unlock()
	s.remove(drop)

	records, next, size, err := s.read(segs, pos, batch)
	if err != nil {
		return 0, fmt.Errorf("spool: drain: %w", err)
	}
	if len(records) == 0 {
		return 0, nil
	}
	if err := fn(ctx, records); err != nil {
		return 0, fmt.Errorf("spool: drain: %w", err)
	}
	if err := s.writePos(next); err != nil {
		return 0, fmt.Errorf("spool: drain: save read position: %w", err)
	}
	s.mu.Lock()
	s.pos = next
	s.pending -= len(records)
	s.pendingBytes -= size
	drop = s.normalizeLocked()
	s.mu.Unlock()
	s.remove(drop)
	return len(records), nil
}

// read returns up to batch records from pos on, the position after them and
// their framed size. It reads only fsync'd bytes (the sizes in segs).
func (s *Spool) read(segs []segment, pos position, batch int) ([][]byte, position, int64, error) {
	var (
		records [][]byte
		next    = pos
		size    int64
	)
	for _, g := range segs {
		if len(records) == batch {
			break
		}
		start := int64(0)
		if g.seq == pos.seq {
			start = pos.off
		}
		if g.seq < pos.seq || start >= g.size {
			continue
		}
		f, err := os.Open(s.segPath(g.seq))
		if err != nil {
			return nil, pos, 0, err
		}
		fr := newFrameReader(io.NewSectionReader(f, start, g.size-start))
		for len(records) < batch {
			rec, err := fr.next(nil)
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return nil, pos, 0, fmt.Errorf("segment %d offset %d: %w", g.seq, start+fr.off, err)
			}
			records = append(records, rec)
			size += frameSize(len(rec))
			next = position{seq: g.seq, off: start + fr.off}
		}
		f.Close()
	}
	return records, next, size, nil
}

// writePos durably replaces the POS file with p.
func (s *Spool) writePos(p position) error {
	var b [posSize]byte
	binary.LittleEndian.PutUint64(b[0:8], p.seq)
	binary.LittleEndian.PutUint64(b[8:16], uint64(p.off))
	binary.LittleEndian.PutUint32(b[16:20], checksum(b[0:16], nil))
	tmp := filepath.Join(s.dir, posTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b[:]); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, posName)); err != nil {
		return err
	}
	return syncDir(s.dir)
}

type posState int

const (
	posOK posState = iota
	posMissing
	posDamaged
)

// readPos reads the POS file.
func readPos(dir string) (position, posState, error) {
	b, err := os.ReadFile(filepath.Join(dir, posName))
	if errors.Is(err, fs.ErrNotExist) {
		return position{}, posMissing, nil
	}
	if err != nil {
		return position{}, 0, err
	}
	if len(b) != posSize || checksum(b[0:16], nil) != binary.LittleEndian.Uint32(b[16:20]) {
		return position{}, posDamaged, nil
	}
	p := position{seq: binary.LittleEndian.Uint64(b[0:8]), off: int64(binary.LittleEndian.Uint64(b[8:16]))}
	if p.off < 0 {
		return position{}, posDamaged, nil
	}
	return p, posOK, nil
}

// listSegments returns the segment numbers in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range entries {
		hex, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || len(hex) != 16 || !e.Type().IsRegular() {
			continue
		}
		seq, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

func (s *Spool) segPath(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x%s", seq, segSuffix))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// Len returns the number of records pending: appended and not yet drained.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// Bytes returns the on-disk size of the pending records, framing included.
// Drained records still on disk (in the newest segment, until the next
// rotation) are not counted; MaxBytes counts them.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pendingBytes
}

// Recovery reports what Open found damaged and repaired.
func (s *Spool) Recovery() Recovery {
	return s.recovery
}

// Close waits for running Appends and Drain to finish, then closes the
// files and releases the directory lock. Later Appends and Drains fail with
// an error wrapping fs.ErrClosed; a second Close returns nil. It returns an
// error if closing a file fails, but nothing acknowledged is at risk.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for len(s.queue) > 0 {
		s.cond.Wait()
	}
	s.mu.Unlock()
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	return errors.Join(s.wf.Close(), s.lock.Close())
}
