package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// fastCommit makes COMMITTED acks quick, so that a test can know every
// batch it pushed has passed the transform stage (and so the tail).
func fastCommit(c *config) {
	c.Sink.MaxFileAge = 200 * time.Millisecond
	c.Transform.MaxAge = 50 * time.Millisecond
}

func tailRecord(body, service, sevText string, sev weirv1.SeverityNumber) *weirv1.LogRecord {
	r := textRecord(body)
	r.SeverityText = sevText
	r.SeverityNumber = sev
	r.Resource[0].Value = &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: service}}
	return r
}

func push(t *testing.T, ctx context.Context, c weirv1connect.IngestServiceClient, stream string, level weirv1.AckLevel, recs ...*weirv1.LogRecord) {
	t.Helper()
	if _, err := c.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: stream, Records: recs, AckLevel: level})); err != nil {
		t.Fatalf("push to %s: %v", stream, err)
	}
}

// openTail calls Tail and waits for the first, empty response, after
// which the viewer is subscribed.
func openTail(t *testing.T, ctx context.Context, c weirv1connect.TailServiceClient, req *weirv1.TailRequest) *connect.ServerStreamForClient[weirv1.TailResponse] {
	t.Helper()
	stream, err := c.Tail(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stream.Close() })
	if !stream.Receive() {
		t.Fatalf("tail: no first response: %v", stream.Err())
	}
	if m := stream.Msg(); len(m.GetRecords()) != 0 || m.GetMissed() != 0 {
		t.Fatalf("first response not empty: %v", m)
	}
	return stream
}

