package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// headerSize is the framing overhead of one record: a little-endian uint32
// payload length followed by a little-endian uint32 CRC-32C (Castagnoli) of
// the four length bytes and the payload.
const headerSize = 8

// errCorrupt marks a record that fails its length or checksum check, or a
// record cut short by the end of its segment.
var errCorrupt = errors.New("corrupt record")

// castagnoli is the CRC-32C table; it is never written after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameSize is the number of bytes a record of n payload bytes takes on disk.
func frameSize(n int) int64 { return headerSize + int64(n) }

// appendFrame appends the framed form of rec to dst.
func appendFrame(dst, rec []byte) []byte {
	var h [headerSize]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(rec)))
	binary.LittleEndian.PutUint32(h[4:8], checksum(h[0:4], rec))
	dst = append(dst, h[:]...)
	return append(dst, rec...)
}

func checksum(length, payload []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, length), castagnoli, payload)
}

// frameReader reads framed records from one segment.
type frameReader struct {
	br  *bufio.Reader
	off int64 // bytes consumed by the valid records returned so far
	hdr [headerSize]byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next record's payload, read into buf when it is large
// enough and into a new slice otherwise. It returns io.EOF at a clean end
// (no bytes after the last record) and an error wrapping errCorrupt when the
// remaining bytes do not start with a whole, valid record; off is then the
// end of the valid data.
func (fr *frameReader) next(buf []byte) ([]byte, error) {
	n, err := io.ReadFull(fr.br, fr.hdr[:])
	switch {
	case err == io.EOF:
		return nil, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: %d-byte partial header", errCorrupt, n)
	case err != nil:
		return nil, fmt.Errorf("read record header: %w", err)
	}
	size := binary.LittleEndian.Uint32(fr.hdr[0:4])
	if size > MaxRecordBytes {
		return nil, fmt.Errorf("%w: length %d exceeds %d", errCorrupt, size, MaxRecordBytes)
	}
	if cap(buf) >= int(size) {
		buf = buf[:size]
	} else {
		buf = make([]byte, size)
	}
	if _, err := io.ReadFull(fr.br, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: payload of %d bytes cut short", errCorrupt, size)
		}
		return nil, fmt.Errorf("read record payload: %w", err)
	}
	if got, want := checksum(fr.hdr[0:4], buf), binary.LittleEndian.Uint32(fr.hdr[4:8]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", errCorrupt, got, want)
	}
	fr.off += frameSize(len(buf))
	return buf, nil
}
