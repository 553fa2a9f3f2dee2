package brokerin

import (
	"context"
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/record"
)

// scripted fails with errs in turn, then takes the records.
type scripted struct {
	errs    []error
	calls   int
	tenants []string
}

func (s *scripted) Submit(ctx context.Context, _ string, recs []record.Record, _ []error, _ buffer.Level) (ingest.Result, error) {
	s.calls++
	s.tenants = append(s.tenants, auth.TenantOf(ctx))
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		return ingest.Result{}, err
	}
	return ingest.Result{Records: len(recs)}, nil
}

func TestSubmit(t *testing.T) {
	t.Parallel()
	fast := Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}
	batches := []*httpin.Batch{{Stream: "s", Records: []record.Record{{Body: "x"}}}}
	ctx := Context(context.Background(), "acme", "kafka")
	for _, tc := range []struct {
		name      string
		errs      []error
		permanent bool
		calls     int
	}{
		{"taken", nil, false, 1},
		{"backpressure then taken", []error{connect.NewError(connect.CodeResourceExhausted, errors.New("full")),
			connect.NewError(connect.CodeUnavailable, errors.New("down")), connect.NewError(connect.CodeCanceled, errors.New("stopping"))}, false, 4},
		{"invalid", []error{connect.NewError(connect.CodeInvalidArgument, errors.New("bad"))}, true, 1},
		{"forbidden", []error{connect.NewError(connect.CodePermissionDenied, errors.New("no"))}, true, 1},
	} {
		out := &scripted{errs: tc.errs}
		var c Counters
		err := Submit(ctx, out, batches, buffer.Durable, fast, &c)
		if tc.permanent != Permanent(err) || (!tc.permanent && err != nil) || out.calls != tc.calls {
			t.Errorf("%s: err %v (permanent %v), %d calls; want permanent=%v, %d calls", tc.name, err, Permanent(err), out.calls, tc.permanent, tc.calls)
		}
		if out.tenants[0] != "acme" {
			t.Errorf("%s: tenant %q, want acme", tc.name, out.tenants[0])
		}
		if !tc.permanent && c.Records.Load() != 1 {
			t.Errorf("%s: %d records counted", tc.name, c.Records.Load())
		}
	}
	// An ended context stops the retries with its error.
	done, cancel := context.WithCancel(ctx)
	cancel()
	out := &scripted{errs: []error{connect.NewError(connect.CodeResourceExhausted, errors.New("full"))}}
	if err := Submit(done, out, batches, buffer.Durable, fast, &Counters{}); !errors.Is(err, context.Canceled) {
		t.Errorf("ended context: %v", err)
	}
	if got := Context(context.Background(), "", "x"); auth.TenantOf(got) != record.DefaultTenant {
		t.Errorf("no tenant: %q", auth.TenantOf(got))
	}
}

// refuseStream refuses the batches of one stream and takes the others.
type refuseStream struct {
	stream string
	taken  []string
}

func (r *refuseStream) Submit(_ context.Context, stream string, recs []record.Record, _ []error, _ buffer.Level) (ingest.Result, error) {
	if stream == r.stream {
		return ingest.Result{}, connect.NewError(connect.CodeInvalidArgument, errors.New("bad"))
	}
	r.taken = append(r.taken, stream)
	return ingest.Result{Records: len(recs)}, nil
}

// TestSubmitRefusedStream: a stream refused for good does not keep the
// batches after it from being taken.
func TestSubmitRefusedStream(t *testing.T) {
	t.Parallel()
	var g httpin.Grouper
	g.Add("a", record.Record{Body: "1"}, nil)
	g.Add("b", record.Record{Body: "2"}, nil)
	g.Add("a", record.Record{Body: "3"}, nil)
	g.Add("c", record.Record{Body: "4"}, nil)
	g.Add("d", record.Record{Body: "5"}, errors.New("cut"))
	batches := g.Batches()
	out := &refuseStream{stream: "a"}
	err := Submit(context.Background(), out, batches, buffer.Durable, DefaultBackoff, &Counters{})
	var refused *PermanentError
	if !errors.As(err, &refused) || !refused.Streams["a"] || len(refused.Streams) != 1 || refused.Records != 3 {
		t.Fatalf("Submit = %#v, want stream a's 3 records refused", err)
	}
	if len(out.taken) != 2 || out.taken[0] != "b" || out.taken[1] != "c" {
		t.Errorf("taken %v, want b and c", out.taken)
	}
	// d's only record was rejected: the Grouper moved it into a's batch.
	if got := BatchOf(batches, "d"); got != "a" {
		t.Errorf("BatchOf(d) = %q, want a", got)
	}
	if got := BatchOf(batches, "c"); got != "c" {
		t.Errorf("BatchOf(c) = %q, want c", got)
	}
}
