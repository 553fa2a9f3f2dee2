package parse_test

import (
	"strings"
	"testing"

	"github.com/weirlabs/weir/transform/parse"
)

func TestSyslog5424(t *testing.T) {
	t.Parallel()
	p := parse.Syslog5424()
	// The examples of RFC 5424 section 6.5.
	f(t, p, "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
		"syslog.facility", "4", "syslog.severity", "2", "timestamp", "2003-10-11T22:14:15.003Z",
		"host", "mymachine.example.com", "app", "su", "msgid", "ID47",
		"message", "'su root' failed for lonvick on /dev/pts/8")
	f(t, p, "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
		"syslog.facility", "20", "syslog.severity", "5", "timestamp", "2003-08-24T05:14:15.000003-07:00",
		"host", "192.0.2.1", "app", "myproc", "procid", "8710", "message", "%% It's time to make the do-nuts.")
	f(t, p, `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] BOMAn application event log entry...`,
		"syslog.facility", "20", "syslog.severity", "5", "timestamp", "2003-10-11T22:14:15.003Z",
		"host", "mymachine.example.com", "app", "evntslog", "msgid", "ID47",
		"sd.exampleSDID@32473.iut", "3", "sd.exampleSDID@32473.eventSource", "Application", "sd.exampleSDID@32473.eventID", "1011",
		"message", "BOMAn application event log entry...")
	f(t, p, `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
		"syslog.facility", "20", "syslog.severity", "5", "timestamp", "2003-10-11T22:14:15.003Z",
		"host", "mymachine.example.com", "app", "evntslog", "msgid", "ID47",
		"sd.exampleSDID@32473.iut", "3", "sd.exampleSDID@32473.eventSource", "Application", "sd.exampleSDID@32473.eventID", "1011",
		"sd.examplePriority@32473.class", "high")
	// All NILVALUEs, no message.
	f(t, p, `<0>1 - - - - - -`, "syslog.facility", "0", "syslog.severity", "0")
	f(t, p, `<191>12 - - - - - - `, "syslog.facility", "23", "syslog.severity", "7")
	// Escapes in SD values, an element without parameters, repeated params.
	f(t, p, `<14>1 - h a 1 m [x@1 v="a\"b\\c\]d\e" v="last"][flag@2] msg`+"\n",
		"syslog.facility", "1", "syslog.severity", "6", "host", "h", "app", "a", "procid", "1", "msgid", "m",
		"sd.x@1.v", "last", "sd.flag@2", "", "message", "msg")
	f(t, p, `<14>1 - h a 1 m [x@1 v="a\"b\\c\]d\e ]"] msg`,
		"syslog.facility", "1", "syslog.severity", "6", "host", "h", "app", "a", "procid", "1", "msgid", "m",
		"sd.x@1.v", `a"b\c]d\e ]`, "message", "msg")
	f(t, p, `<14>1 - h a 1 m - 日本語 text`,
		"syslog.facility", "1", "syslog.severity", "6", "host", "h", "app", "a", "procid", "1", "msgid", "m", "message", "日本語 text")
}

func TestSyslog5424Errors(t *testing.T) {
	t.Parallel()
	p := parse.Syslog5424()
	for _, tc := range []struct {
		line     string
		offset   int
		expected string
	}{
		{``, 0, "'<'"},
		{`34>1 - - - - - -`, 0, "'<'"},
		{`<>1 - - - - - -`, 1, "priority digits"},
		{`<1234>1 - - - - - -`, 4, "'>'"},
		{`<192>1 - - - - - -`, 1, "0 to 191"},
		{`<34>0 - - - - - -`, 4, "version"},
		{`<34> - - - - - -`, 4, "version"},
		{`<34>1`, 5, "timestamp"},
		{`<34>1 - - - - -`, 15, "structured data"},
		{`<34>1  - - - - -`, 6, "timestamp field or '-'"},
		{`<34>1 - h a p m x`, 16, "'[' or '-'"},
		{`<34>1 - h a p m -x`, 17, "' ' or end of line"},
		{`<34>1 - h a p m [`, 17, "SD-ID"},
		{`<34>1 - h a p m [id`, 19, "' ' or ']'"},
		{`<34>1 - h a p m [id a]`, 21, "'=' after the parameter name"},
		{`<34>1 - h a p m [id a=b]`, 22, "'\"' to start"},
		{`<34>1 - h a p m [id a="b]`, 25, "close the parameter value opened at byte 22"},
		{`<34>1 - h a p m [id a="b"`, 25, "' ' or ']'"},
		{`<34>1 - h a p m [id ="b"]`, 20, "parameter name"},
		{`<34>1 - h a p m [id a="b"]x`, 26, "' ' or end of line"},
		{"<34>1 - h\x01 a p m -", 9, "' ' before the app"},
	} {
		fErr(t, p, tc.line, tc.offset, tc.expected)
	}
}

func TestSyslog3164(t *testing.T) {
	t.Parallel()
	p := parse.Syslog3164()
	f(t, p, `<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8`,
		"syslog.facility", "4", "syslog.severity", "2", "timestamp", "Oct 11 22:14:15", "host", "mymachine",
		"app", "su", "message", "'su root' failed for lonvick on /dev/pts/8")
	f(t, p, `Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0`+"\r\n",
		"timestamp", "Jun 14 15:16:01", "host", "combo", "app", "sshd(pam_unix)", "procid", "19939",
		"message", "authentication failure; logname= uid=0")
	f(t, p, `Jul  1 09:00:55 calvisitor-10-105-160-95 kernel[0]: IOThunderboltSwitch<0>(0x0)::listenerCallback`,
		"timestamp", "Jul  1 09:00:55", "host", "calvisitor-10-105-160-95", "app", "kernel", "procid", "0",
		"message", "IOThunderboltSwitch<0>(0x0)::listenerCallback")
	f(t, p, `Jul 01 09:00:55.123456 h postfix/smtpd[12]: connect from x[1.2.3.4]`,
		"timestamp", "Jul 01 09:00:55.123456", "host", "h", "app", "postfix/smtpd", "procid", "12", "message", "connect from x[1.2.3.4]")
	f(t, p, `<13>Feb  5 2024 17:32:18 router %LINK-3-UPDOWN: Interface down`,
		"syslog.facility", "1", "syslog.severity", "5", "timestamp", "Feb  5 2024 17:32:18", "host", "router",
		"app", "%LINK-3-UPDOWN", "message", "Interface down")
	// rsyslog's RFC 3339 timestamp.
	f(t, p, `<30>2024-03-01T10:00:00.123456+01:00 web-1 nginx[811]: started`,
		"syslog.facility", "3", "syslog.severity", "6", "timestamp", "2024-03-01T10:00:00.123456+01:00",
		"host", "web-1", "app", "nginx", "procid", "811", "message", "started")
	// No host: the word after the timestamp is a tag.
	f(t, p, `<13>Feb  5 17:32:18 sshd[123]: msg`, "syslog.facility", "1", "syslog.severity", "5",
		"timestamp", "Feb  5 17:32:18", "app", "sshd", "procid", "123", "message", "msg")
	f(t, p, `Feb  5 17:32:18 kernel: [ 0.000] Booting`, "timestamp", "Feb  5 17:32:18", "app", "kernel", "message", "[ 0.000] Booting")
	// No tag: the rest is the message.
	f(t, p, `Jun 19 04:09:11 combo syslogd 1.4.1: restart.`, "timestamp", "Jun 19 04:09:11", "host", "combo", "message", "syslogd 1.4.1: restart.")
	f(t, p, `Jun 19 04:09:11 combo -- MARK --`, "timestamp", "Jun 19 04:09:11", "host", "combo", "message", "-- MARK --")
	f(t, p, `Jun 19 04:09:11 combo x[1]y z`, "timestamp", "Jun 19 04:09:11", "host", "combo", "message", "x[1]y z")
	f(t, p, `Jun 19 04:09:11 combo x[] z`, "timestamp", "Jun 19 04:09:11", "host", "combo", "message", "x[] z")
	// "tag[pid]" without the colon, as macOS writes.
	f(t, p, `Jul  1 09:29:02 mac sandboxd[129] ([31211]): deny`, "timestamp", "Jul  1 09:29:02", "host", "mac",
		"app", "sandboxd", "procid", "129", "message", "([31211]): deny")
	// Tags with spaces, when they end in "[pid]:".
	f(t, p, `Jul  4 23:22:09 mac Microsoft Word[14463]: Cocoa error`, "timestamp", "Jul  4 23:22:09", "host", "mac",
		"app", "Microsoft Word", "procid", "14463", "message", "Cocoa error")
	f(t, p, `Jul  4 23:22:09 mac a b[1] x`, "timestamp", "Jul  4 23:22:09", "host", "mac", "message", "a b[1] x")
	f(t, p, `Jul  4 23:22:09 mac a b: c[1]: x`, "timestamp", "Jul  4 23:22:09", "host", "mac", "message", "a b: c[1]: x")
	f(t, p, `Jul  4 23:22:09 mac `+strings.Repeat("a ", 40)+`[1]: x`, "timestamp", "Jul  4 23:22:09", "host", "mac", "message", strings.Repeat("a ", 40)+`[1]: x`)
	f(t, p, `Jul  1 09:29:02 host`, "timestamp", "Jul  1 09:29:02", "host", "host")
	f(t, p, `Jul  1 09:29:02`, "timestamp", "Jul  1 09:29:02")
	f(t, p, `Jul  1 09:29:02 host app:`, "timestamp", "Jul  1 09:29:02", "host", "host", "app", "app")
	f(t, p, `Jul  1 09:29:02 host app:x`, "timestamp", "Jul  1 09:29:02", "host", "host", "app", "app", "message", "x")
}

func TestSyslog3164Errors(t *testing.T) {
	t.Parallel()
	p := parse.Syslog3164()
	for _, tc := range []struct {
		line     string
		offset   int
		expected string
	}{
		{``, 0, "timestamp"},
		{`hello world`, 0, "timestamp"},
		{`<34`, 3, "'>'"},
		{`<x>Oct 11 22:14:15 h a: m`, 1, "priority digits"},
		{`<34>Oct 11 22:14 h a: m`, 16, "timestamp"},
		{`<34>Oct 11 22:1x:15 h a: m`, 15, "timestamp"},
		{`Octo 11 22:14:15 h`, 3, "timestamp"},
		{`Oct 111 22:14:15 h`, 6, "timestamp"},
		{`Oct 11 22:14:15x h`, 15, "' ' after the timestamp"},
		{`<34>1 2003-10-11T22:14:15.003Z h a - - - m`, 5, "timestamp"},
		{`2003:10`, 4, "timestamp"},
	} {
		fErr(t, p, tc.line, tc.offset, tc.expected)
	}
}
