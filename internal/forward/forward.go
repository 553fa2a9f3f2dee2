package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirlabs/weir/internal/consume"
)

// GroupPrefix starts the consumer group name of every forwarder. A dot
// is not allowed in the group names of SubscribeService, so a client
// cannot join or commit a forwarder's group.
const GroupPrefix = "forward."

// Config is one Kafka forwarder.
type Config struct {
	// Name names the forwarder in logs and metrics and its consumer
	// group, GroupPrefix+Name.
	Name string
	// Tenant and Stream are the stream forwarded.
	Tenant, Stream string
	// Brokers are the seed brokers; Topic is where records go.
	Brokers []string
	Topic   string
	// BatchRecords bounds the records of one produce (and of one read of
	// the stream).
	BatchRecords int
	// ProduceTimeout bounds one attempt to produce a batch; past it the
	// batch is produced again after a backoff.
	ProduceTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failure; it
	// doubles with each failure in a row.
	MinBackoff, MaxBackoff time.Duration
}

// DefaultConfig returns batches of 1,000 records, 30 s per produce and
// backoffs from 100 ms to 10 s.
func DefaultConfig() Config {
	return Config{
		BatchRecords:   1000,
		ProduceTimeout: 30 * time.Second,
		MinBackoff:     100 * time.Millisecond,
		MaxBackoff:     10 * time.Second,
	}
}

// Validate reports the first invalid setting. Names of tenant and
// stream are the caller's to check.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("forward: name is required")
	case c.Tenant == "":
		return errors.New("forward: tenant is required")
	case c.Stream == "":
		return errors.New("forward: stream is required")
	case len(c.Brokers) == 0:
		return errors.New("forward: brokers are required")
	case c.Topic == "":
		return errors.New("forward: topic is required")
	case c.BatchRecords < 1:
		return fmt.Errorf("forward: batch_records must be positive, got %d", c.BatchRecords)
	case c.ProduceTimeout <= 0:
		return fmt.Errorf("forward: produce_timeout must be positive, got %s", c.ProduceTimeout)
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("forward: want 0 < min_backoff <= max_backoff, got %s and %s", c.MinBackoff, c.MaxBackoff)
	}
	return nil
}

// Group returns the forwarder's consumer group.
func (c Config) Group() string { return GroupPrefix + c.Name }

// Stats are a forwarder's counters.
type Stats struct {
	// Records counts records the broker acknowledged (published again
	// after a failure, a record counts again).
	Records int64
	// Errors counts failed subscribes, reads, publishes, unanswered
	// publishes and commits.
	Errors int64
}

// producer publishes batches to one broker; each broker implements it,
// and the Forwarder runs the consumer group around it.
type producer interface {
	// produce returns nil once the broker acknowledged every record of
	// recs, or an error when one failed, the broker is unreachable or
	// ctx is done; the Forwarder retries the whole batch with backoff.
	// It is called from one goroutine at a time.
	produce(ctx context.Context, recs []consume.Record) error
	// close releases the producer's connections. It may be called while
	// produce runs, and makes it fail.
	close()
}

// group is what the consumer-group loop needs of a forwarder's config.
type group struct {
	name, tenant, stream string
	// target names the topic or exchange in logs.
	target                 string
	batchRecords           int
	minBackoff, maxBackoff time.Duration
}

// Forwarder forwards one stream to one Kafka topic or RabbitMQ
// exchange. Start runs it in one goroutine that Shutdown stops and
// joins.
type Forwarder struct {
	g    group
	m    *consume.Manager
	log  *slog.Logger
	open func() (producer, error)

	records, errs atomic.Int64

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	p      producer
}

// New returns a Kafka forwarder reading through m. opts are added to the
// Kafka client's options (TLS, SASL, tests).
func New(cfg Config, m *consume.Manager, log *slog.Logger, opts ...kgo.Opt) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := newForwarder(group{name: cfg.Name, tenant: cfg.Tenant, stream: cfg.Stream, target: "topic " + cfg.Topic,
		batchRecords: cfg.BatchRecords, minBackoff: cfg.MinBackoff, maxBackoff: cfg.MaxBackoff}, m, log)
	f.open = func() (producer, error) { return newKafkaProducer(cfg, f.slow, opts) }
	return f, nil
}

