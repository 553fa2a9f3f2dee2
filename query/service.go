package query

import (
	"context"
	"database/sql/driver"
	"errors"
	"math"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/rpcgzip"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// chunkBytes is about the size of each streamed QueryResponse's data.
const chunkBytes = 256 << 10

// Service implements the Connect QueryService on an Engine.
type Service struct {
	e      *Engine
	tenant func(context.Context) string
}

var _ weirv1connect.QueryServiceHandler = (*Service)(nil)

// NewService returns the Connect QueryService of e. tenant names whose
// data a request reads, from its context (the authenticated caller); nil
// means the default tenant for every request.
func NewService(e *Engine, tenant func(context.Context) string) *Service {
	return &Service{e: e, tenant: tenant}
}

// Handler returns the service's path and HTTP handler. Requests are
// bounded to the SQL endpoint's body size, after decompression (a gzip
// request inflates no further: rpcgzip); opts may add to that.
func (s *Service) Handler(opts ...connect.HandlerOption) (string, http.Handler) {
	opts = append([]connect.HandlerOption{connect.WithReadMaxBytes(maxSQLBody), rpcgzip.Option(maxSQLBody, nil)}, opts...)
	return weirv1connect.NewQueryServiceHandler(s, opts...)
}

// Query implements weirv1connect.QueryServiceHandler.
func (s *Service) Query(ctx context.Context, req *connect.Request[weirv1.QueryRequest], stream *connect.ServerStream[weirv1.QueryResponse]) error {
	m := req.Msg
	var f Format
	switch m.GetFormat() {
	case weirv1.ResultFormat_RESULT_FORMAT_UNSPECIFIED, weirv1.ResultFormat_RESULT_FORMAT_JSON:
		f = FormatJSON
	case weirv1.ResultFormat_RESULT_FORMAT_CSV:
		f = FormatCSV
	case weirv1.ResultFormat_RESULT_FORMAT_ARROW:
		f = FormatArrow
	default:
		return connect.NewError(connect.CodeInvalidArgument, errors.New("unknown result format"))
	}
	if m.GetSql() == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("sql is empty"))
	}
	cs := &connectSink{stream: stream}
	cw := &chunkWriter{size: chunkBytes, emit: cs.send}
	cs.inner = NewWriter(f, cw)
	cs.chunk = cw
	if rf, ok := cs.inner.(rowFlusher); ok {
		cs.rowFlush = rf
		cw.rows = true
	}
	opt := Options{MaxRows: m.GetMaxRows(), Timeout: time.Duration(m.GetTimeoutMs()) * time.Millisecond}
	if s.tenant != nil {
		opt.Tenant = s.tenant(ctx)
	}
	_, err := s.e.Run(ctx, m.GetSql(), opt, cs)
	if err != nil {
		return connect.NewError(connectCode(err), err)
	}
	return nil
}

func connectCode(err error) connect.Code {
	switch {
	case errors.Is(err, ErrInvalid):
		return connect.CodeInvalidArgument
	case errors.Is(err, ErrBusy), errors.Is(err, ErrResources):
		return connect.CodeResourceExhausted
	case errors.Is(err, ErrTimeout):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, ErrCanceled), errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	}
	return connect.CodeInternal
}

// connectSink turns a result into QueryResponse messages: the first
// carries the columns, each carries about chunkBytes of data, and a last
// one without data carries the row count and the truncation flag. In the
// row formats (CSV and JSON lines) each message's data ends on a row
// boundary, so a client can decode every message on its own; the CSV
// header is in the first.
type connectSink struct {
	stream   *connect.ServerStream[weirv1.QueryResponse]
	inner    ResultWriter
	rowFlush rowFlusher // inner, in a row format; nil in Arrow
	chunk    *chunkWriter
	cols     []*weirv1.Column
	sent     bool
	rows     uint64
}

func (c *connectSink) send(data []byte) error {
	msg := &weirv1.QueryResponse{Data: data}
	if !c.sent {
		msg.Columns = c.cols
		c.sent = true
	}
	return c.stream.Send(msg)
}

