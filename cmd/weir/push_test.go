package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPushStdin: `weir push -` and `weir push` without a file read stdin,
// `-` may stand among files, severities are left to the server unless
// --guess-severity is given, and nothing but the summary is written when
// stderr is not a terminal.
func TestPushStdin(t *testing.T) {
	s := startServer(t, "", nil)
	file := filepath.Join(t.TempDir(), "lines.log")
	if err := os.WriteFile(file, []byte("from the file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	push := func(stdin string, args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append([]string{"push", "--server", s.url}, args...)
		if err := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr); err != nil {
			t.Fatalf("weir %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), "pushed ") || stderr.Len() != 0 {
			t.Errorf("weir %s: stdout %q, stderr %q", strings.Join(args, " "), stdout.String(), stderr.String())
		}
	}
	push("dash 1 WARNING disk\ndash 2 job FAILED\n", "--stream", "dash", "-")
	push("bare 1 INFO\n", "--stream", "bare")
	push("between\n", "--stream", "mixed", file, "-", file)
	push("guess 1 WARNING disk\nguess 2 job FAILED\nguess 3 [critical] oom\nSetting BTCoex Config\nno level here\n", "--stream", "guess", "--guess-severity")

	waitCount(t, s.url, "SELECT count(*) FROM logs", 11)
	equalCounts(t, "records by stream", countBy(t, s.url, "SELECT stream, count(*) FROM logs GROUP BY 1"),
		map[string]int64{"dash": 2, "bare": 1, "mixed": 3, "guess": 5})
	equalCounts(t, "bodies of mixed", countBy(t, s.url, "SELECT body, count(*) FROM mixed GROUP BY 1"),
		map[string]int64{"from the file": 2, "between": 1})
	equalCounts(t, "severity without --guess-severity", countBy(t, s.url, "SELECT coalesce(severity_text, ''), count(*) FROM logs WHERE stream <> 'guess' GROUP BY 1"),
		map[string]int64{"": 6})
	equalCounts(t, "severity with --guess-severity", countBy(t, s.url, "SELECT coalesce(severity_text, '') || '/' || severity_number, count(*) FROM guess GROUP BY 1"),
		map[string]int64{"WARN/13": 1, "ERROR/17": 1, "FATAL/21": 1, "INFO/9": 1, "/0": 1})
}

func TestGuessSeverity(t *testing.T) {
	t.Parallel()
	for line, want := range map[string]string{
		"081109 203615 148 INFO dfs.DataNode: x":         "INFO",
		"2015-07-29 17:41:44,747 - WARN  [main] - x":     "WARN",
		"[Sun Dec 04 04:47:44 2005] [error] mod_jk":      "ERROR",
		"Jun 14 15:16:01 combo sshd: Warning: x":         "WARN",
		"12-17 19:31:36.263  1795  1825 E Ops: x":        "", // a one-letter level is too short to trust
		"job 7 FAILED after 3 tries":                     "ERROR",
		"CRITICAL: out of memory":                        "FATAL",
		"x y z a b c d e f g h i j ERROR past the words": "",
		"plain text without a level":                     "",
	} {
		if got := guessSeverity(line); got != want {
			t.Errorf("guessSeverity(%q) = %q, want %q", line, got, want)
		}
	}
}

// TestPushProgress drives the progress line with a fake clock: it is
// redrawn at most every progressEvery, in place, with records, bytes,
// share, rate and ETA, and cleared at the end. A push whose stderr is not
// a terminal has none (TestPushStdin).
func TestPushProgress(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	clock := time.Unix(1_700_000_000, 0)
	p := newProgress(&out, 100_000, func() time.Time { return clock })
	// 10 records of 100 bytes every 100 ms: about 100 records/s, 10 KB/s.
	for range 10 {
		for range 10 {
			p.add(100)
		}
		clock = clock.Add(100 * time.Millisecond)
	}
	lines := strings.Split(out.String(), "\r")
	if lines[0] != "" {
		t.Fatalf("output does not start with a carriage return: %q", out.String())
	}
	lines = lines[1:]
	// Redraws at 300, 600 and 900 ms, on the first record of each.
	if len(lines) != 3 {
		t.Fatalf("%d redraws in 1 s, want 3 (every %s): %q", len(lines), progressEvery, lines)
	}
	for i, want := range []string{
		"31 records, 3.0 KiB of 97.7 KiB (3%), 103 records/s, ETA 9s\x1b[K",
		"61 records, 6.0 KiB of 97.7 KiB (6%), 102 records/s, ETA 9s\x1b[K",
		"91 records, 8.9 KiB of 97.7 KiB (9%), 101 records/s, ETA 9s\x1b[K",
	} {
		if lines[i] != want {
			t.Errorf("redraw %d: %q, want %q", i, lines[i], want)
		}
	}
	out.Reset()
	p.clear()
	if out.String() != "\r\x1b[K" {
		t.Errorf("clear wrote %q", out.String())
	}

	// Unknown size: no share, no ETA.
	out.Reset()
	p = newProgress(&out, -1, func() time.Time { return clock })
	p.add(10)
	clock = clock.Add(time.Second)
	p.add(10)
	if got := out.String(); got != "\r2 records, 20 B, 2 records/s\x1b[K" {
		t.Errorf("unknown size: %q", got)
	}

	// Not a terminal: nothing, and the methods are safe on nil.
	var none *progress
	none.add(1)
	none.clear()
	if isTerminal(&out) {
		t.Error("a buffer is not a terminal")
	}
}

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
