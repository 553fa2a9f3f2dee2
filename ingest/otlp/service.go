package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/protolimit"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/rpcgzip"
)

// Paths and headers of the OTLP endpoints.
const (
	// ExportProcedure is the path of the OTLP/gRPC LogsService's one
	// method.
	ExportProcedure = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
	// HTTPPath is the path of OTLP/HTTP logs.
	HTTPPath = "/v1/logs"
	// StreamHeader names the stream of every record of a request (gRPC
	// metadata weir-stream), unless Config.Stream is set.
	StreamHeader = "Weir-Stream"
	// AckLevelHeader asks for an acknowledgement level (gRPC metadata
	// weir-ack-level): accepted, durable or committed; absent means the
	// ingest service's default.
	AckLevelHeader = "Weir-Ack-Level"
)

// Submitter takes records of one stream down the ingest path and
// returns once they reached level; *ingest.Service implements it (see
// its Submit for the contract). ParseLevel reads an acknowledgement
// level's name, "" meaning the default.
type Submitter interface {
	Submit(ctx context.Context, stream string, recs []record.Record, rejects []error, level buffer.Level) (ingest.Result, error)
	ParseLevel(name string) (buffer.Level, error)
}

// Service serves OTLP logs over gRPC (and Connect, gRPC-Web) and HTTP.
// Its handlers are safe for concurrent use.
type Service struct {
	cfg  Config
	sub  Submitter
	dec  *decoder
	bufs sync.Pool // *bytes.Buffer, for request bodies
	gzs  sync.Pool // *gzip.Reader
}

// NewService returns a service that hands the records it receives to
// sub.
func NewService(cfg Config, sub Submitter) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sub == nil {
		return nil, errors.New("otlp: nil Submitter")
	}
	dec, err := newDecoder(cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, sub: sub, dec: dec}, nil
}

// GRPCHandler returns the path and handler of the OTLP/gRPC LogsService
// (ExportProcedure). It also answers Connect and gRPC-Web clients; JSON
// requests use OTLP's JSON mapping. Requests larger than
// MaxMessageBytes, compressed or not, fail with RESOURCE_EXHAUSTED; opts
// come after the service's own options.
func (s *Service) GRPCHandler(opts ...connect.HandlerOption) (string, http.Handler) {
	all := []connect.HandlerOption{
		connect.WithReadMaxBytes(s.cfg.MaxMessageBytes),
		rpcgzip.Option(s.cfg.MaxMessageBytes, nil),
		connect.WithCodec(protoCodec{s.dec}),
		connect.WithCodec(jsonCodec{name: "json", d: s.dec}),
		connect.WithCodec(jsonCodec{name: "json; charset=utf-8", d: s.dec}),
	}
	h := connect.NewUnaryHandler(ExportProcedure, s.exportRPC, append(all, opts...)...)
	return ExportProcedure, h
}

func (s *Service) exportRPC(ctx context.Context, req *connect.Request[collogspb.ExportLogsServiceRequest]) (*connect.Response[collogspb.ExportLogsServiceResponse], error) {
	hexIDs := strings.Contains(req.Header().Get("Content-Type"), "json")
	resp, err := s.export(ctx, req.Msg, req.Header(), hexIDs)
	if err != nil {
		return nil, withRetryInfo(err)
	}
	return connect.NewResponse(resp), nil
}

// export stores the records of a request and builds its answer. Errors
// are *connect.Error.
func (s *Service) export(ctx context.Context, req *collogspb.ExportLogsServiceRequest, h http.Header, hexIDs bool) (*collogspb.ExportLogsServiceResponse, error) {
	level, err := s.sub.ParseLevel(strings.TrimSpace(h.Get(AckLevelHeader)))
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("header %s: %w", AckLevelHeader, err))
	}
	fixed := s.cfg.Stream
	if fixed == "" {
		if fixed, err = headerStream(h.Get(StreamHeader)); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
	}
	c := converter{cfg: &s.cfg, fixed: fixed, hexIDs: hexIDs}
	c.convert(req)
	rejected := 0
	for _, g := range c.groups {
		res, err := s.sub.Submit(ctx, g.stream, g.recs, g.rejects, level)
		if err != nil {
			return nil, err
		}
		rejected += res.DeadLettered
	}
	resp := &collogspb.ExportLogsServiceResponse{}
	if rejected > 0 {
		why := "a timestamp, severity or text weir cannot store"
		if c.firstReject != nil {
			why = "the first: " + c.firstReject.Error()
		}
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{
			RejectedLogRecords: int64(rejected),
			ErrorMessage: fmt.Sprintf("%d of %d log records were rejected and kept in the %s stream with their reasons; %s",
				rejected, c.n, logschema.DeadLetterStream, why),
		}
	}
	return resp, nil
}

