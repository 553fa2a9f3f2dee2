package ingest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
	"github.com/weirlabs/weir/transform"
)

// gatedConsumer holds every batch until the gate opens.
type gatedConsumer struct {
	gate <-chan struct{}
	mu   *sync.Mutex
	got  *[]*record.Batch
}

func (c gatedConsumer) Consume(ctx context.Context, b *record.Batch) error {
	select {
	case <-c.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.Materialize() // a columnar batch: the tests read records
	c.mu.Lock()
	*c.got = append(*c.got, b)
	c.mu.Unlock()
	return nil
}
func (gatedConsumer) Tick(context.Context, time.Time) error { return nil }
func (gatedConsumer) Close(context.Context) error           { return nil }

// TestBackpressure fills a small real buffer whose consumer is stalled and
// checks that a Push waits up to its deadline, then fails with
// RESOURCE_EXHAUSTED and a retry hint, that a stream acknowledges the same,
// and that everything accepted arrives once the consumer moves again.
func TestBackpressure(t *testing.T) {
	gate := make(chan struct{})
	var (
		mu  sync.Mutex
		got []*record.Batch
	)
	bcfg := buffer.DefaultConfig()
	bcfg.MaxRecords = 4
	buf, err := buffer.New(bcfg, buffer.Deps{NewConsumer: func(buffer.Key) buffer.Consumer {
		return gatedConsumer{gate: gate, mu: &mu, got: &got}
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.PushTimeout = 100 * time.Millisecond
	cfg.DefaultLevel = buffer.Accepted // this buffer has no write-ahead log
	pipe, err := transform.NewPipeline(transform.PipelineConfig{Limits: record.Limits{MaxFuture: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(cfg, pipe, buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(svc.Handler())
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := weirv1connect.NewIngestServiceClient(srv.Client(), srv.URL, connect.WithGRPC())

	push := func(ctx context.Context, n int) error {
		recs := make([]*weirv1.LogRecord, n)
		for i := range recs {
			recs[i] = &weirv1.LogRecord{Body: "x"}
		}
		_, err := client.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs}))
		return err
	}
	// The consumer takes the first batch and stalls on it; two more fill
	// the buffer's four records.
	for i := 0; i < 3; i++ {
		if err := push(context.Background(), 2); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = push(ctx, 2)
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("push into a full buffer: %v, want resource_exhausted", err)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Errorf("gave up after %s, before the deadline", waited)
	}
	var ce *connect.Error
	if !(errorsAs(err, &ce) && ce.Meta().Get("Retry-After") != "") {
		t.Errorf("no Retry-After hint on %v", err)
	}
	// No deadline: PushTimeout applies.
	if err := push(context.Background(), 1); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("push without deadline: %v", err)
	}
	// A batch that can never fit is refused at once, with no hint to
	// retry it: over plain HTTP it is too large (413).
	err = push(context.Background(), 5)
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "buffer full") || !errorsAs(err, &ce) || ce.Meta().Get("Retry-After") != "" {
		t.Fatalf("oversized batch: %v", err)
	}
	recs := make([]record.Record, 5)
	for i := range recs {
		recs[i] = record.Record{Body: "x"}
	}
	_, err = svc.Submit(context.Background(), "app", recs, nil, buffer.Accepted)
	if status, retry := HTTPStatus(err); status != http.StatusRequestEntityTooLarge || retry != "" {
		t.Errorf("oversized batch of a plain-HTTP protocol: %v: %d, Retry-After %q", err, status, retry)
	}
	// A stream gets the same answer in its ack and can go on.
	st := client.PushStream(context.Background())
	if err := st.Send(&weirv1.PushStreamRequest{BatchId: 7, Stream: "app", Records: []*weirv1.LogRecord{{Body: "y"}}}); err != nil {
		t.Fatal(err)
	}
	ack, err := st.Receive()
	if err != nil || ack.GetBatchId() != 7 || ack.GetCode() != weirv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED || ack.GetErrorCode() != "resource_exhausted" {
		t.Fatalf("stream ack %v, %v", ack, err)
	}
	close(gate)
	if err := st.Send(&weirv1.PushStreamRequest{BatchId: 8, Stream: "app", Records: []*weirv1.LogRecord{{Body: "z"}}}); err != nil {
		t.Fatal(err)
	}
	if ack, err := st.Receive(); err != nil || ack.GetBatchId() != 8 || ack.GetCode() != weirv1.ErrorCode_ERROR_CODE_UNSPECIFIED || ack.GetErrorCode() != "" || ack.GetAccepted() != 1 {
		t.Fatalf("ack after the consumer resumed: %v, %v", ack, err)
	}
	st.CloseRequest()
	st.CloseResponse()
	if err := buf.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, b := range got {
		n += len(b.Records)
	}
	if n != 7 {
		t.Errorf("%d records consumed, want the 7 accepted", n)
	}
	if err := push(context.Background(), 1); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("push after shutdown: %v, want unavailable", err)
	}
}

func TestValueText(t *testing.T) {
	t.Parallel()
	s := func(v string) *weirv1.AnyValue {
		return &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: v}}
	}
	cases := []struct {
		in   *weirv1.AnyValue
		want string
	}{
		{s("plain"), "plain"},
		{&weirv1.AnyValue{Value: &weirv1.AnyValue_IntValue{IntValue: -42}}, "-42"},
		{&weirv1.AnyValue{Value: &weirv1.AnyValue_BoolValue{BoolValue: true}}, "true"},
		{&weirv1.AnyValue{Value: &weirv1.AnyValue_DoubleValue{DoubleValue: 1.5}}, "1.5"},
		{&weirv1.AnyValue{Value: &weirv1.AnyValue_BytesValue{BytesValue: []byte{0xff, 0}}}, "/wA="},
		{&weirv1.AnyValue{Value: &weirv1.AnyValue_ArrayValue{ArrayValue: &weirv1.ArrayValue{Values: []*weirv1.AnyValue{s("a"), {Value: &weirv1.AnyValue_IntValue{IntValue: 1}}}}}}, `["a",1]`},
		{&weirv1.AnyValue{Value: &weirv1.AnyValue_KvlistValue{KvlistValue: &weirv1.KeyValueList{Values: []*weirv1.KeyValue{{Key: "k", Value: s("v")}}}}}, `{"k":"v"}`},
		{nil, ""},
	}
	for _, c := range cases {
		if got := valueText(c.in); got != c.want {
			t.Errorf("valueText(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func errorsAs(err error, target **connect.Error) bool { return errors.As(err, target) }

// TestAckOf checks that a PushStream acknowledgement carries an error's
// Connect code both as the typed code and as the deprecated name, that
// ErrorCode mirrors every Connect code by number and name, and that a
// success leaves both unset.
func TestAckOf(t *testing.T) {
	t.Parallel()
	for c := connect.CodeCanceled; c <= connect.CodeUnauthenticated; c++ {
		ack := ackOf(3, pushed{}, buffer.Accepted, connect.NewError(c, errors.New("no")))
		if ack.GetCode() != weirv1.ErrorCode(c) || ack.GetErrorCode() != c.String() || ack.GetErrorMessage() != "no" || ack.GetAccepted() != 0 || ack.GetBatchId() != 3 {
			t.Errorf("%s: ack %+v", c, ack)
		}
		if want := "ERROR_CODE_" + strings.ToUpper(c.String()); ack.GetCode().String() != want {
			t.Errorf("connect code %d (%s) is %s in weir.v1.ErrorCode, want %s", c, c, ack.GetCode(), want)
		}
	}
	// An error without a Connect code is UNKNOWN, as Connect reports it.
	if ack := ackOf(4, pushed{}, buffer.Accepted, errors.New("plain")); ack.GetCode() != weirv1.ErrorCode_ERROR_CODE_UNKNOWN || ack.GetErrorCode() != "unknown" || ack.GetErrorMessage() != "plain" {
		t.Errorf("plain error: ack %+v", ack)
	}
	ack := ackOf(5, pushed{n: 7, dup: true, dead: 2}, buffer.Durable, nil)
	if ack.GetCode() != weirv1.ErrorCode_ERROR_CODE_UNSPECIFIED || ack.GetErrorCode() != "" || ack.GetErrorMessage() != "" ||
		ack.GetAccepted() != 7 || !ack.GetDuplicate() || ack.GetDeadLettered() != 2 || ack.GetAckLevel() != weirv1.AckLevel_ACK_LEVEL_DURABLE {
		t.Errorf("success: ack %+v", ack)
	}
}

// heldCommitter keeps every batch it consumes unpublished while held is
// set, so that COMMITTED waits until the test lets go.
type heldCommitter struct {
	held     *atomic.Bool
	mu       sync.Mutex
	oldest   int64
	consumed *atomic.Int64 // records, over all partitions
	some     bool
}

func (c *heldCommitter) Consume(_ context.Context, b *record.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.some {
		c.oldest, c.some = b.Offset, true
	}
	c.consumed.Add(int64(b.Len()))
	b.Release()
	return nil
}
func (*heldCommitter) Tick(context.Context, time.Time) error { return nil }
func (*heldCommitter) Close(context.Context) error           { return nil }

func (c *heldCommitter) Oldest() (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.oldest, c.some && c.held.Load()
}

// heldService serves an ingest service whose buffer's consumers are
// heldCommitters, through a real HTTP/2 server. Each request's handler
// sends on returned, if given, once it has returned.
func heldService(t *testing.T, held *atomic.Bool, consumed *atomic.Int64, returned chan<- struct{}) weirv1connect.IngestServiceClient {
	t.Helper()
	bcfg := buffer.DefaultConfig()
	bcfg.WALDir = t.TempDir()
	bcfg.TickInterval = 5 * time.Millisecond
	buf, err := buffer.New(bcfg, buffer.Deps{NewConsumer: func(buffer.Key) buffer.Consumer {
		return &heldCommitter{held: held, consumed: consumed}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = buf.Shutdown(context.Background()) })
	cfg := DefaultConfig()
	cfg.PushTimeout = time.Minute
	cfg.CommittedTimeout = time.Minute
	pipe, err := transform.NewPipeline(transform.PipelineConfig{Limits: record.Limits{MaxFuture: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(cfg, pipe, buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	path, h := svc.Handler()
	mux := http.NewServeMux()
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if returned != nil {
			returned <- struct{}{}
		}
	}))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return weirv1connect.NewIngestServiceClient(srv.Client(), srv.URL, connect.WithGRPC())
}

// TestPushStreamClientGone checks that a stream whose client goes away
// while its batches wait for their levels ends at once: the waits end
// with the stream, not at their minute-long timeouts.
func TestPushStreamClientGone(t *testing.T) {
	var held atomic.Bool
	held.Store(true)
	var consumed atomic.Int64
	returned := make(chan struct{}, 1)
	client := heldService(t, &held, &consumed, returned)
	ctx, cancel := context.WithCancel(context.Background())
	st := client.PushStream(ctx)
	for id := uint64(1); id <= 3; id++ {
		if err := st.Send(&weirv1.PushStreamRequest{BatchId: id, Stream: "app", Records: []*weirv1.LogRecord{{Body: "a"}},
			AckLevel: weirv1.AckLevel_ACK_LEVEL_COMMITTED, AckEachLevel: id == 2}); err != nil {
			t.Fatal(err)
		}
	}
	timeout := time.After(30 * time.Second)
	for consumed.Load() < 3 {
		select {
		case <-timeout:
			t.Fatalf("%d of 3 records taken", consumed.Load())
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream's handler still waits for its batches' levels after the client left")
	}
}

// TestPushStreamReadsAhead checks that a stream goes on reading and
// taking batches while an earlier one waits for its level, and that the
// acknowledgements still come in the order of the batches: a COMMITTED
// batch that cannot commit yet holds back the acks of the ACCEPTED,
// DURABLE, failing and ack_each_level batches sent after it, though all
// of them are in the buffer.
func TestPushStreamReadsAhead(t *testing.T) {
	var held atomic.Bool
	held.Store(true)
	var consumed atomic.Int64
	client := heldService(t, &held, &consumed, nil)

	const (
		accepted  = weirv1.AckLevel_ACK_LEVEL_ACCEPTED
		durable   = weirv1.AckLevel_ACK_LEVEL_DURABLE
		committed = weirv1.AckLevel_ACK_LEVEL_COMMITTED
	)
	reqs := []*weirv1.PushStreamRequest{
		{BatchId: 1, Stream: "app", AckLevel: committed},
		{BatchId: 2, Stream: "app", AckLevel: accepted},
		{BatchId: 3, Stream: "app", AckLevel: durable},
		{BatchId: 4, Stream: "Not A Stream", AckLevel: durable},
		{BatchId: 5, Stream: "app", AckLevel: committed, AckEachLevel: true},
		{BatchId: 6, Stream: "app"},
	}
	taken := int64(0)
	for i, r := range reqs {
		r.Records = []*weirv1.LogRecord{{Body: "a"}, {Body: "b"}}
		if i != 3 {
			taken += 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := client.PushStream(ctx)
	acks := make(chan *weirv1.PushStreamResponse, 16)
	done := make(chan error, 1)
	go func() {
		for {
			ack, err := st.Receive()
			if err != nil {
				close(acks)
				done <- err
				return
			}
			acks <- ack
		}
	}()
	for _, r := range reqs {
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	// Every batch after the first is read and taken while the first
	// waits to be committed.
	for consumed.Load() < taken {
		select {
		case ack := <-acks:
			t.Fatalf("ack %v while batch 1 cannot have committed", ack)
		case <-ctx.Done():
			t.Fatalf("%d of %d records taken: the stream stopped reading behind a batch waiting for its level", consumed.Load(), taken)
		case <-time.After(time.Millisecond):
		}
	}
	if len(acks) != 0 {
		t.Fatalf("ack %v before batch 1 committed", <-acks)
	}
	held.Store(false)
	if err := st.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	type ackAt struct {
		id    uint64
		level weirv1.AckLevel
		code  weirv1.ErrorCode
	}
	var got []ackAt
	for ack := range acks {
		got = append(got, ackAt{ack.GetBatchId(), ack.GetAckLevel(), ack.GetCode()})
	}
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v", err)
	}
	want := []ackAt{
		{1, committed, 0}, {2, accepted, 0}, {3, durable, 0},
		{4, 0, weirv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{5, accepted, 0}, {6, durable, 0},
	}
	// Batch 5's later levels may come before batch 6's ack.
	var later []ackAt
	var inOrder []ackAt
	for _, a := range got {
		if a.id == 5 && a.level != accepted {
			later = append(later, a)
			continue
		}
		inOrder = append(inOrder, a)
	}
	if !slices.Equal(inOrder, want) {
		t.Errorf("acks %v, want in the order of the batches %v", inOrder, want)
	}
	if !slices.Equal(later, []ackAt{{5, durable, 0}, {5, committed, 0}}) {
		t.Errorf("batch 5's later levels %v", later)
	}
}
