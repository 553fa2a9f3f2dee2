package parse_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/parse"
)

func TestJSON(t *testing.T) {
	t.Parallel()
	p := parse.JSON(parse.JSONOptions{})
	f(t, p, `{}`)
	f(t, p, ` { } `+"\r\n")
	f(t, p, `{"level":"info","msg":"started","port":8080,"ok":true,"bad":false,"none":null}`,
		"level", "info", "msg", "started", "port", "8080", "ok", "true", "bad", "false")
	// Numbers keep their literal text.
	f(t, p, `{"a":-0.5e+10,"b":0,"c":1E3,"d":-12}`, "a", "-0.5e+10", "b", "0", "c", "1E3", "d", "-12")
	// Nested objects flatten; empty ones are kept as {}.
	f(t, p, `{"http":{"method":"GET","req":{"path":"/x","h":{}}},"n":1}`,
		"http.method", "GET", "http.req.path", "/x", "http.req.h", "{}", "n", "1")
	// Arrays are compact JSON text, strings inside them stay escaped.
	f(t, p, `{"tags":["a","b"],"m":[ 1 , {"x" : [ ] } , "s p\n" ] }`,
		"tags", `["a","b"]`, "m", `[1,{"x":[]},"s p\n"]`)
	f(t, p, `{"e":[]}`, "e", `[]`)
	// Escapes, unicode, surrogate pairs, lone surrogates.
	f(t, p, `{"s":"a\"b\\c\/d\b\f\n\r\t","u":"\u00e9\u4e2d","pair":"\ud83d\ude00","lone":"x\ud800y","lowfirst":"\udc00\ud83d"}`,
		"s", "a\"b\\c/d\b\f\n\r\t", "u", "é中", "pair", "😀", "lone", "x\uFFFDy", "lowfirst", "\uFFFD\uFFFD")
	f(t, p, `{"raw":"héllo 中文 😀"}`, "raw", "héllo 中文 😀")
	f(t, p, `{"esc\"key":{"in\u0041":1}}`, `esc"key.inA`, "1")
	f(t, p, `{"nul":"\u0000"}`, "nul", "\x00")
	// Duplicate keys: the last wins, in its position.
	f(t, p, `{"a":1,"b":2,"a":3}`, "b", "2", "a", "3")
	f(t, p, `{"a.b":1,"a":{"b":2}}`, "a.b", "2")
	// A null duplicate does not remove the earlier value.
	f(t, p, `{"a":1,"a":null}`, "a", "1")
	f(t, p, `{"":""}`, "", "")
	f(t, p, `{"":{"":1,"a":{"":2}}}`, ".", "1", ".a.", "2")
}

func TestJSONErrors(t *testing.T) {
	t.Parallel()
	p := parse.JSON(parse.JSONOptions{})
	for _, tc := range []struct {
		line     string
		offset   int
		expected string
	}{
		{``, 0, "'{'"},
		{`[1]`, 0, "'{'"},
		{`"s"`, 0, "'{'"},
		{`{`, 1, "'\"' to start a key"},
		{`{"a"}`, 4, "':'"},
		{`{"a":}`, 5, "a value"},
		{`{"a":1,}`, 7, "'\"' to start a key"},
		{`{"a":1 "b":2}`, 7, "',' or '}'"},
		{`{"a":1}x`, 7, "end of line"},
		{`{"a":1}{}`, 7, "end of line"},
		{`{"a":tru}`, 8, "literal true"},
		{`{"a":nul`, 8, "literal null"},
		{`{"a":01}`, 6, "',' or '}'"},
		{`{"a":1.}`, 7, "digit after '.'"},
		{`{"a":1e}`, 7, "exponent"},
		{`{"a":-}`, 6, "a digit"},
		{`{"a":+1}`, 5, "a value"},
		{`{"a":"x`, 7, "close the string"},
		{`{"a":"x` + "\n" + `y"}`, 7, "control characters"},
		{`{"a":"\x"}`, 7, "escape character"},
		{`{"a":"\u12"}`, 8, "four hex digits"},
		{`{"a":["x`, 8, "close the string"},
		{`{"a":[1 2]}`, 8, "',' or ']'"},
		{`{"a":[1,]}`, 8, "a value"},
		{`{"a":{"b":1}`, 12, "',' or '}'"},
		{"{\"a\":\"\xff\"}", 6, "valid UTF-8"},
		{"{\"a\xc3\":1}", 3, "valid UTF-8"},
		{`{'a':1}`, 1, "'\"' to start a key"},
	} {
		fErr(t, p, tc.line, tc.offset, tc.expected)
	}
	deep := `{"a":` + strings.Repeat("[", 1001) + strings.Repeat("]", 1001) + "}"
	fErr(t, p, deep, 5+999, "1000 levels")
	ok := `{"a":` + strings.Repeat("[", 999) + strings.Repeat("]", 999) + "}"
	f(t, p, ok, "a", strings.Repeat("[", 999)+strings.Repeat("]", 999))
}

