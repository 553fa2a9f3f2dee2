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
	// budget bounds the payload bytes nextValid checksums in this segment:
	// each offset it tries may name a long payload, and garbage could
	// otherwise make the search quadratic in the segment's size.
	budget int64
}

// searchBudget returns the checksum work nextValid may do in a segment of
// size bytes: enough to step over a few damaged records of the largest
// size, and linear in the segment.
func searchBudget(size int64, maxRecord int) int64 {
	return 4*size + 4*int64(maxRecord) + 1<<20
}

func newScanner(r io.ReaderAt, size int64, maxRecord int) *scanner {
	return &scanner{size: size, hdr: newWindow(r, size), budget: searchBudget(size, maxRecord)}
}

// errSearchBudget means the search for the next valid record gave up; see
// scanner.budget.
var errSearchBudget = errors.New("too much checksum work searching for the next valid record")

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
// hides where the next frame starts. It fails with errSearchBudget once
// it has checksummed more than the scanner's budget.
func (s *scanner) nextValid(from int64) (int64, error) {
	for o := max(from, 0); s.size-o >= frameHeaderSize; o++ {
		h, err := s.hdr.at(o, frameHeaderSize)
		if err != nil {
			return 0, err
		}
		n := int64(binary.LittleEndian.Uint32(h))
		if n > s.size-o-frameHeaderSize {
			continue
		}
		if s.budget -= n + 4; s.budget < 0 {
			return 0, fmt.Errorf("%w (from offset %d)", errSearchBudget, from)
		}
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
	// end is the end of the last valid record, or 0 if the header is bad
	// and no valid record follows it: where the segment's readable part
	// ends.
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
	// damage lists, when scanning with skip, the damaged spans before end
	// that valid records follow; Segment and Path are not set.
	damage []Damage
}

// scanSegment validates the segment at path. A valid record larger than
// maxRecord is an error (not corruption): the log was written with a
// larger Options.MaxRecordBytes. With skip, a bad header or record that a
// valid record follows becomes a damaged span and the scan continues at
// that record.
func scanSegment(path string, last bool, maxRecord int, skip bool) (scanResult, error) {
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
	s := newScanner(f, res.size, maxRecord)
	h, err := s.hdr.at(0, int(min(res.size, headerSize)))
	if err != nil {
		return res, err
	}
	off := int64(headerSize)
	if res.fatal, res.bad = checkHeader(h); res.bad != nil {
		if res.fatal {
			return res, nil
		}
		if !skip {
			if last {
				res.next, err = s.nextValid(0)
			}
			return res, err
		}
		next, err := s.nextValid(headerSize)
		if err != nil || next < 0 {
			return res, err
		}
		res.damage = append(res.damage, Damage{Offset: 0, Length: next, Err: res.bad})
		res.bad, off = nil, next
	}
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
			if last || skip {
				res.next, err = s.nextValid(off + 1)
			}
			if err != nil || !skip || res.next < 0 {
				return res, err
			}
			res.damage = append(res.damage, Damage{Offset: off, Length: res.next - off, Err: res.bad})
			res.bad, res.next, off = nil, -1, res.next
			continue
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
// ignored. A gap in the indices is corruption, or with skip a damaged span
// of no bytes at the start of the segment after the gap.
func listSegments(dir string, skip bool) ([]Segment, []Damage, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var segs []Segment
	var gaps []Damage
	for _, e := range entries { // sorted by name, so by index
		idx, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if n := len(segs); n > 0 && segs[n-1].Index+1 != idx {
			cause := fmt.Errorf("%w: index %d follows %d", errMissingSegment, idx, segs[n-1].Index)
			if !skip {
				return nil, nil, &CorruptionError{Segment: path, Offset: 0, Err: cause}
			}
			gaps = append(gaps, Damage{Segment: idx, Path: path, Err: cause})
		}
		segs = append(segs, Segment{Index: idx, Path: path})
	}
	return segs, gaps, nil
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
