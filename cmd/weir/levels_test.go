package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// TestAckLevels checks each acknowledgement level end to end: COMMITTED
// returns only once the records are in a published Parquet file, a stream
// can be told at each level, and an idempotent producer's retry is
// acknowledged without a second write.
func TestAckLevels(t *testing.T) {
	s := startServer(t, "", func(c *config) {
		c.Sink.MaxFileAge = 300 * time.Millisecond
		c.Transform.MaxAge = 50 * time.Millisecond
	})
	ingest, _ := newClients(s.url)
	ctx := context.Background()

	resp, err := ingest.Push(ctx, connect.NewRequest(&weirv1.PushRequest{
		Stream: "levels", Records: []*weirv1.LogRecord{textRecord("committed one")},
		AckLevel: weirv1.AckLevel_ACK_LEVEL_COMMITTED,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.GetAckLevel() != weirv1.AckLevel_ACK_LEVEL_COMMITTED {
		t.Errorf("ack level %s", resp.Msg.GetAckLevel())
	}
	if got := readLakeBodies(t, lakeFiles(t, s.data)); got["committed one"] != 1 {
		t.Fatalf("COMMITTED acknowledged before the record was in Parquet: %v", got)
	}

	// Default level: DURABLE.
	resp, err = ingest.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "levels", Records: []*weirv1.LogRecord{textRecord("durable one")}}))
	if err != nil || resp.Msg.GetAckLevel() != weirv1.AckLevel_ACK_LEVEL_DURABLE {
		t.Fatalf("default level: %v %v", resp, err)
	}

	// A stream told at each level.
	st := ingest.PushStream(ctx)
	for id := uint64(1); id <= 3; id++ {
		if err := st.Send(&weirv1.PushStreamRequest{BatchId: id, Stream: "levels", Records: []*weirv1.LogRecord{textRecord("each level")},
			AckLevel: weirv1.AckLevel_ACK_LEVEL_COMMITTED, AckEachLevel: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64][]weirv1.AckLevel{}
	for range 9 {
		ack, err := st.Receive()
		if err != nil {
			t.Fatalf("after %v: %v", seen, err)
		}
		if ack.GetErrorCode() != "" {
			t.Fatalf("ack %v", ack)
		}
		seen[ack.GetBatchId()] = append(seen[ack.GetBatchId()], ack.GetAckLevel())
	}
	st.CloseResponse()
	for id := uint64(1); id <= 3; id++ {
		want := []weirv1.AckLevel{weirv1.AckLevel_ACK_LEVEL_ACCEPTED, weirv1.AckLevel_ACK_LEVEL_DURABLE, weirv1.AckLevel_ACK_LEVEL_COMMITTED}
		if got := seen[id]; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("batch %d acknowledged at %v, want %v", id, got, want)
		}
	}

	// Idempotent producer: a retry is acknowledged, not written; a gap is refused.
	push := func(seq uint64, body string) (*connect.Response[weirv1.PushResponse], error) {
		return ingest.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "levels", Records: []*weirv1.LogRecord{textRecord(body)},
			ProducerId: "agent-1", Sequence: seq}))
	}
	if r, err := push(1, "idem one"); err != nil || r.Msg.GetDuplicate() {
		t.Fatalf("first: %v %v", r, err)
	}
	if r, err := push(1, "idem one"); err != nil || !r.Msg.GetDuplicate() {
		t.Fatalf("retry: %v %v", r, err)
	}
	if _, err := push(3, "idem gap"); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("gap: %v", err)
	}
	waitCount(t, s.url, "SELECT count(*) FROM logs WHERE stream = 'levels'", 6)
	equalCounts(t, "bodies", countBy(t, s.url, "SELECT body, count(*) FROM levels GROUP BY 1"),
		map[string]int64{"committed one": 1, "durable one": 1, "each level": 3, "idem one": 1})
}

// TestMetrics checks the Prometheus endpoint serves the pipeline's gauges,
// the processors' counters and, after a restart, the published lake.
func TestMetrics(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, nil)
	if err := pushErr(t, s.url, "metrics", textRecord("x"), &weirv1.LogRecord{Body: "bad", SeverityNumber: 99}); err != nil {
		t.Fatal(err)
	}
	metrics := func(url string) string {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return string(raw)
	}
	raw := metrics(s.url)
	for _, m := range []string{"weir_ingest_records_total 2", "weir_buffer_uncommitted_records", "weir_buffer_queued_records", "go_goroutines",
		"weir_transform_dead_letters_total 1", "weir_transform_dropped_total 0", "weir_lake_files 0"} {
		if !strings.Contains(raw, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	if err := s.stop(); err != nil { // publishes both records' files
		t.Fatal(err)
	}
	s = startServer(t, data, nil)
	raw = metrics(s.url)
	for _, m := range []string{"weir_lake_files 2", "weir_lake_rows 2"} {
		if !strings.Contains(raw, m) {
			t.Errorf("after a restart /metrics lacks %q", m)
		}
	}
	if strings.Contains(raw, "weir_lake_bytes 0\n") {
		t.Error("weir_lake_bytes is 0 with two published files")
	}
}
