package syslog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Framing errors. Callers match them with errors.Is and errors.As.
var (
	// ErrFraming: an octet-counted stream holds something other than
	// "LEN SP" where a frame must start; the stream cannot be read on.
	ErrFraming = errors.New("syslog: malformed octet count")
	// ErrTruncated: the stream ended inside an octet-counted frame.
	ErrTruncated = errors.New("syslog: stream ended inside a frame")
)

// TooLargeError reports a message longer than the reader's bound.
type TooLargeError struct {
	Size int // the frame's length, or -1 for a line whose end was not seen
	Max  int
}

func (e *TooLargeError) Error() string {
	if e.Size < 0 {
		return fmt.Sprintf("syslog: message longer than %d bytes", e.Max)
	}
	return fmt.Sprintf("syslog: message of %d bytes, more than %d", e.Size, e.Max)
}

type framing uint8

const (
	framingUnknown framing = iota
	framingOctet           // RFC 6587 3.4.1: "LEN SP MSG"
	framingLine            // RFC 6587 3.4.2: MSG LF
	framingBroken          // a bad octet count was read
)

// maxEmptyReads bounds the reads in a row that return nothing and no
// error, as bufio does.
const maxEmptyReads = 100

// Reader splits a syslog TCP stream into messages. The first byte of the
// stream picks the framing for the whole stream: a digit 1-9 means
// octet counting ("LEN SP MSG", RFC 6587 3.4.1; line ends between frames
// are skipped), anything else one message per line ('\n', an '\r'
// before it removed; empty lines skipped).
//
// It holds at most max+16 bytes, however long a message is.
type Reader struct {
	r          io.Reader
	max        int
	buf        []byte
	start, end int
	mode       framing
	skip       int  // bytes of an oversized frame still to discard
	skipLine   bool // discard up to the next '\n'
	eof        bool
}

// NewReader returns a Reader of r for messages of at most max bytes.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: r, max: max, buf: make([]byte, max+16)}
}

// Next returns the next message, valid until the next call.
//
// A message longer than max comes back as its first max bytes with a
// *TooLargeError; the rest is skipped and the next call returns the
// message after it. An error of the underlying reader (a read deadline)
// is returned as it is, and Next may be called again: no byte read is
// lost. At the end of the stream Next returns io.EOF, after returning a
// last line that has no '\n' as a message, or the start of a cut-off
// frame with ErrTruncated. ErrFraming means the octet count is broken
// and the stream cannot be read on: it is returned from then on.
func (r *Reader) Next() ([]byte, error) {
	for {
		if r.mode == framingBroken {
			return nil, ErrFraming
		}
		if r.skip > 0 {
			n := min(r.skip, r.end-r.start)
			r.start += n
			r.skip -= n
			if r.skip > 0 {
				if err := r.fill(); err != nil {
					return nil, err
				}
				continue
			}
		}
		if r.skipLine {
			if i := bytes.IndexByte(r.buf[r.start:r.end], '\n'); i >= 0 {
				r.start += i + 1
				r.skipLine = false
			} else {
				r.start = r.end
				if err := r.fill(); err != nil {
					return nil, err
				}
				continue
			}
		}
		data := r.buf[r.start:r.end]
		if len(data) == 0 {
			if err := r.fill(); err != nil {
				return nil, err
			}
			continue
		}
		if r.mode == framingUnknown {
			r.mode = framingLine
			if data[0] >= '1' && data[0] <= '9' {
				r.mode = framingOctet
			}
		}
		if r.mode == framingLine {
			msg, err, ok := r.line(data)
			if ok {
				if err == nil && len(msg) == 0 {
					continue
				}
				return msg, err
			}
		} else {
			msg, err, ok := r.frame(data)
			if ok {
				return msg, err
			}
		}
		if err := r.fill(); err != nil {
			if err == io.EOF && len(r.buf[r.start:r.end]) > 0 {
				rest := r.buf[r.start:r.end]
				r.start = r.end
				if r.mode == framingLine {
					return bytes.TrimSuffix(rest, []byte{'\r'}), nil
				}
				if rest[0] != '\n' && rest[0] != '\r' {
					if i := bytes.IndexByte(rest, ' '); i > 0 && i < len(rest) {
						rest = rest[i+1:] // past "LEN "
					}
					return rest, ErrTruncated
				}
			}
			return nil, err
		}
	}
}

// line takes a message from the start of data in line framing; ok is
// false when more bytes are needed.
func (r *Reader) line(data []byte) (msg []byte, err error, ok bool) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		r.start += i + 1
		msg = bytes.TrimSuffix(data[:i], []byte{'\r'})
		if len(msg) > r.max {
			return msg[:r.max], &TooLargeError{Size: len(msg), Max: r.max}, true
		}
		return msg, nil, true
	}
	// A line of max bytes may still be followed by "\r\n".
	if len(data) > r.max && !(len(data) == r.max+1 && data[r.max] == '\r') {
		r.start = r.end
		r.skipLine = true
		return data[:r.max], &TooLargeError{Size: -1, Max: r.max}, true
	}
	return nil, nil, false
}

// frame takes a message from the start of data in octet counting; ok
// is false when more bytes are needed.
func (r *Reader) frame(data []byte) (msg []byte, err error, ok bool) {
	// Line ends after a frame: some senders add them.
	for len(data) > 0 && (data[0] == '\n' || data[0] == '\r') {
		r.start++
		data = data[1:]
	}
	if len(data) == 0 {
		return nil, nil, false
	}
	i, n := 0, 0
	for i < len(data) && i < 10 && data[i] >= '0' && data[i] <= '9' {
		n = n*10 + int(data[i]-'0')
		i++
	}
	if i == len(data) {
		return nil, nil, false // the space after at most 10 digits is to come
	}
	if i == 0 || data[0] == '0' || data[i] != ' ' {
		r.mode = framingBroken
		return nil, ErrFraming, true
	}
	body := data[i+1:]
	if n > r.max {
		if len(body) < r.max {
			return nil, nil, false
		}
		r.start += i + 1 + r.max
		r.skip = n - r.max
		return body[:r.max], &TooLargeError{Size: n, Max: r.max}, true
	}
	if len(body) < n {
		return nil, nil, false
	}
	r.start += i + 1 + n
	return body[:n], nil, true
}

// fill reads more bytes after moving what is unread to the front.
func (r *Reader) fill() error {
	if r.mode == framingBroken {
		return ErrFraming
	}
	if r.eof {
		return io.EOF
	}
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	for range maxEmptyReads {
		n, err := r.r.Read(r.buf[r.end:])
		r.end += n
		if err == io.EOF {
			r.eof = true
		}
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}