func TestTailFilters(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", fastCommit)
	ingest, _ := newClients(s.url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream := openTail(t, ctx, weirv1connect.NewTailServiceClient(newHTTPClient(), s.url), &weirv1.TailRequest{
		Streams: []string{"app"}, Service: "api", MinSeverityNumber: int32(weirv1.SeverityNumber_SEVERITY_NUMBER_WARN), Contains: "disk",
	})

	committed := weirv1.AckLevel_ACK_LEVEL_COMMITTED
	push(t, ctx, ingest, "app", committed,
		tailRecord("disk full", "api", "warn", 0),
		tailRecord("disk ok", "api", "info", 0),
		tailRecord("cpu hot", "api", "", weirv1.SeverityNumber_SEVERITY_NUMBER_ERROR),
		tailRecord("disk gone", "web", "", weirv1.SeverityNumber_SEVERITY_NUMBER_ERROR),
		tailRecord("disk failing", "api", "", weirv1.SeverityNumber_SEVERITY_NUMBER_FATAL),
	)
	push(t, ctx, ingest, "other", committed, tailRecord("disk full", "api", "", weirv1.SeverityNumber_SEVERITY_NUMBER_ERROR))
	// Every batch above has been published to the tail: the marker comes
	// after them.
	push(t, ctx, ingest, "app", committed, tailRecord("disk marker", "api", "ERROR", 0))

	got := map[string]*weirv1.TailRecord{}
	var order []string
	for got["disk marker"] == nil {
		if !stream.Receive() {
			t.Fatalf("tail ended: %v", stream.Err())
		}
		m := stream.Msg()
		if m.GetMissed() != 0 {
			t.Fatalf("missed %d", m.GetMissed())
		}
		for _, r := range m.GetRecords() {
			order = append(order, r.GetRecord().GetBody())
			got[r.GetRecord().GetBody()] = r
		}
	}
	// Within a batch, priority (ERROR and up) records may overtake the
	// others; the marker comes last.
	if len(order) != 3 || got["disk full"] == nil || got["disk failing"] == nil || order[2] != "disk marker" {
		t.Fatalf("received %q, want disk full and disk failing, then disk marker", order)
	}
	full, failing, marker := got["disk full"], got["disk failing"], got["disk marker"]
	for _, r := range []*weirv1.TailRecord{full, failing, marker} {
		if r.GetStream() != "app" || r.GetPartition() != full.GetPartition() || r.GetRecord().GetTimeUnixNano() == 0 ||
			stringAttr(r.GetRecord().GetResource(), "service.name") != "api" {
			t.Errorf("record %v", r)
		}
	}
	if full.GetOffset() == failing.GetOffset() || max(full.GetOffset(), failing.GetOffset()) >= marker.GetOffset() {
		t.Errorf("offsets %d, %d, %d: want distinct, the marker's last", full.GetOffset(), failing.GetOffset(), marker.GetOffset())
	}
	for _, c := range []struct {
		r    *weirv1.TailRecord
		text string
		num  weirv1.SeverityNumber
	}{
		{full, "warn", weirv1.SeverityNumber_SEVERITY_NUMBER_WARN},
		{failing, "FATAL", weirv1.SeverityNumber_SEVERITY_NUMBER_FATAL},
		{marker, "ERROR", weirv1.SeverityNumber_SEVERITY_NUMBER_ERROR},
	} {
		if r := c.r.GetRecord(); r.GetSeverityText() != c.text || r.GetSeverityNumber() != c.num {
			t.Errorf("%q: severity %q/%s, want %q/%s", r.GetBody(), r.GetSeverityText(), r.GetSeverityNumber(), c.text, c.num)
		}
	}
}

// A viewer that does not read misses records, is told how many, and
// does not slow the pushes down.
func TestTailSlowViewerMisses(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", fastCommit)
	ingest, _ := newClients(s.url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A small flow-control window, so that the server cannot park many
	// records in the connection while the viewer does not read.
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	slowHTTP := &http.Client{Transport: &http.Transport{
		Protocols: &protocols,
		HTTP2:     &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 10, MaxReceiveBufferPerStream: 64 << 10},
	}}
	stream := openTail(t, ctx, weirv1connect.NewTailServiceClient(slowHTTP, s.url), &weirv1.TailRequest{Streams: []string{"slow"}})

	const batches, perBatch, pushers = 400, 10, 4
	batch := func(i int) []*weirv1.LogRecord {
		recs := make([]*weirv1.LogRecord, perBatch)
		// Random, so that response compression cannot squeeze the
		// records into the flow-control window.
		pad := make([]byte, 100)
		for j := range recs {
			rand.Read(pad)
			recs[j] = textRecord(fmt.Sprintf("batch %d record %d %x", i, j, pad))
		}
		return recs
	}
	start := time.Now()
	var wg sync.WaitGroup
	for p := range pushers {
		wg.Go(func() {
			for i := p; i < batches-1; i += pushers {
				if _, err := ingest.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "slow", Records: batch(i)})); err != nil {
					t.Errorf("push %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// One service, so one partition, whose batches are consumed in the
	// order they were accepted: once this last one is committed, every
	// batch has been published to the tail.
	push(t, ctx, ingest, "slow", weirv1.AckLevel_ACK_LEVEL_COMMITTED, batch(batches-1)...)
	t.Logf("%d pushes with a stalled viewer took %s", batches, time.Since(start))

	const want = batches * perBatch
	var got, missed uint64
	for got+missed < want && stream.Receive() {
		got += uint64(len(stream.Msg().GetRecords()))
		missed += stream.Msg().GetMissed()
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got+missed != want || missed == 0 || got == 0 {
		t.Fatalf("received %d and missed %d records; want a total of %d with some missed", got, missed, want)
	}
	t.Logf("received %d, missed %d", got, missed)
}

func TestTailCommand(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", nil)
	ingest, _ := newClients(s.url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tailCtx, stopTail := context.WithCancel(ctx)
	defer stopTail()
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(tailCtx, []string{"tail", "--server", s.url, "--stream", "cli,other", "--severity", "WARN"}, strings.NewReader(""), &stdout, &stderr)
	}()
	// The command prints nothing until a record arrives, so push until
	// one does.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), "hello tail") {
		if time.Now().After(deadline) {
			t.Fatalf("no record printed; stdout %q, stderr %q", stdout.String(), stderr.String())
		}
		push(t, ctx, ingest, "cli", weirv1.AckLevel_ACK_LEVEL_ACCEPTED,
			tailRecord("quiet info", "svc", "INFO", 0),
			tailRecord("hello tail", "svc", "ERROR", 0))
		time.Sleep(50 * time.Millisecond)
	}
	stopTail()
	if err := <-done; err != nil {
		t.Fatalf("weir tail after cancel: %v; stderr %q", err, stderr.String())
	}
	out := stdout.String()
	if strings.Contains(out, "quiet info") {
		t.Errorf("INFO record printed despite --severity WARN:\n%s", out)
	}
	line, _, _ := strings.Cut(out, "\n")
	if fields := strings.Fields(line); len(fields) != 6 || fields[1] != "cli" || fields[2] != "ERROR" || fields[3] != "svc" ||
		strings.Join(fields[4:], " ") != "hello tail" {
		t.Errorf("line %q, want: TIME cli ERROR svc hello tail", line)
	}
	if _, err := time.Parse(time.RFC3339, strings.Fields(line)[0]); err != nil {
		t.Errorf("timestamp: %v", err)
	}
}

func TestTailCommandUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"tail", "--format", "xml"},
		{"tail", "--severity", "LOUD"},
		{"tail", "--severity", "30"},
		{"tail", "--stream", "Bad-Name"},
		{"tail", "extra"},
	} {
		_, err := runWeir(t, args...)
		if code := exitCode(err); err == nil || code != 2 {
			t.Errorf("%q: err %v (exit %d), want a usage error", args, err, code)
		}
	}
	// A server that is not there is an error, with its code.
	_, err := runWeir(t, "tail", "--server", "http://127.0.0.1:1")
	if err == nil || connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("tail against no server: %v (code %s)", err, connect.CodeOf(err))
	}
}
