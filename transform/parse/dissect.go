package parse

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/weirlabs/weir/internal/record"
)

// Dissect returns a parser that splits lines by the literal text between
// the fields of pattern, without regular expressions: far faster than
// Regex where a format has fixed delimiters. In pattern:
//
//	%{name}    a field: the text up to the next occurrence of the literal
//	           that follows it (the last field takes the rest of the line)
//	%{+name}   continues the field name: its value becomes the span from
//	           the start of name's first part to the end of this one,
//	           delimiters included ("%{ts} %{+ts}" takes "081109 203615")
//	%{?name}   a field that is matched but not kept (so is %{})
//	%{name->}  the literal after the field may repeat (padding): extra
//	           copies are skipped
//
// Literal text before the first field must start the line. Empty field
// values are skipped, like Regex's empty groups. A line that lacks a
// delimiter is an error at the offset where it was sought.
//
// Dissect returns an error if pattern has no field, two fields with no
// literal between them, an unclosed %{, or a %{+name} before name.
func Dissect(pattern string) (Parser, error) {
	p := dissectParser{pattern: pattern}
	rest := pattern
	prefix, rest, found := strings.Cut(rest, "%{")
	if !found {
		return nil, fmt.Errorf("parse: dissect pattern %q has no field %%{name}", pattern)
	}
	p.prefix = prefix
	for found {
		spec, after, ok := strings.Cut(rest, "}")
		if !ok {
			return nil, fmt.Errorf("parse: dissect pattern %q: unclosed %%{", pattern)
		}
		var f dissectField
		f.pad = strings.HasSuffix(spec, "->")
		spec = strings.TrimSuffix(spec, "->")
		switch {
		case spec == "" || spec[0] == '?':
			f.skip = true
		case spec[0] == '+':
			f.name, f.join = spec[1:], true
		default:
			f.name = spec
		}
		if f.join {
			f.of = -1
			for i, g := range p.fields {
				if g.name == f.name && !g.join && !g.skip {
					f.of = i
				}
			}
			if f.name == "" || f.of < 0 {
				return nil, fmt.Errorf("parse: dissect pattern %q: %%{+%s} does not follow a %%{%s}", pattern, f.name, f.name)
			}
		}
		f.delim, rest, found = strings.Cut(after, "%{")
		if found && f.delim == "" {
			return nil, fmt.Errorf("parse: dissect pattern %q: two fields with no text between them", pattern)
		}
		p.fields = append(p.fields, f)
	}
	if len(p.fields) > maxDissectFields {
		return nil, fmt.Errorf("parse: dissect pattern %q has %d fields; at most %d", pattern, len(p.fields), maxDissectFields)
	}
	for i := range p.fields {
		f := &p.fields[i]
		if f.skip || f.join {
			continue
		}
		for _, g := range p.fields[i+1:] {
			if g.join && g.name == f.name {
				f.joined = true
			}
		}
	}
	return p, nil
}

type dissectField struct {
	name   string
	delim  string // literal after the field; "" for the last one
	skip   bool
	join   bool // %{+name}
	of     int  // for join: index of the field it continues
	joined bool // a later %{+name} continues this field
	pad    bool
}

type dissectParser struct {
	pattern string
	prefix  string
	fields  []dissectField
}

// maxDissectFields bounds the fields a pattern may have (for the
// fixed-size span array in Parse).
const maxDissectFields = 64

func (p dissectParser) Parse(dst []record.KV, line string) ([]record.KV, error) {
	line = trimEOL(line)
	if !strings.HasPrefix(line, p.prefix) {
		return dst, syntaxError("dissect", line, 0, strconv.Quote(p.prefix))
	}
	var spans [maxDissectFields][2]int
	pos := len(p.prefix)
	for i, f := range p.fields {
		end := len(line)
		next := end
		if f.delim != "" {
			j := strings.Index(line[pos:], f.delim)
			if j < 0 {
				return dst, syntaxError("dissect", line, pos, strconv.Quote(f.delim)+" after field "+p.fieldName(i))
			}
			end = pos + j
			next = end + len(f.delim)
			if f.pad {
				for strings.HasPrefix(line[next:], f.delim) {
					next += len(f.delim)
				}
			}
		}
		spans[i] = [2]int{pos, end}
		pos = next
	}
	n0 := len(dst)
	for i, f := range p.fields {
		if f.skip || f.join {
			continue
		}
		start, end := spans[i][0], spans[i][1]
		if f.joined {
			for j := i + 1; j < len(p.fields); j++ {
				if g := p.fields[j]; g.join && g.of == i {
					end = spans[j][1]
				}
			}
		}
		if end > start {
			dst = append(dst, record.KV{Key: f.name, Value: line[start:end]})
		}
	}
	return dedupe(dst, n0), nil
}

func (p dissectParser) fieldName(i int) string {
	f := p.fields[i]
	switch {
	case f.skip:
		return strconv.Itoa(i)
	case f.join:
		return "+" + f.name
	}
	return f.name
}
