package parse

import (
	"errors"
	"math"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/weirlabs/weir/internal/record"
)

// JSONRestKey is the key under which the JSON parser keeps the members of
// an object it did not flatten because of JSONOptions.MaxFields.
const JSONRestKey = "_rest"

// JSON nesting bounds.
const (
	defaultJSONMaxDepth  = 16
	defaultJSONMaxFields = 256
	// maxJSONNesting bounds the nesting of arrays and objects anywhere in a
	// line (it also bounds the parser's recursion); deeper input is an
	// error. MaxDepth is clamped to it.
	maxJSONNesting = 1000
)

// JSONOptions configures the JSON parser. Zero (or negative) fields take
// their defaults.
type JSONOptions struct {
	// MaxDepth is how many levels of nested objects are flattened into
	// dotted keys; the top-level object is level 1. An object deeper than
	// MaxDepth is kept as compact JSON text under its dotted key. Default
	// 16, at most 1000.
	MaxDepth int
	// MaxFields bounds the fields one line yields. When flattening would
	// yield more, the top-level members from the one that crosses the bound
	// onward are kept together, as one compact JSON object, under
	// JSONRestKey; so a line yields at most MaxFields+1 fields. Default 256.
	MaxFields int
}

// JSON returns a parser for lines holding one JSON object (RFC 8259).
//
// Nested objects are flattened to dotted keys ("a.b.c"); an empty nested
// object becomes the value "{}". Arrays are kept as compact JSON text.
// Strings are unescaped: a lone UTF-16 surrogate in a \u escape becomes
// U+FFFD, as in encoding/json. Numbers keep their literal text; true and
// false become "true" and "false"; members whose value is null are left
// out (so a null does not override an earlier member of the same key).
// Duplicate keys: the last wins. The line must be valid UTF-8 and hold
// nothing but the object and white space; arrays and objects may nest at
// most 1000 deep.
func JSON(opt JSONOptions) Parser {
	if opt.MaxDepth <= 0 {
		opt.MaxDepth = defaultJSONMaxDepth
	}
	opt.MaxDepth = min(opt.MaxDepth, maxJSONNesting)
	if opt.MaxFields <= 0 {
		opt.MaxFields = defaultJSONMaxFields
	}
	return jsonParser{maxDepth: opt.MaxDepth, maxFields: opt.MaxFields}
}

type jsonParser struct {
	maxDepth, maxFields int
}

// errJSONFull unwinds the flattening of a top-level member that would
// cross MaxFields.
var errJSONFull = errors.New("json: too many fields")

// jsonScanner is the state of one Parse call.
type jsonScanner struct {
	s        string
	i        int
	dst      []record.KV
	limit    int // len(dst) may not exceed it
	maxDepth int
	a        arena
}

func (p jsonParser) Parse(dst []record.KV, line string) ([]record.KV, error) {
	line = trimEOL(line)
	n0 := len(dst)
	if !utf8.ValidString(line) {
		return dst, syntaxError("json", line, invalidUTF8At(line), "valid UTF-8")
	}
	limit := n0 + p.maxFields
	if limit < n0 { // overflow: no limit
		limit = math.MaxInt
	}
	sc := jsonScanner{s: line, dst: dst, limit: limit, maxDepth: p.maxDepth}
	sc.a.hint = len(line)
	sc.ws()
	if sc.i >= len(line) || line[sc.i] != '{' {
		return dst[:n0], sc.fail("'{' to start an object")
	}
	sc.i++
	if err := sc.topObject(); err != nil {
		return dst[:n0], err
	}
	sc.ws()
	if sc.i < len(line) {
		return dst[:n0], sc.fail("end of line after the object")
	}
	return dedupe(sc.dst, n0), nil
}

func (sc *jsonScanner) fail(expected string) error {
	return syntaxError("json", sc.s, sc.i, expected)
}

// invalidUTF8At returns the offset of the first invalid UTF-8 sequence.
func invalidUTF8At(s string) int {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(s)
}

// ws skips JSON white space.
func (sc *jsonScanner) ws() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// topObject flattens the members of the top-level object; sc.i is just
// past its '{'. It enforces MaxFields member by member.
func (sc *jsonScanner) topObject() error {
	sc.ws()
	if sc.i < len(sc.s) && sc.s[sc.i] == '}' {
		sc.i++
		return nil
	}
	for {
		sc.ws()
		start, n := sc.i, len(sc.dst)
		err := sc.member("", 1)
		if err == errJSONFull {
			sc.dst = sc.dst[:n]
			sc.i = start
			return sc.rest()
		}
		if err != nil {
			return err
		}
		sc.ws()
		if sc.i >= len(sc.s) {
			return sc.fail("',' or '}'")
		}
		switch sc.s[sc.i] {
		case ',':
			sc.i++
		case '}':
			sc.i++
			return nil
		default:
			return sc.fail("',' or '}'")
		}
	}
}

