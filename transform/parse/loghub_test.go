package parse_test

import (
	"bufio"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/parse"
)

const loghub = "../../testdata/loghub"

// readLines returns the lines of a loghub file with their "\r\n" (the
// parsers drop it).
func readLines(t *testing.T, name string) []string {
	t.Helper()
	fh, err := os.Open(filepath.Join(loghub, name))
	if err != nil {
		t.Skipf("loghub data: %v", err)
	}
	defer fh.Close()
	var lines []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// readCSV returns the rows of a loghub structured file as maps from
// column name to value.
func readCSV(t *testing.T, name string) []map[string]string {
	t.Helper()
	fh, err := os.Open(filepath.Join(loghub, name))
	if err != nil {
		t.Skipf("loghub data: %v", err)
	}
	defer fh.Close()
	rows, err := csv.NewReader(fh).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, row := range rows[1:] {
		m := make(map[string]string, len(row))
		for i, col := range rows[0] {
			m[col] = row[i]
		}
		out = append(out, m)
	}
	return out
}

func get(fields []record.KV, key string) string {
	for _, kv := range fields {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

// TestLoghubSyslog parses the BSD syslog files of loghub and checks host,
// program, pid and message against loghub's own parse. Loghub reads two
// kinds of odd line differently, and the test expects our reading of them:
// a "tag" with a space and no [pid] ("syslogd 1.4.1: restart.") is part of
// the message, and so is the "(domain): " that macOS puts after a tag.
// Messages are compared without surrounding space (loghub trims them; the
// parser keeps indentation).
func TestLoghubSyslog(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file           string
		host, app, pid string // CSV columns
		month, day     string
	}{
		{"Linux_2k.log", "Level", "Component", "PID", "Month", "Date"},
		{"OpenSSH_2k.log", "Component", "", "Pid", "Date", "Day"},
		{"Mac_2k.log", "User", "Component", "PID", "Month", "Date"},
	} {
		lines := readLines(t, tc.file)
		rows := readCSV(t, tc.file+"_structured.csv")
		if len(lines) != len(rows) {
			t.Fatalf("%s: %d lines, %d rows", tc.file, len(lines), len(rows))
		}
		tp, err := parse.NewTimeParser(parse.TimeConfig{Now: func() time.Time { return time.Date(2005, 12, 31, 0, 0, 0, 0, time.UTC) }})
		if err != nil {
			t.Fatal(err)
		}
		var dst []record.KV
		for i, line := range lines {
			for _, p := range []parse.Parser{parse.Syslog3164(), parse.Auto()} {
				dst, err = p.Parse(dst[:0], line)
				if err != nil {
					t.Fatalf("%s:%d: %v", tc.file, i+1, err)
				}
				row := rows[i]
				ts := get(dst, "timestamp")
				if want := row[tc.month] + " " + row[tc.day] + " " + row["Time"]; strings.Join(strings.Fields(ts), " ") != want {
					t.Fatalf("%s:%d: timestamp %q, want %q", tc.file, i+1, ts, want)
				}
				if _, err := tp.Parse(ts); err != nil {
					t.Fatalf("%s:%d: %v", tc.file, i+1, err)
				}
				app, pid, content := row[tc.app], row[tc.pid], row["Content"]
				if tc.app == "" {
					app = "sshd"
				}
				if strings.Contains(app, " ") && pid == "" {
					// "syslogd 1.4.1: restart.": no [pid], so no tag.
					app, content = "", app+": "+content
				}
				if addr := row["Address"]; addr != "" {
					// macOS: "launchd[1] (domain): text".
					content = "(" + addr + "): " + content
				}
				if get(dst, "host") != row[tc.host] || get(dst, "app") != app || get(dst, "procid") != pid ||
					strings.TrimSpace(get(dst, "message")) != strings.TrimSpace(content) {
					t.Fatalf("%s:%d: %q\n got %s\nwant host %q app %q procid %q message %q", tc.file, i+1, line, fmtKVs(dst),
						row[tc.host], app, pid, content)
				}
			}
		}
	}
}

// TestLoghubApache parses the Apache error log (not an access log) with a
// Regex parser and checks time, level and message against loghub's parse,
// through TimeParser and Severity.
func TestLoghubApache(t *testing.T) {
	t.Parallel()
	lines := readLines(t, "Apache_2k.log")
	rows := readCSV(t, "Apache_2k.log_structured.csv")
	if len(lines) != len(rows) {
		t.Fatalf("%d lines, %d rows", len(lines), len(rows))
	}
	p, err := parse.Regex(`^\[(?P<timestamp>[^\]]+)\] \[(?P<level>[a-z]+)\] (?P<message>.*)$`)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := parse.NewTimeParser(parse.TimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var dst []record.KV
	levels := map[string]int{}
	for i, line := range lines {
		dst, err = p.Parse(dst[:0], line)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		row := rows[i]
		if get(dst, "timestamp") != row["Time"] || get(dst, "level") != row["Level"] || get(dst, "message") != strings.TrimSpace(row["Content"]) {
			t.Fatalf("line %d: got %s, want %v", i+1, fmtKVs(dst), row)
		}
		want, err := time.Parse(time.ANSIC, row["Time"])
		if err != nil {
			t.Fatal(err)
		}
		if ns, err := tp.Parse(get(dst, "timestamp")); err != nil || ns != want.UnixNano() {
			t.Fatalf("line %d: time %d, %v; want %d", i+1, ns, err, want.UnixNano())
		}
		n, text := parse.Severity(get(dst, "level"))
		if n == 0 {
			t.Fatalf("line %d: unknown level %q", i+1, get(dst, "level"))
		}
		levels[text]++
	}
	t.Logf("levels: %v", levels)
}

// TestLoghubTimestamps converts the timestamps of other loghub files.
func TestLoghubTimestamps(t *testing.T) {
	t.Parallel()
	tp, err := parse.NewTimeParser(parse.TimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, "Zookeeper_2k.log_structured.csv")
	for i, row := range rows {
		s := row["Date"] + " " + row["Time"]
		want, err := time.Parse("2006-01-02 15:04:05.000", strings.Replace(s, ",", ".", 1))
		if err != nil {
			t.Fatal(err)
		}
		if ns, err := tp.Parse(s); err != nil || ns != want.UnixNano() {
			t.Fatalf("Zookeeper row %d: Parse(%q) = %d, %v; want %d", i+1, s, ns, err, want.UnixNano())
		}
	}
}
