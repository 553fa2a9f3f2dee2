package amqp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest/internal/brokerin"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/record"
)

// Config is what a user sets for one RabbitMQ source.
type Config struct {
	// Name labels the source's metrics and logs; "" = Queue.
	Name string
	// URL is the broker, amqp://user:password@host:port/vhost (amqps://
	// for TLS).
	URL string
	// Queue is consumed; it must exist.
	Queue string
	// Prefetch bounds the deliveries the broker sends before they are
	// acknowledged; it is also the largest batch.
	Prefetch int
	// BatchDelay is how long the first delivery of a batch waits for
	// more.
	BatchDelay time.Duration
	// RetryTimeout is how long a batch is retried on backpressure or an
	// unavailable pipeline before it is requeued.
	RetryTimeout time.Duration
	// Tenant owns the records; "" = record.DefaultTenant.
	Tenant string
	// Stream takes the records; with StreamFrom, the value of that
	// attribute (amqp.routing_key, amqp.header.NAME, or a JSON field)
	// picks the stream as record.StreamNameFrom makes it one.
	Stream     string
	StreamFrom string
	// Level is the acknowledgement level a record reaches before its
	// delivery is acknowledged.
	Level buffer.Level
	// MaxMessageBytes bounds a message body; a longer one is rejected
	// to the dead-letter exchange.
	MaxMessageBytes int
}

// DefaultConfig returns the defaults: stream "amqp", prefetch 500,
// batches gathered for up to 100 ms, retried for 30 s, Durable, 1 MiB
// messages.
func DefaultConfig() Config {
	return Config{Prefetch: 500, BatchDelay: 100 * time.Millisecond, RetryTimeout: 30 * time.Second,
		Stream: "amqp", Level: buffer.Durable, MaxMessageBytes: 1 << 20}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("amqp: url is empty")
	case err != nil:
		return fmt.Errorf("amqp: url: %w", err)
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		return fmt.Errorf("amqp: url scheme %q: want amqp or amqps", u.Scheme)
	case c.Queue == "":
		return errors.New("amqp: queue is empty")
	case c.Prefetch < 1 || c.Prefetch > 65535:
		return fmt.Errorf("amqp: prefetch must be 1 to 65535, got %d", c.Prefetch)
	case c.BatchDelay <= 0 || c.RetryTimeout <= 0:
		return errors.New("amqp: batch_delay and retry_timeout must be positive")
	case c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 64<<20:
		return fmt.Errorf("amqp: max_message_bytes must be 1 KiB to 64 MiB, got %d", c.MaxMessageBytes)
	case c.Level < buffer.Accepted || c.Level > buffer.Committed:
		return fmt.Errorf("amqp: unknown ack level %d", c.Level)
	}
	if err := record.ValidateStream(c.Stream); err != nil {
		return fmt.Errorf("amqp: stream: %w", err)
	}
	if c.Tenant != "" {
		if err := record.ValidateTenant(c.Tenant); err != nil {
			return fmt.Errorf("amqp: tenant: %w", err)
		}
	}
	return nil
}

// errInvalidUTF8 rejects a body no record can hold: the pipeline would
// refuse it alone and dead-letter it with others, so it goes to the
// broker's dead-letter exchange whatever arrives with it.
var errInvalidUTF8 = errors.New("message body is not valid UTF-8")

// Submitter takes records down the pipeline; *ingest.Service implements
// it.
type Submitter = brokerin.Submitter

// Deps are the source's collaborators.
type Deps struct {
	Submitter Submitter
	Log       *slog.Logger
	// Reconnect bounds the pauses between connection attempts; zero
	// means 100 ms doubling to 30 s.
	Reconnect brokerin.Backoff
}

// Stats are the source's counters; Lag is unknown (-1).
type Stats = brokerin.Stats

// Source consumes the configured queue into the pipeline. Its methods
// are safe for concurrent use.
type Source struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	params brokerin.Params
	c      brokerin.Counters

	stop     chan struct{}
	stopOnce sync.Once
	// submitCtx is the context of every Submit; Shutdown cancels it
	// when its deadline passes.
	submitCtx    context.Context
	cancelSubmit context.CancelFunc
	mu           sync.Mutex
	started      bool
	conn         *amqp.Connection // the current connection, closed by Shutdown past its deadline
	wg           sync.WaitGroup
	connected    chan struct{} // closed at the first consuming session, for tests
	connOnce     sync.Once
}

