package buffer

import (
	"errors"
	"fmt"
	"time"

	"github.com/weirlabs/weir/internal/wal"
)

// Limits on Config fields beyond which a setting is surely a mistake.
const (
	maxPartitions = 1 << 12
	maxRingSlots  = 1 << 20
)

// Config is what a user sets for the buffer. Start from DefaultConfig; the
// zero Config is not valid.
type Config struct {
	// Partitions is the number of rings, each with its own consumer, per
	// stream. Records are spread over them by a stable hash of their
	// service name, so one service's records stay in order on one partition.
	Partitions int
	// RingSlots is the number of batch slots per ring, rounded up to a power
	// of two (at least 2).
	RingSlots int
	// MaxRecords bounds the records queued across all rings of all streams.
	MaxRecords int
	// MaxBytes bounds the sum of record.Batch.Bytes queued across all rings
	// of all streams.
	MaxBytes int64
	// TickInterval is how often each consumer's Tick is called.
	TickInterval time.Duration
	// WALDir, when set, is the root of the write-ahead logs: each stream
	// partition appends every batch to its own log under
	// WALDir/tenant=<t>/stream=<s>/part=<p>/ before queueing it, New
	// replays what the logs hold that no published file does, and the
	// Durable level becomes available. Segments are deleted once every
	// record in them is published. Empty: no log, Accepted and Committed
	// only, and a crash loses what is queued.
	WALDir string
	// WAL configures each log: segment size and sync policy.
	WAL wal.Options
	// PriorityShare is the share of MaxRecords and MaxBytes reserved for
	// priority records (severity ERROR and above): a batch with normal
	// records waits once the buffer is filled to 1-PriorityShare, while
	// priority records are admitted up to the full bounds. Each partition
	// drains its priority records first.
	PriorityShare float64
	// MaxProducers bounds the idempotent producers remembered per tenant,
	// over all its streams. A producer is never forgotten to make room:
	// when the tenant has MaxProducers, none idle for longer than
	// ProducerTTL, a batch from a producer it does not know fails with
	// ErrTooManyProducers (which matches ErrFull too). Producers found in
	// the write-ahead logs at recovery are remembered even past it.
	MaxProducers int
	// ProducerTTL is how long an idle idempotent producer is remembered:
	// the longest a producer may stay away and still have a retry
	// recognised. A producer forgotten starts afresh: a retry of one of
	// its old batches is then written again. The default, 24 hours, covers
	// a client that is down overnight or over a long outage and comes
	// back to retry what was not acknowledged; the cost is that a
	// tenant's table full of producers refuses new ones until the oldest
	// has been idle that long (about 100 bytes per producer).
	ProducerTTL time.Duration
	// MaxStreams bounds the streams, over all tenants. Each stream holds
	// Partitions rings and consumer goroutines until Shutdown; a Push that
	// would create one more fails with ErrTooManyStreams. Each tenant
	// counts with at most MaxTenantStreams streams.
	MaxStreams int
	// MaxTenantStreams bounds the streams of one tenant; a Push that
	// would create one more fails with ErrTooManyStreams. Streams that
	// recovery brings back from the write-ahead logs are created whatever
	// the limits (their records were acknowledged) and count towards
	// their tenant's limit, and towards MaxStreams only up to it, so one
	// tenant never takes more than MaxTenantStreams of MaxStreams from the
	// others. Zero in a Config written before this field existed means
	// the default (DefaultMaxTenantStreams, or MaxStreams if lower).
	MaxTenantStreams int
}

// DefaultMaxTenantStreams is the default of Config.MaxTenantStreams: a
// quarter of the default MaxStreams, so that at least four tenants fit
// at their limits.
const DefaultMaxTenantStreams = 256

// DefaultConfig returns the default configuration: one partition per
// stream, 1024 slots per ring, at most 262,144 records and 64 MiB queued,
// a tick every 100ms and at most 1024 streams.
//
// The bounds are about a second of what the sink writes on a small
// machine (~250 K records/s on two cores, bench/RESULTS.md). Deeper
// queues do not raise throughput, which is the slowest stage's; when
// ingest outruns the sink they only fill, and every queued record waits
// that much longer to be queryable while its memory is held: at 1 M
// records and 256 MiB, freshness p99 was 5.7 s and peak RSS 1 GB at the
// same throughput as with these bounds (1.5 s, 450 MB).
func DefaultConfig() Config {
	return Config{
		Partitions:       1,
		RingSlots:        1024,
		MaxRecords:       256 << 10,
		MaxBytes:         64 << 20,
		TickInterval:     100 * time.Millisecond,
		MaxStreams:       1024,
		MaxTenantStreams: DefaultMaxTenantStreams,
		MaxProducers:     10_000,
		PriorityShare:    0.1,
		ProducerTTL:      24 * time.Hour,
		WAL:              wal.DefaultOptions(),
	}
}

// Validate reports every field that is out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Partitions < 1 || c.Partitions > maxPartitions {
		errs = append(errs, fmt.Errorf("partitions %d: want 1 to %d", c.Partitions, maxPartitions))
	}
	if c.RingSlots < 1 || c.RingSlots > maxRingSlots {
		errs = append(errs, fmt.Errorf("ring slots %d: want 1 to %d", c.RingSlots, maxRingSlots))
	}
	if c.MaxRecords < 1 {
		errs = append(errs, fmt.Errorf("max records %d: want at least 1", c.MaxRecords))
	}
	if c.MaxBytes < 1 {
		errs = append(errs, fmt.Errorf("max bytes %d: want at least 1", c.MaxBytes))
	}
	if c.PriorityShare < 0 || c.PriorityShare >= 1 {
		errs = append(errs, fmt.Errorf("priority share %g: want 0 to less than 1", c.PriorityShare))
	}
	if c.MaxProducers < 1 {
		errs = append(errs, fmt.Errorf("max producers %d: want at least 1", c.MaxProducers))
	}
	if c.ProducerTTL <= 0 {
		errs = append(errs, fmt.Errorf("producer TTL %s: want more than 0", c.ProducerTTL))
	}
	if c.MaxStreams < 1 {
		errs = append(errs, fmt.Errorf("max streams %d: want at least 1", c.MaxStreams))
	}
	if c.MaxTenantStreams < 0 {
		errs = append(errs, fmt.Errorf("max tenant streams %d: want at least 1, or 0 for the default", c.MaxTenantStreams))
	}
	if c.TickInterval <= 0 {
		errs = append(errs, fmt.Errorf("tick interval %s: want more than 0", c.TickInterval))
	}
	if c.WALDir != "" {
		if err := c.WAL.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("wal: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("buffer config: %w", err)
	}
	return nil
}
