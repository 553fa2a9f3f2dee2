package parse

import (
	"strconv"

	"github.com/weirlabs/weir/internal/record"
)

// Syslog5424 returns a parser for RFC 5424 syslog messages:
//
//	<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]
//
// Fields: "syslog.facility" and "syslog.severity" (decimal text, from PRI;
// map the severity with Severity), "timestamp" (raw text), "host", "app",
// "procid", "msgid", one "sd.<SD-ID>.<PARAM-NAME>" per structured-data
// parameter (an element without parameters yields "sd.<SD-ID>" with the
// value ""; \" \\ and \] in values are unescaped) and "message" (a leading
// UTF-8 BOM removed). Header fields that are the NILVALUE "-", and an empty
// message, are left out.
//
// The header must follow the RFC's syntax: PRI 0..191, a version number,
// fields of printable ASCII separated by single spaces. The timestamp's
// form and the RFC's length limits on header fields are not checked (those
// on SD-IDs and parameter names, 32 bytes, are). Like MSG-ANY, the message
// may be any bytes.
func Syslog5424() Parser { return syslog5424Parser{} }

type syslog5424Parser struct{}

// priority parses "<PRI>" at the start of line and returns the facility,
// the severity and the offset past '>'; on failure, the error offset and
// expectation.
func priority(line string) (facility, severity, end int, expected string) {
	if len(line) == 0 || line[0] != '<' {
		return 0, 0, 0, "'<' to start the priority"
	}
	i, pri := 1, 0
	for i < len(line) && i < 4 && line[i] >= '0' && line[i] <= '9' {
		pri = pri*10 + int(line[i]-'0')
		i++
	}
	if i == 1 {
		return 0, 0, i, "priority digits"
	}
	if i >= len(line) || line[i] != '>' {
		return 0, 0, i, "'>' to end the priority"
	}
	if pri > 191 {
		return 0, 0, 1, "a priority from 0 to 191"
	}
	return pri / 8, pri % 8, i + 1, ""
}

func appendPriority(dst []record.KV, facility, severity int) []record.KV {
	return append(dst,
		record.KV{Key: "syslog.facility", Value: smallInt(facility)},
		record.KV{Key: "syslog.severity", Value: smallInt(severity)})
}

