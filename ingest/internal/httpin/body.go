package httpin

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/weirlabs/weir/ingest"
)

// Errors of ReadBody. Callers match them with errors.Is and answer in
// their protocol's shape: StatusOf gives the HTTP status of each.
var (
	// ErrTooLarge reports a body larger than the limit, before or after
	// decompression.
	ErrTooLarge = errors.New("request body too large")
	// ErrEncoding reports a Content-Encoding the server does not
	// decode, or a compressed body that is not valid.
	ErrEncoding = errors.New("bad content encoding")
	// ErrUnsupported reports a Content-Encoding or Content-Type the
	// server does not read.
	ErrUnsupported = errors.New("unsupported media")
)

// MaxRecords bounds the records of one request. A request's records are
// decoded whole before they are stored, and each costs a few hundred
// bytes of memory however few bytes it took on the wire (16 MiB of
// "{}" lines are five million records), so the bound is on the count,
// checked as they are decoded: the same as a Connect Push batch's
// default (ingest.max_batch_records).
const MaxRecords = 100_000

// TooManyRecords is the error of a request with more than MaxRecords
// records; it wraps ErrTooLarge.
func TooManyRecords() error {
	return fmt.Errorf("%w: it holds more than %d records; send at most %d a request", ErrTooLarge, MaxRecords, MaxRecords)
}

// StatusOf returns the HTTP status for an error of ReadBody: 413 for
// ErrTooLarge and ingest.ErrOverBudget, 415 for ErrUnsupported, 429 for
// ingest.ErrBusy (send RetryAfter's value with it), 408 for
// ingest.ErrStalled and a body that passed the server's read deadline,
// 400 otherwise.
func StatusOf(err error) int {
	if status, _, ok := ingest.BodyStatus(err); ok {
		return status
	}
	switch {
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnsupported):
		return http.StatusUnsupportedMediaType
	}
	return http.StatusBadRequest
}

// RetryAfter returns the Retry-After value to answer an error of
// ReadBody with: "1" for ingest.ErrBusy, else "".
func RetryAfter(err error) string {
	_, retryAfter, _ := ingest.BodyStatus(err)
	return retryAfter
}

// ReadBody reads the request's body, at most limit bytes of it, and
// decompresses it when its Content-Encoding is gzip (or x-gzip): the
// decompressed body is bounded by limit too, so a small compressed body
// cannot expand past it. Any other encoding than identity fails with an
// error wrapping ErrUnsupported. The decompressed bytes are charged to
// the request's in-flight budget (ingest.Charge), as the server's
// Budget.Handler charges the body itself.
func ReadBody(r *http.Request, limit int) ([]byte, error) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity", "gzip", "x-gzip":
	default:
		return nil, fmt.Errorf("%w Content-Encoding %q: send identity or gzip", ErrUnsupported, enc)
	}
	raw, err := readAtMost(r.Body, limit)
	if err != nil {
		return nil, err
	}
	if enc == "gzip" || enc == "x-gzip" {
		return gunzip(r.Context(), raw, limit)
	}
	return raw, nil
}

// gunzip decompresses a gzip body (one member or several), failing with
// an error wrapping ErrTooLarge as soon as the output passes limit bytes.
func gunzip(ctx context.Context, b []byte, limit int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %v", ErrEncoding, err)
	}
	out, err := readAtMost(ingest.ChargeReader(ctx, zr), limit)
	if _, _, budget := ingest.BodyStatus(err); err != nil && !errors.Is(err, ErrTooLarge) && !budget {
		return nil, fmt.Errorf("%w: gzip: %v", ErrEncoding, err)
	}
	return out, err
}

// readAtMost reads r to its end, failing with ErrTooLarge past limit
// bytes.
func readAtMost(r io.Reader, limit int) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes (after decompression); send smaller batches", ErrTooLarge, limit)
	}
	return out, nil
}