// New returns a source for cfg; it connects once started.
func New(cfg Config, deps Deps) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Submitter == nil {
		return nil, errors.New("amqp: no Submitter")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Reconnect.Min <= 0 || deps.Reconnect.Max < deps.Reconnect.Min {
		deps.Reconnect = brokerin.Backoff{Min: 100 * time.Millisecond, Max: 30 * time.Second}
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Queue
	}
	s := &Source{cfg: cfg, deps: deps, log: deps.Log.With("source", "amqp", "name", cfg.Name),
		params: brokerin.Params{Stream: cfg.Stream, StreamFrom: cfg.StreamFrom, MaxMessageBytes: cfg.MaxMessageBytes},
		stop:   make(chan struct{}), connected: make(chan struct{})}
	s.c.Lag.Store(-1)
	s.submitCtx, s.cancelSubmit = context.WithCancel(brokerin.Context(context.Background(), cfg.Tenant, "amqp"))
	return s, nil
}

// Name returns the source's name.
func (s *Source) Name() string { return s.cfg.Name }

// Stats returns the counters.
func (s *Source) Stats() Stats { return s.c.Stats() }

// Consuming is closed once the source first consumes the queue.
func (s *Source) Consuming() <-chan struct{} { return s.connected }

// Start starts consuming in the background: connection failures are
// retried with backoff (and counted), so Start itself does not fail
// for an unreachable broker.
func (s *Source) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("amqp: already started")
	}
	s.started = true
	s.wg.Go(s.run)
	return nil
}

// Shutdown cancels the consumer, submits and acknowledges the deliveries
// already received, and closes the connection. When ctx ends first, the
// pending submits are abandoned and the connection closed, so RabbitMQ
// requeues what was not acknowledged; ctx's error is returned. It is
// safe to call without Start, and more than once.
func (s *Source) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancelSubmit()
		return nil
	case <-ctx.Done():
	}
	s.cancelSubmit()
	s.mu.Lock()
	if s.conn != nil {
		s.conn.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

func (s *Source) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// run connects and consumes until Shutdown, reconnecting with backoff.
func (s *Source) run() {
	failures := 0
	for !s.stopping() {
		progressed, err := s.session()
		if s.stopping() {
			return
		}
		if progressed {
			failures = 0
		}
		s.c.Errors.Add(1)
		s.c.Warn(s.log, "amqp: connection lost; reconnecting", "err", err)
		t := time.NewTimer(s.deps.Reconnect.Pause(failures, ""))
		failures++
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			return
		}
	}
}

// session runs one connection: it consumes until the connection or
// channel fails, or Shutdown drains it. progressed reports whether it
// got as far as consuming.
func (s *Source) session() (progressed bool, err error) {
	conn, err := amqp.DialConfig(s.cfg.URL, amqp.Config{Heartbeat: 10 * time.Second, Locale: "en_US",
		Dial: amqp.DefaultDial(10 * time.Second), Properties: amqp.Table{"connection_name": "weir " + s.cfg.Name}})
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
		conn.Close()
	}()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("channel: %w", err)
	}
	if err := ch.Qos(s.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("qos: %w", err)
	}
	tag := "weir-" + s.cfg.Name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	deliveries, err := ch.Consume(s.cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %q: %w", s.cfg.Queue, err)
	}
	s.connOnce.Do(func() { close(s.connected) })
	var (
		batch []amqp.Delivery
		flush = time.NewTimer(time.Hour)
		stop  = s.stop
	)
	flush.Stop()
	defer flush.Stop()
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				s.handle(ch, batch)
				if stop == nil {
					return true, nil // drained after Shutdown's cancel
				}
				return true, errors.New("the channel closed")
			}
			if len(batch) == 0 {
				flush.Reset(s.cfg.BatchDelay)
			}
			batch = append(batch, d)
			if len(batch) >= s.cfg.Prefetch {
				flush.Stop()
				s.handle(ch, batch)
				batch = batch[:0]
			}
		case <-flush.C:
			s.handle(ch, batch)
			batch = batch[:0]
		case <-stop:
			// Deliveries already sent keep arriving until the
			// channel closes; they are submitted and acknowledged.
			stop = nil
			if err := ch.Cancel(tag, false); err != nil {
				return true, err
			}
		}
	}
}

