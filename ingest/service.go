package ingest

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/rpcgzip"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// Pusher accepts batches; *buffer.Buffer implements it. Push takes
// ownership of b when it returns nil or an error wrapping
// buffer.ErrUnconfirmed, and returns once b reached level. It waits for
// room until ctx is done and then fails with an error wrapping
// buffer.ErrFull, and fails with buffer.ErrClosed when shutting down.
type Pusher interface {
	Push(ctx context.Context, b *record.Batch, level buffer.Level) error
	// Enqueue is Push at the Accepted level that returns a receipt to
	// wait for the higher levels with.
	Enqueue(ctx context.Context, b *record.Batch) (*buffer.Receipt, error)
}

// Processor turns a pushed batch into the batches to buffer: the
// validated and transformed records of the batch's stream, records routed
// to other streams and dead letters, among them the records the service
// could not convert (b.Rejects, see record.Batch). *transform.Pipeline
// implements it. It takes ownership of b and returns an error
// (INVALID_ARGUMENT to the client) only when the whole batch is rejected.
type Processor interface {
	Process(dst []*record.Batch, b *record.Batch) ([]*record.Batch, error)
	// DeadLetter returns the dead letter of r, pushed to stream, which
	// failed at stage with errText (see transform.DeadLetter).
	DeadLetter(r *record.Record, stream, stage, errText string) record.Record
}

// Config bounds what the service accepts.
type Config struct {
	// MaxMessageBytes bounds one request message; larger ones fail with
	// RESOURCE_EXHAUSTED before they are decoded. The Arrow memory that
	// decoding a batch sent as arrow_ipc may take (compressed IPC bodies
	// expand) is bounded by four times as much, also failing with
	// RESOURCE_EXHAUSTED beyond.
	MaxMessageBytes int
	// MaxBatchRecords bounds the records of one batch, sent as records
	// or as the rows of arrow_ipc.
	MaxBatchRecords int
	// PushTimeout bounds the wait for buffer room and for the asked
	// acknowledgement level of a request that has no deadline of its own,
	// and of each batch of a PushStream.
	PushTimeout time.Duration
	// DefaultLevel is the acknowledgement level of requests that ask for
	// none.
	DefaultLevel buffer.Level
	// CommittedTimeout replaces PushTimeout for requests that wait for
	// COMMITTED, which come only when their file is published: it must
	// cover the sink's file age, or such acks time out with the
	// defaults. Values below PushTimeout mean PushTimeout.
	CommittedTimeout time.Duration
	// TenantRecordsPerSecond and TenantBytesPerSecond bound each
	// tenant's ingest rate (record.Record.Size bytes, or for a batch
	// that stays columnar the bytes of its Arrow buffers, see
	// record.ColumnsSize); a batch over it is
	// refused with RESOURCE_EXHAUSTED and a Retry-After. A tenant may
	// burst up to one second's worth. 0 means no bound.
	TenantRecordsPerSecond int
	TenantBytesPerSecond   int
}

// DefaultConfig returns limits fit for most deployments.
func DefaultConfig() Config {
	return Config{
		MaxMessageBytes: 16 << 20,
		MaxBatchRecords: 100_000,
		PushTimeout:     10 * time.Second,
		DefaultLevel:    buffer.Durable,
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.MaxMessageBytes < 1024:
		return fmt.Errorf("ingest: MaxMessageBytes must be at least 1024, got %d", c.MaxMessageBytes)
	case c.MaxBatchRecords < 1:
		return fmt.Errorf("ingest: MaxBatchRecords must be positive, got %d", c.MaxBatchRecords)
	case c.PushTimeout <= 0:
		return fmt.Errorf("ingest: PushTimeout must be positive, got %s", c.PushTimeout)
	case c.DefaultLevel < buffer.Accepted || c.DefaultLevel > buffer.Committed:
		return fmt.Errorf("ingest: unknown DefaultLevel %d", c.DefaultLevel)
	case c.TenantRecordsPerSecond < 0 || c.TenantBytesPerSecond < 0:
		return fmt.Errorf("ingest: tenant rates must not be negative, got %d records/s and %d bytes/s", c.TenantRecordsPerSecond, c.TenantBytesPerSecond)
	}
	return nil
}

// Service implements the Connect IngestService.
type Service struct {
	cfg  Config
	proc Processor
	out  Pusher
	log  *slog.Logger
	mem  memory.Allocator
	now  func() time.Time
	rate *tenantLimiter
	// endpoints counts pushes by the endpoint they came through.
	endpoints endpoints
}

