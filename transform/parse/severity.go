package parse

import "github.com/weirlabs/weir/internal/record"

// syslogSeverities are the keywords of the syslog severities 0..7; each
// maps as record.ParseSeverity maps the keyword.
var syslogSeverities = [8]string{"EMERG", "ALERT", "CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG"}

// Severity maps a level to an OpenTelemetry severity number and its short
// name ("INFO", "WARN2", ...). It knows what record.ParseSeverity knows
// (level names in any case), the syslog severities as the digits 0 to 7 (0
// emerg, 1 alert, 2 crit → FATAL; 3 err → ERROR; 4 warning → WARN;
// 5 notice, 6 info → INFO; 7 debug → DEBUG, as their names map), and the
// single letters T (trace), N (notice), C (critical) and A (alert or
// Android's assert) besides ParseSeverity's V, D, I, W, E and F. Surrounding
// white space, one pair of brackets ([], (), <>) and a trailing ':' are
// ignored. Unknown text gives 0, "".
func Severity(text string) (number int32, normalized string) {
	t := trimLevel(text)
	var n int32
	switch {
	case len(t) == 1 && t[0] >= '0' && t[0] <= '7':
		n = record.ParseSeverity(syslogSeverities[t[0]-'0'])
	case len(t) == 1:
		switch t[0] | 0x20 {
		case 't':
			n = record.SeverityTrace
		case 'n':
			n = record.SeverityInfo
		case 'c', 'a':
			n = record.SeverityFatal
		default:
			n = record.ParseSeverity(t)
		}
	default:
		n = parseSeverityNoAlloc(t)
	}
	return n, record.SeverityText(n)
}

// parseSeverityNoAlloc calls record.ParseSeverity on an upper-cased copy
// kept on the stack: ParseSeverity upper-cases with strings.ToUpper,
// which allocates for the usual lower-case "info".
func parseSeverityNoAlloc(t string) int32 {
	if len(t) == 0 || len(t) > 16 {
		return 0
	}
	var buf [16]byte
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
	}
	return record.ParseSeverity(string(buf[:len(t)]))
}

func trimLevel(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	if n := len(s); n > 0 && s[n-1] == ':' {
		s = s[:n-1]
	}
	if n := len(s); n >= 2 {
		switch {
		case s[0] == '[' && s[n-1] == ']', s[0] == '(' && s[n-1] == ')', s[0] == '<' && s[n-1] == '>':
			s = s[1 : n-1]
		}
	}
	return s
}
