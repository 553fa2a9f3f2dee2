package transform

import (
	"bufio"
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/internal/record"
)

// loghubNow is the clock of the Loghub tests: the year of yearless
// timestamps derives from it.
var loghubNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// loghubSystem says how to read the ground truth of one Loghub system:
// the expected timestamp from its CSV columns, and which columns hold
// the level and the component and which attributes the example
// configuration extracts them to.
type loghubSystem struct {
	name      string
	when      func(row map[string]string) (time.Time, error)
	levelCol  string // "" if the system logs no level
	levelAttr string
	severity  bool // the level column is a severity (Linux's is a host)
	compCol   string
	compAttr  string
}

// layout returns a when that parses the concatenation of cols.
func layout(l string, cols ...string) func(map[string]string) (time.Time, error) {
	return func(row map[string]string) (time.Time, error) {
		var parts []string
		for _, c := range cols {
			parts = append(parts, row[c])
		}
		return time.Parse(l, strings.Join(parts, " "))
	}
}

// yearless is layout for timestamps without a year: the year is
// loghubNow's, or the one before if that would put it more than a day
// ahead.
func yearless(l string, cols ...string) func(map[string]string) (time.Time, error) {
	parse := layout(l, cols...)
	return func(row map[string]string) (time.Time, error) {
		t, err := parse(row)
		if err != nil {
			return t, err
		}
		t = t.AddDate(loghubNow.Year()-t.Year(), 0, 0)
		if t.After(loghubNow.Add(24 * time.Hour)) {
			t = t.AddDate(-1, 0, 0)
		}
		return t, nil
	}
}

func epoch(col string) func(map[string]string) (time.Time, error) {
	return func(row map[string]string) (time.Time, error) {
		n, err := strconv.ParseInt(row[col], 10, 64)
		return time.Unix(n, 0), err
	}
}

var loghubSystems = []loghubSystem{
	{name: "Android", when: yearless("01-02 15:04:05.000", "Date", "Time"), levelCol: "Level", levelAttr: "level", severity: true, compCol: "Component", compAttr: "component"},
	{name: "Apache", when: layout("Mon Jan 02 15:04:05 2006", "Time"), levelCol: "Level", levelAttr: "level", severity: true},
	{name: "BGL", when: layout("2006-01-02-15.04.05.000000", "Time"), levelCol: "Level", levelAttr: "level", severity: true, compCol: "Component", compAttr: "component"},
	{name: "HDFS", when: layout("060102 150405", "Date", "Time"), levelCol: "Level", levelAttr: "level", severity: true, compCol: "Component", compAttr: "component"},
	{name: "HPC", when: epoch("Time"), compCol: "Component", compAttr: "component"},
	{name: "Hadoop", when: layout("2006-01-02 15:04:05,000", "Date", "Time"), levelCol: "Level", levelAttr: "level", severity: true, compCol: "Component", compAttr: "component"},
	{name: "HealthApp", when: func(row map[string]string) (time.Time, error) {
		// Milliseconds follow the last colon unpadded; the example keeps
		// second precision (see examples/loghub/HealthApp.yaml).
		t := row["Time"]
		return time.Parse("20060102-15:4:5", t[:strings.LastIndexByte(t, ':')])
	}, compCol: "Component", compAttr: "component"},
	{name: "Linux", when: yearless("Jan 2 15:04:05", "Month", "Date", "Time"), levelCol: "Level", levelAttr: "host", compCol: "Component", compAttr: "component"},
	{name: "Mac", when: yearless("Jan 2 15:04:05", "Month", "Date", "Time"), compCol: "Component", compAttr: "component"},
	{name: "OpenSSH", when: yearless("Jan 2 15:04:05", "Date", "Day", "Time"), compCol: "Component", compAttr: "component"},
	{name: "OpenStack", when: layout("2006-01-02 15:04:05.000", "Date", "Time"), levelCol: "Level", levelAttr: "level", severity: true, compCol: "Component", compAttr: "component"},
	{name: "Proxifier", when: yearless("01.02 15:04:05", "Time"), compCol: "Program", compAttr: "program"},
	{name: "Spark", when: layout("06/01/02 15:04:05", "Date", "Time"), levelCol: "Level", levelAttr: "level", severity: true, compCol: "Component", compAttr: "component"},
	{name: "Thunderbird", when: epoch("Timestamp"), compCol: "Component", compAttr: "component"},
	{name: "Windows", when: layout("2006-01-02 15:04:05", "Date", "Time"), levelCol: "Level", levelAttr: "level", severity: true, compCol: "Component", compAttr: "component"},
	{name: "Zookeeper", when: layout("2006-01-02 15:04:05,000", "Date", "Time"), levelCol: "Level", levelAttr: "level", severity: true, compCol: "Component", compAttr: "component"},
}

// loghubSeverity is the ground truth's level names as OpenTelemetry
// severities, written out here independently of the parsers.
var loghubSeverity = map[string]string{
	"v": "TRACE", "d": "DEBUG", "i": "INFO", "w": "WARN", "e": "ERROR", "f": "FATAL",
	"debug": "DEBUG", "info": "INFO", "notice": "INFO", "warn": "WARN", "warning": "WARN",
	"error": "ERROR", "severe": "ERROR", "failure": "ERROR", "fatal": "FATAL",
}