var _ weirv1connect.IngestServiceHandler = (*Service)(nil)

// Option configures a Service.
type Option interface{ apply(*Service) }

type optionFunc func(*Service)

func (f optionFunc) apply(s *Service) { f(s) }

// WithAllocator sets the allocator of the Arrow buffers that batches sent
// as arrow_ipc are decoded into (by default memory.DefaultAllocator). It
// must be safe for concurrent use. The buffers are released before the
// batch's records are handed on: records hold Go memory only.
func WithAllocator(mem memory.Allocator) Option {
	return optionFunc(func(s *Service) { s.mem = mem })
}

// NewService returns a service that runs pushed batches through proc and
// pushes the results to out.
func NewService(cfg Config, proc Processor, out Pusher, log *slog.Logger, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if out == nil || proc == nil {
		return nil, errors.New("ingest: nil Processor or Pusher")
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Service{cfg: cfg, proc: proc, out: out, log: log, mem: memory.DefaultAllocator, now: time.Now}
	for _, o := range opts {
		o.apply(s)
	}
	if s.mem == nil {
		return nil, errors.New("ingest: nil allocator")
	}
	s.rate = newTenantLimiter(float64(cfg.TenantRecordsPerSecond), float64(cfg.TenantBytesPerSecond), func() time.Time { return s.now() })
	return s, nil
}

// Handler returns the service's path and HTTP handler, with the message
// size limit applied and codecs (binary and JSON) that check each
// request's nesting and message count before decoding it (see
// MaxValueDepth).
func (s *Service) Handler(opts ...connect.HandlerOption) (string, http.Handler) {
	opts = append(append([]connect.HandlerOption{connect.WithReadMaxBytes(s.cfg.MaxMessageBytes), rpcgzip.Option(s.cfg.MaxMessageBytes, nil)}, codecs(s.cfg.MaxMessageBytes, s.cfg.MaxBatchRecords)...), opts...)
	return weirv1connect.NewIngestServiceHandler(s, opts...)
}

// Push implements weirv1connect.IngestServiceHandler.
func (s *Service) Push(ctx context.Context, req *connect.Request[weirv1.PushRequest]) (*connect.Response[weirv1.PushResponse], error) {
	tenant := auth.TenantOf(ctx)
	level, err := s.level(req.Msg.GetAckLevel())
	if err != nil {
		return nil, err
	}
	res, err := s.push(ctx, tenant, req.Msg.GetStream(), payload{req.Msg.GetRecords(), req.Msg.GetArrowIpc()}, level, req.Msg.GetProducerId(), req.Msg.GetSequence(), true)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&weirv1.PushResponse{
		Accepted: uint32(res.n), AckLevel: wireLevel(level), Duplicate: res.dup, DeadLettered: uint32(res.dead),
	}), nil
}

// PushStream implements weirv1connect.IngestServiceHandler. Batches are
// taken into the buffer one at a time in order, so a full buffer stops
// the server from reading further requests: the transport's flow control
// then slows the client down. A batch that waits longer than PushTimeout
// for room is acknowledged with resource_exhausted.
//
// Reading does not wait for acknowledgements: while one batch waits for
// its level (the log's fsync for DURABLE), the batches after it are read
// and taken, so a stream with several batches in flight keeps the server
// busy. Acknowledgements still go out in the order the batches came, each
// once its batch has reached its level or failed; at most maxLevelWaits
// batches wait at once, past that the stream stops reading.
//
// A batch with ack_each_level is acknowledged once per level, as each is
// reached: first ACCEPTED (in order with the other batches' acks), then
// DURABLE and, if asked, COMMITTED, which may come after acks of later
// batches. At most maxLevelWaits such batches wait for their later levels
// at once.
func (s *Service) PushStream(ctx context.Context, stream *connect.BidiStream[weirv1.PushStreamRequest, weirv1.PushStreamResponse]) error {
	tenant := auth.TenantOf(ctx)
	a := newAcker(ctx, s, stream.Send)
	defer a.close()
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// The wait for the level starts with the batch: the timeout
		// covers taking it and its fsync, as for a unary Push.
		p := pendingAck{id: req.GetBatchId(), each: req.GetAckEachLevel()}
		p.level, err = s.level(req.GetAckLevel())
		if err == nil {
			p.wctx, p.cancel = waitContext(ctx, s.timeout(p.level), s.now())
			p.res, err = s.push(ctx, tenant, req.GetStream(), payload{req.GetRecords(), req.GetArrowIpc()}, p.level, req.GetProducerId(), req.GetSequence(), false)
		}
		// The batch's records are in the buffer (or refused): the
		// message no longer holds the in-flight budget.
		releaseRead(ctx)
		if err != nil && ctx.Err() != nil {
			if p.cancel != nil {
				p.cancel()
			}
			return connect.NewError(connect.CodeCanceled, context.Cause(ctx))
		}
		p.err = err
		if err := a.add(p); err != nil {
			return err
		}
	}
}

