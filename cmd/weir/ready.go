package main

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/query"
	"github.com/weirlabs/weir/sink"
)

// readiness answers /readyz: 503 until the records recovered from the
// write-ahead logs are queryable, 200 from then until shutdown begins.
// /healthz only says the process answers.
type readiness struct {
	mu     sync.Mutex
	reason string // "" when ready
	// details are reported by /readyz without making it fail: parts
	// that are behind (Iceberg commits failing) while ingest and
	// queries work. A detail is shown while its func returns non-"".
	details map[string]func() string
}

func newReadiness() *readiness { return &readiness{reason: "replaying the write-ahead log"} }

func (r *readiness) set(reason string) {
	r.mu.Lock()
	r.reason = reason
	r.mu.Unlock()
}

// addDetail adds a detail that /readyz reports while fn returns non-"".
func (r *readiness) addDetail(name string, fn func() string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.details == nil {
		r.details = map[string]func() string{}
	}
	r.details[name] = fn
}

func (r *readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	reason := r.reason
	details := map[string]string{}
	for name, fn := range r.details {
		if d := fn(); d != "" {
			details[name] = d
		}
	}
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	body := map[string]any{"ready": reason == "", "reason": reason}
	if len(details) > 0 {
		body["details"] = details
	}
	json.NewEncoder(w).Encode(body)
}

// awaitRecovery marks r ready once the buffer's consumers took every
// recovered batch, the batchers flushed them (they hand a batch on at
// most flushAge after its first row, checked every tick), the lake
// staged what they wrote and the query engine applied the resulting
// view changes. It returns early, leaving r not ready, when ctx is done.
//
// The batchers' part is a wait of flushAge and two ticks, not a
// condition: a partition goroutine delayed past it would let readiness
// come before its last replayed rows reach the lake.
func awaitRecovery(ctx context.Context, r *readiness, buf *buffer.Buffer, lake *sink.Lake, engine *query.Engine, flushAge, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for buf.Stats().Replaying > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	r.set("making the replayed records queryable")
	// The batchers hold the last recovered rows until they are flushAge
	// old; two ticks cover the check that flushes them.
	select {
	case <-ctx.Done():
		return
	case <-time.After(flushAge + 2*tick):
	}
	if err := lake.WaitStaged(ctx); err != nil {
		return
	}
	if err := engine.Sync(ctx); err != nil {
		return
	}
	r.set("")
}