// withRetryInfo adds gRPC's RetryInfo to an error the client should
// retry later (RESOURCE_EXHAUSTED, UNAVAILABLE): OpenTelemetry's gRPC
// exporters retry RESOURCE_EXHAUSTED only with it.
func withRetryInfo(err error) error {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return err
	}
	if c := cerr.Code(); c != connect.CodeResourceExhausted && c != connect.CodeUnavailable {
		return err
	}
	if d, derr := connect.NewErrorDetail(retryInfo(cerr.Meta().Get("Retry-After"))); derr == nil {
		cerr.AddDetail(d)
	}
	return cerr
}

// retryInfo returns the RetryInfo of a Retry-After value in seconds
// (one second when there is none).
func retryInfo(retryAfter string) *errdetails.RetryInfo {
	secs, err := strconv.Atoi(retryAfter)
	if err != nil || secs < 1 {
		secs = 1
	}
	return &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(secs) * time.Second)}
}

// Content types of OTLP/HTTP.
const (
	contentProto = "application/x-protobuf"
	contentJSON  = "application/json"
)

// HTTPHandler returns the path and handler of OTLP/HTTP logs (HTTPPath):
// POST with Content-Type application/x-protobuf or application/json and
// Content-Encoding gzip or none. The answer is in the request's content
// type: ExportLogsServiceResponse with 200, or google.rpc.Status with
// 400 (malformed or invalid request), 405, 413 (larger than
// MaxMessageBytes, compressed or not), 415 (other content type or
// encoding; the Status is JSON), 429 and 503 (retry after Retry-After).
func (s *Service) HTTPHandler() (string, http.Handler) {
	return HTTPPath, http.HandlerFunc(s.serveHTTP)
}

func (s *Service) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, true, http.StatusMethodNotAllowed, connect.CodeUnimplemented, "OTLP/HTTP logs take POST", "")
		return
	}
	asJSON := false
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case err != nil:
		writeStatus(w, true, http.StatusUnsupportedMediaType, connect.CodeInvalidArgument,
			fmt.Sprintf("Content-Type %q: want %s or %s", r.Header.Get("Content-Type"), contentProto, contentJSON), "")
		return
	case ct == contentProto || ct == "application/protobuf":
	case ct == contentJSON:
		asJSON = true
	default:
		writeStatus(w, true, http.StatusUnsupportedMediaType, connect.CodeInvalidArgument,
			fmt.Sprintf("Content-Type %q: want %s or %s", ct, contentProto, contentJSON), "")
		return
	}
	body, release, status, err := s.readBody(w, r)
	defer release()
	if err != nil {
		code, retryAfter := connect.CodeInvalidArgument, ""
		switch status {
		case http.StatusRequestEntityTooLarge:
			code = connect.CodeResourceExhausted
		case http.StatusTooManyRequests:
			code, retryAfter = connect.CodeResourceExhausted, "1"
		}
		writeStatus(w, asJSON, status, code, err.Error(), retryAfter)
		return
	}
	req := &collogspb.ExportLogsServiceRequest{}
	if asJSON {
		err = s.dec.decodeJSON(body, req)
	} else {
		err = s.dec.decodeProto(body, req)
	}
	release() // the decoders copy what they keep
	if errors.Is(err, protolimit.ErrTooManyRecords) {
		writeStatus(w, asJSON, http.StatusRequestEntityTooLarge, connect.CodeResourceExhausted, err.Error(), "")
		return
	}
	if err != nil {
		writeStatus(w, asJSON, http.StatusBadRequest, connect.CodeInvalidArgument, err.Error(), "")
		return
	}
	resp, err := s.export(r.Context(), req, r.Header, asJSON)
	if err != nil {
		status, retryAfter := ingest.HTTPStatus(err)
		var cerr *connect.Error
		msg, code := err.Error(), connect.CodeInternal
		if errors.As(err, &cerr) {
			msg, code = cerr.Message(), cerr.Code()
		}
		writeStatus(w, asJSON, status, code, msg, retryAfter)
		return
	}
	writeMessage(w, asJSON, http.StatusOK, resp)
}