// pendingAck is a batch of a PushStream whose acknowledgement has not
// been sent.
type pendingAck struct {
	id    uint64
	each  bool // ack_each_level
	level buffer.Level
	res   pushed
	err   error // the batch failed before the buffer took it
	// wctx bounds the wait for level; cancel releases it (nil when the
	// level could not be read).
	wctx   context.Context
	cancel context.CancelFunc
}

// acker sends a PushStream's acknowledgements in the order of its
// batches from one goroutine, waiting for each batch's level in turn;
// the later levels of ack_each_level batches are waited for apart, by at
// most maxLevelWaits goroutines. Its goroutines are joined by close.
type acker struct {
	s       *Service
	ctx     context.Context
	sendMu  sync.Mutex
	sendFn  func(*weirv1.PushStreamResponse) error
	queue   chan pendingAck
	broken  chan struct{} // closed once a send failed; err then holds why
	err     error
	slots   chan struct{}
	levels  sync.WaitGroup // ack_each_level waiters
	ordered sync.WaitGroup // the in-order sender
}

func newAcker(ctx context.Context, s *Service, send func(*weirv1.PushStreamResponse) error) *acker {
	a := &acker{
		s: s, ctx: ctx, sendFn: send,
		queue:  make(chan pendingAck, maxLevelWaits),
		broken: make(chan struct{}),
		slots:  make(chan struct{}, maxLevelWaits),
	}
	a.ordered.Go(a.run)
	return a
}

// add queues p's acknowledgement behind those of the batches before it.
// It blocks while maxLevelWaits batches wait, and fails once a send has
// failed (the client is gone) or ctx is done.
func (a *acker) add(p pendingAck) error {
	select {
	case a.queue <- p:
		return nil
	case <-a.broken:
		p.release()
		return a.err
	case <-a.ctx.Done():
		p.release()
		return connect.NewError(connect.CodeCanceled, context.Cause(a.ctx))
	}
}

// close sends what is queued and waits for every waiter.
func (a *acker) close() {
	close(a.queue)
	a.ordered.Wait()
	a.levels.Wait()
}

func (p *pendingAck) release() {
	if p.cancel != nil {
		p.cancel()
	}
}

// send writes one acknowledgement; after a failed send it sends nothing.
func (a *acker) send(ack *weirv1.PushStreamResponse) bool {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	select {
	case <-a.broken:
		return false
	default:
	}
	if err := a.sendFn(ack); err != nil {
		a.err = err
		close(a.broken)
		return false
	}
	return true
}

// run sends the queued acknowledgements in order.
func (a *acker) run() {
	for p := range a.queue {
		a.first(p)
	}
}

// first sends p's in-order acknowledgement: its error, ACCEPTED for
// ack_each_level, else its level once reached. It hands the later levels
// of an ack_each_level batch to a waiter of their own.
func (a *acker) first(p pendingAck) {
	select {
	case <-a.broken:
		// The client is gone: nothing more can be told.
		p.release()
		return
	default:
	}
	err, level := p.err, p.level
	if p.each {
		level = buffer.Accepted
	}
	if err == nil && p.res.receipt != nil && level > buffer.Accepted {
		if werr := p.res.receipt.Wait(p.wctx, level); werr != nil {
			err = a.s.connectErr(p.wctx, werr)
			a.s.endpoints.failed(a.ctx, err)
		}
	}
	if !a.send(ackOf(p.id, p.res, level, err)) || err != nil || !p.each || p.level == buffer.Accepted {
		p.release()
		return
	}
	if p.res.receipt == nil {
		// Nothing was buffered (every record dropped): every level is
		// reached at once.
		for l := buffer.Durable; l <= p.level; l++ {
			if !a.send(ackOf(p.id, p.res, l, nil)) {
				break
			}
		}
		p.release()
		return
	}
	select {
	case a.slots <- struct{}{}:
	case <-a.ctx.Done():
		p.release()
		return
	}
	a.levels.Go(func() {
		defer func() { <-a.slots }()
		defer p.release()
		for l := buffer.Durable; l <= p.level; l++ {
			err := p.res.receipt.Wait(p.wctx, l)
			if err != nil {
				err = a.s.connectErr(p.wctx, err)
				a.s.endpoints.failed(a.ctx, err)
			}
			if !a.send(ackOf(p.id, p.res, l, err)) || err != nil {
				return
			}
		}
	})
}