// smallInts holds the decimal text of 0..23, so PRI fields cost no
// allocation.
var smallInts = func() (t [24]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func smallInt(n int) string { return smallInts[n] }

// printASCII reports whether c is PRINTUSASCII (%d33-126).
func printASCII(c byte) bool { return c >= 33 && c <= 126 }

func (syslog5424Parser) Parse(dst []record.KV, line string) ([]record.KV, error) {
	line = trimEOL(line)
	n0 := len(dst)
	fail := func(off int, expected string) ([]record.KV, error) {
		return dst[:n0], syntaxError("syslog5424", line, off, expected)
	}
	facility, severity, i, expected := priority(line)
	if expected != "" {
		return fail(i, expected)
	}
	if i >= len(line) || line[i] < '1' || line[i] > '9' {
		return fail(i, "a version number")
	}
	for v := i; i < len(line) && i < v+3 && line[i] >= '0' && line[i] <= '9'; i++ {
	}
	dst = appendPriority(dst, facility, severity)

	headers := [...]string{"timestamp", "host", "app", "procid", "msgid"}
	for _, key := range headers {
		if i >= len(line) || line[i] != ' ' {
			return fail(i, "' ' before the "+key+" field")
		}
		i++
		start := i
		for i < len(line) && printASCII(line[i]) {
			i++
		}
		if i == start {
			return fail(i, "the "+key+" field or '-'")
		}
		if v := line[start:i]; v != "-" {
			dst = append(dst, record.KV{Key: key, Value: v})
		}
	}
	if i >= len(line) || line[i] != ' ' {
		return fail(i, "' ' before the structured data")
	}
	i++
	if i < len(line) && line[i] == '-' {
		i++
	} else {
		var a arena
		a.hint = len(line) - i
		var err error
		if dst, i, err = structuredData(dst, &a, line, i); err != nil {
			return dst[:n0], err
		}
	}
	if i < len(line) {
		if line[i] != ' ' {
			return fail(i, "' ' or end of line after the structured data")
		}
		msg := line[i+1:]
		if len(msg) >= 3 && msg[:3] == "\xef\xbb\xbf" {
			msg = msg[3:]
		}
		if msg != "" {
			dst = append(dst, record.KV{Key: "message", Value: msg})
		}
	}
	return dedupe(dst, n0), nil
}

// sdNameByte reports whether c may appear in an SD-NAME.
func sdNameByte(c byte) bool { return printASCII(c) && c != '=' && c != ']' && c != '"' }

// structuredData parses one or more SD-ELEMENTs at line[i:] and returns
// the offset past the last.
func structuredData(dst []record.KV, a *arena, line string, i int) ([]record.KV, int, error) {
	fail := func(off int, expected string) ([]record.KV, int, error) {
		return dst, off, syntaxError("syslog5424", line, off, expected)
	}
	if i >= len(line) || line[i] != '[' {
		return fail(i, "'[' or '-' to start the structured data")
	}
	for i < len(line) && line[i] == '[' {
		i++
		start := i
		for i < len(line) && sdNameByte(line[i]) && i-start < 32 {
			i++
		}
		if i == start {
			return fail(i, "an SD-ID")
		}
		id := line[start:i]
		params := 0
		for i < len(line) && line[i] == ' ' {
			i++
			start = i
			for i < len(line) && sdNameByte(line[i]) && i-start < 32 {
				i++
			}
			if i == start {
				return fail(i, "a parameter name")
			}
			name := line[start:i]
			if i >= len(line) || line[i] != '=' {
				return fail(i, "'=' after the parameter name")
			}
			i++
			if i >= len(line) || line[i] != '"' {
				return fail(i, "'\"' to start the parameter value")
			}
			i++
			value, end, ok := sdValue(a, line, i)
			if !ok {
				return fail(len(line), "'\"' to close the parameter value opened at byte "+strconv.Itoa(i-1))
			}
			i = end
			m := a.mark()
			a.b.WriteString("sd.")
			a.b.WriteString(id)
			a.b.WriteByte('.')
			a.b.WriteString(name)
			dst = append(dst, record.KV{Key: a.since(m), Value: value})
			params++
		}
		if i >= len(line) || line[i] != ']' {
			return fail(i, "' ' or ']' in the SD element")
		}
		i++
		if params == 0 {
			dst = append(dst, record.KV{Key: a.join("sd", '.', id)})
		}
	}
	return dst, i, nil
}

// sdValue reads a PARAM-VALUE starting at line[i] (past its opening quote)
// and returns it unescaped and the offset past its closing quote. Only \",
// \\ and \] are escapes (RFC 5424 section 6.3.3); other backslashes stay.
func sdValue(a *arena, line string, i int) (string, int, bool) {
	start := i
	for i < len(line) && line[i] != '"' && line[i] != '\\' {
		i++
	}
	if i < len(line) && line[i] == '"' {
		return line[start:i], i + 1, true
	}
	m := a.mark()
	a.b.WriteString(line[start:i])
	for i < len(line) {
		switch c := line[i]; c {
		case '"':
			return a.since(m), i + 1, true
		case '\\':
			if i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\' || line[i+1] == ']') {
				a.b.WriteByte(line[i+1])
				i += 2
			} else {
				a.b.WriteByte('\\')
				i++
			}
		default:
			run := i
			for i < len(line) && line[i] != '"' && line[i] != '\\' {
				i++
			}
			a.b.WriteString(line[run:i])
		}
	}
	return "", 0, false
}

// Syslog3164 returns a parser for BSD syslog lines (RFC 3164 and the
// variants that syslogd, rsyslog and macOS write to files):
//
//	[<PRI>]TIMESTAMP [HOST ]TAG[[PID]]: MSG
//
// TIMESTAMP is "Mmm dd hh:mm:ss" (day padded with a space or a zero, an
// optional fraction after the seconds, an optional year "Mmm dd yyyy
// hh:mm:ss") or an RFC 3339 timestamp. HOST is left out when the word
// after the timestamp ends in ':' (a tag). TAG is the word up to '[', ':'
// or a space; it may hold spaces when it ends in "[pid]:" ("Microsoft
// Word[14463]:", at most 64 bytes). When the word that follows the host is
// not a tag (no ':' nor "[pid]"), the text from there on is the message.
//
// Fields, each only when present: "syslog.facility", "syslog.severity",
// "timestamp" (raw text), "host", "app", "procid", "message".
func Syslog3164() Parser { return syslog3164Parser{} }

type syslog3164Parser struct{}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

