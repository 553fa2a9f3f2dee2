package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// On-disk layout; see docs/wal.md.
const (
	headerSize      = 16 // magic, version, reserved
	frameHeaderSize = 8  // length, CRC-32C
	formatVersion   = 1
	segmentExt      = ".wal"
	segmentDigits   = 20 // a uint64 in decimal
)

var segmentMagic = [8]byte{'W', 'E', 'I', 'R', 'W', 'A', 'L', '1'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Causes inside a CorruptionError.
var (
	errShortHeader     = errors.New("segment header incomplete")
	errBadMagic        = errors.New("bad segment magic")
	errBadVersion      = errors.New("unsupported segment format version")
	errBadChecksum     = errors.New("record checksum mismatch")
	errTruncatedRecord = errors.New("record runs past the end of the segment")
	errMissingSegment  = errors.New("preceding segment missing")
)

func segmentName(index uint64) string {
	return fmt.Sprintf("%0*d%s", segmentDigits, index, segmentExt)
}

// parseSegmentName returns the index of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != segmentDigits+len(segmentExt) || name[segmentDigits:] != segmentExt {
		return 0, false
	}
	for _, c := range name[:segmentDigits] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(name[:segmentDigits], 10, 64)
	return n, err == nil
}

func appendHeader(dst []byte) []byte {
	dst = append(dst, segmentMagic[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, formatVersion)
	return binary.LittleEndian.AppendUint32(dst, 0) // reserved
}

// checkHeader validates a segment header. It reports fatal for a header
// that is well formed but of another format version: such a segment is
// never a torn write and must not be truncated.
func checkHeader(b []byte) (fatal bool, err error) {
	if len(b) < headerSize {
		return false, errShortHeader
	}
	if !bytes.Equal(b[:len(segmentMagic)], segmentMagic[:]) {
		return false, errBadMagic
	}
	v := binary.LittleEndian.Uint32(b[8:])
	reserved := binary.LittleEndian.Uint32(b[12:])
	switch {
	case v == 0 && reserved == 0:
		// Zeros after a complete magic: a header write torn by a crash.
		return false, fmt.Errorf("%w 0", errBadVersion)
	case v != formatVersion || reserved != 0:
		return true, fmt.Errorf("%w %d (reserved %#x); this build reads version %d", errBadVersion, v, reserved, formatVersion)
	}
	return false, nil
}

// appendFrameHeader appends the length and CRC-32C of payload.
func appendFrameHeader(dst, payload []byte) []byte {
	var lb [4]byte
	binary.LittleEndian.PutUint32(lb[:], uint32(len(payload)))
	crc := crc32.Update(0, castagnoli, lb[:])
	crc = crc32.Update(crc, castagnoli, payload)
	dst = append(dst, lb[:]...)
	return binary.LittleEndian.AppendUint32(dst, crc)
}

// checkFrame reports whether hdr (a frame header) and payload form a valid
// frame; payload must have the length hdr names.
func checkFrame(hdr, payload []byte) bool {
	crc := crc32.Update(0, castagnoli, hdr[:4])
	crc = crc32.Update(crc, castagnoli, payload)
	return crc == binary.LittleEndian.Uint32(hdr[4:8])
}

const windowBytes = 256 << 10

// window is a read-through cache of one span of a file, for scanning a
// segment without holding it in memory.
type window struct {
	r    io.ReaderAt
	size int64 // bytes of the file that may be read
	buf  []byte
	off  int64 // file offset of buf[0]
}

func newWindow(r io.ReaderAt, size int64) *window {
	return &window{r: r, size: size, buf: make([]byte, 0, max(frameHeaderSize, min(size, windowBytes)))}
}

func (w *window) contains(off int64, n int) bool {
	return off >= w.off && off+int64(n) <= w.off+int64(len(w.buf))
}

// at returns the n bytes at off. n must be at most the window's capacity
// and off+n at most size. The slice is valid until the next call.
func (w *window) at(off int64, n int) ([]byte, error) {
	if !w.contains(off, n) {
		m := int(min(int64(cap(w.buf)), w.size-off))
		w.buf = w.buf[:m]
		k, err := w.r.ReadAt(w.buf, off)
		if k < m {
			w.buf, w.off = w.buf[:0], 0
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		w.off = off
	}
	i := off - w.off
	return w.buf[i : i+int64(n)], nil
}

type frameStatus int

const (
	frameValid      frameStatus = iota
	frameIncomplete             // the header or the payload runs past the end
	frameBadCRC
)

// scanner checks frames in a segment file.
type scanner struct {
	size int64
	hdr  *window // headers and short payloads
	data *window // payloads that do not fit in hdr; allocated on first use
}

func newScanner(r io.ReaderAt, size int64) *scanner {
	return &scanner{size: size, hdr: newWindow(r, size)}
}

// frame reports whether a valid frame starts at off and the length of its
// payload.
func (s *scanner) frame(off int64) (int64, frameStatus, error) {
	if s.size-off < frameHeaderSize {
		return 0, frameIncomplete, nil
	}
	h, err := s.hdr.at(off, frameHeaderSize)
	if err != nil {
		return 0, 0, err
	}
	n := int64(binary.LittleEndian.Uint32(h))
	want := binary.LittleEndian.Uint32(h[4:])
	if n > s.size-off-frameHeaderSize {
		return n, frameIncomplete, nil
	}
	crc := crc32.Update(0, castagnoli, h[:4])
	for p, end := off+frameHeaderSize, off+frameHeaderSize+n; p < end; {
		c := int(min(end-p, windowBytes))
		w := s.hdr
		if !w.contains(p, c) {
			if s.data == nil {
				s.data = newWindow(s.hdr.r, s.size)
			}
			w = s.data
		}
		b, err := w.at(p, c)
		if err != nil {
			return 0, 0, err
		}
		crc = crc32.Update(crc, castagnoli, b)
		p += int64(c)
	}
	if crc != want {
		return n, frameBadCRC, nil
	}
	return n, frameValid, nil
}

// nextValid returns the offset of the first valid frame at or after from,
// or -1 if there is none. It tries every offset: a damaged length field
// hides where the next frame starts.
func (s *scanner) nextValid(from int64) (int64, error) {
	for o := max(from, 0); s.size-o >= frameHeaderSize; o++ {
		_, st, err := s.frame(o)
		if err != nil {
			return 0, err
		}
		if st == frameValid {
			return o, nil
		}
	}
	return -1, nil
}

// scanResult is what Open learns about one segment file.
type scanResult struct {
	size    int64
	records int
	// end is the end of the last valid record, or 0 if the header is bad:
	// the length of the segment's valid prefix.
	end int64
	// bad says why the bytes at end are not a valid record or header; nil
	// if the segment is clean (end == size).
	bad error
	// fatal marks a bad header that is well formed (another version): a
	// segment that must not be truncated even if it is the last.
	fatal bool
	// next is the offset of the first valid frame after end, or -1. Only
	// computed for the last segment, where it tells a torn tail from
	// corruption.
	next int64
}

// scanSegment validates the segment at path. A valid record larger than
// maxRecord is an error (not corruption): the log was written with a
// larger Options.MaxRecordBytes.
func scanSegment(path string, last bool, maxRecord int) (scanResult, error) {
	res := scanResult{next: -1}
	f, err := os.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, err
	}
	res.size = fi.Size()
	s := newScanner(f, res.size)
	h, err := s.hdr.at(0, int(min(res.size, headerSize)))
	if err != nil {
		return res, err
	}
	if res.fatal, res.bad = checkHeader(h); res.bad != nil {
		if last && !res.fatal {
			res.next, err = s.nextValid(0)
		}
		return res, err
	}
	off := int64(headerSize)
	for off < res.size {
		n, st, err := s.frame(off)
		if err != nil {
			return res, err
		}
		switch st {
		case frameIncomplete:
			res.bad = errTruncatedRecord
		case frameBadCRC:
			res.bad = errBadChecksum
		}
		if res.bad != nil {
			res.end = off
			if last {
				res.next, err = s.nextValid(off + 1)
			}
			return res, err
		}
		if n > int64(maxRecord) {
			return res, fmt.Errorf("record at offset %d has %d bytes: %w (Options.MaxRecordBytes is %d)", off, n, ErrTooLarge, maxRecord)
		}
		off += frameHeaderSize + n
		res.records++
	}
	res.end = off
	return res, nil
}

// listSegments returns the segments in dir, oldest first, with their
// paths; sizes are not set. Files that are not named like segments are
// ignored. A gap in the indices is corruption.
func listSegments(dir string) ([]Segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []Segment
	for _, e := range entries { // sorted by name, so by index
		idx, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if n := len(segs); n > 0 && segs[n-1].Index+1 != idx {
			return nil, &CorruptionError{Segment: path, Offset: 0, Err: fmt.Errorf("%w: index %d follows %d", errMissingSegment, idx, segs[n-1].Index)}
		}
		segs = append(segs, Segment{Index: idx, Path: path})
	}
	return segs, nil
}

// createSegment creates a new segment file with its header. It does not
// sync anything. On error it removes the file it created; the removal's
// error, if any, is joined to the write's.
func (l *Log) createSegment(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	if _, err := l.writeAt(f, appendHeader(nil), 0); err != nil {
		f.Close()
		if rerr := os.Remove(path); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	return f, nil
}