// maxLevelWaits bounds the batches of one stream waiting for their
// DURABLE and COMMITTED acknowledgements.
const maxLevelWaits = 256

// ackOf builds the acknowledgement of a batch at a level, or of its error.
// An error's Connect code goes in code, and its name in the deprecated
// error_code for clients that read only that.
func ackOf(id uint64, res pushed, level buffer.Level, err error) *weirv1.PushStreamResponse {
	ack := &weirv1.PushStreamResponse{BatchId: id}
	if err != nil {
		code := connect.CodeOf(err)
		ack.Code = weirv1.ErrorCode(code)
		ack.ErrorCode = code.String()
		ack.ErrorMessage = errMessage(err)
		return ack
	}
	ack.Accepted = uint32(res.n)
	ack.AckLevel = wireLevel(level)
	ack.Duplicate = res.dup
	ack.DeadLettered = uint32(res.dead)
	return ack
}

func errMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}

// pushed is the outcome of one accepted batch.
type pushed struct {
	n    int  // records of the request
	dead int  // of those, sent to the dead-letter stream
	dup  bool // a retry of an accepted batch
	// receipt is set when the caller asked for one (see submit).
	receipt *buffer.Receipt
}

// payload is a batch as a request carries it: records or arrow_ipc.
type payload struct {
	records []*weirv1.LogRecord
	arrow   []byte
}

// push validates, converts and processes one batch and hands the results
// to the buffer (see submit). Errors are *connect.Error.
func (s *Service) push(ctx context.Context, tenant, stream string, p payload, level buffer.Level, producer string, seq uint64, wait bool) (res pushed, err error) {
	size := 0
	defer func() { s.endpoints.done(ctx, res.n, size, res.dead, err) }()
	b, err := s.batchOf(ctx, tenant, stream, p, producer, seq)
	if err != nil {
		return pushed{}, err
	}
	size = b.Bytes
	if err := s.rate.take(tenant, b.Len(), b.Bytes); err != nil {
		b.Release()
		return pushed{}, err
	}
	res = pushed{n: b.Len()}
	var partsBuf [4]*record.Batch
	parts, err := s.proc.Process(partsBuf[:0], b)
	if err != nil {
		return pushed{}, connect.NewError(connect.CodeInvalidArgument, err)
	}
	for _, p := range parts {
		if p.Stream == logschema.DeadLetterStream {
			res.dead += p.Len()
		}
	}
	if len(parts) == 0 {
		// Every record was dropped by the stream's processors.
		return res, nil
	}
	res.receipt, res.dup, err = s.submit(ctx, parts, stream, level, wait)
	return res, err
}

// submit hands the batches made of one request to the buffer. With wait
// it returns once all reached level; without, once all are accepted, with
// a receipt to wait for the higher levels. dup reports that the batch of
// the request's own stream was a retry. Errors are *connect.Error.
func (s *Service) submit(ctx context.Context, parts []*record.Batch, stream string, level buffer.Level, wait bool) (r *buffer.Receipt, dup bool, err error) {
	if len(parts) == 1 && wait {
		err := s.pushBatch(ctx, parts[0], level)
		if err != nil && !errors.Is(err, buffer.ErrUnconfirmed) {
			parts[0].Release() // not taken by the buffer
		}
		if errors.Is(err, buffer.ErrDuplicate) {
			return nil, parts[0].Stream == stream, nil
		}
		return nil, false, err
	}
	for i, p := range parts {
		pr, err := s.enqueue(ctx, p)
		if err != nil {
			for _, q := range parts[i:] {
				q.Release() // not taken by the buffer
			}
			return nil, false, err
		}
		if p.Stream == stream {
			dup = pr.Duplicate()
		}
		r = r.Join(pr)
	}
	if !wait || level == buffer.Accepted {
		return r, dup, nil
	}
	wctx, cancel := waitContext(ctx, s.timeout(level), s.now())
	defer cancel()
	if err := r.Wait(wctx, level); err != nil {
		return nil, false, s.connectErr(wctx, err)
	}
	return nil, dup, nil
}