// rest keeps the members from sc.i to the end of the top-level object as
// one compact JSON object under JSONRestKey.
func (sc *jsonScanner) rest() error {
	m := sc.a.mark()
	sc.a.b.WriteByte('{')
	if _, err := sc.objectBody(1, true); err != nil {
		return err
	}
	sc.dst = append(sc.dst, record.KV{Key: JSONRestKey, Value: sc.a.since(m)})
	return nil
}

// object flattens the members of a nested object whose dotted key is
// prefix; sc.i is just past its '{'.
func (sc *jsonScanner) object(prefix string, depth int) error {
	sc.ws()
	if sc.i < len(sc.s) && sc.s[sc.i] == '}' {
		sc.i++
		return sc.emit(prefix, "{}")
	}
	for {
		sc.ws()
		if err := sc.member(prefix, depth); err != nil {
			return err
		}
		sc.ws()
		if sc.i >= len(sc.s) {
			return sc.fail("',' or '}'")
		}
		switch sc.s[sc.i] {
		case ',':
			sc.i++
		case '}':
			sc.i++
			return nil
		default:
			return sc.fail("',' or '}'")
		}
	}
}

func (sc *jsonScanner) emit(key, value string) error {
	if len(sc.dst) >= sc.limit {
		return errJSONFull
	}
	sc.dst = append(sc.dst, record.KV{Key: key, Value: value})
	return nil
}

// member parses `"key": value` of an object at depth and emits its
// fields; prefix is the dotted key of that object (unused at depth 1).
func (sc *jsonScanner) member(prefix string, depth int) error {
	if sc.i >= len(sc.s) || sc.s[sc.i] != '"' {
		return sc.fail("'\"' to start a key")
	}
	key, err := sc.str()
	if err != nil {
		return err
	}
	if depth > 1 {
		key = sc.a.join(prefix, '.', key)
	}
	sc.ws()
	if sc.i >= len(sc.s) || sc.s[sc.i] != ':' {
		return sc.fail("':' after the key")
	}
	sc.i++
	sc.ws()
	if sc.i >= len(sc.s) {
		return sc.fail("a value")
	}
	switch c := sc.s[sc.i]; {
	case c == '"':
		v, err := sc.str()
		if err != nil {
			return err
		}
		return sc.emit(key, v)
	case c == '{':
		if depth+1 > sc.maxDepth {
			v, err := sc.text(depth)
			if err != nil {
				return err
			}
			return sc.emit(key, v)
		}
		sc.i++
		return sc.object(key, depth+1)
	case c == '[':
		v, err := sc.text(depth)
		if err != nil {
			return err
		}
		return sc.emit(key, v)
	case c == 'n':
		return sc.literal("null")
	case c == 't':
		start := sc.i
		if err := sc.literal("true"); err != nil {
			return err
		}
		return sc.emit(key, sc.s[start:sc.i])
	case c == 'f':
		start := sc.i
		if err := sc.literal("false"); err != nil {
			return err
		}
		return sc.emit(key, sc.s[start:sc.i])
	case c == '-' || c >= '0' && c <= '9':
		start := sc.i
		if err := sc.number(); err != nil {
			return err
		}
		return sc.emit(key, sc.s[start:sc.i])
	default:
		return sc.fail("a value")
	}
}

func (sc *jsonScanner) literal(want string) error {
	if len(sc.s)-sc.i < len(want) || sc.s[sc.i:sc.i+len(want)] != want {
		// Point at the first byte that differs.
		for k := 0; k < len(want); k++ {
			if sc.i >= len(sc.s) || sc.s[sc.i] != want[k] {
				return sc.fail("literal " + want)
			}
			sc.i++
		}
	}
	sc.i += len(want)
	return nil
}

// number checks the number at sc.i against the JSON grammar and moves
// past it.
func (sc *jsonScanner) number() error {
	s := sc.s
	if s[sc.i] == '-' {
		sc.i++
	}
	switch {
	case sc.i < len(s) && s[sc.i] == '0':
		sc.i++
	case sc.i < len(s) && s[sc.i] >= '1' && s[sc.i] <= '9':
		sc.digits()
	default:
		return sc.fail("a digit")
	}
	if sc.i < len(s) && s[sc.i] == '.' {
		sc.i++
		if sc.i >= len(s) || s[sc.i] < '0' || s[sc.i] > '9' {
			return sc.fail("a digit after '.'")
		}
		sc.digits()
	}
	if sc.i < len(s) && (s[sc.i] == 'e' || s[sc.i] == 'E') {
		sc.i++
		if sc.i < len(s) && (s[sc.i] == '+' || s[sc.i] == '-') {
			sc.i++
		}
		if sc.i >= len(s) || s[sc.i] < '0' || s[sc.i] > '9' {
			return sc.fail("a digit in the exponent")
		}
		sc.digits()
	}
	return nil
}

