package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeExampleDir is the Node.js client example, from this package.
var nodeExampleDir = filepath.Join("..", "..", "examples", "node")

// findNodeTool locates node or npm. Without it the test skips, except
// under CI (WEIR_CI set), where .ci/run installs Debian's nodejs and npm
// and a missing one is a failure.
func findNodeTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("WEIR_CI") != "" {
		t.Fatalf("%s is not installed; .ci/run installs it", name)
	}
	t.Skipf("%s is not installed (apt-get install nodejs npm); skipping", name)
	return ""
}

// npmCI installs the example's pinned packages with npm ci, unless
// node_modules already holds what package-lock.json names (a stamp of the
// lock file is kept beside them), so that later runs reuse them.
func npmCI(t *testing.T, npm string) {
	t.Helper()
	lock, err := os.ReadFile(filepath.Join(nodeExampleDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	stamp := filepath.Join(nodeExampleDir, "node_modules", ".weir-package-lock.json")
	if done, err := os.ReadFile(stamp); err == nil && bytes.Equal(done, lock) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = nodeExampleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	if err := os.WriteFile(stamp, lock, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNodeExample runs examples/node/weir.js against a server: the
// records it pushes over PushStream arrive once each, and what it prints
// from its acks, its tail and its query is what the server holds.
func TestNodeExample(t *testing.T) {
	node := findNodeTool(t, "node")
	npm := findNodeTool(t, "npm")
	npmCI(t, npm)
	s := startServer(t, "", nil)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "weir.js", "--server", s.url, "--stream", "node_example")
	cmd.Dir = nodeExampleDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node weir.js: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}

	// Each record once, with its severity, service and attribute.
	equalCounts(t, "records pushed by node", countBy(t, s.url,
		"SELECT body || '|' || severity_text || '|' || severity_number || '|' || service_name || '|' || attributes['example'], count(*) FROM node_example GROUP BY 1"),
		map[string]int64{
			"hello from node 1|INFO|9|node-example|node": 1,
			"hello from node 2|INFO|9|node-example|node": 1,
			"disk almost full|WARN|13|node-example|node": 1,
			"hello from node 3|INFO|9|node-example|node": 1,
			"retrying upload|WARN|13|node-example|node":  1,
		})
	if n := sqlInt(t, s.url, "SELECT count(*) FROM logs"); n != 5 {
		t.Errorf("%d records in all streams, want 5", n)
	}

	// The example's output: acks in batch order, the tail in offset order
	// as the server numbered the records, and the query's counts.
	var want []string
	want = append(want, "ack 1 accepted=3 level=DURABLE", "ack 2 accepted=2 level=DURABLE")
	res := mustSQL(t, s.url, "SELECT _offset::VARCHAR || ' ' || severity_text || ' ' || body AS line FROM node_example ORDER BY _offset")
	for _, row := range res.Rows {
		want = append(want, "tail "+row["line"].(string))
	}
	want = append(want, `query {"severity_text":"INFO","n":3}`, `query {"severity_text":"WARN","n":2}`)
	if got := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("node weir.js printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(res.Rows) != 5 {
		t.Errorf("%d rows by offset, want 5", len(res.Rows))
	}
}
