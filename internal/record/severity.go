package record

import "strings"

// Severity numbers of the first step of each OpenTelemetry level.
const (
	SeverityTrace int32 = 1
	SeverityDebug int32 = 5
	SeverityInfo  int32 = 9
	SeverityWarn  int32 = 13
	SeverityError int32 = 17
	SeverityFatal int32 = 21
)

var severityNames = [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// SeverityText returns the OpenTelemetry short name of a severity number:
// "INFO" for 9, "INFO2" for 10 and so on; "" for 0 or out of range.
func SeverityText(n int32) string {
	if n < 1 || n > 24 {
		return ""
	}
	name := severityNames[(n-1)/4]
	if step := (n-1)%4 + 1; step > 1 {
		return name + string(rune('0'+step))
	}
	return name
}

// ParseSeverity maps a severity text to an OpenTelemetry severity number.
// It knows the OpenTelemetry names (with their step suffix 2..4), syslog
// names and the common short and long spellings in any case; it returns 0
// for text it does not know. This table is the one place weir names
// severities: the server's severity processor, the ingest decoders and
// weir push --guess-severity all map through it, and SeverityText of its
// answer is the normalised name (WARNING is WARN, CRITICAL is FATAL,
// FAILED is ERROR).
func ParseSeverity(text string) int32 {
	t := strings.TrimSpace(text)
	if len(t) == 0 || len(t) > 16 {
		return 0
	}
	t = strings.ToUpper(t)
	step := int32(0)
	if n := len(t); n > 1 && t[n-1] >= '2' && t[n-1] <= '4' {
		step = int32(t[n-1] - '1')
		t = t[:n-1]
	}
	var base int32
	switch t {
	case "TRACE", "TRC", "FINEST", "FINER", "VERBOSE", "V":
		base = SeverityTrace
	case "DEBUG", "DBG", "D", "FINE", "DEBU":
		base = SeverityDebug
	case "INFO", "INF", "I", "INFORMATION", "INFORMATIONAL", "NOTICE", "CONFIG":
		base = SeverityInfo
	case "WARN", "WARNING", "WRN", "W":
		base = SeverityWarn
	case "ERROR", "ERR", "E", "SEVERE", "FAIL", "FAILED", "FAILURE":
		base = SeverityError
	case "FATAL", "FTL", "F", "CRITICAL", "CRIT", "ALERT", "EMERG", "EMERGENCY", "PANIC":
		base = SeverityFatal
	default:
		return 0
	}
	return base + step
}