func (sc *jsonScanner) digits() {
	for sc.i < len(sc.s) && sc.s[sc.i] >= '0' && sc.s[sc.i] <= '9' {
		sc.i++
	}
}

// strPlain marks the bytes that may appear in a JSON string as they are:
// everything but '"', '\\' and control characters. (The line is known to
// be valid UTF-8, so bytes >= 0x80 need no check here.)
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads the string at sc.i (at its opening quote) and returns its
// unescaped value: a substring of the line when it has no escapes.
func (sc *jsonScanner) str() (string, error) {
	s := sc.s
	sc.i++
	start := sc.i
	for sc.i < len(s) && strPlain[s[sc.i]] {
		sc.i++
	}
	if sc.i < len(s) && s[sc.i] == '"' {
		sc.i++
		return s[start : sc.i-1], nil
	}
	m := sc.a.mark()
	sc.a.b.WriteString(s[start:sc.i])
	for {
		if sc.i >= len(s) {
			return "", sc.fail("'\"' to close the string")
		}
		switch c := s[sc.i]; {
		case c == '"':
			sc.i++
			return sc.a.since(m), nil
		case c == '\\':
			if err := sc.escape(); err != nil {
				return "", err
			}
		case c < 0x20:
			return "", sc.fail("a string character (control characters must be escaped)")
		default:
			run := sc.i
			for sc.i < len(s) && strPlain[s[sc.i]] {
				sc.i++
			}
			sc.a.b.WriteString(s[run:sc.i])
		}
	}
}

// escape decodes the escape sequence at sc.i into the arena.
func (sc *jsonScanner) escape() error {
	s := sc.s
	sc.i++ // backslash
	if sc.i >= len(s) {
		return sc.fail("an escape character")
	}
	c := s[sc.i]
	sc.i++
	switch c {
	case '"', '\\', '/':
		sc.a.b.WriteByte(c)
	case 'b':
		sc.a.b.WriteByte('\b')
	case 'f':
		sc.a.b.WriteByte('\f')
	case 'n':
		sc.a.b.WriteByte('\n')
	case 'r':
		sc.a.b.WriteByte('\r')
	case 't':
		sc.a.b.WriteByte('\t')
	case 'u':
		r, end, ok := unicodeEscape(s, sc.i-1)
		if !ok {
			return sc.fail("four hex digits after \\u")
		}
		sc.i = end
		sc.a.b.WriteRune(r)
	default:
		sc.i--
		return sc.fail(`an escape character (one of "\/bfnrtu)`)
	}
	return nil
}

// unicodeEscape decodes the \uXXXX escape whose 'u' is at s[i], joined
// with a following \uXXXX when the two form a UTF-16 surrogate pair. It
// returns the rune and the offset just past the escape(s); a surrogate that
// is not part of a pair decodes to U+FFFD.
func unicodeEscape(s string, i int) (r rune, end int, ok bool) {
	r, ok = hex4(s, i+1)
	if !ok {
		return 0, 0, false
	}
	end = i + 5
	if !utf16.IsSurrogate(r) {
		return r, end, true
	}
	if end+1 < len(s) && s[end] == '\\' && s[end+1] == 'u' {
		if r2, ok := hex4(s, end+2); ok {
			if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
				return dec, end + 6, true
			}
		}
	}
	return utf8.RuneError, end, true
}

