package loki

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/weirlabs/weir/internal/record"
)

// ErrLabels reports a labels string that is not in Prometheus' label
// syntax.
var ErrLabels = errors.New("invalid labels")

// MaxLabels bounds the labels of one Loki stream.
const MaxLabels = 256

// parseLabels reads a Loki stream's labels string, `{a="b", c="d"}`:
// names of [a-zA-Z_][a-zA-Z0-9_]*, values double-quoted with Go's
// escapes (\" \\ \n \t \uXXXX ...), separated by commas, a trailing
// comma allowed, space anywhere between tokens. A name may appear once;
// at most max labels. It reads s once, left to right, without recursion.
func parseLabels(s string, max int) ([]record.KV, error) {
	i := 0
	space := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	fail := func(format string, args ...any) ([]record.KV, error) {
		return nil, fmt.Errorf("%w %q at byte %d: %s", ErrLabels, truncate(s, 256), i, fmt.Sprintf(format, args...))
	}
	space()
	if i == len(s) || s[i] != '{' {
		return fail("want {")
	}
	i++
	var out []record.KV
	for {
		space()
		if i < len(s) && s[i] == '}' {
			i++
			break
		}
		start := i
		for i < len(s) && (s[i] == '_' || (s[i]|0x20 >= 'a' && s[i]|0x20 <= 'z') || (i > start && s[i] >= '0' && s[i] <= '9')) {
			i++
		}
		if i == start {
			return fail("want a label name")
		}
		name := s[start:i]
		space()
		if i == len(s) || s[i] != '=' {
			return fail("want = after %q", name)
		}
		i++
		space()
		if i == len(s) || s[i] != '"' {
			return fail("want a double-quoted value for %q", name)
		}
		start = i
		for i++; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				i++
			}
		}
		if i >= len(s) {
			return fail("unterminated value of %q", name)
		}
		i++
		value, err := strconv.Unquote(s[start:i])
		if err != nil {
			return fail("value of %q: %v", name, err)
		}
		for _, kv := range out {
			if kv.Key == name {
				return fail("label %q twice", name)
			}
		}
		if len(out) == max {
			return fail("more than %d labels", max)
		}
		out = append(out, record.KV{Key: name, Value: value})
		space()
		if i < len(s) && s[i] == ',' {
			i++
			continue
		}
		if i < len(s) && s[i] == '}' {
			i++
			break
		}
		return fail("want , or }")
	}
	space()
	if i != len(s) {
		return fail("text after }")
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
