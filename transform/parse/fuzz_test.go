package parse_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/parse"
)

// checkParse runs p on line and checks what holds for every parser: dst
// is kept on failure, the error is a *SyntaxError with an offset inside
// the line, and fields of a valid UTF-8 line are valid UTF-8. It returns
// the fields and the error.
func checkParse(t *testing.T, p parse.Parser, line string) ([]record.KV, error) {
	t.Helper()
	dst := []record.KV{prefix}
	got, err := p.Parse(dst, line)
	if len(got) == 0 || got[0] != prefix {
		t.Fatalf("Parse(%q) changed the fields already in dst: %v", line, got)
	}
	if err != nil {
		if len(got) != 1 {
			t.Fatalf("Parse(%q) failed (%v) but appended %v", line, err, got[1:])
		}
		var se *parse.SyntaxError
		if !errors.As(err, &se) {
			t.Fatalf("Parse(%q): %v is not a *SyntaxError", line, err)
		}
		if se.Offset < 0 || se.Offset > len(line) || se.Expected == "" {
			t.Fatalf("Parse(%q): bad error %#v", line, se)
		}
		_ = se.Error()
		return nil, err
	}
	if utf8.ValidString(line) {
		for _, kv := range got[1:] {
			if !utf8.ValidString(kv.Key) || !utf8.ValidString(kv.Value) {
				t.Fatalf("Parse(%q): field %q=%q is not valid UTF-8", line, kv.Key, kv.Value)
			}
		}
	}
	return got[1:], nil
}

var jsonSeeds = []string{
	`{}`,
	`{"level":"info","msg":"started","port":8080,"ok":true,"none":null}`,
	`{"http":{"method":"GET","req":{"path":"/x","h":{}}},"n":-1.5e3}`,
	`{"tags":["a","b"],"m":[ 1 , {"x" : [ ] } , "s p\n" ] }`,
	`{"s":"a\"b\\c\/d\b\f\n\r\t","u":"\u00e9","pair":"\ud83d\ude00","lone":"x\ud800y"}`,
	`{"a":1,"a":2,"a.b":3,"a":{"b":4}}`,
	"{\"a\":\"\xff\"}",
	`{"a":[[[[[[[[]]]]]]]]}`,
	`{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":{"m":{"n":{"o":{"p":{"q":{"r":1}}}}}}}}}}}}}}}}}}`,
	`{"a":1,}`,
	`[1,2]`,
}

func FuzzJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add(s)
	}
	p := parse.JSON(parse.JSONOptions{})
	f.Fuzz(func(t *testing.T, line string) {
		got, err := checkParse(t, p, line)
		valid := json.Valid([]byte(line)) && utf8.ValidString(line)
		if err == nil && !valid {
			t.Fatalf("Parse(%q) accepted invalid JSON: %v", line, got)
		}
		isObject := strings.HasPrefix(strings.TrimLeft(line, " \t\r\n"), "{")
		shallow := strings.Count(line, "[")+strings.Count(line, "{") <= 1000
		if !valid || !isObject || !shallow {
			return
		}
		want, ok := referenceFlatten(t, line, 16)
		if !ok {
			return // more than MaxFields: the reference does not model JSONRestKey
		}
		if err != nil {
			t.Fatalf("Parse(%q) rejected valid JSON: %v", line, err)
		}
		if !equalKVs(got, want) {
			t.Fatalf("Parse(%q):\n got %s\nwant %s", line, fmtKVs(got), fmtKVs(want))
		}
	})
}

// referenceFlatten flattens a valid JSON object with encoding/json, for
// comparison: ok is false when it yields more than 256 fields.
func referenceFlatten(t *testing.T, line string, maxDepth int) (out []record.KV, ok bool) {
	var walk func(raw []byte, prefix string, depth int)
	walk = func(raw []byte, prefix string, depth int) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if _, err := dec.Token(); err != nil { // '{'
			t.Fatal(err)
		}
		empty := true
		for dec.More() {
			empty = false
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			key := tok.(string)
			if depth > 1 {
				key = prefix + "." + key
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			switch v[0] {
			case '{':
				if depth+1 <= maxDepth {
					walk(v, key, depth+1)
					continue
				}
				fallthrough
			case '[':
				var b bytes.Buffer
				if err := json.Compact(&b, v); err != nil {
					t.Fatal(err)
				}
				out = append(out, record.KV{Key: key, Value: b.String()})
			case '"':
				var s string
				if err := json.Unmarshal(v, &s); err != nil {
					t.Fatal(err)
				}
				out = append(out, record.KV{Key: key, Value: s})
			case 'n':
			default:
				out = append(out, record.KV{Key: key, Value: string(v)})
			}
		}
		if _, err := dec.Token(); err != nil && err != io.EOF { // '}'
			t.Fatal(err)
		}
		if empty && depth > 1 {
			out = append(out, record.KV{Key: prefix, Value: "{}"})
		}
	}
	walk([]byte(line), "", 1)
	if len(out) > 256 {
		return nil, false
	}
	// Last wins.
	var kept []record.KV
	for i, kv := range out {
		dup := false
		for _, later := range out[i+1:] {
			dup = dup || later.Key == kv.Key
		}
		if !dup {
			kept = append(kept, kv)
		}
	}
	return kept, true
}