// hex4 decodes four hex digits at s[i:].
func hex4(s string, i int) (rune, bool) {
	if len(s)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// text returns the array or object at sc.i as compact JSON text: the input
// itself when it has no white space to remove, else a compacted copy.
// depth is the depth of the enclosing object.
func (sc *jsonScanner) text(depth int) (string, error) {
	start := sc.i
	spaced, err := sc.skip(depth, false)
	if err != nil {
		return "", err
	}
	if !spaced {
		return sc.s[start:sc.i], nil
	}
	sc.i = start
	m := sc.a.mark()
	if _, err := sc.skip(depth, true); err != nil {
		return "", err
	}
	return sc.a.since(m), nil
}

// skip checks the value at sc.i and moves past it, copying it without
// insignificant white space to the arena when write is set. It reports
// whether it met such white space. Strings are copied as they are, escapes
// included.
func (sc *jsonScanner) skip(depth int, write bool) (spaced bool, err error) {
	s := sc.s
	if sc.i >= len(s) {
		return false, sc.fail("a value")
	}
	start := sc.i
	switch c := s[sc.i]; {
	case c == '"':
		sc.i++
		for {
			for sc.i < len(s) && strPlain[s[sc.i]] {
				sc.i++
			}
			if sc.i >= len(s) {
				return false, sc.fail("'\"' to close the string")
			}
			c := s[sc.i]
			if c == '"' {
				sc.i++
				break
			}
			if c < 0x20 {
				return false, sc.fail("a string character (control characters must be escaped)")
			}
			// Backslash: check the escape without decoding it.
			sc.i++
			if sc.i >= len(s) {
				return false, sc.fail("an escape character")
			}
			switch s[sc.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				sc.i++
			case 'u':
				if _, ok := hex4(s, sc.i+1); !ok {
					sc.i++
					return false, sc.fail("four hex digits after \\u")
				}
				sc.i += 5
			default:
				return false, sc.fail(`an escape character (one of "\/bfnrtu)`)
			}
		}
	case c == '{' || c == '[':
		if depth+1 > maxJSONNesting {
			return false, sc.fail("at most 1000 levels of nesting")
		}
		sc.i++
		if write {
			sc.a.b.WriteByte(c)
		}
		if c == '{' {
			return sc.objectBody(depth+1, write)
		}
		return sc.arrayBody(depth+1, write)
	case c == 'n':
		err = sc.literal("null")
	case c == 't':
		err = sc.literal("true")
	case c == 'f':
		err = sc.literal("false")
	case c == '-' || c >= '0' && c <= '9':
		err = sc.number()
	default:
		return false, sc.fail("a value")
	}
	if err == nil && write {
		sc.a.b.WriteString(s[start:sc.i])
	}
	return false, err
}

// wsSpaced skips white space and reports whether there was any.
func (sc *jsonScanner) wsSpaced() bool {
	i := sc.i
	sc.ws()
	return sc.i != i
}

// objectBody skips (or copies, with write) the members of an object and its
// closing '}'; sc.i is just past the '{' (or, for rest, at a member).
func (sc *jsonScanner) objectBody(depth int, write bool) (spaced bool, err error) {
	spaced = sc.wsSpaced()
	if sc.i < len(sc.s) && sc.s[sc.i] == '}' {
		sc.i++
		if write {
			sc.a.b.WriteByte('}')
		}
		return spaced, nil
	}
	for {
		spaced = sc.wsSpaced() || spaced
		if sc.i >= len(sc.s) || sc.s[sc.i] != '"' {
			return spaced, sc.fail("'\"' to start a key")
		}
		sp, err := sc.skip(depth, write)
		if err != nil {
			return spaced, err
		}
		spaced = sc.wsSpaced() || sp || spaced
		if sc.i >= len(sc.s) || sc.s[sc.i] != ':' {
			return spaced, sc.fail("':' after the key")
		}
		sc.i++
		if write {
			sc.a.b.WriteByte(':')
		}
		spaced = sc.wsSpaced() || spaced
		sp, err = sc.skip(depth, write)
		if err != nil {
			return spaced, err
		}
		spaced = sc.wsSpaced() || sp || spaced
		if sc.i >= len(sc.s) {
			return spaced, sc.fail("',' or '}'")
		}
		c := sc.s[sc.i]
		if c != ',' && c != '}' {
			return spaced, sc.fail("',' or '}'")
		}
		sc.i++
		if write {
			sc.a.b.WriteByte(c)
		}
		if c == '}' {
			return spaced, nil
		}
	}
}

// arrayBody is objectBody for arrays.
func (sc *jsonScanner) arrayBody(depth int, write bool) (spaced bool, err error) {
	spaced = sc.wsSpaced()
	if sc.i < len(sc.s) && sc.s[sc.i] == ']' {
		sc.i++
		if write {
			sc.a.b.WriteByte(']')
		}
		return spaced, nil
	}
	for {
		spaced = sc.wsSpaced() || spaced
		sp, err := sc.skip(depth, write)
		if err != nil {
			return spaced, err
		}
		spaced = sc.wsSpaced() || sp || spaced
		if sc.i >= len(sc.s) {
			return spaced, sc.fail("',' or ']'")
		}
		c := sc.s[sc.i]
		if c != ',' && c != ']' {
			return spaced, sc.fail("',' or ']'")
		}
		sc.i++
		if write {
			sc.a.b.WriteByte(c)
		}
		if c == ']' {
			return spaced, nil
		}
	}
}
