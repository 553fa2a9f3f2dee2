package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest/internal/brokerin"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/record"
)

// Config is what a user sets for one Kafka source.
type Config struct {
	// Name labels the source's metrics and logs; "" = Group.
	Name string
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topics are consumed; Group is the consumer group weir joins.
	Topics []string
	Group  string
	// Start is where a partition without a committed offset starts:
	// "earliest" or "latest".
	Start string
	// Tenant owns the records; "" = record.DefaultTenant.
	Tenant string
	// Stream takes the records; with StreamFrom, the value of that
	// attribute (kafka.header.NAME, kafka.key, or a JSON field) picks
	// the stream as record.StreamNameFrom makes it one, and Stream takes
	// messages without a usable one.
	Stream     string
	StreamFrom string
	// Level is the acknowledgement level records reach before their
	// offsets are committed.
	Level buffer.Level
	// BatchRecords bounds the records of one poll, submitted and
	// committed together.
	BatchRecords int
	// MaxMessageBytes bounds a message's value (and the fetch sizes);
	// a longer value is cut and dead-lettered.
	MaxMessageBytes int
	// SessionTimeout is how long the group waits for a silent member
	// before giving its partitions to others.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long a rebalance waits for the members to
	// rejoin, and so how long a member that died without leaving (a
	// crash) can hold up the group. A source holds a rebalance while
	// it submits a batch, so a batch meeting backpressure for longer
	// costs the source its membership (its batch is read again).
	RebalanceTimeout time.Duration
}

// DefaultConfig returns the defaults: start at the earliest offset,
// stream "kafka", Durable, batches of 1,000 records, 1 MiB messages, a
// 45 s session, a minute for a rebalance.
func DefaultConfig() Config {
	return Config{Start: "earliest", Stream: "kafka", Level: buffer.Durable, BatchRecords: 1000,
		MaxMessageBytes: 1 << 20, SessionTimeout: 45 * time.Second, RebalanceTimeout: time.Minute}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka: brokers is empty")
	case len(c.Topics) == 0:
		return errors.New("kafka: topics is empty")
	case c.Group == "":
		return errors.New("kafka: group is empty")
	case c.Start != "earliest" && c.Start != "latest":
		return fmt.Errorf("kafka: start %q: want earliest or latest", c.Start)
	case c.BatchRecords < 1 || c.BatchRecords > 100_000:
		return fmt.Errorf("kafka: batch_records must be 1 to 100000, got %d", c.BatchRecords)
	case c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 64<<20:
		return fmt.Errorf("kafka: max_message_bytes must be 1 KiB to 64 MiB, got %d", c.MaxMessageBytes)
	case c.SessionTimeout < time.Second:
		return fmt.Errorf("kafka: session_timeout must be at least 1s, got %s", c.SessionTimeout)
	case c.RebalanceTimeout < time.Second:
		return fmt.Errorf("kafka: rebalance_timeout must be at least 1s, got %s", c.RebalanceTimeout)
	case c.Level < buffer.Accepted || c.Level > buffer.Committed:
		return fmt.Errorf("kafka: unknown ack level %d", c.Level)
	}
	if err := record.ValidateStream(c.Stream); err != nil {
		return fmt.Errorf("kafka: stream: %w", err)
	}
	if c.Tenant != "" {
		if err := record.ValidateTenant(c.Tenant); err != nil {
			return fmt.Errorf("kafka: tenant: %w", err)
		}
	}
	return nil
}

// Submitter takes records down the pipeline; *ingest.Service implements
// it.
type Submitter = brokerin.Submitter

// Deps are the source's collaborators.
type Deps struct {
	Submitter Submitter
	Log       *slog.Logger
	// Opts are added to the client's options, after the source's own
	// (tests use them for short timeouts).
	Opts []kgo.Opt
}

// Stats are the source's counters. Lag is the records on the assigned
// partitions past the last poll, as of each partition's last fetch.
type Stats struct {
	brokerin.Stats
	// Partitions is how many partitions the group assigned the source.
	Partitions int
}

