package parse

import (
	"strconv"
	"unicode/utf8"

	"github.com/weirlabs/weir/internal/record"
)

// Logfmt returns a parser for logfmt lines: space-separated key=value
// pairs.
//
// A key is a run of bytes other than space, tab, '=', '"' and control
// characters. A value is either bare (a run of bytes other than space,
// tab, '"' and control characters; it may contain '=') or quoted with '"'.
// Quoted values are unescaped: \" \\ \/ \b \f \n \r \t and \uXXXX decode as
// in JSON; any other backslash is kept as it is. A key without '=' is a
// bare key with the value "", so plain words parse as bare keys. Errors:
// an unterminated quote, a quote inside a bare value or key, a quoted
// value followed by something other than a space, '=' with no key, and
// control characters (other than tab) outside quotes. Duplicate keys: the
// last wins.
func Logfmt() Parser { return logfmtParser{} }

type logfmtParser struct{}

func (logfmtParser) Parse(dst []record.KV, line string) ([]record.KV, error) {
	dst, _, err := parseLogfmt(dst, line)
	return dst, err
}

// logfmtKeyByte marks the bytes that may appear in a key; logfmtValueByte
// those of a bare value.
var logfmtKeyByte, logfmtValueByte = func() (k, v [256]bool) {
	for c := 0x21; c < 256; c++ {
		k[c] = c != '=' && c != '"' && c != 0x7f
		v[c] = c != '"' && c != 0x7f
	}
	return k, v
}()

// parseLogfmt parses line and also reports how many pairs had an '=', for
// Auto.
func parseLogfmt(dst []record.KV, line string) ([]record.KV, int, error) {
	line = trimEOL(line)
	n0 := len(dst)
	var a arena
	a.hint = len(line)
	pairs := 0
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			break
		}
		start := i
		for i < len(line) && logfmtKeyByte[line[i]] {
			i++
		}
		if i == start {
			return dst[:n0], 0, syntaxError("logfmt", line, i, "a key")
		}
		key := line[start:i]
		if i >= len(line) || line[i] == ' ' || line[i] == '\t' {
			dst = append(dst, record.KV{Key: key})
			continue
		}
		if line[i] != '=' {
			return dst[:n0], 0, syntaxError("logfmt", line, i, "'=', space or end of line after the key")
		}
		i++
		pairs++
		if i < len(line) && line[i] == '"' {
			v, end, err := logfmtQuoted(&a, line, i)
			if err != nil {
				return dst[:n0], 0, err
			}
			i = end
			if i < len(line) && line[i] != ' ' && line[i] != '\t' {
				return dst[:n0], 0, syntaxError("logfmt", line, i, "space or end of line after the quoted value")
			}
			dst = append(dst, record.KV{Key: key, Value: v})
			continue
		}
		start = i
		for i < len(line) && logfmtValueByte[line[i]] {
			i++
		}
		if i < len(line) && line[i] != ' ' && line[i] != '\t' {
			return dst[:n0], 0, syntaxError("logfmt", line, i, "space or end of line after the value (quote values holding '\"')")
		}
		dst = append(dst, record.KV{Key: key, Value: line[start:i]})
	}
	return dedupe(dst, n0), pairs, nil
}

// logfmtQuoted reads the quoted value whose '"' is at line[q] and returns
// it unescaped and the offset just past its closing quote.
func logfmtQuoted(a *arena, line string, q int) (string, int, error) {
	i := q + 1
	start := i
	for i < len(line) && line[i] != '"' && line[i] != '\\' {
		i++
	}
	if i < len(line) && line[i] == '"' {
		return line[start:i], i + 1, nil
	}
	m := a.mark()
	a.b.WriteString(line[start:i])
	for i < len(line) {
		c := line[i]
		switch {
		case c == '"':
			return a.since(m), i + 1, nil
		case c == '\\' && i+1 < len(line):
			i++
			switch e := line[i]; e {
			case '"', '\\', '/':
				a.b.WriteByte(e)
			case 'b':
				a.b.WriteByte('\b')
			case 'f':
				a.b.WriteByte('\f')
			case 'n':
				a.b.WriteByte('\n')
			case 'r':
				a.b.WriteByte('\r')
			case 't':
				a.b.WriteByte('\t')
			case 'u':
				if r, end, ok := unicodeEscape(line, i); ok {
					a.b.WriteRune(r)
					i = end - 1
				} else {
					a.b.WriteString(line[i-1 : i+1])
				}
			default:
				// Not an escape: keep the backslash and the character.
				// Copy the whole rune so the output stays valid UTF-8.
				_, n := utf8.DecodeRuneInString(line[i:])
				a.b.WriteByte('\\')
				a.b.WriteString(line[i : i+n])
				i += n - 1
			}
			i++
		default:
			run := i
			for i < len(line) && line[i] != '"' && line[i] != '\\' {
				i++
			}
			if i == run { // lone backslash at the end
				a.b.WriteByte(c)
				i++
			} else {
				a.b.WriteString(line[run:i])
			}
		}
	}
	return "", 0, syntaxError("logfmt", line, len(line), "'\"' to close the value quoted at byte "+strconv.Itoa(q))
}
