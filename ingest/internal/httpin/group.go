package httpin

import (
	"context"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/internal/record"
)

// Batch is the records of one request bound for one stream, with the
// reason of each record that cannot be stored as it is (nil when none).
type Batch struct {
	Stream  string
	Records []record.Record
	Rejects []error
}

// Grouper gathers a request's records by stream, in the order streams
// first appear. The zero value is ready to use.
type Grouper struct {
	batches []*Batch
	by      map[string]*Batch
	bad     map[*Batch]int // rejected records of each batch
}

// Add appends r to the batch of stream; err, when not nil, sends it to
// the dead-letter stream.
func (g *Grouper) Add(stream string, r record.Record, err error) {
	if g.by == nil {
		g.by, g.bad = map[string]*Batch{}, map[*Batch]int{}
	}
	b := g.by[stream]
	if b == nil {
		b = &Batch{Stream: stream}
		g.by[stream] = b
		g.batches = append(g.batches, b)
	}
	b.Records = append(b.Records, r)
	b.Rejects = append(b.Rejects, err)
	if err != nil {
		g.bad[b]++
	}
}

// Batches returns the batches to submit. ingest refuses a batch whose
// every record is rejected, so such batches are moved into the first
// batch that has a record without a reject, where they are
// dead-lettered in its name; when no batch has one, they are returned as
// they are and the request fails with the first reason.
func (g *Grouper) Batches() []*Batch {
	var host *Batch
	for _, b := range g.batches {
		if g.bad[b] < len(b.Records) {
			host = b
			break
		}
	}
	out := make([]*Batch, 0, len(g.batches))
	for _, b := range g.batches {
		if host != nil && g.bad[b] == len(b.Records) {
			host.Records = append(host.Records, b.Records...)
			host.Rejects = append(host.Rejects, b.Rejects...)
			g.bad[host] += g.bad[b]
			continue
		}
		out = append(out, b)
	}
	for _, b := range out {
		if g.bad[b] == 0 {
			b.Rejects = nil
		}
	}
	return out
}

// Submitter takes a batch into the pipeline; *ingest.Service is one.
type Submitter interface {
	Submit(ctx context.Context, stream string, recs []record.Record, rejects []error, level buffer.Level) (ingest.Result, error)
	ParseLevel(name string) (buffer.Level, error)
}

// SubmitAll submits the batches in turn at level and adds up their
// results. It stops at the first error, which is ingest's (see
// ingest.HTTPStatus); the batches before it stay stored.
func SubmitAll(ctx context.Context, out Submitter, batches []*Batch, level buffer.Level) (ingest.Result, error) {
	var sum ingest.Result
	for _, b := range batches {
		res, err := out.Submit(ctx, b.Stream, b.Records, b.Rejects, level)
		sum.Records += res.Records
		sum.DeadLettered += res.DeadLettered
		if err != nil {
			return sum, err
		}
	}
	return sum, nil
}