// maxProducerID bounds the producer ids a client may choose.
const maxProducerID = 128

// batchOf validates a batch and converts it at the edge, from either
// representation: both get the same checks and defaults. What belongs to
// the request (producer, stream name, representation, record count, a
// stream that cannot be read) fails it whole; a record holding a value
// a record.Record cannot is kept in the batch with its error in
// b.Rejects, for the processor to dead-letter. Errors are
// *connect.Error.
func (s *Service) batchOf(ctx context.Context, tenant, stream string, p payload, producer string, seq uint64) (*record.Batch, error) {
	if len(producer) > maxProducerID {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("producer_id has %d bytes; the limit is %d", len(producer), maxProducerID))
	}
	if producer == "" && seq != 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("sequence without producer_id"))
	}
	if err := record.ValidateStream(stream); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	var (
		out     []record.Record
		rejects []error
		err     error
	)
	switch {
	case len(p.records) > 0 && len(p.arrow) > 0:
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("records and arrow_ipc are both set; send a batch as one or the other"))
	case len(p.arrow) > 0:
		if b := s.columnarBatch(tenant, stream, p.arrow); b != nil {
			b.ProducerID, b.Sequence = producer, seq
			return b, nil
		}
		out, rejects, err = decodeArrow(ctx, p.arrow, s.cfg.MaxBatchRecords, s.mem, arrowMemoryFactor*s.cfg.MaxMessageBytes)
		switch {
		case errors.Is(err, ErrBusy):
			return nil, err // a *connect.Error with its Retry-After
		case errors.Is(err, errArrowTooLarge):
			return nil, connect.NewError(connect.CodeResourceExhausted, err)
		}
	default:
		out, rejects, err = s.convertRecords(p.records)
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	now := s.now().UnixNano()
	for i := range out {
		if out[i].ObservedTimestamp == 0 {
			out[i].ObservedTimestamp = now
		}
	}
	b := record.NewBatch(tenant, stream, out)
	b.ProducerID, b.Sequence, b.Rejects = producer, seq, rejects
	return b, nil
}

// RuleChecker is implemented by Processors that can tell whether a
// stream's records go through processors (*transform.Pipeline does).
// Batches sent as arrow_ipc to streams without processors stay columnar
// from ingest to the sink; the others become records at ingest.
type RuleChecker interface {
	HasRules(stream string) bool
}

// columnarBatch returns the rows of an arrow_ipc payload as a columnar
// batch that keeps the payload for the write-ahead log, or nil when they
// go the row path: the stream has processors (or the Processor cannot
// tell), or record.ReadColumns cannot take the payload as it is (a
// compressed stream, JSON attribute columns, values a record cannot
// hold, a malformed stream), for which decodeArrow finds the values to
// dead-letter or the error to return.
func (s *Service) columnarBatch(tenant, stream string, data []byte) *record.Batch {
	rc, ok := s.proc.(RuleChecker)
	if !ok || rc.HasRules(stream) {
		return nil
	}
	now := s.now().UnixNano()
	cols, err := record.ReadColumns(data, now, s.cfg.MaxBatchRecords, s.mem, arrowMemoryFactor*s.cfg.MaxMessageBytes)
	if err != nil {
		return nil
	}
	b := record.NewColumnarBatch(tenant, stream, cols)
	b.IPC, b.IPCNow = data, now
	return b
}

// convertRecords converts the records of the proto representation. A
// record holding a value that a record.Record cannot is converted as far
// as it can be, and its error is in rejects at its index (nil when no
// record is such): the processor sends it to the dead-letter stream
// (record.Batch.Rejects). err is for the whole request.
func (s *Service) convertRecords(recs []*weirv1.LogRecord) (out []record.Record, rejects []error, err error) {
	if len(recs) == 0 {
		return nil, nil, fmt.Errorf("%w: set records or arrow_ipc", record.ErrEmptyBatch)
	}
	if len(recs) > s.cfg.MaxBatchRecords {
		return nil, nil, fmt.Errorf("batch has %d records; the limit is %d", len(recs), s.cfg.MaxBatchRecords)
	}
	out = make([]record.Record, len(recs))
	for i, pr := range recs {
		if err := convert(&out[i], pr, i); err != nil {
			if rejects == nil {
				rejects = make([]error, len(recs))
			}
			rejects[i] = err
		}
	}
	return out, rejects, nil
}

