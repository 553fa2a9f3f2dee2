package jsonl

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/weirlabs/weir/ingest/internal/httpin"
)

func testParams() *Params {
	return &Params{MsgFields: []string{"_msg", "message", "msg"}, TimeFields: []string{"_time", "time", "timestamp"},
		StreamFields: []string{"app"}, DefaultStream: "default", MaxLineBytes: 256}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]int64{
		"":                               0,
		"0":                              0,
		"1772366400":                     1772366400e9,
		"1772366400123":                  1772366400123e6,
		"1772366400123456":               1772366400123456e3,
		"1772366400123456789":            1772366400123456789,
		"1772366400.5":                   1772366400500000000,
		"9223372035":                     9223372035e9,
		"2026-03-01T12:00:00.000000001Z": 1772366400000000001,
		"2026-03-01T13:00:00+01:00":      1772366400e9,
	} {
		if got, err := parseTime(in); err != nil || got != want {
			t.Errorf("parseTime(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	// Past 2262 in any unit overflows int64 nanoseconds: refused, never
	// wrapped to a negative time.
	for _, in := range []string{"-1", "yesterday", "1e300", "1969-12-31T23:59:59Z", "NaN",
		"1e10", "9999999999", "99999999999999", "99999999999999999", "9223372036.9"} {
		if got, err := parseTime(in); err == nil {
			t.Errorf("parseTime(%q) = %d, want an error", in, got)
		}
	}
}

// FuzzDecode: any body decodes without panic into one line per
// non-blank input line; each line either has an error and its text as
// the body, or a valid stream.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"_msg":"x","_time":"2026-03-01T12:00:00Z","level":"warn","app":"web","o":{"k":[1,2]}}` + "\n\n" + `not json` + "\r\n" + `{"a":{"b":{"c":1}}}`))
	f.Add([]byte(`{"msg": "` + strings.Repeat("x", 300) + `"}`))
	f.Add([]byte(strings.Repeat("{\"a\":", 40) + "1" + strings.Repeat("}", 40)))
	f.Add([]byte("{\"time\": 1e400}\n[1]\n\"s\""))
	f.Fuzz(func(t *testing.T, body []byte) {
		p := testParams()
		lines, err := decode(body, p)
		want := 0
		for l := range strings.SplitSeq(string(body), "\n") {
			if strings.TrimSpace(l) != "" {
				want++
			}
		}
		if (err != nil) != (want > httpin.MaxRecords) {
			t.Fatalf("%d lines: %v", want, err)
		}
		if len(lines) > want {
			t.Fatalf("%d lines from %d", len(lines), want)
		}
		for _, l := range lines {
			if l.stream == "" {
				t.Fatalf("no stream: %+v", l)
			}
			if l.err == nil && l.rec.Timestamp < 0 {
				t.Fatalf("negative timestamp: %+v", l)
			}
			if l.err == nil && !utf8.ValidString(l.rec.Body) {
				t.Fatalf("invalid UTF-8 body from a decoded object: %q", l.rec.Body)
			}
			if len(l.rec.Attributes) > MaxFields {
				t.Fatalf("%d attributes", len(l.rec.Attributes))
			}
		}
	})
}
