package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

const replayBufBytes = 256 << 10

// replayer reads records sequentially for Log.Replay, reusing one payload
// buffer (bounded by Options.MaxRecordBytes) across records and segments.
type replayer struct {
	from    Pos
	fn      func(Pos, []byte) error
	damaged func(Damage, []byte) error // nil: pass over damage silently
	max     int
	br      *bufio.Reader
	payload []byte
}

// segment replays the records of s up to s.Size, the size it had when
// Replay started, passing over the damaged spans of s (in offset order).
func (r *replayer) segment(s Segment, spans []Damage) error {
	if s.Index == r.from.Segment && s.Size <= r.from.Offset {
		return nil // nothing after from here
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return fmt.Errorf("wal: replay: %w", err)
	}
	defer f.Close()
	if r.br == nil {
		r.br = bufio.NewReaderSize(f, replayBufBytes)
	} else {
		r.br.Reset(f)
	}
	corrupt := func(off int64, err error) error {
		return &CorruptionError{Segment: s.Path, Offset: off, Err: err}
	}
	// short reads the file shrinking under Replay as corruption and passes
	// other read errors on.
	short := func(off int64, err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return corrupt(off, fmt.Errorf("%w: %w", errTruncatedRecord, io.ErrUnexpectedEOF))
		}
		return fmt.Errorf("wal: replay %s: %w", s.Path, err)
	}
	var hdr [headerSize]byte
	skip := int64(-1) // records ending at or before this are skipped
	if s.Index == r.from.Segment {
		skip = r.from.Offset
	}
	for off := int64(0); off < s.Size || len(spans) > 0 && spans[0].Offset == off; {
		if len(spans) > 0 && spans[0].Offset == off {
			if err := r.span(spans[0], skip, short); err != nil {
				return err
			}
			off += spans[0].Length
			spans = spans[1:]
			continue
		}
		if off == 0 {
			if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
				return short(0, err)
			}
			if _, err := checkHeader(hdr[:]); err != nil {
				return corrupt(0, err)
			}
			off = headerSize
			continue
		}
		if s.Size-off < frameHeaderSize {
			return corrupt(off, errTruncatedRecord)
		}
		fh := hdr[:frameHeaderSize]
		if _, err := io.ReadFull(r.br, fh); err != nil {
			return short(off, err)
		}
		n := int64(binary.LittleEndian.Uint32(fh))
		end := off + frameHeaderSize + n
		if end > s.Size {
			return corrupt(off, errTruncatedRecord)
		}
		if end <= skip {
			if _, err := r.br.Discard(int(n)); err != nil {
				return short(off, err)
			}
			off = end
			continue
		}
		if n > int64(r.max) {
			return fmt.Errorf("wal: replay %s: record at offset %d has %d bytes: %w (Options.MaxRecordBytes is %d)", s.Path, off, n, ErrTooLarge, r.max)
		}
		if int64(cap(r.payload)) < n {
			r.payload = make([]byte, n)
		}
		p := r.payload[:n]
		if _, err := io.ReadFull(r.br, p); err != nil {
			return short(off, err)
		}
		if !checkFrame(fh, p) {
			return corrupt(off, errBadChecksum)
		}
		if err := r.fn(Pos{Segment: s.Index, Offset: end}, p); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// span passes over the damaged span d, which starts where the reader is,
// and reports it to r.damaged with its first bytes unless it ends at or
// before skip.
func (r *replayer) span(d Damage, skip int64, short func(int64, error) error) error {
	if r.damaged == nil || d.Offset+d.Length <= skip {
		if _, err := r.br.Discard(int(d.Length)); err != nil {
			return short(d.Offset, err)
		}
		return nil
	}
	n := min(d.Length, int64(r.max)+frameHeaderSize)
	if int64(cap(r.payload)) < n {
		r.payload = make([]byte, n)
	}
	raw := r.payload[:n]
	if _, err := io.ReadFull(r.br, raw); err != nil {
		return short(d.Offset, err)
	}
	if err := r.damaged(d, raw); err != nil {
		return err
	}
	if _, err := r.br.Discard(int(d.Length - n)); err != nil {
		return short(d.Offset, err)
	}
	return nil
}
