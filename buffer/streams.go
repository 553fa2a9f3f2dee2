package buffer

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

type streamKey struct{ tenant, stream string }

// tenantState is what the buffer keeps per tenant.
type tenantState struct {
	quota   *producerQuota // the idempotent producers of all its streams
	streams int            // streams created, recovered ones included
}

type stream struct {
	parts []*partition
	prods *producers
	// announced runs Deps.NewStream once; every push waits for it.
	announced sync.Once
}

// stream returns the stream, creating it and starting its consumers on
// first use, once Deps.NewStream has been called for it. Lookups of
// existing streams take no lock.
func (b *Buffer) stream(tenant, name string) (*stream, error) {
	k := streamKey{tenant, name}
	var s *stream
	if v, ok := b.streams.Load(k); ok {
		s = v.(*stream)
	} else {
		var err error
		if s, err = b.createStream(k, false); err != nil {
			return nil, b.unavailable(k, err)
		}
	}
	b.announce(k, s)
	return s, nil
}

// unavailableLogEvery bounds how often a push to a stream whose log cannot
// be opened logs why.
const unavailableLogEvery = time.Minute

// unavailable returns err, from creating stream k for a push, as the
// caller should see it: the errors that tell a client what to do (too
// many streams, a full disk, the buffer closing) as they are, and any
// other, the stream's log failing to open or recover, as an
// *unavailableError, logged at most every unavailableLogEvery per stream.
func (b *Buffer) unavailable(k streamKey, err error) error {
	for _, known := range []error{ErrTooManyStreams, ErrNoSpace, ErrClosed} {
		if errors.Is(err, known) {
			return err
		}
	}
	b.createMu.Lock()
	last, logged := b.unavailableLogged[k]
	if !logged || time.Since(last) >= unavailableLogEvery {
		if b.unavailableLogged == nil {
			b.unavailableLogged = make(map[streamKey]time.Time)
		}
		b.unavailableLogged[k] = time.Now()
		logged = false
	}
	b.createMu.Unlock()
	if !logged {
		b.log.Error("buffer: a stream's write-ahead log cannot be opened or recovered; pushes to it are refused", "tenant", k.tenant, "stream", k.stream, "err", err)
	}
	return &unavailableError{tenant: k.tenant, stream: k.stream, cause: err}
}

// unavailableError is a push's error for a stream whose log cannot be
// opened or recovered. Its message leaves out the cause, which names the
// server's files.
type unavailableError struct {
	tenant, stream string
	cause          error
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("%v: the write-ahead log of stream %q (tenant %q) cannot be opened or recovered; the server's log says why", ErrStreamUnavailable, e.stream, e.tenant)
}

func (e *unavailableError) Unwrap() []error { return []error{ErrStreamUnavailable, e.cause} }

// announce calls Deps.NewStream for s once, outside createMu; callers
// that come meanwhile wait for it.
func (b *Buffer) announce(k streamKey, s *stream) {
	if b.newStream != nil {
		s.announced.Do(func() { b.newStream(k.tenant, k.stream) })
	}
}

// tenantLocked returns the state of a tenant, creating it. b.createMu
// must be held.
func (b *Buffer) tenantLocked(name string) *tenantState {
	t := b.tenants[name]
	if t == nil {
		t = &tenantState{quota: newProducerQuota(b.cfg.MaxProducers)}
		b.tenants[name] = t
	}
	return t
}

