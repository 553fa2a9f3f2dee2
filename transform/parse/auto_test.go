package parse_test

import (
	"sync"
	"testing"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/parse"
)

func TestAuto(t *testing.T) {
	t.Parallel()
	p := parse.Auto()
	f(t, p, ` {"level":"warn","a":{"b":1}}`, "level", "warn", "a.b", "1")
	f(t, p, `<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - hi`,
		"syslog.facility", "4", "syslog.severity", "2", "timestamp", "2003-10-11T22:14:15.003Z",
		"host", "mymachine", "app", "su", "msgid", "ID47", "message", "hi")
	f(t, p, `<34>Oct 11 22:14:15 mymachine su: hi`,
		"syslog.facility", "4", "syslog.severity", "2", "timestamp", "Oct 11 22:14:15", "host", "mymachine", "app", "su", "message", "hi")
	f(t, p, `Jun  9 06:06:20 combo kernel: hi`,
		"timestamp", "Jun  9 06:06:20", "host", "combo", "app", "kernel", "message", "hi")
	f(t, p, `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326`,
		"client", "127.0.0.1", "user", "frank", "timestamp", "10/Oct/2000:13:55:36 -0700",
		"method", "GET", "path", "/a.gif", "protocol", "HTTP/1.0", "status", "200", "bytes", "2326")
	f(t, p, `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1 "-" "curl/8"`,
		"client", "127.0.0.1", "timestamp", "10/Oct/2000:13:55:36 -0700",
		"method", "GET", "path", "/", "protocol", "HTTP/1.0", "status", "200", "bytes", "1", "user_agent", "curl/8")
	f(t, p, `ts=2024-01-01T00:00:00Z level=info msg="ok"`, "ts", "2024-01-01T00:00:00Z", "level", "info", "msg", "ok")
	// A line that looks like one format but is logfmt.
	f(t, p, `{x} a=1 b=2`, "{x}", "", "a", "1", "b", "2")
	f(t, p, `Jan=1 Feb=2`, "Jan", "1", "Feb", "2")

	// Errors: the detected format's, or none matched.
	fErr(t, p, `{"a":1`, 6, "',' or '}'")
	fErr(t, p, `<34>1 2003-10-11T22:14:15.003Z`, 30, "host")
	fErr(t, p, `Jun  9 06:06 combo`, 12, "timestamp")
	fErr(t, p, `1.2.3.4 - - [x] "GET / HTTP/1.1" 200`, 36, "' ' after the status")
	fErr(t, p, `just some words a=1`, 0, "a JSON object, syslog line")
	fErr(t, p, `081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1`, 0, "a JSON object")
	fErr(t, p, ``, 0, "a JSON object")
}

// TestConcurrent runs every parser from several goroutines on the same
// values; with -race it checks that they share no mutable state.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	re, err := parse.Regex(`^\[(?P<timestamp>[^\]]+)\] \[(?P<level>[a-z]+)\] (?P<message>.*)$`)
	if err != nil {
		t.Fatal(err)
	}
	parsers := []parse.Parser{parse.JSON(parse.JSONOptions{}), parse.Logfmt(), parse.Syslog5424(), parse.Syslog3164(),
		parse.CommonLog(), parse.CombinedLog(), re, parse.Auto()}
	var lines []string
	for _, line := range benchLines {
		lines = append(lines, line)
	}
	want := make([][][]record.KV, len(parsers))
	for i, p := range parsers {
		for _, line := range lines {
			got, _ := p.Parse(nil, line)
			want[i] = append(want[i], got)
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Go(func() {
			var dst []record.KV
			for n := 0; n < 50; n++ {
				for i, p := range parsers {
					for k, line := range lines {
						dst, _ = p.Parse(dst[:0], line)
						if !equalKVs(dst, want[i][k]) {
							t.Errorf("parser %d: got %s, want %s", i, fmtKVs(dst), fmtKVs(want[i][k]))
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
}
