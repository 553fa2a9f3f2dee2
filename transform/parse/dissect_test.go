package parse_test

import (
	"strings"
	"testing"

	"github.com/weirlabs/weir/transform/parse"
)

func mustDissect(t testing.TB, pattern string) parse.Parser {
	t.Helper()
	p, err := parse.Dissect(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDissect(t *testing.T) {
	hdfs := mustDissect(t, "%{timestamp} %{+timestamp} %{pid} %{level} %{component}: %{message}")
	f(t, hdfs, "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3886 terminating",
		"timestamp", "081109 203615", "pid", "148", "level", "INFO", "component", "dfs.DataNode$PacketResponder",
		"message", "PacketResponder 1 for block blk_3886 terminating")
	// The last field takes the rest, delimiters and all.
	f(t, hdfs, "081109 203615 148 INFO a: b: c\n", "timestamp", "081109 203615", "pid", "148", "level", "INFO", "component", "a", "message", "b: c")
	fErr(t, hdfs, "081109 203615 148", 14, `" " after field pid`)

	// Padding, skipped fields, a literal prefix, empty values.
	win := mustDissect(t, "[%{?day}] %{timestamp} %{+timestamp}, %{level->} %{component->} %{message}")
	f(t, win, "[Mon] 2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack",
		"timestamp", "2016-09-28 04:30:30", "level", "Info", "component", "CBS", "message", "Loaded Servicing Stack")
	fErr(t, win, "Mon] x", 0, `"["`)
	f(t, mustDissect(t, "%{a},%{b},%{c}"), "1,,3", "a", "1", "c", "3")
	f(t, mustDissect(t, "%{}=%{v}"), "k=v", "v", "v")
	// Three parts joined.
	f(t, mustDissect(t, "%{d}/%{+d}/%{+d} %{rest}"), "17/06/09 20:10:40 INFO", "d", "17/06/09", "rest", "20:10:40 INFO")

	for _, bad := range []string{"no fields", "%{a}%{b}", "%{a", "%{+a} %{a}", "x %{+} y"} {
		if _, err := parse.Dissect(bad); err == nil {
			t.Errorf("Dissect(%q): no error", bad)
		}
	}
	if _, err := parse.Dissect(strings.Repeat("%{a} ", 65)); err == nil {
		t.Error("65 fields accepted")
	}
}

func FuzzDissect(f *testing.F) {
	for _, s := range []string{"081109 203615 148 INFO dfs.DataNode: x", "a b c", "", "::::", "1 2 3 4: "} {
		f.Add(s)
	}
	p, err := parse.Dissect("%{timestamp} %{+timestamp} %{pid->} %{level} %{component}: %{message}")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line string) {
		checkParse(t, p, line)
	})
}