// Source consumes the configured topics into the pipeline. Its methods
// are safe for concurrent use.
type Source struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	params brokerin.Params
	c      brokerin.Counters

	mu      sync.Mutex
	started bool
	cl      *kgo.Client
	// pollCtx ends polling; submitCtx, the context of every Submit and
	// commit, ends when Shutdown's deadline passes.
	pollCtx      context.Context
	stopPoll     context.CancelFunc
	submitCtx    context.Context
	cancelSubmit context.CancelFunc
	wg           sync.WaitGroup
	// lagMu guards lag, each assigned partition's records past the
	// last poll, and partitions, their number.
	lagMu      sync.Mutex
	lag        map[string]map[int32]int64
	partitions int
}

// New returns a source for cfg; it connects once started.
func New(cfg Config, deps Deps) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Submitter == nil {
		return nil, errors.New("kafka: no Submitter")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Group
	}
	s := &Source{cfg: cfg, deps: deps, log: deps.Log.With("source", "kafka", "name", cfg.Name),
		params: brokerin.Params{Stream: cfg.Stream, StreamFrom: cfg.StreamFrom, MaxMessageBytes: cfg.MaxMessageBytes},
		lag:    map[string]map[int32]int64{}}
	s.c.Lag.Store(-1)
	s.pollCtx, s.stopPoll = context.WithCancel(context.Background())
	s.submitCtx, s.cancelSubmit = context.WithCancel(brokerin.Context(context.Background(), cfg.Tenant, "kafka"))
	return s, nil
}

// Name returns the source's name.
func (s *Source) Name() string { return s.cfg.Name }

// Stats returns the counters.
func (s *Source) Stats() Stats {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	return Stats{Stats: s.c.Stats(), Partitions: s.partitions}
}

// assign notes partitions the group assigned (add) or took away.
func (s *Source) assign(m map[string][]int32, add bool) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	for topic, parts := range m {
		for _, p := range parts {
			_, had := s.lag[topic][p]
			switch {
			case add && !had:
				if s.lag[topic] == nil {
					s.lag[topic] = map[int32]int64{}
				}
				s.lag[topic][p] = 0
				s.partitions++
			case !add && had:
				delete(s.lag[topic], p)
				s.partitions--
			}
		}
	}
	s.sumLagLocked()
}

// sumLagLocked stores the sum of the partitions' lags in the Lag
// counter; lagMu is held.
func (s *Source) sumLagLocked() {
	var sum int64
	for _, parts := range s.lag {
		for _, l := range parts {
			sum += l
		}
	}
	s.c.Lag.Store(sum)
}

// Start creates the client and starts consuming. The client connects
// and joins the group in the background, retrying while the brokers are
// unreachable, so Start fails only on a configuration the client
// refuses.
func (s *Source) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("kafka: already started")
	}
	reset := kgo.NewOffset().AtStart()
	if s.cfg.Start == "latest" {
		reset = kgo.NewOffset().AtEnd()
	}
	maxBytes := int32(s.cfg.MaxMessageBytes)
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.cfg.Brokers...),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(s.cfg.Topics...),
		kgo.ConsumeResetOffset(reset),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, s.cfg.SessionTimeout/3)),
		kgo.RebalanceTimeout(s.cfg.RebalanceTimeout),
		kgo.ClientID("weir"),
		// Bounded in-flight: fetches of at most a few batches' worth.
		kgo.FetchMaxBytes(max(maxBytes, 16<<20)),
		kgo.FetchMaxPartitionBytes(maxBytes),
		kgo.MaxConcurrentFetches(4),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { s.assign(m, true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { s.assign(m, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { s.assign(m, false) }),
	}
	opts = append(opts, kgo.WithLogger(kgoLogger{s.log}))
	cl, err := kgo.NewClient(append(opts, s.deps.Opts...)...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	s.cl, s.started = cl, true
	s.wg.Go(s.run)
	return nil
}

// Shutdown stops polling, submits and commits the batch in hand, and
// leaves the group. When ctx ends first, the batch in hand is abandoned
// uncommitted (its records are read again by the partition's next
// owner) and ctx's error is returned. It is safe to call without Start,
// and more than once.
func (s *Source) Shutdown(ctx context.Context) error {
	s.stopPoll()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.cancelSubmit()
		<-done
		err = ctx.Err()
	}
	s.cancelSubmit()
	s.mu.Lock()
	cl := s.cl
	s.cl = nil
	s.mu.Unlock()
	if cl != nil {
		// Leaving the group hands the partitions over at once; it waits
		// for the coordinator no longer than leaveTimeout (the session
		// timeout hands them over otherwise), and Close is then
		// immediate.
		cl.AllowRebalance()
		leaveCtx, cancel := context.WithTimeout(ctx, leaveTimeout)
		defer cancel()
		if lerr := cl.LeaveGroupContext(leaveCtx); lerr != nil && err == nil && ctx.Err() == nil {
			s.c.Errors.Add(1)
			s.log.Warn("kafka: leaving the group failed; the partitions move once the session times out", "err", lerr)
		}
		cl.Close()
	}
	return err
}

// leaveTimeout bounds the wait for the group coordinator at Shutdown, so
// an unreachable cluster does not take the whole shutdown deadline.
const leaveTimeout = 5 * time.Second

// run polls, submits and commits until polling stops.
func (s *Source) run() {
	for {
		fetches := s.cl.PollRecords(s.pollCtx, s.cfg.BatchRecords)
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			s.c.Errors.Add(1)
			s.c.Warn(s.log, "kafka: fetch failed; the client retries", "topic", topic, "partition", p, "err", err)
		})
		recs := fetches.Records()
		s.noteLag(fetches)
		if len(recs) > 0 {
			if !s.handle(recs) {
				s.cl.AllowRebalance()
				return
			}
		}
		s.cl.AllowRebalance()
		if s.pollCtx.Err() != nil || fetches.IsClientClosed() {
			return
		}
	}
}