var logfmtSeeds = []string{
	`level=info msg="request done" status=200 dur=1.5ms`,
	`a= b c="" d`,
	`msg="say \"hi\"\n\tbye \\ \u00e9 \ud83d\ude00" path="C:\dir"`,
	`msg="unterminated`,
	`a="x"b`,
	`=1`,
	"a=\xff b=\"\xfe\\\xfd\"",
}

func FuzzLogfmt(f *testing.F) {
	for _, s := range logfmtSeeds {
		f.Add(s)
	}
	p := parse.Logfmt()
	f.Fuzz(func(t *testing.T, line string) {
		got, err := checkParse(t, p, line)
		if err != nil || !utf8.ValidString(line) {
			return
		}
		// Round trip: write the fields back as logfmt and parse again.
		var b strings.Builder
		for _, kv := range got {
			v, err := json.Marshal(kv.Value)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(kv.Key)
			b.WriteByte('=')
			b.Write(v)
			b.WriteByte(' ')
		}
		again, err := checkParse(t, p, b.String())
		if err != nil {
			t.Fatalf("re-encoded %q as %q: %v", line, b.String(), err)
		}
		if !equalKVs(got, again) {
			t.Fatalf("round trip of %q through %q:\n got %s\nwant %s", line, b.String(), fmtKVs(again), fmtKVs(got))
		}
	})
}

var syslog5424Seeds = []string{
	"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed",
	`<165>1 2003-10-11T22:14:15.003Z host evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"][p@1 class="high"] msg`,
	`<14>1 - h a 1 m [x@1 v="a\"b\\c\]d\e" v="last"][flag@2] msg`,
	`<0>1 - - - - - -`,
	`<34>1 - h a p m [id a="b]`,
}

func FuzzSyslog5424(f *testing.F) {
	for _, s := range syslog5424Seeds {
		f.Add(s)
	}
	p := parse.Syslog5424()
	f.Fuzz(func(t *testing.T, line string) {
		checkParse(t, p, line)
	})
}

var syslog3164Seeds = []string{
	`<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8`,
	`Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0`,
	`Jul  1 09:29:02 mac sandboxd[129] ([31211]): deny`,
	`<30>2024-03-01T10:00:00.123456+01:00 web-1 nginx[811]: started`,
	`<13>Feb  5 2024 17:32:18 router %LINK-3-UPDOWN: Interface down`,
	`Jul  4 23:22:09 mac Microsoft Word[14463]: Cocoa error`,
	`Feb  5 17:32:18 kernel: [ 0.000] Booting`,
	`Oct 11 22:14 h a: m`,
}

func FuzzSyslog3164(f *testing.F) {
	for _, s := range syslog3164Seeds {
		f.Add(s)
	}
	p := parse.Syslog3164()
	f.Fuzz(func(t *testing.T, line string) {
		checkParse(t, p, line)
	})
}

var accessLogSeeds = []string{
	`127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`,
	`203.0.113.9 - alice [10/Oct/2023:13:55:36 +0200] "GET /index.html HTTP/1.1" 200 5120 "https://example.com/" "Mozilla/5.0 (X11)"`,
	`10.0.0.1 - - [01/Mar/2024:00:00:01 +0000] "\x16\x03\x01\x00" 400 157`,
	`::1 - - [10/Oct/2023:13:55:36 +0200] "GET / HTTP/1.1" 200 1 "-" "curl \"x\" 8.0\`,
}

// FuzzCommonLog covers both access log parsers.
func FuzzCommonLog(f *testing.F) {
	for _, s := range accessLogSeeds {
		f.Add(s)
	}
	common, combined := parse.CommonLog(), parse.CombinedLog()
	f.Fuzz(func(t *testing.T, line string) {
		checkParse(t, common, line)
		checkParse(t, combined, line)
	})
}

func FuzzAuto(f *testing.F) {
	for _, seeds := range [][]string{jsonSeeds, logfmtSeeds, syslog5424Seeds, syslog3164Seeds, accessLogSeeds} {
		for _, s := range seeds {
			f.Add(s)
		}
	}
	p := parse.Auto()
	f.Fuzz(func(t *testing.T, line string) {
		checkParse(t, p, line)
	})
}

func FuzzTime(f *testing.F) {
	for _, s := range []string{
		"2024-03-01T10:00:00.123456789+01:00", "2015-07-29 17:41:44,747", "Mar  1 10:00:00", "Feb 29 10:00:00",
		"10/Oct/2000:13:55:36 -0700", "Sun Dec 04 04:47:44 2005", "1700000000.5", "1700000000123456789",
		"9223372036.854775807", "99999999999999999999", "2024-03-01T10:00:00", "",
	} {
		f.Add(s)
	}
	now := time.Date(2024, 3, 15, 12, 0, 0, 0, time.UTC)
	p, err := parse.NewTimeParser(parse.TimeConfig{Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ns, err := p.Parse(s)
		if err != nil {
			if !errors.Is(err, parse.ErrTimestamp) {
				t.Fatalf("Parse(%q): %v is not ErrTimestamp", s, err)
			}
			return
		}
		// A time without a year never lands more than a day after now.
		if _, err := time.Parse("Jan _2 15:04:05", strings.TrimSpace(s)); err == nil && ns > now.Add(24*time.Hour).UnixNano() {
			t.Fatalf("Parse(%q) = %v, after now + 24h", s, time.Unix(0, ns).UTC())
		}
	})
}