// pushBatch hands b to the buffer at level. It returns ErrDuplicate
// unwrapped for a retried batch and *connect.Error otherwise.
func (s *Service) pushBatch(ctx context.Context, b *record.Batch, level buffer.Level) error {
	ctx, cancel := waitContext(ctx, s.timeout(level), s.now())
	defer cancel()
	err := s.out.Push(ctx, b, level)
	if err == nil || errors.Is(err, buffer.ErrDuplicate) {
		return err
	}
	return s.connectErr(ctx, err)
}

// timeout is how long a request without a deadline of its own waits for
// level.
func (s *Service) timeout(level buffer.Level) time.Duration {
	if level == buffer.Committed {
		return max(s.cfg.PushTimeout, s.cfg.CommittedTimeout)
	}
	return s.cfg.PushTimeout
}

// enqueue hands b to the buffer at the Accepted level and returns its
// receipt. Errors are *connect.Error.
func (s *Service) enqueue(ctx context.Context, b *record.Batch) (*buffer.Receipt, error) {
	ctx, cancel := waitContext(ctx, s.cfg.PushTimeout, s.now())
	defer cancel()
	r, err := s.out.Enqueue(ctx, b)
	if err != nil {
		return nil, s.connectErr(ctx, err)
	}
	return r, nil
}

// connectErr maps a buffer error to a Connect error. ctx is the context
// of the wait that failed.
func (s *Service) connectErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, buffer.ErrUnconfirmed):
		code := connect.CodeUnavailable
		if ctx.Err() != nil {
			code = connect.CodeDeadlineExceeded
		}
		return connect.NewError(code, err)
	case errors.Is(err, buffer.ErrSequence):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, buffer.ErrInFlight):
		return connect.NewError(connect.CodeAborted, err)
	case errors.Is(err, buffer.ErrNoWAL):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, buffer.ErrTooLarge):
		// No Retry-After: the same batch fails again (HTTPStatus: 413).
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, buffer.ErrFull):
		cerr := connect.NewError(connect.CodeResourceExhausted, err)
		cerr.Meta().Set("Retry-After", "1")
		return cerr
	case errors.Is(err, buffer.ErrNoSpace):
		// The log undid the write: a retry once space is freed succeeds.
		cerr := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("disk full: the server has no space left to log the batch; retry once space is freed: %w", err))
		cerr.Meta().Set("Retry-After", "5")
		return cerr
	case errors.Is(err, buffer.ErrTooManyStreams):
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, buffer.ErrClosed), errors.Is(err, buffer.ErrStreamUnavailable):
		return connect.NewError(connect.CodeUnavailable, err)
	case ctx.Err() != nil:
		return connect.NewError(connect.CodeCanceled, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// waitContext bounds the wait for buffer room. Without a deadline of its
// own a request waits up to def. With one, it gives up a tenth of the time
// left (at most 100ms) before the deadline, so that RESOURCE_EXHAUSTED
// reaches the client before its own timer fires.
func waitContext(ctx context.Context, def time.Duration, now time.Time) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithTimeout(ctx, def)
	}
	margin := min(deadline.Sub(now)/10, 100*time.Millisecond)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// level maps a requested acknowledgement level to the buffer's.
func (s *Service) level(l weirv1.AckLevel) (buffer.Level, error) {
	switch l {
	case weirv1.AckLevel_ACK_LEVEL_UNSPECIFIED:
		return s.cfg.DefaultLevel, nil
	case weirv1.AckLevel_ACK_LEVEL_ACCEPTED:
		return buffer.Accepted, nil
	case weirv1.AckLevel_ACK_LEVEL_DURABLE:
		return buffer.Durable, nil
	case weirv1.AckLevel_ACK_LEVEL_COMMITTED:
		return buffer.Committed, nil
	}
	return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unknown ack_level %d", l))
}

func wireLevel(l buffer.Level) weirv1.AckLevel {
	switch l {
	case buffer.Accepted:
		return weirv1.AckLevel_ACK_LEVEL_ACCEPTED
	case buffer.Durable:
		return weirv1.AckLevel_ACK_LEVEL_DURABLE
	case buffer.Committed:
		return weirv1.AckLevel_ACK_LEVEL_COMMITTED
	}
	return weirv1.AckLevel_ACK_LEVEL_UNSPECIFIED
}