// handle submits a batch and acknowledges, rejects or requeues each
// delivery by the outcome.
func (s *Source) handle(ch *amqp.Channel, batch []amqp.Delivery) {
	if len(batch) == 0 {
		return
	}
	s.c.Messages.Add(int64(len(batch)))
	var good []amqp.Delivery
	var streams []string // of each good delivery
	var g httpin.Grouper
	for _, d := range batch {
		stream, rec, reject := brokerin.Decode(d.Body, meta(&d), &s.params)
		if reject == nil && !utf8.Valid(d.Body) {
			reject = errInvalidUTF8
		}
		if reject != nil {
			s.reject(d, reject)
			continue
		}
		if rec.Timestamp == 0 && !d.Timestamp.IsZero() {
			rec.Timestamp = d.Timestamp.UnixNano()
		}
		g.Add(stream, rec, nil)
		good = append(good, d)
		streams = append(streams, stream)
	}
	if len(good) == 0 {
		return
	}
	err := s.submit(g.Batches())
	var refused *brokerin.PermanentError
	switch {
	case err == nil:
		s.ack(good)
	case errors.As(err, &refused):
		// The batches of other streams were taken. Of a refused
		// stream's, find the deliveries the pipeline refuses: one at a
		// time (a lone delivery is refused because of itself).
		for i, d := range good {
			switch {
			case !refused.Streams[streams[i]]:
				s.ack([]amqp.Delivery{d})
			case refused.Records == 1:
				s.reject(d, err)
			default:
				s.handleOne(d)
			}
		}
	case s.submitCtx.Err() != nil:
		// Shut down past the deadline: the connection closes and
		// RabbitMQ requeues the deliveries.
	default:
		s.requeue(good, err)
	}
}

// handleOne submits one delivery of a batch the pipeline refused.
func (s *Source) handleOne(d amqp.Delivery) {
	stream, rec, _ := brokerin.Decode(d.Body, meta(&d), &s.params)
	if rec.Timestamp == 0 && !d.Timestamp.IsZero() {
		rec.Timestamp = d.Timestamp.UnixNano()
	}
	err := s.submit([]*httpin.Batch{{Stream: stream, Records: []record.Record{rec}}})
	switch {
	case err == nil:
		s.ack([]amqp.Delivery{d})
	case brokerin.Permanent(err):
		s.reject(d, err)
	case s.submitCtx.Err() == nil:
		s.requeue([]amqp.Delivery{d}, err)
	}
}

// submit submits with retries for at most RetryTimeout.
func (s *Source) submit(batches []*httpin.Batch) error {
	ctx, cancel := context.WithTimeout(s.submitCtx, s.cfg.RetryTimeout)
	defer cancel()
	return brokerin.Submit(ctx, s.deps.Submitter, batches, s.cfg.Level, brokerin.DefaultBackoff, &s.c)
}

func (s *Source) ack(ds []amqp.Delivery) {
	for _, d := range ds {
		if err := d.Ack(false); err != nil {
			// The channel is gone: RabbitMQ redelivers the message,
			// which is then stored twice.
			s.c.Errors.Add(1)
			s.c.Warn(s.log, "amqp: ack failed; the message will be redelivered", "err", err)
		}
	}
}

func (s *Source) reject(d amqp.Delivery, why error) {
	s.c.Rejected.Add(1)
	s.c.Warn(s.log, "amqp: message rejected to the dead-letter exchange", "routing_key", d.RoutingKey, "err", why)
	if err := d.Nack(false, false); err != nil {
		s.c.Errors.Add(1)
	}
}

func (s *Source) requeue(ds []amqp.Delivery, why error) {
	s.c.Warn(s.log, "amqp: the pipeline is not taking records; messages requeued", "messages", len(ds), "err", why)
	for _, d := range ds {
		if err := d.Nack(false, true); err != nil {
			s.c.Errors.Add(1)
		}
	}
}

// meta returns a delivery's broker attributes.
func meta(d *amqp.Delivery) []record.KV {
	kvs := make([]record.KV, 0, 4+len(d.Headers))
	kvs = append(kvs, record.KV{Key: "amqp.exchange", Value: d.Exchange}, record.KV{Key: "amqp.routing_key", Value: d.RoutingKey})
	if d.MessageId != "" {
		kvs = append(kvs, record.KV{Key: "amqp.message_id", Value: d.MessageId})
	}
	if d.AppId != "" {
		kvs = append(kvs, record.KV{Key: "amqp.app_id", Value: d.AppId})
	}
	for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
		v := d.Headers[k]
		var text string
		switch v := v.(type) {
		case string:
			text = v
		case []byte:
			text = string(v)
		case nil:
			continue
		default:
			text = fmt.Sprint(v)
		}
		kvs = append(kvs, record.KV{Key: "amqp.header." + k, Value: text})
	}
	return kvs
}
