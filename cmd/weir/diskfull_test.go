package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// mountTmpfs mounts a tmpfs of the given size (as mount's size= option) on
// a fresh directory and unmounts it when the test ends. Mounting needs
// root: without it the test is skipped, except in CI (WEIR_CI=1), where it
// fails.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("mounting a %s tmpfs (needs root; uid %d): %v: %s", size, os.Geteuid(), err, strings.TrimSpace(string(out)))
		if os.Getenv("WEIR_CI") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fillDisk writes a file at path until the file system is full, then
// shrinks it to leave free bytes free.
func fillDisk(t *testing.T, path string, free int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	var size int64
	for {
		n, err := f.Write(chunk)
		size += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(max(size-free, 0)); err != nil {
		t.Fatal(err)
	}
}

// TestDiskFull runs a server whose data directory is on a 24 MiB tmpfs,
// fills the disk, and checks the promises of docs/durability.md ("A full
// disk"): pushes fail with RESOURCE_EXHAUSTED saying the disk is full,
// queries keep working, pushes succeed again once space is freed, and
// after a restart every batch acknowledged DURABLE is present exactly once
// and every rejected one is absent. While the disk is full the sink's
// Parquet files and the query engine's staging fail too; the rows of the
// abandoned files come back from the write-ahead log at the restart.
func TestDiskFull(t *testing.T) {
	data := mountTmpfs(t, "24m")
	mutate := func(c *config) {
		c.Sink.MaxFileAge = 150 * time.Millisecond
		c.Transform.MaxAge = 50 * time.Millisecond
		c.Buffer.WAL.SegmentBytes = 256 << 10 // rolls, also on the full disk
	}
	s := startServer(t, data, mutate)
	client, _ := newClients(s.url)

	const stream, batch = "diskfull", 50
	var (
		acked    = map[string]bool{} // acknowledged DURABLE
		rejected = map[string]bool{} // rejected for a full disk
		seq      int
	)
	// Random padding, so that Parquet files take about as much space as
	// the log and the disk fills within a few dozen pushes.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	pad := make([]byte, 100)
	push := func(prefix string) (string, error) {
		seq++
		id := fmt.Sprintf("%s%d", prefix, seq)
		recs := make([]*weirv1.LogRecord, batch)
		for i := range recs {
			for j := range pad {
				pad[j] = byte(rng.Uint32())
			}
			recs[i] = textRecord(id + "-r" + strconv.Itoa(i) + "-" + hex.EncodeToString(pad))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.Push(ctx, connect.NewRequest(&weirv1.PushRequest{
			Stream: stream, Records: recs, AckLevel: weirv1.AckLevel_ACK_LEVEL_DURABLE,
		}))
		if err == nil {
			acked[id] = true
		}
		return id, err
	}
	// checkFull fails the test unless err is the rejection of a full disk.
	checkFull := func(id string, err error) {
		t.Helper()
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted ||
			!strings.Contains(ce.Message(), "disk full") || !strings.Contains(ce.Message(), "no space left") {
			t.Fatalf("push %s on a full disk: %v; want RESOURCE_EXHAUSTED saying the disk is full", id, err)
		}
		if ce.Meta().Get("Retry-After") == "" {
			t.Errorf("push %s on a full disk: no Retry-After hint", id)
		}
		rejected[id] = true
	}

	// Batches published before the disk fills.
	const before = 10
	for range before {
		if id, err := push("before-"); err != nil {
			t.Fatalf("push %s: %v", id, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for readLakeCounts(t, lakeFiles(t, data))[stream] < before*batch {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows of %d published after 5s", readLakeCounts(t, lakeFiles(t, data))[stream], before*batch)
		}
		time.Sleep(20 * time.Millisecond)
	}

	fill := filepath.Join(data, "filler")
	fillDisk(t, fill, 1<<20)
	var firstErr error
	for i := 0; firstErr == nil; i++ {
		if i == 2000 {
			t.Fatal("2000 pushes succeeded on a disk with 1 MiB free")
		}
		var id string
		if id, firstErr = push("full-"); firstErr != nil {
			checkFull(id, firstErr)
		}
	}
	t.Logf("first rejection after %d acknowledged batches: %v", len(acked), firstErr)
	// Keep pushing while the disk is full, so that the sink's files and the
	// staging segments fail for lack of space too. Space comes and goes as
	// the sink abandons files and drops log segments, so some pushes pass.
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		if id, err := push("full-"); err != nil {
			checkFull(id, err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Queries keep working over what was published before.
	res := mustSQL(t, s.url, "SELECT count(*) AS n FROM "+stream+" WHERE starts_with(body, 'before-')")
	if got := res.Rows[0]["n"]; got != json.Number(strconv.Itoa(before*batch)) {
		t.Errorf("on a full disk: %v rows of the batches published before, want %d", got, before*batch)
	}
	mustSQL(t, s.url, "SELECT count(*), count(DISTINCT body) FROM logs")

	// Freeing space lets pushes through again, at once.
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for {
		id, err := push("after-")
		if err == nil {
			break
		}
		checkFull(id, err)
		if time.Since(freed) > 3*time.Second {
			t.Fatalf("pushes still fail 3s after space was freed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 10 {
		if id, err := push("after-"); err != nil {
			t.Fatalf("push %s after space was freed: %v", id, err)
		}
	}
	res = mustSQL(t, s.url, "SELECT count(*) AS n FROM "+stream)
	t.Logf("%d batches acknowledged, %d rejected for a full disk; %v of the %d acknowledged rows visible before the restart",
		len(acked), len(rejected), res.Rows[0]["n"], len(acked)*batch)

	// A clean stop, then a restart replays from the logs the rows of the
	// files abandoned while the disk was full.
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	s = startServer(t, data, mutate)
	client, _ = newClients(s.url)
	var counts map[string]int64
	deadline = time.Now().Add(10 * time.Second)
	for {
		counts = diskFullCounts(t, s.url, stream)
		missing := 0
		for id := range acked {
			if counts[id] < batch {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lost, partial, dup, unexpected []string
	for id := range acked {
		if counts[id] == 0 {
			lost = append(lost, id)
		}
	}
	for id, n := range counts {
		switch {
		case n > batch:
			dup = append(dup, fmt.Sprintf("%s×%d", id, n))
		case n < batch:
			partial = append(partial, fmt.Sprintf("%s:%d", id, n))
		}
		if !acked[id] {
			// A push rejected for a full disk was undone: none of it is
			// written. Every other push was acknowledged.
			unexpected = append(unexpected, id)
		}
	}
	res = mustSQL(t, s.url, "SELECT count(*) - count(DISTINCT body) AS dup_bodies, count(*) - count(DISTINCT _offset) AS dup_offsets FROM "+stream)
	if res.Rows[0]["dup_bodies"] != json.Number("0") || res.Rows[0]["dup_offsets"] != json.Number("0") {
		t.Errorf("duplicate records: %v", res.Rows[0])
	}
	if len(lost) > 0 || len(partial) > 0 || len(dup) > 0 || len(unexpected) > 0 {
		t.Fatalf("after restart: lost acknowledged batches %v; half-present %v; duplicated %v; present but not acknowledged %v",
			head(lost), head(partial), head(dup), head(unexpected))
	}

	// And the restarted server takes pushes.
	if id, err := push("restarted-"); err != nil {
		t.Fatalf("push %s after restart: %v", id, err)
	}
}

// diskFullCounts returns the record count of every batch of stream.
func diskFullCounts(t *testing.T, url, stream string) map[string]int64 {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"sql":      "SELECT regexp_extract(body, '^(.*)-r[0-9]+-[0-9a-f]+$', 1) AS id, count(*) AS n FROM " + stream + " GROUP BY 1",
		"max_rows": 1_000_000,
	})
	status, raw := postJSON(t, url+"/v1/sql", body)
	if status != 200 {
		t.Fatalf("count batches: %d %s", status, raw)
	}
	var res sqlResult
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, r := range res.Rows {
		n, _ := r["n"].(float64)
		out[fmt.Sprint(r["id"])] = int64(n)
	}
	return out
}
