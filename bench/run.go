package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

var ackLevels = map[string]weirv1.AckLevel{
	"accepted":  weirv1.AckLevel_ACK_LEVEL_ACCEPTED,
	"durable":   weirv1.AckLevel_ACK_LEVEL_DURABLE,
	"committed": weirv1.AckLevel_ACK_LEVEL_COMMITTED,
}

// errorBackoff is the pause after a failed call or stream before the
// worker tries again.
const errorBackoff = 100 * time.Millisecond

// codeUnacknowledged counts batches sent but not acknowledged before the
// drain timeout (or a broken stream).
const codeUnacknowledged = "unacknowledged"

// NewHTTPClient returns the client weir push uses: cleartext HTTP/2 with
// prior knowledge for http:// URLs (HTTP/2 over TLS for https://), so that
// bidirectional streams work against a plain-text server.
func NewHTTPClient() *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols}}
}

// Run sends load as cfg says for cfg.Duration and reports what it
// measured. A progress line is written to progress (if not nil) about once
// a second. Cancelling ctx ends the run early; the report then covers the
// time until then. Run fails only when it cannot start (bad config,
// unreadable source); errors of the server are counted in the report.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	pool, err := loadSource(cfg.Source)
	if err != nil {
		return Report{}, err
	}
	server := strings.TrimRight(cfg.Server, "/")
	hc := NewHTTPClient()
	if cfg.Protocol == ProtocolJSONLine {
		// Peers speak HTTP/1.1 (and HTTP/2 where they negotiate it).
		hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency}}
	}
	defer hc.CloseIdleConnections()
	var opts []connect.ClientOption
	switch cfg.Protocol {
	case "grpc":
		opts = append(opts, connect.WithGRPC())
	case "grpc-web":
		opts = append(opts, connect.WithGRPCWeb())
	}
	runID := make([]byte, 6)
	rand.Read(runID)
	r := &runner{
		cfg:    cfg,
		hc:     hc,
		pool:   pool,
		client: weirv1connect.NewIngestServiceClient(hc, server, opts...),
		level:  ackLevels[cfg.AckLevel],
		runID:  hex.EncodeToString(runID),
		probe:  newProber(cfg, server, hc),
		errors: map[string]int64{},
	}
	sampler := &serverSampler{url: metricsURL(server), hc: hc}
	sampler.sample(ctx)

	var bg sync.WaitGroup
	stopSampler := make(chan struct{})
	bg.Go(func() { sampler.run(ctx, 500*time.Millisecond, stopSampler) })
	if r.probe != nil {
		bg.Go(func() { r.probe.run(ctx) })
	}
	stopProgress := make(chan struct{})
	start := time.Now()
	if progress != nil {
		bg.Go(func() { r.report(progress, start, stopProgress) })
	}

	sendCtx, cancelSend := context.WithTimeout(ctx, cfg.Duration)
	defer cancelSend()
	hardCtx, cancelHard := context.WithTimeout(ctx, cfg.Duration+cfg.DrainTimeout)
	defer cancelHard()
	var workers sync.WaitGroup
	for i := range cfg.Concurrency {
		w := &worker{r: r, id: i, off: i * len(pool) / cfg.Concurrency}
		workers.Go(func() {
			switch {
			case cfg.Protocol == ProtocolJSONLine:
				w.runJSONLines(sendCtx, hardCtx)
			case cfg.Protocol == ProtocolOTLP:
				w.runOTLP(sendCtx, hardCtx)
			case cfg.Mode == "stream":
				w.runStream(sendCtx, hardCtx)
			default:
				w.runUnary(sendCtx, hardCtx)
			}
		})
	}
	workers.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	if r.probe != nil {
		close(r.probe.in)
	}
	close(stopSampler)
	bg.Wait()
	if progress != nil {
		fmt.Fprintln(progress)
	}

	rep := Report{
		Server:         server,
		Protocol:       cfg.Protocol,
		Mode:           cfg.Mode,
		Format:         cfg.Format,
		Concurrency:    cfg.Concurrency,
		BatchSize:      cfg.BatchSize,
		TargetRate:     cfg.Rate,
		AckLevel:       cfg.AckLevel,
		Source:         cfg.Source,
		Stream:         cfg.Stream,
		ElapsedSeconds: elapsed.Seconds(),
		Records:        r.records.Load(),
		Batches:        r.batches.Load(),
		BodyBytes:      r.bytes.Load(),
		Errors:         r.errors,
		Freshness:      r.probe.result(),
	}
	rep.RecordsPerSecond = float64(rep.Records) / elapsed.Seconds()
	rep.MBPerSecond = float64(rep.BodyBytes) / 1e6 / elapsed.Seconds()
	var (
		lat  []time.Duration
		seen int
	)
	for _, s := range r.latencies {
		lat = append(lat, s.d...)
		seen += s.seen
	}
	rep.AckLatency = summarise(lat, seen)
	rep.ServerCPUSeconds, rep.ServerPeakRSSBytes = sampler.result()
	rep.DiskBytesPerRecord = sampler.diskPerRecord()
	return rep, nil
}

