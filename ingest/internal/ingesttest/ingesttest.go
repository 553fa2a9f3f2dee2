// Package ingesttest runs a real ingest.Service, behind a real buffer and
// transform pipeline, for the tests of the protocol handlers: what the
// handlers submit is captured as the buffer's consumer would see it.
package ingesttest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform"
)

// Harness is an ingest.Service whose buffer keeps every consumed batch.
type Harness struct {
	Svc  *ingest.Service
	buf  *buffer.Buffer
	stop sync.Once
	mu   sync.Mutex
	got  []*record.Batch
}

type capture struct{ h *Harness }

func (c capture) Consume(_ context.Context, b *record.Batch) error {
	b.Materialize() // a columnar batch: the tests read records
	c.h.mu.Lock()
	c.h.got = append(c.h.got, b)
	c.h.mu.Unlock()
	return nil
}
func (capture) Tick(context.Context, time.Time) error { return nil }
func (capture) Close(context.Context) error           { return nil }

// New returns a harness with the service's default configuration, but
// acknowledging at the Accepted level (the buffer has no write-ahead
// log), changed by mutate when it is not nil. It shuts down when the
// test ends.
func New(t testing.TB, mutate func(*ingest.Config, *buffer.Config)) *Harness {
	t.Helper()
	h := &Harness{}
	bc := buffer.DefaultConfig()
	cfg := ingest.DefaultConfig()
	cfg.DefaultLevel = buffer.Accepted
	if mutate != nil {
		mutate(&cfg, &bc)
	}
	buf, err := buffer.New(bc, buffer.Deps{NewConsumer: func(buffer.Key) buffer.Consumer { return capture{h} }})
	if err != nil {
		t.Fatal(err)
	}
	h.buf = buf
	pipe, err := transform.NewPipeline(transform.PipelineConfig{Limits: record.Limits{MaxFuture: 24 * time.Hour}, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.Svc, err = ingest.NewService(cfg, pipe, buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.shutdown(t) })
	return h
}

func (h *Harness) shutdown(t testing.TB) {
	h.stop.Do(func() {
		if err := h.buf.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// Records shuts the buffer down, which drains it, and returns what
// reached each stream of any tenant, in the order consumed.
func (h *Harness) Records(t testing.TB) map[string][]record.Record {
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

// Tenants returns the tenant of each stream that received records; call
// it after Records.
func (h *Harness) Tenants() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	for _, b := range h.got {
		out[b.Stream] = b.Tenant
	}
	return out
}

// Attr returns the value of key in kvs, and whether it is there.
func Attr(kvs []record.KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}