func isMonth(s string) bool {
	if len(s) < 3 {
		return false
	}
	for _, m := range months {
		if s[:3] == m {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digitsAt reports whether line[i:i+n] are all digits.
func digitsAt(line string, i, n int) bool {
	if i+n > len(line) {
		return false
	}
	for k := i; k < i+n; k++ {
		if !isDigit(line[k]) {
			return false
		}
	}
	return true
}

// bsdTimestamp returns the end of the timestamp at line[i:], or -1 and the
// offset of the mismatch.
func bsdTimestamp(line string, i int) (end, bad int) {
	if i < len(line) && isDigit(line[i]) {
		// RFC 3339 (rsyslog's high-precision form): yyyy-mm-ddT... up to a space.
		for k := i; k < i+4; k++ {
			if k >= len(line) || !isDigit(line[k]) {
				return -1, k
			}
		}
		if i+4 >= len(line) || line[i+4] != '-' {
			return -1, i + 4
		}
		j := i
		for j < len(line) && line[j] != ' ' {
			j++
		}
		return j, 0
	}
	if !isMonth(line[i:]) {
		return -1, i
	}
	j := i + 3
	if j >= len(line) || line[j] != ' ' {
		return -1, j
	}
	j++
	if j < len(line) && line[j] == ' ' { // "Jul  1"
		j++
	}
	d := j
	for j < len(line) && j < d+2 && isDigit(line[j]) {
		j++
	}
	if j == d || j >= len(line) || line[j] != ' ' {
		return -1, j
	}
	j++
	if digitsAt(line, j, 4) && j+4 < len(line) && line[j+4] == ' ' { // year
		j += 5
	}
	// hh:mm:ss
	if !digitsAt(line, j, 2) || j+2 >= len(line) || line[j+2] != ':' ||
		!digitsAt(line, j+3, 2) || j+5 >= len(line) || line[j+5] != ':' || !digitsAt(line, j+6, 2) {
		for k := j; k < len(line) && k < j+8; k++ {
			if c := line[k]; (k-j)%3 == 2 && c != ':' || (k-j)%3 != 2 && !isDigit(c) {
				return -1, k
			}
		}
		return -1, min(j+8, len(line))
	}
	j += 8
	if j+1 < len(line) && line[j] == '.' && isDigit(line[j+1]) {
		j++
		for j < len(line) && isDigit(line[j]) {
			j++
		}
	}
	return j, 0
}

// maxSpacedTag bounds the length of a tag with spaces in it.
const maxSpacedTag = 64

// spacedTag handles tags with spaces, such as macOS's "Microsoft
// Word[14463]:": the word at line[i:t] is followed by a space, and the tag
// continues when, within maxSpacedTag bytes of i and before any ':', the
// text reaches "[digits]:". It returns the offset of that '[', or t.
func spacedTag(line string, i, t int) int {
	for k := t; k < len(line) && k-i <= maxSpacedTag; k++ {
		switch line[k] {
		case ':':
			return t
		case '[':
			p := k + 1
			for p < len(line) && isDigit(line[p]) {
				p++
			}
			if p > k+1 && p+1 < len(line) && line[p] == ']' && line[p+1] == ':' {
				return k
			}
			return t
		}
	}
	return t
}

func (syslog3164Parser) Parse(dst []record.KV, line string) ([]record.KV, error) {
	line = trimEOL(line)
	n0 := len(dst)
	fail := func(off int, expected string) ([]record.KV, error) {
		return dst[:n0], syntaxError("syslog3164", line, off, expected)
	}
	i := 0
	if len(line) > 0 && line[0] == '<' {
		facility, severity, end, expected := priority(line)
		if expected != "" {
			return fail(end, expected)
		}
		dst = appendPriority(dst, facility, severity)
		i = end
	}
	end, bad := bsdTimestamp(line, i)
	if end < 0 {
		return fail(bad, "a timestamp (Mmm dd hh:mm:ss or RFC 3339)")
	}
	dst = append(dst, record.KV{Key: "timestamp", Value: line[i:end]})
	i = end
	if i < len(line) && line[i] != ' ' {
		return fail(i, "' ' after the timestamp")
	}
	skipSpaces := func() {
		for i < len(line) && line[i] == ' ' {
			i++
		}
	}
	skipSpaces()
	// Host, unless the word is already the tag.
	w := i
	for w < len(line) && line[w] != ' ' {
		w++
	}
	if w > i && line[w-1] != ':' {
		dst = append(dst, record.KV{Key: "host", Value: line[i:w]})
		i = w
		skipSpaces()
	}
	// Tag, pid and message.
	t := i
	for t < len(line) && line[t] != ' ' && line[t] != ':' && line[t] != '[' {
		t++
	}
	if t < len(line) && line[t] == ' ' {
		t = spacedTag(line, i, t)
	}
	msg := i
	switch {
	case t == i || t >= len(line):
		// No tag: the rest, if any, is the message.
	case line[t] == ':':
		dst = append(dst, record.KV{Key: "app", Value: line[i:t]})
		msg = t + 1
	case line[t] == '[':
		p := t + 1
		for p < len(line) && line[p] != ']' && line[p] != ' ' {
			p++
		}
		if p >= len(line) || line[p] != ']' || p == t+1 {
			break // not "[pid]": no tag
		}
		switch {
		case p+1 < len(line) && line[p+1] == ':':
			msg = p + 2
		case p+1 >= len(line) || line[p+1] == ' ':
			msg = p + 1
		default:
			p = -1
		}
		if p >= 0 {
			dst = append(dst,
				record.KV{Key: "app", Value: line[i:t]},
				record.KV{Key: "procid", Value: line[t+1 : p]})
		}
	}
	if msg < len(line) && line[msg] == ' ' && msg != i {
		msg++
	}
	if msg < len(line) {
		dst = append(dst, record.KV{Key: "message", Value: line[msg:]})
	}
	return dedupe(dst, n0), nil
}
