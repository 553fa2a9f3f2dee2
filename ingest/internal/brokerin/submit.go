package brokerin

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/record"
)

// Submitter takes records down the pipeline; *ingest.Service implements
// it.
type Submitter interface {
	Submit(ctx context.Context, stream string, recs []record.Record, rejects []error, level buffer.Level) (ingest.Result, error)
}

// Context returns the context a source submits with: ctx carrying
// tenant ("" = record.DefaultTenant) as auth.TenantOf reads it, and the
// endpoint name its pushes are counted under.
func Context(ctx context.Context, tenant, endpoint string) context.Context {
	if tenant == "" {
		tenant = record.DefaultTenant
	}
	return ingest.WithEndpoint(auth.NewContext(ctx, auth.Principal{Tenant: tenant}), endpoint)
}

// PermanentError is a refusal retrying cannot cure: the pipeline found
// the records invalid (connect.CodeInvalidArgument and the like).
type PermanentError struct {
	Err error // the first refusal
	// Streams are the streams whose batches were refused, and Records
	// how many records they held; the other batches were taken.
	Streams map[string]bool
	Records int
}

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent reports whether err is a PermanentError.
func Permanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// Backoff bounds the pauses between retries: Min doubling to Max, with
// jitter.
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff is 100 ms doubling to 10 s.
var DefaultBackoff = Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}

// Pause returns the wait before retry n (0-based): the larger of the
// backoff and the server's Retry-After, within Max.
func (b Backoff) Pause(n int, retryAfter string) time.Duration {
	d := b.Min << min(n, 20)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	d = d/2 + rand.N(d/2+1)
	if s, err := strconv.Atoi(retryAfter); err == nil && s > 0 {
		d = max(d, time.Duration(s)*time.Second)
	}
	return min(d, b.Max)
}

// Sleep waits d or until ctx ends, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Submit submits the batches in turn at level, each until it is taken.
// Backpressure and unavailability (ResourceExhausted, Unavailable,
// Aborted, DeadlineExceeded, Internal, Unknown, Canceled) are retried
// after a pause of b, counted in c.Retries. A refusal of the records
// themselves gives up on that batch and goes on with the next; Submit
// then returns a *PermanentError naming the refused streams. The end of
// ctx returns its error at once. Batches taken before an error stay
// taken, so a caller that retries the whole set stores them twice
// (at-least-once). Submit copies each batch before handing it over,
// since the pipeline may change the records it is given.
func Submit(ctx context.Context, out Submitter, batches []*httpin.Batch, level buffer.Level, b Backoff, c *Counters) error {
	var refused *PermanentError
	for _, bt := range batches {
		for n := 0; ; n++ {
			recs := append([]record.Record(nil), bt.Records...)
			var rejects []error
			if bt.Rejects != nil {
				rejects = append([]error(nil), bt.Rejects...)
			}
			res, err := out.Submit(ctx, bt.Stream, recs, rejects, level)
			if err == nil {
				c.Records.Add(int64(res.Records))
				c.DeadLettered.Add(int64(res.DeadLettered))
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var cerr *connect.Error
			code := connect.CodeUnknown
			retryAfter := ""
			if errors.As(err, &cerr) {
				code, retryAfter = cerr.Code(), cerr.Meta().Get("Retry-After")
			}
			switch code {
			case connect.CodeResourceExhausted, connect.CodeUnavailable, connect.CodeAborted,
				connect.CodeDeadlineExceeded, connect.CodeInternal, connect.CodeUnknown, connect.CodeCanceled:
				// The pipeline's own cancellation (ctx is not done) is
				// a server shutting down: retried like unavailability.
			default:
				if refused == nil {
					refused = &PermanentError{Err: fmt.Errorf("submit to stream %q: %w", bt.Stream, err), Streams: map[string]bool{}}
				}
				refused.Streams[bt.Stream] = true
				refused.Records += len(bt.Records)
			}
			if refused != nil && refused.Streams[bt.Stream] {
				break
			}
			c.Retries.Add(1)
			if !Sleep(ctx, b.Pause(n, retryAfter)) {
				return ctx.Err()
			}
		}
	}
	if refused != nil {
		return refused
	}
	return nil
}

// BatchOf returns the stream of the batch that holds the records a
// Grouper added for stream: stream itself, or, when the Grouper moved
// them into the first batch with a record it could store (they were all
// rejected), that batch's stream.
func BatchOf(batches []*httpin.Batch, stream string) string {
	for _, b := range batches {
		if b.Stream == stream {
			return stream
		}
	}
	if len(batches) > 0 {
		return batches[0].Stream
	}
	return stream
}
