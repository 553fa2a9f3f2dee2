package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// readyz returns /readyz's status and reason.
func readyz(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Ready != (resp.StatusCode == http.StatusOK) {
		t.Errorf("/readyz: status %d but ready %v", resp.StatusCode, doc.Ready)
	}
	return resp.StatusCode, doc.Reason
}

// TestReadyzAfterReplay: after a crash, /readyz says ready only once the
// records recovered from the write-ahead log are queryable, so the first
// query after readiness already counts every acknowledged record.
func TestReadyzAfterReplay(t *testing.T) {
	data := t.TempDir()
	config := filepath.Join(t.TempDir(), "weir.yaml")
	// Files are not published before the crash: every record comes back
	// from the log. The batchers would hold the replayed records for an
	// hour: readiness must flush them rather than wait for their age.
	if err := os.WriteFile(config, []byte("sink:\n  max_file_age: 1h\ntransform:\n  max_age: 1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startWeir(t, data, config)
	ing, _ := newClients(p.url)
	const batches, per = 20, 500
	for i := range batches {
		recs := make([]*weirv1.LogRecord, per)
		for j := range recs {
			recs[j] = textRecord(fmt.Sprintf("b%d r%d", i, j))
		}
		if _, err := ing.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs, AckLevel: weirv1.AckLevel_ACK_LEVEL_DURABLE})); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	p = startWeir(t, data, config)
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for ; ; <-tick.C {
		status, reason := readyz(t, p.url)
		if status == http.StatusOK {
			break
		}
		if status != http.StatusServiceUnavailable || reason == "" {
			t.Fatalf("/readyz: %d %q", status, reason)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 30 s: %s", reason)
		}
	}
	res := mustSQL(t, p.url, "SELECT count(*) AS n, count(DISTINCT body) AS d FROM app")
	if fmt.Sprint(res.Rows[0]["n"]) != fmt.Sprint(batches*per) || fmt.Sprint(res.Rows[0]["d"]) != fmt.Sprint(batches*per) {
		t.Errorf("ready, but the first query counts %v records (%v distinct), want %d", res.Rows[0]["n"], res.Rows[0]["d"], batches*per)
	}
}

// TestNewStreamViewBeforeAck: a query right after the first
// acknowledgement of a new stream finds the stream's view, for streams
// created one after the other and for streams created at once (whose
// views are made together).
func TestNewStreamViewBeforeAck(t *testing.T) {
	s := startServer(t, "", nil)
	ing, _ := newClients(s.url)
	pushAndQuery := func(stream string) error {
		if _, err := ing.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: stream, Records: []*weirv1.LogRecord{textRecord("x")}})); err != nil {
			return err
		}
		// Not postSQL: this runs on goroutines of its own, where the
		// test must not stop.
		body, _ := json.Marshal(map[string]string{"sql": "SELECT count(*) FROM " + stream})
		resp, err := http.Post(s.url+"/v1/sql", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if raw, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
			return fmt.Errorf("query right after the first ack of %s: %d %s", stream, resp.StatusCode, raw)
		}
		return nil
	}
	for i := range 20 {
		if err := pushAndQuery(fmt.Sprintf("fresh_%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			if err := pushAndQuery(fmt.Sprintf("together_%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
