package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
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

// awaitRecovery marks r ready once every record recovered from the
// write-ahead logs is queryable: the buffer has passed the recovered
// batches to its consumers and they have flushed what they held
// (buffer.Flush), the lake has staged what they wrote, and the query
// engine has applied the resulting view changes. A flush that fails (the
// lake refusing writes) is retried every tick; the records stay with
// the batchers meanwhile. It returns early, leaving r not ready, when
// ctx is done.
func awaitRecovery(ctx context.Context, r *readiness, buf *buffer.Buffer, lake *sink.Lake, engine *query.Engine, tick time.Duration, log *slog.Logger) {
	for {
		err := buf.Flush(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, buffer.ErrClosed) {
			return
		}
		log.Warn("readiness: the replayed records could not be handed to the lake yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(tick):
		}
	}
	r.set("making the replayed records queryable")
	if err := lake.WaitStaged(ctx); err != nil {
		return
	}
	if err := engine.Sync(ctx); err != nil {
		return
	}
	r.set("")
}