func newForwarder(g group, m *consume.Manager, log *slog.Logger) *Forwarder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{g: g, m: m, log: log.With("forwarder", g.name)}
}

// Name returns the forwarder's name.
func (f *Forwarder) Name() string { return f.g.name }

// Stats returns the counters. It is safe for concurrent use.
func (f *Forwarder) Stats() Stats {
	return Stats{Records: f.records.Load(), Errors: f.errs.Load()}
}

// slow counts and logs a wait of the publish timeout without the
// broker's answer.
func (f *Forwarder) slow(records int, waited time.Duration) {
	f.errs.Add(1)
	f.log.Warn("the broker has not acknowledged a batch yet", "to", f.g.target, "records", records, "waited", waited)
}

// Start creates the broker client and starts forwarding; it does not
// wait for the broker, which may be down. ctx bounds start-up only.
func (f *Forwarder) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done != nil {
		return errors.New("forward: started twice")
	}
	p, err := f.open()
	if err != nil {
		return fmt.Errorf("forward %s: %w", f.g.name, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	f.p, f.cancel, f.done = p, cancel, make(chan struct{})
	go func() {
		defer close(f.done)
		f.run(runCtx)
	}()
	return nil
}

// Shutdown stops forwarding and waits for the goroutine within ctx. A
// batch in flight is abandoned uncommitted: it is published again after
// the next start. Shutdown is safe without Start and more than once.
func (f *Forwarder) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	cancel, done, p := f.cancel, f.done, f.p
	f.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("forward %s: %w", f.g.name, ctx.Err())
	}
	p.close() // fails what the client still holds, uncommitted
	return err
}

// run subscribes and forwards until ctx is done, subscribing again
// after a failed read.
func (f *Forwarder) run(ctx context.Context) {
	bo := backoff{min: f.g.minBackoff, max: f.g.maxBackoff}
	for ctx.Err() == nil {
		err := f.forward(ctx, &bo)
		if ctx.Err() != nil {
			return
		}
		f.errs.Add(1)
		f.log.Warn("forwarding failed; retrying", "err", err, "backoff", bo.next())
		bo.wait(ctx)
	}
}

// forward reads the stream as a member of the group and forwards every
// batch until a read fails or ctx is done.
func (f *Forwarder) forward(ctx context.Context, bo *backoff) error {
	sub, err := f.m.Subscribe(ctx, f.g.tenant, consume.Request{Stream: f.g.stream, Group: GroupPrefix + f.g.name, MaxBatchRecords: f.g.batchRecords})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	defer sub.Close()
	for {
		b, err := sub.Next(ctx)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if len(b.Records) == 0 {
			continue
		}
		if err := f.deliver(ctx, bo, b.Records); err != nil {
			return err
		}
		bo.reset()
	}
}

// deliver publishes recs until the broker acknowledges all of them, then
// commits their offsets, retrying each step with backoff. It returns an
// error only when ctx is done.
func (f *Forwarder) deliver(ctx context.Context, bo *backoff, recs []consume.Record) error {
	offsets := map[int32]int64{}
	for i := range recs {
		offsets[recs[i].Partition] = max(offsets[recs[i].Partition], recs[i].Offset+1)
	}
	for {
		err := f.p.produce(ctx, recs)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.errs.Add(1)
		f.log.Warn("publish failed; retrying", "to", f.g.target, "records", len(recs), "err", err, "backoff", bo.next())
		bo.wait(ctx)
	}
	f.records.Add(int64(len(recs)))
	for {
		err := f.m.Commit(f.g.tenant, f.g.stream, GroupPrefix+f.g.name, offsets)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.errs.Add(1)
		f.log.Warn("commit failed; retrying", "err", err, "backoff", bo.next())
		bo.wait(ctx)
	}
}

// backoff doubles a wait from min to max with each failure in a row.
type backoff struct {
	min, max, cur time.Duration
}

// next returns the wait that wait will do.
func (b *backoff) next() time.Duration { return max(b.cur, b.min) }

// wait sleeps for the next wait or until ctx is done, and doubles it.
func (b *backoff) wait(ctx context.Context) {
	d := b.next()
	b.cur = min(2*d, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (b *backoff) reset() { b.cur = 0 }
