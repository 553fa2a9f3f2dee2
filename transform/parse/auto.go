package parse

import "github.com/weirlabs/weir/internal/record"

// Auto returns a parser that picks the format of each line:
//
//   - a line starting with '{' (after white space): JSON, default options;
//   - "<PRI>1 ": RFC 5424 syslog;
//   - "<PRI>" otherwise, or a month abbreviation and a day ("Jan  2 "):
//     RFC 3164 syslog;
//   - three words and then '[': combined, else common access log;
//   - anything with at least two key=value pairs: logfmt.
//
// When the format a line looks like does not parse, Auto tries logfmt; if
// that fails too it returns the first format's error. A line that looks
// like none of them is an error at offset 0. Auto does not say which
// format matched; the field names (see the package documentation) mostly
// tell.
func Auto() Parser {
	return autoParser{json: JSON(JSONOptions{})}
}

type autoParser struct{ json Parser }

func (p autoParser) Parse(dst []record.KV, line string) ([]record.KV, error) {
	line = trimEOL(line)
	var first Parser
	switch k := firstNonSpace(line); {
	case k < len(line) && line[k] == '{':
		first = p.json
	case len(line) > 0 && line[0] == '<':
		first = syslog3164Parser{}
		if _, _, end, expected := priority(line); expected == "" &&
			end+1 < len(line) && line[end] == '1' && line[end+1] == ' ' {
			first = syslog5424Parser{}
		}
	case looksBSD(line):
		first = syslog3164Parser{}
	case looksAccessLog(line):
		out, err := (accessLogParser{combined: true}).Parse(dst, line)
		if err == nil {
			return out, nil
		}
		if out, err2 := (accessLogParser{}).Parse(dst, line); err2 == nil {
			return out, nil
		}
		return p.logfmtOr(dst, line, err)
	}
	if first != nil {
		out, err := first.Parse(dst, line)
		if err == nil {
			return out, nil
		}
		return p.logfmtOr(dst, line, err)
	}
	return p.logfmtOr(dst, line, nil)
}

// logfmtOr parses line as logfmt if it has at least two key=value pairs,
// else returns err (or, when nil, the error that no format matched).
func (autoParser) logfmtOr(dst []record.KV, line string, err error) ([]record.KV, error) {
	n0 := len(dst)
	out, pairs, lerr := parseLogfmt(dst, line)
	if lerr == nil && pairs >= 2 {
		return out, nil
	}
	if err == nil {
		err = syntaxError("auto", line, 0, "a JSON object, syslog line, access log line or logfmt pairs")
	}
	return dst[:n0], err
}

func firstNonSpace(s string) int {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// looksBSD reports whether line starts with "Mmm d" or "Mmm  d".
func looksBSD(line string) bool {
	if len(line) < 6 || !isMonth(line) || line[3] != ' ' {
		return false
	}
	return isDigit(line[4]) || line[4] == ' ' && isDigit(line[5])
}

// looksAccessLog reports whether line starts with three words, each
// followed by one space, and then '['.
func looksAccessLog(line string) bool {
	i := 0
	for w := 0; w < 3; w++ {
		start := i
		for i < len(line) && line[i] != ' ' {
			if line[i] == '[' || line[i] == '"' {
				return false
			}
			i++
		}
		if i == start || i >= len(line) {
			return false
		}
		i++ // space
	}
	return i < len(line) && line[i] == '['
}