// loadExample reads the rules of one example configuration file.
func loadExample(t testing.TB, system string) Rules {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "examples", "loghub", system+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Streams Rules `yaml:"streams"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", system, err)
	}
	return f.Streams
}

// readLoghub returns a system's log lines and its structured CSV rows.
func readLoghub(t testing.TB, system string) ([]string, []map[string]string) {
	t.Helper()
	base := filepath.Join("..", "testdata", "loghub", system+"_2k.log")
	f, err := os.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	cf, err := os.Open(base + "_structured.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	all, err := csv.NewReader(cf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]string
	for _, rec := range all[1:] {
		row := map[string]string{}
		for i, h := range all[0] {
			row[h] = rec[i]
		}
		rows = append(rows, row)
	}
	if len(lines) != len(rows) {
		t.Fatalf("%s: %d lines but %d CSV rows", system, len(lines), len(rows))
	}
	return lines, rows
}

// TestLoghubExamples runs each shipped example configuration over its
// Loghub sample, one record per line as a shipper would send it, and
// scores what the processors extracted against the ground truth:
// timestamp, level (and severity), component and message must agree on
// at least 99% of lines, and the pattern ids must group lines like the
// ground truth's event ids with an average grouping accuracy of at least
// 0.90 over the 16 systems.
func TestLoghubExamples(t *testing.T) {
	var accSum float64
	for _, sys := range loghubSystems {
		rules := loadExample(t, sys.name)
		p, err := NewPipeline(PipelineConfig{
			Rules:  rules,
			Limits: record.Limits{MaxFuture: 24 * time.Hour},
			Now:    func() time.Time { return loghubNow },
		})
		if err != nil {
			t.Fatalf("%s: %v", sys.name, err)
		}
		stream := strings.ToLower(sys.name)
		lines, rows := readLoghub(t, sys.name)
		var tsOK, levelOK, compOK, msgOK, dead int
		predicted := make([]string, len(lines))
		for i, line := range lines {
			b := record.NewBatch(record.DefaultTenant, stream, []record.Record{{Body: line, ObservedTimestamp: loghubNow.UnixNano()}})
			out, err := p.Process(nil, b)
			if err != nil {
				t.Fatalf("%s line %d: %v", sys.name, i+1, err)
			}
			if len(out) != 1 || out[0].Stream != stream {
				dead++
				predicted[i] = "dead"
				continue
			}
			r := &out[0].Records[0]
			row := rows[i]
			attr := func(k string) string { v, _ := record.Lookup(r.Attributes, k); return v }
			want, err := sys.when(row)
			if err != nil {
				t.Fatalf("%s row %d: ground truth timestamp: %v", sys.name, i+1, err)
			}
			if r.Timestamp == want.UnixNano() {
				tsOK++
			}
			if sys.levelCol == "" {
				levelOK++
			} else if attr(sys.levelAttr) == row[sys.levelCol] &&
				(!sys.severity || r.SeverityText == loghubSeverity[strings.ToLower(row[sys.levelCol])]) {
				levelOK++
			}
			if sys.compCol == "" || attr(sys.compAttr) == row[sys.compCol] {
				compOK++
			}
			if attr("message") == row["Content"] {
				msgOK++
			}
			predicted[i] = attr(AttrPatternID)
		}
		n := float64(len(lines))
		acc := groupingAccuracy(predicted, column(rows, "EventId"))
		accSum += acc
		t.Logf("%-12s timestamp %.4f  level %.4f  component %.4f  message %.4f  dead letters %d  grouping accuracy %.3f",
			sys.name, float64(tsOK)/n, float64(levelOK)/n, float64(compOK)/n, float64(msgOK)/n, dead, acc)
		for field, ok := range map[string]int{"timestamp": tsOK, "level": levelOK, "component": compOK, "message": msgOK} {
			if float64(ok)/n < 0.99 {
				t.Errorf("%s: %s agrees with the ground truth on %d of %d lines; want at least 99%%", sys.name, field, ok, len(lines))
			}
		}
	}
	avg := accSum / float64(len(loghubSystems))
	t.Logf("average grouping accuracy %.4f", avg)
	if avg < 0.90 {
		t.Errorf("average grouping accuracy %.4f; want at least 0.90", avg)
	}
}

func column(rows []map[string]string, c string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r[c]
	}
	return out
}

// groupingAccuracy is the Loghub measure: the share of lines whose
// predicted group holds exactly the lines of their true group.
func groupingAccuracy(predicted, truth []string) float64 {
	// Two groupings agree on a line iff the line's predicted group and
	// true group are the same set; equivalently, every line of the
	// predicted group has the same true group and the sizes match.
	predSize, trueSize := map[string]int{}, map[string]int{}
	pair := map[[2]string]int{}
	for i := range predicted {
		predSize[predicted[i]]++
		trueSize[truth[i]]++
		pair[[2]string{predicted[i], truth[i]}]++
	}
	ok := 0
	for i := range predicted {
		n := pair[[2]string{predicted[i], truth[i]}]
		if n == predSize[predicted[i]] && n == trueSize[truth[i]] {
			ok++
		}
	}
	return float64(ok) / float64(len(predicted))
}