func TestJSONMaxDepth(t *testing.T) {
	t.Parallel()
	line := `{"a":{"b":{"c":{"d":1}}, "x":2}}`
	f(t, parse.JSON(parse.JSONOptions{}), line, "a.b.c.d", "1", "a.x", "2")
	f(t, parse.JSON(parse.JSONOptions{MaxDepth: 1}), line, "a", `{"b":{"c":{"d":1}},"x":2}`)
	f(t, parse.JSON(parse.JSONOptions{MaxDepth: 2}), line, "a.b", `{"c":{"d":1}}`, "a.x", "2")
	f(t, parse.JSON(parse.JSONOptions{MaxDepth: 3}), line, "a.b.c", `{"d":1}`, "a.x", "2")
	// Kept text that is already compact is the input itself.
	f(t, parse.JSON(parse.JSONOptions{MaxDepth: 1}), `{"a":{"b":"\u00e9"}}`, "a", `{"b":"\u00e9"}`)
	// The default depth is 16: 16 levels flatten, the 17th is text.
	var b strings.Builder
	for i := 0; i < 17; i++ {
		b.WriteString(`{"k":`)
	}
	b.WriteString(`{"z":1}`)
	b.WriteString(strings.Repeat("}", 17))
	f(t, parse.JSON(parse.JSONOptions{}), b.String(), strings.Repeat("k.", 15)+"k", `{"k":{"z":1}}`)
}

func TestJSONMaxFields(t *testing.T) {
	t.Parallel()
	p := parse.JSON(parse.JSONOptions{MaxFields: 3})
	f(t, p, `{"a":1,"b":2,"c":3}`, "a", "1", "b", "2", "c", "3")
	f(t, p, `{"a":1,"b":2,"c":3,"d":4}`, "a", "1", "b", "2", "c", "3", parse.JSONRestKey, `{"d":4}`)
	// A nested member that crosses the bound goes to the rest whole.
	f(t, p, `{"a":1,"n":{"x":1,"y":2,"z":3},"d" : [ 4 ] }`, "a", "1", parse.JSONRestKey, `{"n":{"x":1,"y":2,"z":3},"d":[4]}`)
	// null members do not count.
	f(t, p, `{"a":null,"b":null,"c":1,"d":2,"e":3}`, "c", "1", "d", "2", "e", "3")
	f(t, parse.JSON(parse.JSONOptions{MaxFields: math.MaxInt}), `{"a":1}`, "a", "1")
	// The rest is still checked.
	fErr(t, p, `{"a":1,"b":2,"c":3,"d":4,}`, 25, "'\"' to start a key")

	// Default 256.
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < 300; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteByte('}')
	got, err := parse.JSON(parse.JSONOptions{}).Parse(nil, b.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 257 || got[255] != (record.KV{Key: "k255", Value: "255"}) || got[256].Key != parse.JSONRestKey ||
		!strings.HasPrefix(got[256].Value, `{"k256":256,"k257":257`) || !strings.HasSuffix(got[256].Value, `"k299":299}`) {
		t.Fatalf("got %d fields, last %v", len(got), got[len(got)-1])
	}
}

// TestJSONDuplicatesMany checks the last-wins rule on the map path used
// for many fields.
func TestJSONDuplicatesMany(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteByte('{')
	var want []string
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		if i%10 != 0 {
			want = append(want, fmt.Sprintf("k%d", i), fmt.Sprint(i))
		}
	}
	for i := 0; i < 100; i += 10 {
		fmt.Fprintf(&b, `"k%d":"again",`, i)
		want = append(want, fmt.Sprintf("k%d", i), "again")
	}
	b.WriteString(`"end":1}`)
	want = append(want, "end", "1")
	f(t, parse.JSON(parse.JSONOptions{}), b.String(), want...)
}
