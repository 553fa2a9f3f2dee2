package parse

import (
	"fmt"
	"regexp"

	"github.com/weirlabs/weir/internal/record"
)

// Regex returns a parser that matches expr (RE2 syntax, see package
// regexp) against each line and turns its named groups into fields, in
// the order the groups appear in expr. Unnamed groups are ignored, and so
// are named groups that did not take part in the match or matched the
// empty string. The match is unanchored, as in regexp: anchor expr with ^
// and $ to make it cover the whole line. A line that does not match is an
// error at offset 0. Matching takes time linear in the line length.
//
// Regex returns an error if expr does not compile or has no named group.
func Regex(expr string) (Parser, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("parse: compile regexp: %w", err)
	}
	p := regexParser{re: re}
	for i, name := range re.SubexpNames() {
		if name != "" {
			p.groups = append(p.groups, regexGroup{index: i, name: name})
		}
	}
	if len(p.groups) == 0 {
		return nil, fmt.Errorf("parse: regexp %q has no named group (?P<name>...)", expr)
	}
	return p, nil
}

type regexGroup struct {
	index int
	name  string
}

type regexParser struct {
	re     *regexp.Regexp
	groups []regexGroup
}

func (p regexParser) Parse(dst []record.KV, line string) ([]record.KV, error) {
	line = trimEOL(line)
	m := p.re.FindStringSubmatchIndex(line)
	if m == nil {
		return dst, syntaxError("regex", line, 0, "a match of "+truncate(p.re.String(), 64))
	}
	n0 := len(dst)
	for _, g := range p.groups {
		if start, end := m[2*g.index], m[2*g.index+1]; start >= 0 && end > start {
			dst = append(dst, record.KV{Key: g.name, Value: line[start:end]})
		}
	}
	return dedupe(dst, n0), nil
}

// truncate shortens s to at most n bytes for an error message, cutting at
// a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
