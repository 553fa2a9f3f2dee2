package parse_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/parse"
)

// kvs builds fields from key, value pairs.
func kvs(pairs ...string) []record.KV {
	if len(pairs)%2 != 0 {
		panic("kvs: odd number of strings")
	}
	out := make([]record.KV, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, record.KV{Key: pairs[i], Value: pairs[i+1]})
	}
	return out
}

// prefix is a field the tests put in dst before parsing, to check that
// parsers append and leave what was there alone.
var prefix = record.KV{Key: "pre", Value: "existing"}

// f parses line with p and checks the fields it appends.
func f(t *testing.T, p parse.Parser, line string, want ...string) {
	t.Helper()
	dst := []record.KV{prefix}
	got, err := p.Parse(dst, line)
	if err != nil {
		t.Fatalf("Parse(%q): %v", line, err)
	}
	if len(got) == 0 || got[0] != prefix {
		t.Fatalf("Parse(%q) changed the fields already in dst: %v", line, got)
	}
	if !equalKVs(got[1:], kvs(want...)) {
		t.Fatalf("Parse(%q):\n got %s\nwant %s", line, fmtKVs(got[1:]), fmtKVs(kvs(want...)))
	}
}

// fErr parses line with p and checks that it fails at offset with an
// expectation that contains expected.
func fErr(t *testing.T, p parse.Parser, line string, offset int, expected string) {
	t.Helper()
	dst := []record.KV{prefix}
	got, err := p.Parse(dst, line)
	if err == nil {
		t.Fatalf("Parse(%q) = %s, want an error", line, fmtKVs(got[1:]))
	}
	if len(got) != 1 || got[0] != prefix {
		t.Fatalf("Parse(%q) failed but returned %v, want dst unchanged", line, got)
	}
	var se *parse.SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("Parse(%q): error %v is not a *SyntaxError", line, err)
	}
	if se.Offset != offset || !strings.Contains(se.Expected, expected) {
		t.Fatalf("Parse(%q): %v\nwant offset %d, expected containing %q", line, err, offset, expected)
	}
}

func equalKVs(a, b []record.KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func fmtKVs(fields []record.KV) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, kv := range fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(kv.Key))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(kv.Value))
	}
	b.WriteByte(']')
	return b.String()
}