// createStream creates a stream and starts its consumers. A stream that
// recovery brings back (recovering) is created whatever the limits, since
// its log holds acknowledged records, and counts towards its tenant's
// limit; towards Config.MaxStreams a tenant counts with at most
// Config.MaxTenantStreams streams, so that one tenant's recovered streams
// leave room for the others.
func (b *Buffer) createStream(k streamKey, recovering bool) (*stream, error) {
	b.createMu.Lock()
	defer b.createMu.Unlock()
	if v, ok := b.streams.Load(k); ok {
		return v.(*stream), nil
	}
	t := b.tenantLocked(k.tenant)
	if !recovering {
		if t.streams >= b.cfg.MaxTenantStreams {
			return nil, fmt.Errorf("%w: tenant %q has %d streams, its limit (max_tenant_streams); stream %q is not created", ErrTooManyStreams, k.tenant, t.streams, k.stream)
		}
		if b.counted >= b.cfg.MaxStreams {
			return nil, fmt.Errorf("%w: %d streams exist, the limit (max_streams); stream %q of tenant %q is not created", ErrTooManyStreams, b.counted, k.stream, k.tenant)
		}
	}
	s := &stream{parts: make([]*partition, b.cfg.Partitions)}
	var prodPath string
	if b.cfg.WALDir != "" {
		prodPath = filepath.Join(b.cfg.WALDir, "tenant="+k.tenant, "stream="+k.stream, "producers.json")
	}
	s.prods = newProducers(prodPath, t.quota, b.cfg.ProducerTTL)
	var damaged *damagedProducersError
	if err := s.prods.load(); errors.As(err, &damaged) {
		// The log's records name their producers: recovery finds every
		// producer whose batches the log still holds. Those whose last
		// batch was in a deleted segment are forgotten, as after
		// producer_ttl.
		b.producersDamaged.Add(1)
		b.log.Error("buffer: a stream's table of idempotent producers is damaged; it was set aside and the stream goes on with the producers its write-ahead log shows (one whose last batch is older than the log may have an old batch written again if it retries it)",
			"tenant", k.tenant, "stream", k.stream, "moved_to", damaged.moved, "err", damaged.err)
	} else if err != nil {
		s.prods.release()
		return nil, err
	}
	closeAll := func(n int) {
		s.prods.release()
		for _, p := range s.parts[:n] {
			if err := p.cons.Close(b.runCtx); err != nil {
				b.closeErrors.Add(1)
			}
			if p.wal != nil {
				p.wal.Close()
			}
		}
	}
	recovered := make([][]*record.Batch, len(s.parts))
	for i := range s.parts {
		key := Key{Tenant: k.tenant, Stream: k.stream, Partition: int32(i)}
		c := b.newConsumer(key)
		if c == nil {
			closeAll(i)
			return nil, fmt.Errorf("buffer: NewConsumer returned nil for %s/%s partition %d", k.tenant, k.stream, i)
		}
		p := newPartition(key, c, b.cfg.RingSlots)
		p.prods = s.prods
		s.parts[i] = p
		if b.firstOffset != nil {
			p.next = b.firstOffset(key)
		}
		start := p.next
		if b.cfg.WALDir != "" {
			batches, err := b.openWAL(p)
			if err != nil {
				closeAll(i + 1)
				return nil, err
			}
			recovered[i] = batches
			if len(batches) > 0 {
				start = min(start, batches[0].Offset)
				n := 0
				for _, rb := range batches {
					n += rb.Len()
				}
				b.log.Info("buffer: replaying write-ahead log", "tenant", k.tenant, "stream", k.stream, "partition", i, "records", n, "from_offset", batches[0].Offset)
			}
		}
		// Nothing below start can be unpublished: the commit watermark
		// starts there.
		p.committed.Store(start)
	}
	// Start the goroutines only once every consumer exists. Shutdown waits
	// for this Push to leave before it stops consumers, so these Adds
	// happen before it waits.
	for _, p := range s.parts {
		b.live.Add(1)
		b.wg.Add(1)
		go b.run(p)
	}
	for i, p := range s.parts {
		if err := b.enqueueRecovered(s, p, recovered[i]); err != nil {
			return nil, err
		}
	}
	b.streams.Store(k, s)
	b.nstreams.Add(1)
	if t.streams++; t.streams <= b.cfg.MaxTenantStreams {
		b.counted++
	}
	return s, nil
}
