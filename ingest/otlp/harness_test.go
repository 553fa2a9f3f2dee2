package otlp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/otlp"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform"
)

// capture is a buffer consumer that keeps what reaches it.
type capture struct {
	mu  *sync.Mutex
	got *[]*record.Batch
}

func (c capture) Consume(_ context.Context, b *record.Batch) error {
	b.Materialize() // a columnar batch: the tests read records
	c.mu.Lock()
	*c.got = append(*c.got, b)
	c.mu.Unlock()
	return nil
}
func (capture) Tick(context.Context, time.Time) error { return nil }
func (capture) Close(context.Context) error           { return nil }

// harness is the OTLP service in front of a real ingest service,
// pipeline (no processors) and buffer (no write-ahead log, so the
// default ack level is ACCEPTED), served on loopback over HTTP/1.1 and
// HTTP/2 without TLS, as weir serves them.
type harness struct {
	url  string // http://127.0.0.1:port
	addr string // 127.0.0.1:port
	http *http.Client
	buf  *buffer.Buffer
	stop sync.Once
	mu   sync.Mutex
	got  []*record.Batch
}

func newHarness(t *testing.T, mutate func(*otlp.Config)) *harness {
	t.Helper()
	h := &harness{}
	buf, err := buffer.New(buffer.DefaultConfig(), buffer.Deps{NewConsumer: func(buffer.Key) buffer.Consumer {
		return capture{mu: &h.mu, got: &h.got}
	}})
	if err != nil {
		t.Fatal(err)
	}
	h.buf = buf
	pipe, err := transform.NewPipeline(transform.PipelineConfig{Limits: record.Limits{MaxFuture: 24 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	icfg := ingest.DefaultConfig()
	icfg.DefaultLevel = buffer.Accepted
	ing, err := ingest.NewService(icfg, pipe, buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := otlp.DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := otlp.NewService(cfg, ing)
	if err != nil {
		t.Fatal(err)
	}
	h.serve(t, svc)
	t.Cleanup(func() { h.shutdown(t) })
	return h
}

// serve serves svc's handlers on loopback, HTTP/1.1 and h2c.
func (h *harness) serve(t *testing.T, svc *otlp.Service) {
	mux := http.NewServeMux()
	mux.Handle(svc.GRPCHandler())
	mux.Handle(svc.HTTPHandler())
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	h.url, h.addr = srv.URL, srv.Listener.Addr().String()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	h.http = &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
}

func (h *harness) shutdown(t *testing.T) {
	h.stop.Do(func() {
		if h.buf == nil {
			return
		}
		if err := h.buf.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// records shuts the buffer down (once) and returns what reached each
// stream, in the order it was consumed.
func (h *harness) records(t *testing.T) map[string][]record.Record {
	t.Helper()
	h.shutdown(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]record.Record{}
	for _, b := range h.got {
		out[b.Stream] = append(out[b.Stream], b.Records...)
	}
	return out
}

// attrs returns a record's attributes as a map.
func attrs(kvs []record.KV) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}
