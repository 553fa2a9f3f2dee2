package parse_test

import (
	"testing"

	"github.com/weirlabs/weir/transform/parse"
)

func TestLogfmt(t *testing.T) {
	t.Parallel()
	p := parse.Logfmt()
	f(t, p, ``)
	f(t, p, "   \t ")
	f(t, p, `level=info msg="request done" status=200 dur=1.5ms`+"\r\n",
		"level", "info", "msg", "request done", "status", "200", "dur", "1.5ms")
	f(t, p, `a= b c="" d`, "a", "", "b", "", "c", "", "d", "")
	f(t, p, `  a=1   b=2  `, "a", "1", "b", "2")
	f(t, p, "a=1\tb=2", "a", "1", "b", "2")
	f(t, p, `q=x=y url=http://h/p?a=1&b=2`, "q", "x=y", "url", "http://h/p?a=1&b=2")
	f(t, p, `msg="say \"hi\"\n\tbye \\ \u00e9 \ud83d\ude00"`, "msg", "say \"hi\"\n\tbye \\ é 😀")
	// Unknown escapes stay as they are.
	f(t, p, `path="C:\dir\sub" re="\d+\é"`, "path", `C:\dir\sub`, "re", `\d+\é`)
	f(t, p, `k="\u12"`, "k", `\u12`)
	f(t, p, `k="\ud800x"`, "k", "\uFFFDx")
	f(t, p, `name=日本 "é"=x`[:len(`name=日本`)], "name", "日本")
	f(t, p, `a=1 a=2 b=3 a=4`, "b", "3", "a", "4")
}

func TestLogfmtErrors(t *testing.T) {
	t.Parallel()
	p := parse.Logfmt()
	for _, tc := range []struct {
		line     string
		offset   int
		expected string
	}{
		{`msg="unterminated`, 17, "close the value quoted at byte 4"},
		{`a=1 msg="x\"`, 12, "close the value quoted at byte 8"},
		{`msg="x\`, 7, "close the value"},
		{`=1`, 0, "a key"},
		{`a=1 =2`, 4, "a key"},
		{`a="x"b`, 5, "space or end of line after the quoted value"},
		{`a=x"y"`, 3, "space or end of line after the value"},
		{`"a"=1`, 0, "a key"},
		{`a"b=1`, 1, "'=', space or end of line"},
		{"a=1\x00", 3, "space or end of line"},
		{"a\x01=1", 1, "'='"},
	} {
		fErr(t, p, tc.line, tc.offset, tc.expected)
	}
}