// runner is the state shared by the workers of one run.
type runner struct {
	cfg    Config
	hc     *http.Client
	pool   []*weirv1.LogRecord
	client weirv1connect.IngestServiceClient
	level  weirv1.AckLevel
	runID  string
	probe  *prober

	records atomic.Int64
	batches atomic.Int64
	bytes   atomic.Int64

	mu        sync.Mutex
	errors    map[string]int64
	latencies []*samples
	markerSeq int
}

func (r *runner) addError(code string, n int64) {
	r.mu.Lock()
	r.errors[code] += n
	r.mu.Unlock()
}

// report writes a progress line once a second until stop is closed.
func (r *runner) report(w io.Writer, start time.Time, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			el := time.Since(start)
			fmt.Fprintf(w, "\r%5.1fs  %10.0f records/s  %12d records acked", el.Seconds(), float64(r.records.Load())/el.Seconds(), r.records.Load())
		}
	}
}

// worker sends batches over one stream, or one unary call at a time.
type worker struct {
	r   *runner
	id  int
	off int

	next       time.Time // pacing: when the next batch is due
	lastMarker time.Time
	lat        samples
	enc        *arrowEncoder // FormatArrow only; made on first use
}

// batch is one batch in flight.
type batch struct {
	recs   []*weirv1.LogRecord
	bytes  int64
	marker string
	markAt time.Time // the marker record's timestamp
	sent   time.Time
}

// nextBatch waits until the next batch is due (with a rate) and builds it
// from the pool; worker 0 puts a marker record in a batch every
// markerInterval. It returns false when ctx ends first.
func (w *worker) nextBatch(ctx context.Context) (batch, bool) {
	cfg := w.r.cfg
	if cfg.Rate > 0 {
		now := time.Now()
		if w.next.IsZero() || now.Sub(w.next) > time.Second {
			w.next = now
		}
		if d := w.next.Sub(now); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return batch{}, false
			}
		}
		perWorker := cfg.Rate / float64(cfg.Concurrency)
		w.next = w.next.Add(time.Duration(float64(cfg.BatchSize) / perWorker * float64(time.Second)))
	}
	if ctx.Err() != nil {
		return batch{}, false
	}
	b := batch{recs: make([]*weirv1.LogRecord, cfg.BatchSize)}
	for i := range b.recs {
		b.recs[i] = w.r.pool[w.off]
		w.off = (w.off + 1) % len(w.r.pool)
	}
	if w.id == 0 && w.r.probe != nil && time.Since(w.lastMarker) >= markerInterval {
		w.lastMarker = time.Now()
		b.markAt = w.lastMarker
		w.r.mu.Lock()
		w.r.markerSeq++
		b.marker = fmt.Sprintf("weir-bench-marker run=%s seq=%d", w.r.runID, w.r.markerSeq)
		w.r.mu.Unlock()
		b.recs[len(b.recs)-1] = &weirv1.LogRecord{TimeUnixNano: uint64(b.markAt.UnixNano()), Body: b.marker, SeverityText: "INFO", Resource: []*weirv1.KeyValue{stringKV("service.name", markerService)}}
	}
	for _, rec := range b.recs {
		b.bytes += int64(len(rec.GetBody()))
	}
	return b, true
}

// acked records an acknowledged batch.
func (w *worker) acked(b batch, at time.Time) {
	w.lat.add(at.Sub(b.sent))
	w.r.records.Add(int64(len(b.recs)))
	w.r.batches.Add(1)
	w.r.bytes.Add(b.bytes)
	if b.marker != "" {
		w.r.probe.offer(marker{body: b.marker, ts: b.markAt, acked: at})
	}
}

// payload returns b as the request carries it: its records, or an Arrow
// IPC stream of them with FormatArrow (valid until the next call).
func (w *worker) payload(b batch) ([]*weirv1.LogRecord, []byte, error) {
	if w.r.cfg.Format != FormatArrow {
		return b.recs, nil, nil
	}
	if w.enc == nil {
		w.enc = newArrowEncoder()
	}
	data, err := w.enc.encode(b.recs)
	return nil, data, err
}

