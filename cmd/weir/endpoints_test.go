package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// TestEndpointMetrics: each ingest endpoint's records, bytes, dead
// letters and refusals are counted under its own name.
func TestEndpointMetrics(t *testing.T) {
	s := startServer(t, "", nil)
	ing, _ := newClients(s.url)
	bad := textRecord("bad id")
	bad.TraceId = []byte{1, 2, 3}
	if _, err := ing.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{textRecord("a"), bad}})); err != nil {
		t.Fatal(err)
	}
	_, err := ing.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "Bad Name", Records: []*weirv1.LogRecord{textRecord("a")}}))
	wantCode(t, "bad stream", err, connect.CodeInvalidArgument)
	resp, err := http.Post(s.url+"/v1/ingest/jsonl?stream=web", "application/x-ndjson", strings.NewReader("{\"msg\": \"one\"}\n{\"msg\": \"two\"}\n{\"msg\": \"three\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("jsonl: %d", resp.StatusCode)
	}

	resp, err = http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(raw)
	for _, want := range []string{
		`weir_ingest_endpoint_records_total{endpoint="connect",tenant="default"} 2`,
		`weir_ingest_endpoint_dead_letters_total{endpoint="connect",tenant="default"} 1`,
		`weir_ingest_endpoint_errors_total{code="invalid_argument",endpoint="connect",tenant="default"} 1`,
		`weir_ingest_endpoint_records_total{endpoint="jsonl",tenant="default"} 3`,
		`weir_ingest_endpoint_dead_letters_total{endpoint="jsonl",tenant="default"} 0`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(metrics, `weir_ingest_endpoint_bytes_total{endpoint="jsonl",tenant="default"}`) {
		t.Error("/metrics lacks the jsonl endpoint's bytes")
	}
}

// TestUIIngestCard: the overview shows the counters by endpoint of the
// caller's tenant.
func TestUIIngestCard(t *testing.T) {
	chrome := findChromium(t)
	s := startServer(t, "", nil)
	ing, _ := newClients(s.url)
	if _, err := ing.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{textRecord("a"), textRecord("b")}})); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(s.url+"/v1/ingest/jsonl?stream=web", "application/x-ndjson", strings.NewReader("{\"msg\": \"one\"}\nnot json\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitCount(t, s.url, "SELECT count(*) FROM logs", 4) // one a dead letter

	var doc struct {
		Endpoints []struct {
			Endpoint     string `json:"endpoint"`
			Records      int64  `json:"records"`
			DeadLettered int64  `json:"dead_lettered"`
		} `json:"endpoints"`
	}
	resp, err = http.Get(s.url + "/ui/ingest")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if fmt.Sprint(doc.Endpoints) != "[{connect 2 0} {jsonl 2 1}]" {
		t.Errorf("/ui/ingest: %+v", doc.Endpoints)
	}

	b := newBrowser(t, chrome)
	b.do(chromedp.Navigate(s.url + "/#/overview?range=all"))
	b.waitFor(`!!document.querySelector('#ov-ingest tr[data-endpoint="jsonl"]')`, "the ingest card")
	row := evalJS[string](b, `document.querySelector('#ov-ingest tr[data-endpoint="jsonl"]').textContent`)
	if !strings.HasPrefix(row, "jsonl2") {
		t.Errorf("jsonl row: %q", row)
	}
	b.checkErrors()
}
