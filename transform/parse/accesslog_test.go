package parse_test

import (
	"testing"

	"github.com/weirlabs/weir/transform/parse"
)

func TestCommonLog(t *testing.T) {
	t.Parallel()
	p := parse.CommonLog()
	f(t, p, `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`,
		"client", "127.0.0.1", "user", "frank", "timestamp", "10/Oct/2000:13:55:36 -0700",
		"method", "GET", "path", "/apache_pb.gif", "protocol", "HTTP/1.0", "status", "200", "bytes", "2326")
	f(t, p, `2001:db8::1 ident - [01/Mar/2024:00:00:01 +0000] "POST /api/v1/items?q=a%20b HTTP/2.0" 201 -`+"\r\n",
		"client", "2001:db8::1", "ident", "ident", "timestamp", "01/Mar/2024:00:00:01 +0000",
		"method", "POST", "path", "/api/v1/items?q=a%20b", "protocol", "HTTP/2.0", "status", "201")
	// Odd requests: garbage, HTTP/0.9, spaces in the path, escaped quotes.
	f(t, p, `10.0.0.1 - - [01/Mar/2024:00:00:01 +0000] "\x16\x03\x01\x00" 400 157`,
		"client", "10.0.0.1", "timestamp", "01/Mar/2024:00:00:01 +0000", "request", `\x16\x03\x01\x00`, "status", "400", "bytes", "157")
	f(t, p, `10.0.0.1 - - [01/Mar/2024:00:00:01 +0000] "-" 408 0`,
		"client", "10.0.0.1", "timestamp", "01/Mar/2024:00:00:01 +0000", "status", "408", "bytes", "0")
	f(t, p, `10.0.0.1 - - [01/Mar/2024:00:00:01 +0000] "GET /old" 200 5`,
		"client", "10.0.0.1", "timestamp", "01/Mar/2024:00:00:01 +0000", "method", "GET", "path", "/old", "status", "200", "bytes", "5")
	f(t, p, `10.0.0.1 - - [01/Mar/2024:00:00:01 +0000] "GET /a b\"c HTTP/1.1" 404 0  `,
		"client", "10.0.0.1", "timestamp", "01/Mar/2024:00:00:01 +0000", "method", "GET", "path", `/a b\"c`,
		"protocol", "HTTP/1.1", "status", "404", "bytes", "0")
}

func TestCombinedLog(t *testing.T) {
	t.Parallel()
	p := parse.CombinedLog()
	f(t, p, `203.0.113.9 - alice [10/Oct/2023:13:55:36 +0200] "GET /index.html HTTP/1.1" 200 5120 "https://example.com/start" "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"`,
		"client", "203.0.113.9", "user", "alice", "timestamp", "10/Oct/2023:13:55:36 +0200",
		"method", "GET", "path", "/index.html", "protocol", "HTTP/1.1", "status", "200", "bytes", "5120",
		"referer", "https://example.com/start", "user_agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
	f(t, p, `::1 - - [10/Oct/2023:13:55:36 +0200] "HEAD / HTTP/1.1" 304 - "-" ""`,
		"client", "::1", "timestamp", "10/Oct/2023:13:55:36 +0200", "method", "HEAD", "path", "/", "protocol", "HTTP/1.1", "status", "304")
	f(t, p, `::1 - - [10/Oct/2023:13:55:36 +0200] "GET / HTTP/1.1" 200 1 "-" "curl \"x\" 8.0"`,
		"client", "::1", "timestamp", "10/Oct/2023:13:55:36 +0200", "method", "GET", "path", "/", "protocol", "HTTP/1.1",
		"status", "200", "bytes", "1", "user_agent", `curl \"x\" 8.0`)
}

func TestAccessLogErrors(t *testing.T) {
	t.Parallel()
	common, combined := parse.CommonLog(), parse.CombinedLog()
	const line = `1.2.3.4 - - [10/Oct/2023:13:55:36 +0200] "GET / HTTP/1.1" 200 1`
	for _, tc := range []struct {
		p        parse.Parser
		line     string
		offset   int
		expected string
	}{
		{common, ``, 0, "client"},
		{common, `1.2.3.4`, 7, "' ' after the client"},
		{common, `1.2.3.4 - - 10/Oct/2023`, 12, "'['"},
		{common, `1.2.3.4 - - [10/Oct/2023`, 24, "']'"},
		{common, `1.2.3.4 - - [x]"GET"`, 15, "' ' after the timestamp"},
		{common, `1.2.3.4 - - [x] GET`, 16, "'\"' to start the request"},
		{common, `1.2.3.4 - - [x] "GET`, 20, "'\"' to end the request"},
		{common, `1.2.3.4 - - [x] "GET" 20 1`, 24, "three-digit status"},
		{common, `1.2.3.4 - - [x] "GET" abc 1`, 22, "three-digit status"},
		{common, `1.2.3.4 - - [x] "GET" 200 x`, 26, "byte count"},
		{common, line + ` "-" "curl"`, len(line) + 1, "end of line"},
		{combined, line, len(line), "' ' before the referer"},
		{combined, line + ` "-"`, len(line) + 4, "' ' before the user_agent"},
		{combined, line + ` "-" "curl`, len(line) + 10, "'\"' to end the user_agent"},
		{combined, line + ` - "curl"`, len(line) + 1, "'\"' to start the referer"},
		{combined, line + ` "-" "curl" "1.1.1.1"`, len(line) + 12, "end of line"},
	} {
		fErr(t, tc.p, tc.line, tc.offset, tc.expected)
	}
}
