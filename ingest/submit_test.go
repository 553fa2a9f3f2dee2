package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform"
)

// TestSubmit: a protocol handler's batch larger than MaxBatchRecords is
// split and stored in order, rejected records are dead-lettered with
// their reasons, and the tenant comes from the caller's principal.
func TestSubmit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBatchRecords = 4 })
	recs := make([]record.Record, 10)
	rejects := make([]error, 10)
	for i := range recs {
		recs[i] = record.Record{Body: fmt.Sprintf("r%d", i), SeverityText: "INFO"}
	}
	rejects[3] = errors.New("trace id has 3 bytes")
	ctx := auth.NewContext(context.Background(), auth.Principal{Tenant: "acme"})
	res, err := h.svc.Submit(ctx, "otel", recs, rejects, buffer.Accepted)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 10 || res.DeadLettered != 1 {
		t.Errorf("result %+v", res)
	}
	h.shutdown(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	var bodies []string
	dead := 0
	for _, b := range h.got {
		if b.Tenant != "acme" {
			t.Errorf("batch of tenant %q", b.Tenant)
		}
		for _, r := range b.Records {
			if b.Stream == "otel" {
				bodies = append(bodies, r.Body)
			} else {
				dead++
			}
		}
	}
	want := []string{"r0", "r1", "r2", "r4", "r5", "r6", "r7", "r8", "r9"}
	if fmt.Sprint(bodies) != fmt.Sprint(want) || dead != 1 {
		t.Errorf("stored %v and %d dead letters", bodies, dead)
	}

	for _, c := range []struct {
		stream string
		recs   []record.Record
		status int
	}{
		{"Bad Name", recs, http.StatusBadRequest},
		{"logs", recs, http.StatusBadRequest},
		{"ok", nil, http.StatusBadRequest},
	} {
		_, err := h.svc.Submit(context.Background(), c.stream, c.recs, nil, buffer.Accepted)
		if st, _ := HTTPStatus(err); st != c.status || connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("stream %q with %d records: %v (HTTP %d)", c.stream, len(c.recs), err, st)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	full := connect.NewError(connect.CodeResourceExhausted, errors.New("full"))
	full.Meta().Set("Retry-After", "5")
	for _, c := range []struct {
		err    error
		status int
		retry  string
	}{
		{full, 429, "5"},
		{connect.NewError(connect.CodeResourceExhausted, errors.New("x")), 429, "1"},
		{connect.NewError(connect.CodeUnavailable, errors.New("x")), 503, "1"},
		{connect.NewError(connect.CodeInvalidArgument, errors.New("x")), 400, ""},
		{errors.New("plain"), 500, ""},
	} {
		if st, ra := HTTPStatus(c.err); st != c.status || ra != c.retry {
			t.Errorf("%v: %d %q, want %d %q", c.err, st, ra, c.status, c.retry)
		}
	}
}

// stalledPusher accepts batches and never reaches a level: each push
// waits until its context is done.
type stalledPusher struct{}

func (stalledPusher) Push(ctx context.Context, _ *record.Batch, _ buffer.Level) error {
	<-ctx.Done()
	return fmt.Errorf("%w: %w", buffer.ErrUnconfirmed, ctx.Err())
}

func (stalledPusher) Enqueue(context.Context, *record.Batch) (*buffer.Receipt, error) {
	return nil, errors.New("not used")
}

// passThrough processes nothing.
type passThrough struct{}

func (passThrough) Process(dst []*record.Batch, b *record.Batch) ([]*record.Batch, error) {
	return append(dst, b), nil
}

func (passThrough) DeadLetter(r *record.Record, stream, stage, errText string) record.Record {
	return transform.DeadLetter(r, stream, stage, errText, time.Now(), record.Limits{})
}

// TestCommittedTimeout: a COMMITTED wait gets CommittedTimeout, since its
// ack comes only when the file is published; the other levels keep
// PushTimeout.
func TestCommittedTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PushTimeout, cfg.CommittedTimeout = 20*time.Millisecond, 400*time.Millisecond
	svc, err := NewService(cfg, passThrough{}, stalledPusher{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		level buffer.Level
		min   time.Duration
	}{{buffer.Durable, 10 * time.Millisecond}, {buffer.Committed, 300 * time.Millisecond}} {
		start := time.Now()
		_, err := svc.Submit(context.Background(), "app", []record.Record{{Body: "x"}}, nil, c.level)
		elapsed := time.Since(start)
		if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
			t.Errorf("%s: %v, want deadline_exceeded", c.level, err)
		}
		if elapsed < c.min || (c.level == buffer.Durable && elapsed > 300*time.Millisecond) {
			t.Errorf("%s gave up after %s", c.level, elapsed)
		}
	}
}
