package parse

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/weirlabs/weir/internal/record"
)

// Parser extracts fields from one line.
//
// Parse appends the fields it finds to dst and returns the extended slice.
// On failure it returns dst[:len(dst)] (elements past len(dst) in dst's
// backing array may have been overwritten) and a *SyntaxError that says
// what was expected and at which byte offset of line. Parsers hold no
// per-call state and are safe for concurrent use.
type Parser interface {
	Parse(dst []record.KV, line string) ([]record.KV, error)
}

// SyntaxError reports why a line did not parse. Callers get at it with
// errors.As.
type SyntaxError struct {
	Format   string // parser that failed: "json", "logfmt", "syslog5424", ...
	Offset   int    // byte offset in the line (after its terminator is removed) where parsing stopped
	Expected string // what the parser expected at Offset
	Found    string // what it found there, quoted, or "end of line"
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("parse %s: at byte %d: expected %s, found %s", e.Format, e.Offset, e.Expected, e.Found)
}

// syntaxError builds the error for line at offset off. It runs only on the
// failure path, so it may allocate.
func syntaxError(format, line string, off int, expected string) *SyntaxError {
	return &SyntaxError{Format: format, Offset: off, Expected: expected, Found: describeAt(line, off)}
}

// describeAt quotes the character at off, or says the line ended there.
func describeAt(line string, off int) string {
	if off >= len(line) {
		return "end of line"
	}
	r, size := utf8.DecodeRuneInString(line[off:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x", line[off])
	}
	return strconv.QuoteRune(r)
}

// trimEOL removes one trailing "\n" or "\r\n", and a lone trailing "\r".
func trimEOL(s string) string {
	if n := len(s); n > 0 && s[n-1] == '\n' {
		s = s[:n-1]
	}
	if n := len(s); n > 0 && s[n-1] == '\r' {
		s = s[:n-1]
	}
	return s
}

// arena builds the text of fields that do not appear verbatim in the line
// (unescaped strings, joined keys). Strings taken from it stay valid while
// it grows: strings.Builder never rewrites bytes it has handed out, it only
// appends or moves on to a new buffer. One arena lives for one Parse call,
// so a line costs at most a few allocations however many fields it has.
type arena struct {
	b    strings.Builder
	hint int // size of the first block
}

// mark returns the current end of the arena; pass it to since once the
// string is written.
func (a *arena) mark() int {
	if a.b.Cap() == 0 {
		a.b.Grow(max(64, min(a.hint, 64<<10)))
	}
	return a.b.Len()
}

// since returns the text written after m.
func (a *arena) since(m int) string { return a.b.String()[m:] }

// join returns x + sep + y.
func (a *arena) join(x string, sep byte, y string) string {
	m := a.mark()
	a.b.WriteString(x)
	a.b.WriteByte(sep)
	a.b.WriteString(y)
	return a.since(m)
}

// dedupe removes from dst[start:] every field whose key appears again
// later in dst[start:], so the last value wins, keeping the order of the
// survivors. Small sets compare pairwise; large ones use a map.
func dedupe(dst []record.KV, start int) []record.KV {
	fields := dst[start:]
	n := len(fields)
	if n < 2 {
		return dst
	}
	if n <= 64 {
		// Most lines have no duplicate: check with a plain pairwise scan
		// (lengths first) before doing any work.
		dup := false
		for i := 0; i < n-1 && !dup; i++ {
			k := fields[i].Key
			for j := i + 1; j < n; j++ {
				if len(fields[j].Key) == len(k) && fields[j].Key == k {
					dup = true
					break
				}
			}
		}
		if !dup {
			return dst
		}
		w := 0
	next:
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				if fields[j].Key == fields[i].Key {
					continue next
				}
			}
			fields[w] = fields[i]
			w++
		}
		clear(fields[w:])
		return dst[:start+w]
	}
	last := make(map[string]int, n)
	for i, kv := range fields {
		last[kv.Key] = i
	}
	if len(last) == n {
		return dst
	}
	w := 0
	for i := 0; i < n; i++ {
		if last[fields[i].Key] == i {
			fields[w] = fields[i]
			w++
		}
	}
	clear(fields[w:])
	return dst[:start+w]
}
