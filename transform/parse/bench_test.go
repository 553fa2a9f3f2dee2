package parse_test

import (
	"testing"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/parse"
)

// benchLines are realistic lines of each format.
var benchLines = map[string]string{
	"json":         `{"time":"2024-03-01T10:00:00.123456Z","level":"info","logger":"http.server","msg":"request completed","http":{"method":"GET","path":"/api/v1/items?page=2","status":200,"bytes":5120,"duration_ms":12.53},"user":{"id":"u-1842","roles":["admin","dev"]},"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","retry":false}`,
	"json_escaped": `{"time":"2024-03-01T10:00:00.123456Z","level":"error","msg":"query failed: \"relation \\\"items\\\" does not exist\"","stack":"main.run()\n\t/app/main.go:42\nmain.main()\n\t/app/main.go:12","user":"J\u00fcrgen","db":{"host":"db-1","port":5432}}`,
	"logfmt":       `ts=2024-03-01T10:00:00.123Z level=info caller=server.go:112 msg="request completed" method=GET path=/api/v1/items status=200 duration=12.5ms bytes=5120 trace_id=4bf92f3577b34da6a3ce929d0e0e4736`,
	"syslog5424":   `<165>1 2024-03-01T10:00:00.123456+01:00 web-1.example.com nginx 811 ACCESS [meta@32473 ip="203.0.113.9" status="200" bytes="5120"][origin@32473 software="nginx" swVersion="1.25.3"] GET /api/v1/items completed in 12ms`,
	"syslog3164":   `Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4`,
	"common_log":   `203.0.113.9 - alice [10/Oct/2023:13:55:36 +0200] "GET /api/v1/items?page=2 HTTP/1.1" 200 5120`,
	"combined_log": `203.0.113.9 - alice [10/Oct/2023:13:55:36 +0200] "GET /api/v1/items?page=2 HTTP/1.1" 200 5120 "https://example.com/start" "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"`,
	"regex":        `[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties`,
	"hdfs":         `081109 203807 222 INFO dfs.DataNode$PacketResponder: PacketResponder 0 for block blk_-6952295868487656571 terminating`,
}

// BenchmarkParse measures each parser on one realistic line, reusing dst
// so allocations are the parser's own.
func BenchmarkParse(b *testing.B) {
	apache, err := parse.Regex(`^\[(?P<timestamp>[^\]]+)\] \[(?P<level>[a-z]+)\] (?P<message>.*)$`)
	if err != nil {
		b.Fatal(err)
	}
	hdfsRegex, err := parse.Regex(`^(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<component>[^:]+): \s*(?P<message>.*?)\s*$`)
	if err != nil {
		b.Fatal(err)
	}
	hdfsDissect, err := parse.Dissect("%{timestamp} %{+timestamp} %{pid} %{level} %{component}: %{message}")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		p    parse.Parser
		line string
	}{
		{"json", parse.JSON(parse.JSONOptions{}), benchLines["json"]},
		{"json_escaped", parse.JSON(parse.JSONOptions{}), benchLines["json_escaped"]},
		{"logfmt", parse.Logfmt(), benchLines["logfmt"]},
		{"syslog5424", parse.Syslog5424(), benchLines["syslog5424"]},
		{"syslog3164", parse.Syslog3164(), benchLines["syslog3164"]},
		{"common_log", parse.CommonLog(), benchLines["common_log"]},
		{"combined_log", parse.CombinedLog(), benchLines["combined_log"]},
		{"regex", apache, benchLines["regex"]},
		{"regex_hdfs", hdfsRegex, benchLines["hdfs"]},
		{"dissect_hdfs", hdfsDissect, benchLines["hdfs"]},
		{"auto_json", parse.Auto(), benchLines["json"]},
		{"auto_logfmt", parse.Auto(), benchLines["logfmt"]},
		{"auto_syslog3164", parse.Auto(), benchLines["syslog3164"]},
		{"auto_combined_log", parse.Auto(), benchLines["combined_log"]},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dst := make([]record.KV, 0, 64)
			if _, err := bc.p.Parse(dst, bc.line); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.line)))
			for b.Loop() {
				var err error
				if dst, err = bc.p.Parse(dst[:0], bc.line); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkTimeParse measures timestamp conversion. same_format is the
// usual case, where the remembered layout matches at once; alternating
// switches format every line, so each line walks the layout list as it
// would without the cache.
func BenchmarkTimeParse(b *testing.B) {
	auto, err := parse.NewTimeParser(parse.TimeConfig{})
	if err != nil {
		b.Fatal(err)
	}
	fixed, err := parse.NewTimeParser(parse.TimeConfig{Layouts: []string{"common_log"}})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		p     *parse.TimeParser
		input []string
	}{
		{"auto_same_format/rfc3339", auto, []string{"2024-03-01T10:00:00.123456Z"}},
		{"auto_same_format/common_log", auto, []string{"10/Oct/2023:13:55:36 +0200"}},
		{"auto_same_format/rfc3164", auto, []string{"Jun 14 15:16:01"}},
		{"auto_same_format/unix_ms", auto, []string{"1709287200123"}},
		{"auto_alternating/rfc3339+common_log", auto, []string{"2024-03-01T10:00:00.123456Z", "10/Oct/2023:13:55:36 +0200"}},
		{"layout/common_log", fixed, []string{"10/Oct/2023:13:55:36 +0200"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := bc.p.Parse(bc.input[i%len(bc.input)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

func BenchmarkSeverity(b *testing.B) {
	b.ReportAllocs()
	levels := []string{"info", "WARN", "error", "3", "[notice]"}
	i := 0
	for b.Loop() {
		parse.Severity(levels[i%len(levels)])
		i++
	}
}

// TestBenchLinesParse keeps the benchmark lines honest: each parses with
// Auto, except those that need a pattern of their own (Apache's error log,
// HDFS), which parse with theirs.
func TestBenchLinesParse(t *testing.T) {
	t.Parallel()
	for name, line := range benchLines {
		if name == "regex" || name == "hdfs" {
			continue
		}
		if _, err := parse.Auto().Parse(nil, line); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	hdfs, err := parse.Dissect("%{timestamp} %{+timestamp} %{pid} %{level} %{component}: %{message}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hdfs.Parse(nil, benchLines["hdfs"]); err != nil {
		t.Errorf("hdfs: %v", err)
	}
}
