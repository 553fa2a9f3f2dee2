package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/weirlabs/weir/internal/consume"
)

// AMQPConfig is one RabbitMQ forwarder.
type AMQPConfig struct {
	// Name names the forwarder in logs and metrics and its consumer
	// group, GroupPrefix+Name.
	Name string
	// Tenant and Stream are the stream forwarded.
	Tenant, Stream string
	// URL is the broker's amqp:// or amqps:// URL.
	URL string
	// Exchange receives the messages; it must exist ("" is the default
	// exchange, which routes to the queue named by the routing key).
	Exchange string
	// RoutingKey is the routing key of every message; empty, each
	// message's is its record's service name (empty without one).
	RoutingKey string
	// BatchRecords bounds the records of one batch of publishes (and of
	// one read of the stream).
	BatchRecords int
	// PublishTimeout bounds the wait for the broker's confirms of a
	// batch; past it the connection is dropped and the batch published
	// again after a backoff.
	PublishTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failure; it
	// doubles with each failure in a row.
	MinBackoff, MaxBackoff time.Duration
}

// DefaultAMQPConfig returns batches of 1,000 records, 30 s for their
// confirms and backoffs from 100 ms to 10 s.
func DefaultAMQPConfig() AMQPConfig {
	return AMQPConfig{
		BatchRecords:   1000,
		PublishTimeout: 30 * time.Second,
		MinBackoff:     100 * time.Millisecond,
		MaxBackoff:     10 * time.Second,
	}
}

// Validate reports the first invalid setting. Names of tenant and
// stream are the caller's to check.
func (c AMQPConfig) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("forward: name is required")
	case c.Tenant == "":
		return errors.New("forward: tenant is required")
	case c.Stream == "":
		return errors.New("forward: stream is required")
	case c.URL == "":
		return errors.New("forward: url is required")
	case len(c.RoutingKey) > maxShortString:
		return fmt.Errorf("forward: routing_key is longer than %d bytes", maxShortString)
	case c.BatchRecords < 1:
		return fmt.Errorf("forward: batch_records must be positive, got %d", c.BatchRecords)
	case c.PublishTimeout <= 0:
		return fmt.Errorf("forward: publish_timeout must be positive, got %s", c.PublishTimeout)
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("forward: want 0 < min_backoff <= max_backoff, got %s and %s", c.MinBackoff, c.MaxBackoff)
	}
	if _, err := amqp.ParseURI(c.URL); err != nil {
		return fmt.Errorf("forward: url: %w", err)
	}
	return nil
}

// Group returns the forwarder's consumer group.
func (c AMQPConfig) Group() string { return GroupPrefix + c.Name }

// maxShortString is the longest AMQP short string, such as a routing
// key.
const maxShortString = 255

// NewAMQP returns a RabbitMQ forwarder reading through m.
func NewAMQP(cfg AMQPConfig, m *consume.Manager, log *slog.Logger) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := newForwarder(group{name: cfg.Name, tenant: cfg.Tenant, stream: cfg.Stream, target: fmt.Sprintf("exchange %q", cfg.Exchange),
		batchRecords: cfg.BatchRecords, minBackoff: cfg.MinBackoff, maxBackoff: cfg.MaxBackoff}, m, log)
	f.open = func() (producer, error) { return &amqpProducer{cfg: cfg}, nil }
	return f, nil
}

// amqpProducer publishes to an exchange on a channel in confirm mode,
// connecting on the first publish and again after a failure.
type amqpProducer struct {
	cfg AMQPConfig

	// mu guards the connection against close, which may run while
	// produce does; produce itself runs on one goroutine.
	mu      sync.Mutex
	closed  bool
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
}

// connect returns the open channel, dialling a new connection when
// there is none.
func (p *amqpProducer) connect() (*amqp.Channel, chan amqp.Return, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, errors.New("closed")
	}
	if p.ch != nil && !p.ch.IsClosed() && !p.conn.IsClosed() {
		return p.ch, p.returns, nil
	}
	p.dropLocked()
	conn, err := amqp.DialConfig(p.cfg.URL, amqp.Config{
		Dial:       amqp.DefaultDial(p.cfg.PublishTimeout),
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": "weir forward " + p.cfg.Name},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("channel: %w", err)
	}
	// The library delivers a return before the confirm of its message;
	// a batch has at most BatchRecords returns, and produce drains them
	// all before the next batch, so the send never blocks.
	p.returns = ch.NotifyReturn(make(chan amqp.Return, p.cfg.BatchRecords))
	p.conn, p.ch = conn, ch
	return ch, p.returns, nil
}

// drop closes the connection, so the next produce dials again and no
// confirm of an abandoned batch is mistaken for one of the next.
func (p *amqpProducer) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked()
}

func (p *amqpProducer) dropLocked() {
	if p.conn != nil {
		p.conn.Close()
	}
	p.conn, p.ch, p.returns = nil, nil, nil
}

func (p *amqpProducer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.dropLocked()
}

// produce publishes recs as persistent, mandatory messages and waits
// until the broker confirmed every one, or PublishTimeout passes. A
// nack, a return (no queue bound for the routing key) or a timeout
// fails the batch, which the Forwarder publishes again.
func (p *amqpProducer) produce(ctx context.Context, recs []consume.Record) error {
	ch, returns, err := p.connect()
	if err != nil {
		return err
	}
	err = p.publish(ctx, ch, returns, recs)
	if err != nil {
		p.drop()
	}
	return err
}

func (p *amqpProducer) publish(ctx context.Context, ch *amqp.Channel, returns chan amqp.Return, recs []consume.Record) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	confirms := make([]*amqp.DeferredConfirmation, 0, len(recs))
	for i := range recs {
		e, err := encode(p.cfg.Tenant, p.cfg.Stream, &recs[i])
		if err != nil {
			return fmt.Errorf("encode %d:%d: %w", recs[i].Partition, recs[i].Offset, err)
		}
		key := p.cfg.RoutingKey
		if key == "" {
			key = e.service[:min(len(e.service), maxShortString)]
		}
		headers := make(amqp.Table, len(e.headers))
		for _, h := range e.headers {
			headers[h.key] = h.value
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, key, true, false, amqp.Publishing{
			Headers:      headers,
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    e.headers[0].value + "/" + e.headers[1].value + "/" + e.headers[2].value + "/" + e.headers[3].value,
			Body:         e.value,
		})
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		confirms = append(confirms, dc)
	}
	var nacked int
	for _, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("no confirm within %s", p.cfg.PublishTimeout)
			}
			return fmt.Errorf("confirm: %w", err)
		}
		if !ok {
			nacked++
		}
	}
	var returned int
	for len(returns) > 0 {
		<-returns
		returned++
	}
	switch {
	case nacked > 0 && ch.IsClosed():
		// Closing a channel resolves its pending confirms as nacks.
		return errors.New("connection lost before every confirm")
	case nacked > 0:
		return fmt.Errorf("the broker nacked %d of %d messages", nacked, len(recs))
	case returned > 0:
		return fmt.Errorf("%d of %d messages unroutable: no queue is bound to exchange %q for their routing key", returned, len(recs), p.cfg.Exchange)
	}
	return nil
}
