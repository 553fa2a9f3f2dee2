package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

// Result is what a protocol handler learns of a submitted batch.
type Result struct {
	// Records is how many records were taken: stored, dead-lettered or
	// dropped by the stream's processors.
	Records int
	// DeadLettered is how many of them went to the dead-letter stream.
	DeadLettered int
}

// Submit is the entry point of the protocol handlers (OTLP, Loki,
// Elasticsearch bulk, syslog, JSON lines, HEC): it takes records they
// decoded for a stream of the caller's tenant (auth.TenantOf(ctx)) down
// the path of Push. rejects is nil or holds, at a record's index, why that
// record cannot be stored as it is: such records go to the dead-letter
// stream with the reason, and so do records that fail validation or a
// processor; the others are stored. Batches larger than the service's
// MaxBatchRecords are split, each part buffered in order. Submit returns
// once every record reached level, or the first error; records of parts
// acknowledged before an error stay stored.
//
// Errors are *connect.Error; HTTPStatus maps them to a status code for
// protocols that speak plain HTTP.
func (s *Service) Submit(ctx context.Context, stream string, recs []record.Record, rejects []error, level buffer.Level) (res Result, err error) {
	size := 0
	defer func() { s.endpoints.done(ctx, res.Records, size, res.DeadLettered, err) }()
	if err := record.ValidateStream(stream); err != nil {
		return res, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if len(recs) == 0 {
		return res, connect.NewError(connect.CodeInvalidArgument, record.ErrEmptyBatch)
	}
	if rejects != nil && len(rejects) != len(recs) {
		return res, connect.NewError(connect.CodeInternal, fmt.Errorf("ingest: %d rejects for %d records", len(rejects), len(recs)))
	}
	tenant := auth.TenantOf(ctx)
	now := s.now().UnixNano()
	for start := 0; start < len(recs); start += s.cfg.MaxBatchRecords {
		end := min(start+s.cfg.MaxBatchRecords, len(recs))
		part := recs[start:end]
		for i := range part {
			if part[i].ObservedTimestamp == 0 {
				part[i].ObservedTimestamp = now
			}
		}
		b := record.NewBatch(tenant, stream, part)
		size += b.Bytes
		if err := s.rate.take(tenant, len(part), b.Bytes); err != nil {
			return res, err
		}
		if rejects != nil {
			b.Rejects = rejects[start:end]
		}
		var partsBuf [4]*record.Batch
		parts, err := s.proc.Process(partsBuf[:0], b)
		if err != nil {
			return res, connect.NewError(connect.CodeInvalidArgument, err)
		}
		res.Records += len(part)
		for _, p := range parts {
			if p.Stream == logschema.DeadLetterStream {
				res.DeadLettered += len(p.Records)
			}
		}
		if len(parts) == 0 {
			continue
		}
		if _, _, err := s.submit(ctx, parts, stream, level, true); err != nil {
			return res, err
		}
	}
	return res, nil
}

// DefaultLevel is the acknowledgement level of requests that ask for
// none.
func (s *Service) DefaultLevel() buffer.Level { return s.cfg.DefaultLevel }

// ParseLevel reads an acknowledgement level named by a protocol's header
// or query argument: accepted, durable or committed (any case); ""
// means the service's default.
func (s *Service) ParseLevel(name string) (buffer.Level, error) {
	switch strings.ToLower(name) {
	case "":
		return s.cfg.DefaultLevel, nil
	case "accepted":
		return buffer.Accepted, nil
	case "durable":
		return buffer.Durable, nil
	case "committed":
		return buffer.Committed, nil
	}
	return 0, fmt.Errorf("unknown acknowledgement level %q: want accepted, durable or committed", name)
}

// HTTPStatus maps an error of Submit to the HTTP status a plain-HTTP
// protocol answers with, and the Retry-After value to send with it (""
// for none). Backpressure becomes 429 with Retry-After, which shippers
// retry; a batch larger than the buffer can ever hold (or a request than
// the in-flight Budget) 413, without;
// a server shutting down or unable to confirm becomes 503.
func HTTPStatus(err error) (status int, retryAfter string) {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return http.StatusInternalServerError, ""
	}
	if errors.Is(err, buffer.ErrTooLarge) || errors.Is(err, ErrOverBudget) {
		return http.StatusRequestEntityTooLarge, ""
	}
	retryAfter = cerr.Meta().Get("Retry-After")
	switch cerr.Code() {
	case connect.CodeInvalidArgument, connect.CodeOutOfRange:
		return http.StatusBadRequest, ""
	case connect.CodeFailedPrecondition:
		return http.StatusPreconditionFailed, ""
	case connect.CodeResourceExhausted:
		if retryAfter == "" {
			retryAfter = "1"
		}
		return http.StatusTooManyRequests, retryAfter
	case connect.CodeUnavailable, connect.CodeAborted:
		if retryAfter == "" {
			retryAfter = "1"
		}
		return http.StatusServiceUnavailable, retryAfter
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout, "1"
	case connect.CodeCanceled:
		return 499, ""
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized, ""
	case connect.CodePermissionDenied:
		return http.StatusForbidden, ""
	}
	return http.StatusInternalServerError, ""
}
