package record

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSeverityRoundTrip(t *testing.T) {
	t.Parallel()
	for n := int32(1); n <= 24; n++ {
		text := SeverityText(n)
		if got := ParseSeverity(text); got != n {
			t.Errorf("ParseSeverity(SeverityText(%d) = %q) = %d", n, text, got)
		}
	}
	for text, want := range map[string]int32{
		"info": SeverityInfo, "Warning": SeverityWarn, "E": SeverityError, "notice": SeverityInfo,
		"CRITICAL": SeverityFatal, " debug ": SeverityDebug, "error3": SeverityError + 2, "": 0, "bogus": 0,
		"FAIL": SeverityError, "failed": SeverityError, "FAILURE": SeverityError, "WARNING": SeverityWarn,
	} {
		if got := ParseSeverity(text); got != want {
			t.Errorf("ParseSeverity(%q) = %d, want %d", text, got, want)
		}
	}
	if SeverityText(0) != "" || SeverityText(25) != "" {
		t.Error("SeverityText out of range should be empty")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	lim := Limits{MaxFuture: time.Hour}
	f := func(r Record, want error) {
		t.Helper()
		err := r.Validate(3, now, lim)
		if !errors.Is(err, want) {
			t.Errorf("Validate(%+v) = %v, want %v", r, err, want)
		}
	}
	f(Record{Body: "ok", Timestamp: now.UnixNano()}, nil)
	f(Record{Body: "ok", Timestamp: now.Add(2 * time.Hour).UnixNano()}, ErrInvalidTimestamp)
	f(Record{Body: "ok", ObservedTimestamp: -1}, ErrInvalidTimestamp)
	f(Record{Body: "bad \xff"}, ErrInvalidUTF8)
	f(Record{Attributes: []KV{{Key: "k", Value: "\xc3"}}}, ErrInvalidUTF8)
	f(Record{SeverityNumber: 25}, ErrInvalidSeverity)
}

func TestValidateStream(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"hdfs", "a", "web_01", "logs2", "my_logs", "maintenance", "system_events", "temperature", "duckdb", "sqlite"} {
		if err := ValidateStream(ok); err != nil {
			t.Errorf("ValidateStream(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "HDFS", "1abc", "a-b", "a/b", "../x", "_dead", "a b", string(make([]byte, 65))} {
		if err := ValidateStream(bad); !errors.Is(err, ErrInvalidStream) {
			t.Errorf("ValidateStream(%q) = %v, want ErrInvalidStream", bad, err)
		}
	}
	// Names that would shadow catalog objects, in any case.
	for _, reserved := range []string{
		"information_schema", "pg_catalog", "duckdb_views", "duckdb_tables", "main", "temp", "system",
		"memory", "sqlite_master", "pragma_table_info", "logs", "LOGS", "Main", "DuckDB_Settings", "Information_Schema",
	} {
		err := ValidateStream(reserved)
		if !errors.Is(err, ErrInvalidStream) || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("ValidateStream(%q) = %v, want ErrInvalidStream saying it is reserved", reserved, err)
		}
	}
}
