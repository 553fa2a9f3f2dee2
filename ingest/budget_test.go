package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
	"github.com/weirlabs/weir/transform"
)

// budgetServer serves a handler that reads each body whole through
// b.Handler and answers 200 with its length, or the budget's status. A
// request with the header Hold keeps what it holds until hold is closed.
func budgetServer(t *testing.T, b *Budget, hold <-chan struct{}) string {
	t.Helper()
	srv := httptest.NewServer(b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if status, retry, ok := BodyStatus(err); ok {
			w.Header().Set("Retry-After", retry)
			http.Error(w, err.Error(), status)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.Header.Get("Hold") != "" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-hold
		}
		io.WriteString(w, "ok")
	})))
	t.Cleanup(srv.Close)
	return srv.URL
}

func budgetPost(t *testing.T, url string, n int, hold bool) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bytes.Repeat([]byte("a"), n)))
	if err != nil {
		t.Fatal(err)
	}
	if hold {
		req.Header.Set("Hold", "1")
	}
	return http.DefaultClient.Do(req)
}

// TestBudgetHandler: bodies are charged as read; a request that would
// pass the budget while others hold it fails at once with 429 and
// Retry-After, one that could never fit with 413; a request that holds
// nothing yet waits for room and is served once a holder is done; the
// budget ends empty.
func TestBudgetHandler(t *testing.T) {
	b, err := NewBudget(BudgetConfig{Size: 1 << 20, Wait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	url := budgetServer(t, b, hold)

	// A holder of 960 KiB (15 steps): 64 KiB left.
	first, err := budgetPost(t, url, 960<<10, true)
	if err != nil || first.StatusCode != http.StatusOK {
		t.Fatalf("holder: %v %v", first, err)
	}
	if got := b.Held(); got != 960<<10 {
		t.Fatalf("held %d, want %d", got, 960<<10)
	}
	// 200 KiB: the first step fits, the second does not; no wait.
	resp, err := budgetPost(t, url, 200<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(text), "max_inflight_bytes") {
		t.Errorf("request past the room left: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), text)
	}
	// More than the whole budget: never retried.
	resp, err = budgetPost(t, url, 2<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("request larger than the budget: %d", resp.StatusCode)
	}
	// A second holder takes the last step; a third request waits.
	second, err := budgetPost(t, url, 10, true)
	if err != nil || second.StatusCode != http.StatusOK {
		t.Fatalf("second holder: %v %v", second, err)
	}
	type answer struct {
		resp *http.Response
		err  error
	}
	waited := make(chan answer, 1)
	go func() {
		resp, err := budgetPost(t, url, 100, false)
		waited <- answer{resp, err}
	}()
	for {
		b.mu.Lock()
		n := b.waiters
		b.mu.Unlock()
		if n == 1 {
			break
		}
		select {
		case a := <-waited:
			t.Fatalf("request served without room: %v %v", a.resp, a.err)
		case <-time.After(time.Millisecond):
		}
	}
	close(hold)
	a := <-waited
	if a.err != nil || a.resp.StatusCode != http.StatusOK {
		t.Fatalf("waiting request: %v %v", a.resp, a.err)
	}
	a.resp.Body.Close()
	for _, r := range []*http.Response{first, second} {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	// An answer ends only after its handler has returned, and the
	// budget is returned before that.
	if got := b.Held(); got != 0 {
		t.Errorf("held %d after every request ended", got)
	}
	if got := b.Refused(); got != 2 {
		t.Errorf("refused %d, want 2", got)
	}
}

// TestBudgetWaitEnds: a request that waits for room longer than the
// budget's wait is refused with ErrBusy; a canceled one with Canceled.
func TestBudgetWaitEnds(t *testing.T) {
	b, err := NewBudget(BudgetConfig{Size: 1 << 20, Wait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.take(context.Background(), "", 0, 1<<20, true); err != nil {
		t.Fatal(err)
	}
	if err := b.take(context.Background(), "", 0, budgetStep, true); !errors.Is(err, ErrBusy) || connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("wait past the budget's wait: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.wait = time.Hour
	if err := b.take(ctx, "", 0, budgetStep, true); connect.CodeOf(err) != connect.CodeCanceled {
		t.Errorf("canceled wait: %v", err)
	}
	b.give("", 1<<20)
	if b.Held() != 0 {
		t.Errorf("held %d", b.Held())
	}
	if _, err := NewBudget(BudgetConfig{Size: MinBudget - 1}); err == nil {
		t.Error("a budget below MinBudget was taken")
	}
}

// openConsumer takes every batch.
type openConsumer struct{}

func (openConsumer) Consume(context.Context, *record.Batch) error { return nil }
func (openConsumer) Tick(context.Context, time.Time) error        { return nil }
func (openConsumer) Close(context.Context) error                  { return nil }

// TestBudgetPushStream: a PushStream holds only the message being read,
// so a stream carries many times the budget, and the budget ends empty.
func TestBudgetPushStream(t *testing.T) {
	buf, err := buffer.New(buffer.DefaultConfig(), buffer.Deps{NewConsumer: func(buffer.Key) buffer.Consumer { return openConsumer{} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = buf.Shutdown(context.Background()) })
	cfg := DefaultConfig()
	cfg.DefaultLevel = buffer.Accepted // this buffer has no write-ahead log
	pipe, err := transform.NewPipeline(transform.PipelineConfig{Limits: record.Limits{MaxFuture: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(cfg, pipe, buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBudget(BudgetConfig{Size: 1 << 20, Wait: time.Minute, Stall: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(svc.Handler(b.ConnectCompression(cfg.MaxMessageBytes)))
	srv := httptest.NewUnstartedServer(b.Handler(mux))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	for _, gz := range []bool{false, true} {
		opts := []connect.ClientOption{connect.WithGRPC()}
		if gz {
			opts = append(opts, connect.WithSendGzip())
		}
		client := weirv1connect.NewIngestServiceClient(srv.Client(), srv.URL, opts...)
		st := client.PushStream(context.Background())
		const messages = 40 // of ~100 KB: 4 MB through a 1 MiB budget
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range messages {
				recs := make([]*weirv1.LogRecord, 1000)
				for j := range recs {
					recs[j] = &weirv1.LogRecord{Body: strings.Repeat("b", 100)}
				}
				if err := st.Send(&weirv1.PushStreamRequest{BatchId: uint64(i + 1), Stream: "app", Records: recs}); err != nil {
					t.Errorf("send %d: %v", i, err)
					return
				}
			}
			_ = st.CloseRequest()
		})
		for i := range messages {
			ack, err := st.Receive()
			if err != nil {
				t.Fatalf("gzip %v: ack %d: %v", gz, i, err)
			}
			if ack.GetErrorCode() != "" || ack.GetAccepted() != 1000 {
				t.Fatalf("gzip %v: ack %d: %v", gz, i, ack)
			}
		}
		wg.Wait()
		// The stream's end comes after its handler has returned.
		if _, err := st.Receive(); !errors.Is(err, io.EOF) {
			t.Fatalf("gzip %v: end of stream: %v", gz, err)
		}
		_ = st.CloseResponse()
		if got := b.Held(); got != 0 {
			t.Errorf("gzip %v: held %d after the stream ended", gz, got)
		}
	}
}

// partialPost sends a POST to url announcing a 500,000-byte body and
// sends 100,000 bytes of it; answer reads the server's answer.
func partialPost(t *testing.T, url string) (conn net.Conn, answer func() (int, string)) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n"+strings.Repeat("s", 100_000)); err != nil {
		t.Fatal(err)
	}
	return conn, func() (int, string) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(text)
	}
}

// TestBudgetStall: a request that holds some of the budget and then
// sends nothing is cut with 408, and what it held is returned.
func TestBudgetStall(t *testing.T) {
	b, err := NewBudget(BudgetConfig{Size: 1 << 20, Wait: time.Hour, Stall: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, answer := partialPost(t, budgetServer(t, b, nil))
	if status, text := answer(); status != http.StatusRequestTimeout || !strings.Contains(text, "stalled") {
		t.Errorf("stalled body: %d %s", status, text)
	}
	if got := b.Held(); got != 0 {
		t.Errorf("held %d after the stalled request", got)
	}
}

// TestBudgetMaxHold: a request that holds some of the budget and keeps
// its body trickling in is cut once it has held it for MaxHold.
func TestBudgetMaxHold(t *testing.T) {
	b, err := NewBudget(BudgetConfig{Size: 1 << 20, Wait: time.Hour, Stall: time.Hour, MaxHold: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	conn, answer := partialPost(t, budgetServer(t, b, nil))
	// The client trickles a byte every 20 ms, never enough to finish.
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte("s")); err != nil {
					return
				}
			}
		}
	})
	if status, text := answer(); status != http.StatusRequestTimeout || !strings.Contains(text, "still arriving after 300ms") {
		t.Errorf("trickling body: %d %s", status, text)
	}
	if got := b.Held(); got != 0 {
		t.Errorf("held %d after the trickling request", got)
	}
}

// TestBudgetTenantShare: a tenant alone may fill the budget; while
// others contend (refused, or waiting), it may take more only below its
// share, so room it gives back goes to the others first; bytes of no
// tenant are held to the budget alone.
func TestBudgetTenantShare(t *testing.T) {
	const mib = 1 << 20
	b, err := NewBudget(BudgetConfig{Size: 4 * mib, Wait: time.Hour, MinShare: mib})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 4 {
		if err := b.take(ctx, "a", 0, mib, false); err != nil {
			t.Fatalf("tenant a alone: %v", err)
		}
	}
	// b is refused for want of room, and so contends.
	if err := b.take(ctx, "b", 0, mib, false); !errors.Is(err, ErrBusy) || strings.Contains(err.Error(), "share") {
		t.Fatalf("b while the budget is full: %v", err)
	}
	b.give("a", mib)
	// a holds 3 MiB of its 2 MiB share: the free MiB is b's.
	if err := b.take(ctx, "a", 0, mib, false); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "share") {
		t.Fatalf("a over its share: %v", err)
	}
	if err := b.take(ctx, "b", 0, mib, false); err != nil {
		t.Fatalf("b within its share: %v", err)
	}
	// Unattributed bytes need only room.
	b.give("b", mib)
	if err := b.take(ctx, "", 0, mib, false); err != nil {
		t.Fatalf("no tenant: %v", err)
	}
	b.give("", mib)
	b.give("a", 3*mib)
	if b.Held() != 0 || len(b.tenants) != 0 {
		t.Fatalf("held %d by %v", b.Held(), b.tenants)
	}

	// Waiting: a fills the budget, c and then a wait; the MiB a gives
	// back goes to c, whose wait makes it a contender.
	c, err := NewBudget(BudgetConfig{Size: 4 * mib, Wait: time.Hour, MinShare: mib})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.take(ctx, "a", 0, 4*mib, false); err != nil {
		t.Fatal(err)
	}
	waitFor := func(n int64) {
		for c.Waiting() != n {
			runtime.Gosched()
		}
	}
	cDone, aDone := make(chan error, 1), make(chan error, 1)
	go func() { cDone <- c.take(ctx, "c", 0, mib, true) }()
	waitFor(1)
	go func() { aDone <- c.take(ctx, "a", 0, mib, true) }()
	waitFor(2)
	c.give("a", mib)
	if err := <-cDone; err != nil {
		t.Fatalf("c waiting: %v", err)
	}
	select {
	case err := <-aDone:
		t.Fatalf("a took the room c waited for: %v", err)
	default:
	}
	// Once c no longer contends, a may take what is free.
	c.give("a", 2*mib)
	if err := <-aDone; err != nil {
		t.Fatalf("a waiting alone: %v", err)
	}
	if c.Held() != 3*mib || c.Waiting() != 0 {
		t.Errorf("held %d, waiting %d", c.Held(), c.Waiting())
	}
	if _, err := NewBudget(BudgetConfig{Size: MinBudget, MinShare: MinBudget + 1}); err == nil {
		t.Error("a least share above the budget was taken")
	}
}