// codeEncode counts batches the client failed to encode.
const codeEncode = "client_encode"

func (w *worker) done() {
	if w.enc != nil {
		w.enc.release()
	}
	w.r.mu.Lock()
	w.r.latencies = append(w.r.latencies, &w.lat)
	w.r.mu.Unlock()
}

// runUnary sends one Push at a time until sendCtx ends; a call still in
// flight then has until hardCtx ends.
func (w *worker) runUnary(sendCtx, hardCtx context.Context) {
	defer w.done()
	for {
		b, ok := w.nextBatch(sendCtx)
		if !ok {
			return
		}
		b.sent = time.Now() // the payload is prepared in the call's time, as records are marshalled
		recs, data, err := w.payload(b)
		if err != nil {
			w.r.addError(codeEncode, 1)
			sleep(sendCtx, errorBackoff)
			continue
		}
		resp, err := w.r.client.Push(hardCtx, connect.NewRequest(&weirv1.PushRequest{Stream: w.r.cfg.Stream, Records: recs, ArrowIpc: data, AckLevel: w.r.level}))
		switch {
		case err != nil && hardCtx.Err() != nil:
			w.r.addError(codeUnacknowledged, 1)
			return
		case err != nil:
			w.r.addError(connect.CodeOf(err).String(), 1)
			sleep(sendCtx, errorBackoff)
		case int(resp.Msg.GetAccepted()) != len(b.recs):
			w.r.addError("partially_accepted", 1)
		default:
			w.acked(b, time.Now())
		}
	}
}

// runStream keeps one PushStream open, opening a new one after a failure,
// until sendCtx ends.
func (w *worker) runStream(sendCtx, hardCtx context.Context) {
	defer w.done()
	for sendCtx.Err() == nil {
		if err := w.stream(sendCtx, hardCtx); err != nil {
			w.r.addError(connect.CodeOf(err).String(), 1)
			sleep(sendCtx, errorBackoff)
		}
	}
}

// stream sends batches over one PushStream, at most Window unacknowledged,
// until sendCtx ends, then waits until hardCtx ends for the last acks.
// Acks are matched to batches by batch_id. It returns the stream's error.
func (w *worker) stream(sendCtx, hardCtx context.Context) error {
	ctx, cancel := context.WithCancel(hardCtx)
	defer cancel()
	st := w.r.client.PushStream(ctx)
	credits := make(chan struct{}, w.r.cfg.Window)
	var (
		mu      sync.Mutex
		pending = map[uint64]batch{}
		recvErr error
	)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			ack, err := st.Receive()
			now := time.Now()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr = err
				}
				return
			}
			mu.Lock()
			b, ok := pending[ack.GetBatchId()]
			delete(pending, ack.GetBatchId())
			mu.Unlock()
			if !ok {
				recvErr = fmt.Errorf("acknowledgement for unknown batch %d", ack.GetBatchId())
				cancel()
				return
			}
			<-credits
			switch {
			case ack.GetErrorCode() != "":
				w.r.addError(ack.GetErrorCode(), 1)
			case int(ack.GetAccepted()) != len(b.recs):
				w.r.addError("partially_accepted", 1)
			default:
				w.acked(b, now)
			}
		}
	}()

	var id uint64
send:
	for {
		select {
		case credits <- struct{}{}:
		case <-sendCtx.Done():
			break send
		case <-recvDone:
			break send
		}
		b, ok := w.nextBatch(sendCtx)
		if !ok {
			break
		}
		id++
		b.sent = time.Now() // the payload is prepared in the call's time, as records are marshalled
		recs, data, err := w.payload(b)
		if err != nil {
			w.r.addError(codeEncode, 1)
			<-credits
			sleep(sendCtx, errorBackoff)
			continue
		}
		mu.Lock()
		pending[id] = b
		mu.Unlock()
		if err := st.Send(&weirv1.PushStreamRequest{BatchId: id, Stream: w.r.cfg.Stream, Records: recs, ArrowIpc: data, AckLevel: w.r.level}); err != nil {
			break // the receive side reports why
		}
	}
	st.CloseRequest()
	<-recvDone
	st.CloseResponse()
	mu.Lock()
	unacked := len(pending)
	mu.Unlock()
	if unacked > 0 {
		w.r.addError(codeUnacknowledged, int64(unacked))
	}
	if recvErr != nil && hardCtx.Err() == nil {
		return recvErr
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