// convert copies a wire record into r. A value r cannot hold (a time
// past the year 2262, a trace or span id of the wrong length) is left
// out, at its zero value, and named with its value in the error, which
// names the record by index; the rest of the record is copied all the
// same, so that its dead letter keeps it.
func convert(r *record.Record, pr *weirv1.LogRecord, index int) error {
	var err error
	r.Timestamp, err = wireTime(pr.GetTimeUnixNano(), "time_unix_nano", err)
	r.ObservedTimestamp, err = wireTime(pr.GetObservedTimeUnixNano(), "observed_time_unix_nano", err)
	r.SeverityNumber = int32(pr.GetSeverityNumber())
	r.SeverityText = pr.GetSeverityText()
	r.Body = pr.GetBody()
	r.Flags = pr.GetFlags()
	switch tid := pr.GetTraceId(); len(tid) {
	case 0:
	case 16:
		copy(r.TraceID[:], tid)
	default:
		err = joinErr(err, fmt.Errorf("trace_id %s has %d bytes; want 0 or 16", hexOf(tid), len(tid)))
	}
	switch sid := pr.GetSpanId(); len(sid) {
	case 0:
	case 8:
		copy(r.SpanID[:], sid)
	default:
		err = joinErr(err, fmt.Errorf("span_id %s has %d bytes; want 0 or 8", hexOf(sid), len(sid)))
	}
	r.Attributes = convertKVs(pr.GetAttributes())
	r.Resource = convertKVs(pr.GetResource())
	if err != nil {
		return fmt.Errorf("record %d: %w", index, err)
	}
	return nil
}

// wireTime converts a wire timestamp, or returns 0 and adds its error
// to err.
func wireTime(ns uint64, name string, err error) (int64, error) {
	if ns > math.MaxInt64 {
		return 0, joinErr(err, fmt.Errorf("%w: %s %d is past the year 2262", record.ErrInvalidTimestamp, name, ns))
	}
	return int64(ns), err
}

// joinErr returns the errors of one record as one, "; " between them.
func joinErr(prev, err error) error {
	if prev == nil {
		return err
	}
	return fmt.Errorf("%w; %w", prev, err)
}

// maxHexID bounds the bytes of a malformed id that an error shows.
const maxHexID = 64

// hexOf returns id in hex, cut after maxHexID bytes.
func hexOf(id []byte) string {
	if len(id) > maxHexID {
		return hex.EncodeToString(id[:maxHexID]) + "..."
	}
	return hex.EncodeToString(id)
}

func convertKVs(kvs []*weirv1.KeyValue) []record.KV {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]record.KV, len(kvs))
	for i, kv := range kvs {
		out[i] = record.KV{Key: kv.GetKey(), Value: valueText(kv.GetValue())}
	}
	return out
}

// valueText renders an attribute value as text: scalars canonically,
// bytes in base64, arrays and maps as JSON.
func valueText(v *weirv1.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *weirv1.AnyValue_StringValue:
		return x.StringValue
	case *weirv1.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *weirv1.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *weirv1.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *weirv1.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *weirv1.AnyValue_ArrayValue, *weirv1.AnyValue_KvlistValue:
		b, err := json.Marshal(jsonOf(v))
		if err != nil {
			return ""
		}
		return string(b)
	}
	return ""
}

func jsonOf(v *weirv1.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *weirv1.AnyValue_StringValue:
		return x.StringValue
	case *weirv1.AnyValue_BoolValue:
		return x.BoolValue
	case *weirv1.AnyValue_IntValue:
		return x.IntValue
	case *weirv1.AnyValue_DoubleValue:
		if math.IsNaN(x.DoubleValue) || math.IsInf(x.DoubleValue, 0) {
			return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
		}
		return x.DoubleValue
	case *weirv1.AnyValue_BytesValue:
		return x.BytesValue
	case *weirv1.AnyValue_ArrayValue:
		out := make([]any, len(x.ArrayValue.GetValues()))
		for i, e := range x.ArrayValue.GetValues() {
			out[i] = jsonOf(e)
		}
		return out
	case *weirv1.AnyValue_KvlistValue:
		out := make(map[string]any, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.GetKey()] = jsonOf(kv.GetValue())
		}
		return out
	}
	return nil
}
