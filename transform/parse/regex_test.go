package parse_test

import (
	"strings"
	"testing"

	"github.com/weirlabs/weir/transform/parse"
)

func TestRegex(t *testing.T) {
	t.Parallel()
	p, err := parse.Regex(`^(?P<date>\d{4}-\d{2}-\d{2}) (\S+) (?P<level>[A-Z]+)(?: \[(?P<thread>[^\]]*)\])? (?P<message>.*)$`)
	if err != nil {
		t.Fatal(err)
	}
	f(t, p, "2015-07-29 17:41:44,747 INFO [main] hello world\r\n", "date", "2015-07-29", "level", "INFO", "thread", "main", "message", "hello world")
	f(t, p, "2015-07-29 17:41:44,747 INFO hello", "date", "2015-07-29", "level", "INFO", "message", "hello")
	f(t, p, "2015-07-29 17:41:44,747 INFO [] ", "date", "2015-07-29", "level", "INFO")
	fErr(t, p, "nope", 0, "a match of ^(?P<date>")

	// Unanchored: a match anywhere in the line.
	p, err = parse.Regex(`user=(?P<user>\w+)`)
	if err != nil {
		t.Fatal(err)
	}
	f(t, p, "login ok user=bob from 10.0.0.1", "user", "bob")

	// A name used twice: the last group that matched wins.
	p, err = parse.Regex(`(?P<v>a+)|(?P<v>b+)`)
	if err != nil {
		t.Fatal(err)
	}
	f(t, p, "bbb", "v", "bbb")

	for _, expr := range []string{`(\d+)`, `plain`, `(?P<x>`, `[`} {
		if _, err := parse.Regex(expr); err == nil {
			t.Errorf("Regex(%q) succeeded, want an error", expr)
		}
	}
	// Long expressions are cut short in errors, at a rune boundary.
	p, err = parse.Regex(`^(?P<x>` + strings.Repeat("é", 40) + `)$`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Parse(nil, "x")
	if err == nil || !strings.HasSuffix(err.Error(), "found 'x'") || !strings.Contains(err.Error(), "é…") {
		t.Fatalf("error %v", err)
	}
}