// readBody reads a request body, decompressed, within MaxMessageBytes.
// release returns its buffers for reuse; it may be called more than
// once. On error, status is the HTTP status to answer with.
func (s *Service) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), status int, err error) {
	max := int64(s.cfg.MaxMessageBytes)
	var held []*bytes.Buffer
	release = func() {
		for _, b := range held {
			if b.Cap() <= maxPooledBuffer {
				b.Reset()
				s.bufs.Put(b)
			}
		}
		held = nil
	}
	get := func() *bytes.Buffer {
		b, _ := s.bufs.Get().(*bytes.Buffer)
		if b == nil {
			b = new(bytes.Buffer)
		}
		held = append(held, b)
		return b
	}
	tooLarge := func(what string) error {
		return fmt.Errorf("the request body is larger than %d bytes%s, the limit", max, what)
	}
	if r.ContentLength > max {
		return nil, release, http.StatusRequestEntityTooLarge, tooLarge("")
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc == "x-gzip" {
		enc = "gzip" // as the other protocols take it
	}
	if enc != "" && enc != "identity" && enc != "gzip" {
		return nil, release, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q: want gzip or none", enc)
	}
	raw := get()
	if r.ContentLength > 0 {
		// Room for what the client says it sends, up to a point: a
		// client that sends the header and then nothing must not pin
		// max bytes per connection.
		raw.Grow(int(min(r.ContentLength, preGrowBytes)))
	}
	if _, err := raw.ReadFrom(http.MaxBytesReader(w, r.Body, max)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, release, http.StatusRequestEntityTooLarge, tooLarge("")
		}
		if status, _, ok := ingest.BodyStatus(err); ok {
			return nil, release, status, err
		}
		return nil, release, http.StatusBadRequest, fmt.Errorf("read the request body: %w", err)
	}
	if enc != "gzip" {
		return raw.Bytes(), release, 0, nil
	}
	zr, _ := s.gzs.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	defer s.gzs.Put(zr)
	if err := zr.Reset(bytes.NewReader(raw.Bytes())); err != nil {
		return nil, release, http.StatusBadRequest, fmt.Errorf("gzip: %w", err)
	}
	out := get()
	n, err := out.ReadFrom(io.LimitReader(ingest.ChargeReader(r.Context(), zr), max+1))
	if status, _, ok := ingest.BodyStatus(err); ok {
		return nil, release, status, err
	}
	if err != nil {
		return nil, release, http.StatusBadRequest, fmt.Errorf("gzip: %w", err)
	}
	if n > max {
		return nil, release, http.StatusRequestEntityTooLarge, tooLarge(" once decompressed")
	}
	return out.Bytes(), release, 0, nil
}

// maxPooledBuffer bounds the body buffers kept for reuse, so that one
// large request does not pin its memory.
const maxPooledBuffer = 4 << 20

// preGrowBytes bounds the room made for a body before it arrives.
const preGrowBytes = 64 << 10

// writeStatus answers with a google.rpc.Status, in JSON or protobuf. A
// Retry-After value adds the header and a RetryInfo detail.
func writeStatus(w http.ResponseWriter, asJSON bool, status int, code connect.Code, msg, retryAfter string) {
	st := &statuspb.Status{Code: int32(code), Message: msg}
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
		if d, err := anypb.New(retryInfo(retryAfter)); err == nil {
			st.Details = append(st.Details, d)
		}
	}
	writeMessage(w, asJSON, status, st)
}

// writeMessage answers with m in JSON or protobuf.
func writeMessage(w http.ResponseWriter, asJSON bool, status int, m proto.Message) {
	var (
		body []byte
		err  error
		ct   = contentProto
	)
	if asJSON {
		ct = contentJSON
		body, err = protojson.Marshal(m)
	} else {
		body, err = proto.Marshal(m)
	}
	if err != nil {
		http.Error(w, "encode the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

var _ Submitter = (*ingest.Service)(nil)
