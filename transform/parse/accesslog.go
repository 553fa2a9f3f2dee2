package parse

import "github.com/weirlabs/weir/internal/record"

// CommonLog returns a parser for the Common Log Format of Apache and Nginx
// access logs:
//
//	127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326
//
// Fields: "client", "ident", "user", "timestamp" (the text between the
// brackets), "method", "path", "protocol", "status", "bytes". Fields that
// are "-" are left out. The request is split at its first and last space;
// a request of one word (often garbage sent to the port) is kept whole as
// "request". Quoted strings are taken as they are, escapes included; a
// backslash escapes the next byte when looking for the closing quote.
// Nothing but white space may follow the last field: lines with extra
// fields need a Regex parser.
func CommonLog() Parser { return accessLogParser{combined: false} }

// CombinedLog returns a parser for the Combined Log Format: the Common Log
// Format followed by the quoted referer and user agent, which become the
// fields "referer" and "user_agent" (left out when "-").
func CombinedLog() Parser { return accessLogParser{combined: true} }

type accessLogParser struct{ combined bool }

func (p accessLogParser) format() string {
	if p.combined {
		return "combined_log"
	}
	return "common_log"
}

func (p accessLogParser) Parse(dst []record.KV, line string) ([]record.KV, error) {
	line = trimEOL(line)
	n0 := len(dst)
	fail := func(off int, expected string) ([]record.KV, error) {
		return dst[:n0], syntaxError(p.format(), line, off, expected)
	}
	i := 0
	field := func(key string) bool {
		start := i
		for i < len(line) && line[i] != ' ' {
			i++
		}
		if i == start {
			return false
		}
		if v := line[start:i]; v != "-" {
			dst = append(dst, record.KV{Key: key, Value: v})
		}
		return true
	}
	space := func() bool {
		if i >= len(line) || line[i] != ' ' {
			return false
		}
		for i < len(line) && line[i] == ' ' {
			i++
		}
		return true
	}
	quoted := func() (string, bool) {
		if i >= len(line) || line[i] != '"' {
			return "", false
		}
		i++
		start := i
		for i < len(line) && line[i] != '"' {
			if line[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(line) {
			i = len(line)
			return "", false
		}
		i++
		return line[start : i-1], true
	}

	for _, key := range [...]string{"client", "ident", "user"} {
		if !field(key) {
			return fail(i, "the "+key+" field")
		}
		if !space() {
			return fail(i, "' ' after the "+key+" field")
		}
	}
	if i >= len(line) || line[i] != '[' {
		return fail(i, "'[' to start the timestamp")
	}
	i++
	start := i
	for i < len(line) && line[i] != ']' {
		i++
	}
	if i >= len(line) {
		return fail(i, "']' to end the timestamp")
	}
	dst = append(dst, record.KV{Key: "timestamp", Value: line[start:i]})
	i++
	if !space() {
		return fail(i, "' ' after the timestamp")
	}
	q := i
	req, ok := quoted()
	if !ok {
		if i == q {
			return fail(i, "'\"' to start the request")
		}
		return fail(i, "'\"' to end the request")
	}
	dst = appendRequest(dst, req)
	if !space() {
		return fail(i, "' ' after the request")
	}
	start = i
	for i < len(line) && i < start+3 && isDigit(line[i]) {
		i++
	}
	if i != start+3 && !(i == start && i < len(line) && line[i] == '-') {
		return fail(i, "a three-digit status")
	}
	if i == start {
		i++ // "-"
	} else {
		dst = append(dst, record.KV{Key: "status", Value: line[start:i]})
	}
	if !space() {
		return fail(i, "' ' after the status")
	}
	start = i
	for i < len(line) && isDigit(line[i]) {
		i++
	}
	switch {
	case i > start:
		dst = append(dst, record.KV{Key: "bytes", Value: line[start:i]})
	case i < len(line) && line[i] == '-':
		i++
	default:
		return fail(i, "the byte count or '-'")
	}
	if p.combined {
		for _, key := range [...]string{"referer", "user_agent"} {
			if !space() {
				return fail(i, "' ' before the "+key)
			}
			q := i
			v, ok := quoted()
			if !ok {
				if i == q {
					return fail(i, "'\"' to start the "+key)
				}
				return fail(i, "'\"' to end the "+key)
			}
			if v != "-" && v != "" {
				dst = append(dst, record.KV{Key: key, Value: v})
			}
		}
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if i < len(line) {
		return fail(i, "end of line")
	}
	return dst, nil
}

// appendRequest splits an HTTP request line into method, path and
// protocol.
func appendRequest(dst []record.KV, req string) []record.KV {
	if req == "-" || req == "" {
		return dst
	}
	first := -1
	for k := 0; k < len(req); k++ {
		if req[k] == ' ' {
			first = k
			break
		}
	}
	if first < 0 {
		return append(dst, record.KV{Key: "request", Value: req})
	}
	last := first
	for k := len(req) - 1; k > first; k-- {
		if req[k] == ' ' {
			last = k
			break
		}
	}
	dst = append(dst, record.KV{Key: "method", Value: req[:first]})
	if last == first {
		// HTTP/0.9: "GET /path".
		return append(dst, record.KV{Key: "path", Value: req[first+1:]})
	}
	return append(dst,
		record.KV{Key: "path", Value: req[first+1 : last]},
		record.KV{Key: "protocol", Value: req[last+1:]})
}
