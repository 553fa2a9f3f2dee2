package ingesttest

import (
	"context"
	"sync"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/record"
)

// Recorder is a Submit that keeps what it takes, for the tests of the
// background sources, which watch records arrive while the source runs.
// Records with a reject count as dead-lettered. Safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	recs []Submitted
	// Fail, when set, is asked before each submit; a non-nil error is
	// returned instead of taking the records.
	Fail func(stream string, recs []record.Record) error
}

// Submitted is one record a Recorder took.
type Submitted struct {
	Tenant, Stream string
	Level          buffer.Level
	Record         record.Record
	Reject         error
}

// Submit takes recs, or fails as Fail says. A batch whose every record
// has a reject is refused with CodeInvalidArgument, as ingest refuses it.
func (r *Recorder) Submit(ctx context.Context, stream string, recs []record.Record, rejects []error, level buffer.Level) (ingest.Result, error) {
	if err := ctx.Err(); err != nil {
		return ingest.Result{}, connect.NewError(connect.CodeCanceled, err)
	}
	if r.Fail != nil {
		if err := r.Fail(stream, recs); err != nil {
			return ingest.Result{}, err
		}
	}
	dead := 0
	for _, e := range rejects {
		if e != nil {
			dead++
		}
	}
	if len(recs) > 0 && dead == len(recs) {
		return ingest.Result{}, connect.NewError(connect.CodeInvalidArgument, rejects[0])
	}
	tenant := auth.TenantOf(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range recs {
		s := Submitted{Tenant: tenant, Stream: stream, Level: level, Record: recs[i]}
		if rejects != nil {
			s.Reject = rejects[i]
		}
		r.recs = append(r.recs, s)
	}
	return ingest.Result{Records: len(recs), DeadLettered: dead}, nil
}

// All returns a copy of what was taken, in order.
func (r *Recorder) All() []Submitted {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Submitted(nil), r.recs...)
}

// Bodies returns how many times each body was taken.
func (r *Recorder) Bodies() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, s := range r.recs {
		out[s.Record.Body]++
	}
	return out
}

// Len returns how many records were taken.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}