// handle submits recs and commits their offsets. It returns false when
// the submit context ended (Shutdown's deadline) before they were taken:
// nothing is committed then.
func (s *Source) handle(recs []*kgo.Record) bool {
	s.c.Messages.Add(int64(len(recs)))
	var g httpin.Grouper
	for _, r := range recs {
		stream, rec, reject := brokerin.Decode(r.Value, meta(r), &s.params)
		if rec.Timestamp == 0 && !r.Timestamp.IsZero() && reject == nil {
			rec.Timestamp = r.Timestamp.UnixNano()
		}
		g.Add(stream, rec, reject)
	}
	err := brokerin.Submit(s.submitCtx, s.deps.Submitter, g.Batches(), s.cfg.Level, brokerin.DefaultBackoff, &s.c)
	var refused *brokerin.PermanentError
	switch {
	case err == nil:
	case errors.As(err, &refused):
		s.c.Dropped.Add(int64(refused.Records))
		s.c.Errors.Add(1)
		s.c.Warn(s.log, "kafka: the pipeline refused messages for good; they are skipped", "messages", refused.Records, "err", err)
	default:
		return false
	}
	if err := s.cl.CommitRecords(s.submitCtx, recs...); err != nil {
		if s.submitCtx.Err() != nil {
			return false
		}
		s.c.Errors.Add(1)
		s.c.Warn(s.log, "kafka: offset commit failed; the records will be read again", "err", err)
	}
	return true
}

// meta returns a message's broker attributes.
func meta(r *kgo.Record) []record.KV {
	kvs := make([]record.KV, 0, 4+len(r.Headers))
	kvs = append(kvs,
		record.KV{Key: "kafka.topic", Value: r.Topic},
		record.KV{Key: "kafka.partition", Value: strconv.Itoa(int(r.Partition))},
		record.KV{Key: "kafka.offset", Value: strconv.FormatInt(r.Offset, 10)})
	if r.Key != nil {
		kvs = append(kvs, record.KV{Key: "kafka.key", Value: string(r.Key)})
	}
	for _, h := range r.Headers {
		kvs = append(kvs, record.KV{Key: "kafka.header." + h.Key, Value: string(h.Value)})
	}
	return kvs
}

// noteLag records, for each partition fetched, the records past the
// last one polled, and sums them into the Lag counter.
func (s *Source) noteLag(fetches kgo.Fetches) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.Err != nil || len(p.Records) == 0 || s.lag[p.Topic] == nil {
			return
		}
		if _, ok := s.lag[p.Topic][p.Partition]; !ok {
			return
		}
		last := p.Records[len(p.Records)-1].Offset
		s.lag[p.Topic][p.Partition] = max(0, p.HighWatermark-last-1)
	})
	s.sumLagLocked()
}

// kgoLogger passes the client's warnings and errors to the source's
// log, and its group and connection news too when the log takes debug
// messages.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	}
	l.log.Log(context.Background(), lv, "kafka client: "+msg, keyvals...)
}