func (c *connectSink) Begin(cols []Column) error {
	for _, col := range cols {
		c.cols = append(c.cols, &weirv1.Column{Name: col.Name, Type: col.Type})
	}
	if err := c.inner.Begin(cols); err != nil {
		return err
	}
	return c.endRow()
}

func (c *connectSink) Row(vals []driver.Value) error {
	c.rows++
	if err := c.inner.Row(vals); err != nil {
		return err
	}
	return c.endRow()
}

func (c *connectSink) nestedAsJSON() bool { return wantsJSONText(c.inner) }

// endRow lets the chunk end here, between two rows, in a row format.
func (c *connectSink) endRow() error {
	if c.rowFlush == nil {
		return nil
	}
	if err := c.rowFlush.flushRow(); err != nil {
		return err
	}
	return c.chunk.EndRow()
}

func (c *connectSink) End(truncated bool) error {
	if err := c.inner.End(truncated); err != nil {
		return err
	}
	if err := c.chunk.Flush(); err != nil {
		return err
	}
	msg := &weirv1.QueryResponse{Truncated: truncated, Rows: c.rows}
	if !c.sent {
		msg.Columns = c.cols
		c.sent = true
	}
	return c.stream.Send(msg)
}

// Export implements weirv1connect.QueryServiceHandler: it plans the
// export, then writes each hour's file in chunks of about chunkBytes.
func (s *Service) Export(ctx context.Context, req *connect.Request[weirv1.ExportRequest], stream *connect.ServerStream[weirv1.ExportResponse]) error {
	m := req.Msg
	var f Format
	ext := ""
	switch m.GetFormat() {
	case weirv1.ExportFormat_EXPORT_FORMAT_UNSPECIFIED, weirv1.ExportFormat_EXPORT_FORMAT_PARQUET:
		f, ext = FormatParquet, "parquet"
	case weirv1.ExportFormat_EXPORT_FORMAT_CSV:
		f, ext = FormatCSV, "csv"
	case weirv1.ExportFormat_EXPORT_FORMAT_JSONL:
		f, ext = FormatJSON, "jsonl"
	default:
		return connect.NewError(connect.CodeInvalidArgument, errors.New("unknown export format"))
	}
	if m.GetStream() == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("stream is empty"))
	}
	spec := ExportSpec{
		Stream: m.GetStream(),
		From:   time.Unix(0, int64(min(m.GetFromUnixNano(), math.MaxInt64))).UTC(),
		To:     time.Unix(0, int64(min(m.GetToUnixNano(), math.MaxInt64))).UTC(),
		Where:  m.GetWhere(),
	}
	if s.tenant != nil {
		spec.Tenant = s.tenant(ctx)
	}
	hours, err := s.e.ExportPlan(ctx, spec)
	if err != nil {
		return exportError(err)
	}
	var total uint64
	for _, h := range hours {
		total += h.Rows
	}
	if err := stream.Send(&weirv1.ExportResponse{TotalRows: total, TotalFiles: uint32(len(hours))}); err != nil {
		return err
	}
	for _, h := range hours {
		path := h.Hour.Format("date=2006-01-02/hour=15") + "/part-0." + ext
		first := true
		cw := &chunkWriter{size: chunkBytes, emit: func(b []byte) error {
			msg := &weirv1.ExportResponse{Data: b}
			if first {
				msg.Path, first = path, false
			}
			return stream.Send(msg)
		}}
		rows, err := s.e.ExportHour(ctx, spec, h.Hour, NewWriter(f, cw))
		if err != nil {
			return exportError(err)
		}
		if err := cw.Flush(); err != nil {
			return err
		}
		end := &weirv1.ExportResponse{FileEnd: true, Rows: rows}
		if first {
			end.Path = path
		}
		if err := stream.Send(end); err != nil {
			return err
		}
	}
	return nil
}

func exportError(err error) error {
	if errors.Is(err, ErrUnknownStream) {
		return connect.NewError(connect.CodeNotFound, err)
	}
	return connect.NewError(connectCode(err), err)
}
