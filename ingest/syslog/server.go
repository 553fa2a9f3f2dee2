package syslog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/internal/record"
)

// Config is what a user sets for the syslog listeners.
type Config struct {
	// TCPAddr and UDPAddr are the listen addresses; "" = that listener
	// is off.
	TCPAddr, UDPAddr string
	// Stream receives the records; with StreamFromAppName, a message's
	// app-name (as record.StreamNameFrom makes it a stream name) picks the
	// stream instead, and Stream takes messages without a usable one.
	Stream            string
	StreamFromAppName bool
	// MaxConnections bounds the open TCP connections; more wait to be
	// accepted.
	MaxConnections int
	// MaxTCPMessageBytes and MaxUDPMessageBytes bound one message; a
	// longer one is cut to the bound and dead-lettered.
	MaxTCPMessageBytes, MaxUDPMessageBytes int
	// IdleTimeout closes a TCP connection that sends nothing this long.
	IdleTimeout time.Duration
	// BatchRecords and BatchDelay bound a batch: records are submitted
	// when a connection (or the UDP socket) has this many, or when the
	// first of them has waited this long.
	BatchRecords int
	BatchDelay   time.Duration
	// Level is the acknowledgement level batches are submitted at.
	Level buffer.Level
	// UDPQueue bounds the UDP batches waiting to be submitted; past it,
	// batches are dropped and counted (Stats.UDPDropped).
	UDPQueue int
}

// DefaultConfig returns the defaults: both listeners off, stream
// "syslog", 256 connections, 64 KiB TCP and 8 KiB UDP messages, 5
// minutes idle, batches of 1,000 records or 200 ms, Durable.
func DefaultConfig() Config {
	return Config{
		Stream: "syslog", MaxConnections: 256,
		MaxTCPMessageBytes: 64 << 10, MaxUDPMessageBytes: 8 << 10,
		IdleTimeout: 5 * time.Minute, BatchRecords: 1000, BatchDelay: 200 * time.Millisecond,
		Level: buffer.Durable, UDPQueue: 16,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case record.ValidateStream(c.Stream) != nil:
		return fmt.Errorf("syslog: stream: %w", record.ValidateStream(c.Stream))
	case c.MaxConnections < 1:
		return errors.New("syslog: max_connections must be positive")
	case c.MaxTCPMessageBytes < 480 || c.MaxUDPMessageBytes < 480:
		return errors.New("syslog: message size bounds must be at least 480 bytes (RFC 5424's minimum)")
	case c.MaxUDPMessageBytes > 65535:
		return errors.New("syslog: max_udp_message_bytes must be at most 65535, a datagram's size")
	case c.IdleTimeout <= 0 || c.BatchDelay <= 0:
		return errors.New("syslog: idle_timeout and batch_delay must be positive")
	case c.BatchRecords < 1 || c.UDPQueue < 1:
		return errors.New("syslog: batch_records and the UDP queue must be positive")
	case c.Level < buffer.Accepted || c.Level > buffer.Committed:
		return fmt.Errorf("syslog: unknown ack level %d", c.Level)
	}
	return nil
}

// Submitter takes records down the pipeline; *ingest.Service implements
// it.
type Submitter interface {
	Submit(ctx context.Context, stream string, recs []record.Record, rejects []error, level buffer.Level) (ingest.Result, error)
}

// Deps are the server's collaborators.
type Deps struct {
	Submitter Submitter
	// TLS, when not nil, makes the TCP listener speak TLS (RFC 5425).
	TLS *tls.Config
	Log *slog.Logger
}

// Stats are the server's counters since it started.
type Stats struct {
	Connections       int64 // open TCP connections
	ConnectionsTotal  int64
	Messages          int64 // read, including those dead-lettered
	Unparseable       int64 // dead-lettered: neither parser read them
	Oversized         int64 // dead-lettered: cut to the size bound
	FramingErrors     int64 // TCP connections closed on a broken octet count
	BackpressureWaits int64 // TCP batches that waited for buffer room (the sender was slowed)
	Dropped           int64 // records lost: refused by the pipeline, or shut down before they could be submitted
	UDPDropped        int64 // UDP records dropped because the pipeline could not keep up
}

type counters struct {
	connections, connectionsTotal, messages, unparseable, oversized, framing, waits, dropped, udpDropped atomic.Int64
}

// Server receives syslog over TCP (optionally TLS) and UDP. Start binds
// the listeners; Shutdown stops them and drains.
type Server struct {
	cfg  Config
	deps Deps
	conv *converter
	log  *slog.Logger
	c    counters

	ln    net.Listener
	pc    net.PacketConn
	slots chan struct{}
	stop  chan struct{}
	// submitCtx is the context of every Submit; Shutdown cancels it
	// when its deadline passes.
	submitCtx    context.Context
	cancelSubmit context.CancelFunc
	wg           sync.WaitGroup
	mu           sync.Mutex
	conns        map[net.Conn]struct{}
	stopOnce     sync.Once
	lastLog      atomic.Int64
}

// New returns a server for cfg; it listens once started.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Submitter == nil {
		return nil, errors.New("syslog: no Submitter")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(ingest.WithEndpoint(context.Background(), "syslog"))
	return &Server{
		cfg: cfg, deps: deps, log: deps.Log, conv: newConverter(cfg.Stream, cfg.StreamFromAppName),
		slots: make(chan struct{}, cfg.MaxConnections), stop: make(chan struct{}),
		submitCtx: ctx, cancelSubmit: cancel, conns: map[net.Conn]struct{}{},
	}, nil
}

// Start binds the configured listeners and serves them until Shutdown.
// It fails, binding nothing, if a listener cannot be bound.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	if s.cfg.TCPAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.TCPAddr)
		if err != nil {
			return fmt.Errorf("syslog: tcp: %w", err)
		}
		if s.deps.TLS != nil {
			ln = tls.NewListener(ln, s.deps.TLS)
		}
		s.ln = ln
	}
	if s.cfg.UDPAddr != "" {
		pc, err := lc.ListenPacket(ctx, "udp", s.cfg.UDPAddr)
		if err != nil {
			if s.ln != nil {
				s.ln.Close()
				s.ln = nil
			}
			return fmt.Errorf("syslog: udp: %w", err)
		}
		s.pc = pc
	}
	if s.ln != nil {
		s.wg.Go(s.accept)
	}
	if s.pc != nil {
		queue := make(chan udpBatch, s.cfg.UDPQueue)
		s.wg.Go(func() { s.readUDP(queue) })
		s.wg.Go(func() { s.submitUDP(queue) })
	}
	return nil
}

// TCPAddr and UDPAddr are the bound addresses, nil for a listener that
// is off or before Start.
func (s *Server) TCPAddr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *Server) UDPAddr() net.Addr {
	if s.pc == nil {
		return nil
	}
	return s.pc.LocalAddr()
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	c := &s.c
	return Stats{
		Connections: c.connections.Load(), ConnectionsTotal: c.connectionsTotal.Load(),
		Messages: c.messages.Load(), Unparseable: c.unparseable.Load(), Oversized: c.oversized.Load(),
		FramingErrors: c.framing.Load(), BackpressureWaits: c.waits.Load(), Dropped: c.dropped.Load(), UDPDropped: c.udpDropped.Load(),
	}
}

// drainIdle is how long a connection being drained at shutdown may be
// silent before it is closed: what its sender had sent is read by then.
const drainIdle = 100 * time.Millisecond

// Shutdown stops accepting, reads what connected senders have already
// sent, submits every pending batch and returns once all connections
// are closed. When ctx ends first, the connections are closed and
// pending submits abandoned (their records counted as dropped), and
// ctx's error is returned. It is safe to call without Start, and more
// than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		close(s.stop)
		if s.ln != nil {
			s.ln.Close()
		}
		if s.pc != nil {
			// The UDP reader ends at its next read; datagrams queued in
			// the socket are read first within drainIdle.
			_ = s.pc.SetReadDeadline(time.Now().Add(drainIdle))
		}
		s.mu.Lock()
		for c := range s.conns {
			_ = c.SetReadDeadline(time.Now().Add(drainIdle))
		}
		s.mu.Unlock()
	})
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
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	if s.pc != nil {
		s.pc.Close()
	}
	<-done
	return ctx.Err()
}

func (s *Server) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// accept serves the TCP listener: one goroutine per connection, at most
// MaxConnections at once.
func (s *Server) accept() {
	backoff := 5 * time.Millisecond
	for {
		select {
		case s.slots <- struct{}{}:
		case <-s.stop:
			return
		}
		c, err := s.ln.Accept()
		if err != nil {
			<-s.slots
			if s.stopping() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.warn("syslog: accept failed; retrying", "err", err)
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, time.Second)
			case <-s.stop:
				return
			}
			continue
		}
		backoff = 5 * time.Millisecond
		s.mu.Lock()
		s.conns[c] = struct{}{}
		if s.stopping() {
			_ = c.SetReadDeadline(time.Now().Add(drainIdle))
		}
		s.mu.Unlock()
		s.c.connections.Add(1)
		s.c.connectionsTotal.Add(1)
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
				s.c.connections.Add(-1)
				<-s.slots
			}()
			s.serveConn(c)
		})
	}
}

// serveConn reads one TCP connection until it ends, goes idle or the
// server stops, submitting its records in batches. While a batch waits
// for buffer room the connection is not read, which slows the sender.
func (s *Server) serveConn(c net.Conn) {
	peer := c.RemoteAddr().String()
	rd := NewReader(c, s.cfg.MaxTCPMessageBytes)
	var b batch
	idle := time.Now().Add(s.cfg.IdleTimeout)
	for {
		deadline := idle
		if s.stopping() {
			deadline = time.Now().Add(drainIdle)
		}
		if b.n > 0 && b.flushAt.Before(deadline) {
			deadline = b.flushAt
		}
		_ = c.SetReadDeadline(deadline)
		msg, err := rd.Next()
		var tooLarge *TooLargeError
		var ne net.Error
		switch {
		case err == nil:
			idle = time.Now().Add(s.cfg.IdleTimeout)
			s.add(&b, msg, peer, nil)
		case errors.As(err, &tooLarge):
			s.add(&b, msg, peer, err)
		case errors.Is(err, ErrTruncated):
			s.add(&b, msg, peer, err)
			continue
		case errors.As(err, &ne) && ne.Timeout():
			now := time.Now()
			if s.stopping() && !now.Before(deadline) && deadline != b.flushAt {
				s.flush(&b, true)
				return
			}
			if b.n > 0 && !now.Before(b.flushAt) {
				s.flush(&b, true)
			}
			if !now.Before(idle) {
				s.flush(&b, true)
				return
			}
			continue
		default:
			if errors.Is(err, ErrFraming) {
				s.c.framing.Add(1)
				s.warn("syslog: closing a connection whose octet counting broke", "peer", peer)
			}
			s.flush(&b, true)
			return
		}
		if b.n >= s.cfg.BatchRecords {
			s.flush(&b, true)
		}
	}
}

// batch holds the records read but not yet submitted, by stream in the
// order streams first appear.
type batch struct {
	n       int
	flushAt time.Time
	order   []string
	streams map[string]*streamBatch
}

type streamBatch struct {
	recs    []record.Record
	rejects []error
	bad     bool
}

// add converts one message into b. cause, when not nil, says why the
// message is cut or incomplete: it is dead-lettered with its raw text.
func (s *Server) add(b *batch, msg []byte, peer string, cause error) {
	s.c.messages.Add(1)
	rec, stream, reject := s.conv.convert(msg, peer)
	if cause != nil {
		s.c.oversized.Add(1)
		rec = record.Record{Body: string(msg)}
		if peer != "" {
			rec.Attributes = []record.KV{{Key: "client.address", Value: peer}}
		}
		stream, reject = s.cfg.Stream, cause
	} else if reject != nil {
		s.c.unparseable.Add(1)
	}
	if b.n == 0 {
		b.flushAt = time.Now().Add(s.cfg.BatchDelay)
		if b.streams == nil {
			b.streams = map[string]*streamBatch{}
		}
	}
	sb := b.streams[stream]
	if sb == nil {
		sb = &streamBatch{}
		b.streams[stream] = sb
		b.order = append(b.order, stream)
	}
	sb.recs = append(sb.recs, rec)
	sb.rejects = append(sb.rejects, reject)
	sb.bad = sb.bad || reject != nil
	b.n++
}

// flush submits b and empties it. With wait, a batch refused for
// backpressure is submitted again after the Retry-After pause until it
// is taken or the server's submit context ends; without, it is dropped
// (UDP cannot slow its senders).
func (s *Server) flush(b *batch, wait bool) (dropped int) {
	for _, stream := range b.order {
		sb := b.streams[stream]
		var rejects []error
		if sb.bad {
			rejects = sb.rejects
		}
		dropped += s.submit(stream, sb.recs, rejects, wait)
	}
	b.n, b.order, b.streams = 0, b.order[:0], nil
	return dropped
}

// submit hands recs to the pipeline and returns how many were lost.
func (s *Server) submit(stream string, recs []record.Record, rejects []error, wait bool) int {
	for {
		// Submit may change the records it is given (processors); a
		// retry starts from the records as read.
		try := make([]record.Record, len(recs))
		copy(try, recs)
		var tryRejects []error
		if rejects != nil {
			tryRejects = append([]error(nil), rejects...)
		}
		_, err := s.deps.Submitter.Submit(s.submitCtx, stream, try, tryRejects, s.cfg.Level)
		if err == nil {
			return 0
		}
		status, retryAfter := ingest.HTTPStatus(err)
		retryable := status == 429 || status == 503 || status == 504
		if !wait || !retryable || s.submitCtx.Err() != nil {
			s.c.dropped.Add(int64(len(recs)))
			s.warn("syslog: records dropped", "stream", stream, "records", len(recs), "err", err)
			return len(recs)
		}
		s.c.waits.Add(1)
		pause := time.Second
		if d, err := time.ParseDuration(retryAfter + "s"); err == nil && d > 0 {
			pause = min(d, 30*time.Second)
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-s.submitCtx.Done():
			t.Stop()
		}
	}
}

// warn logs at most once a second, so a flood of bad input cannot flood
// the log; the counters keep the full story.
func (s *Server) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(time.Second) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, args...)
}

type udpBatch struct{ b batch }

// readUDP reads datagrams, one message each, into batches it queues for
// submitUDP; when the queue is full the batch is dropped and counted.
func (s *Server) readUDP(queue chan<- udpBatch) {
	defer close(queue)
	buf := make([]byte, s.cfg.MaxUDPMessageBytes+1)
	var b batch
	enqueue := func() {
		if b.n == 0 {
			return
		}
		select {
		case queue <- udpBatch{b}:
		default:
			s.c.udpDropped.Add(int64(b.n))
			s.warn("syslog: UDP records dropped: the pipeline is not keeping up", "records", b.n)
		}
		b = batch{}
	}
	for {
		if !s.stopping() {
			var deadline time.Time
			if b.n > 0 {
				deadline = b.flushAt
			}
			_ = s.pc.SetReadDeadline(deadline)
		}
		n, addr, err := s.pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !s.stopping() {
				enqueue()
				continue
			}
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, net.ErrClosed) || s.stopping() {
				enqueue()
				return
			}
			s.warn("syslog: UDP read failed", "err", err)
			continue
		}
		peer := ""
		if addr != nil {
			peer = addr.String()
		}
		msg := buf[:n]
		if n > s.cfg.MaxUDPMessageBytes {
			s.add(&b, msg[:s.cfg.MaxUDPMessageBytes], peer, &TooLargeError{Size: -1, Max: s.cfg.MaxUDPMessageBytes})
		} else {
			s.add(&b, trimLineEnd(msg), peer, nil)
		}
		if b.n >= s.cfg.BatchRecords {
			enqueue()
		}
	}
}

// submitUDP submits the queued UDP batches, dropping (and counting) a
// batch the pipeline refuses.
func (s *Server) submitUDP(queue <-chan udpBatch) {
	for ub := range queue {
		b := ub.b
		if lost := s.flush(&b, false); lost > 0 {
			s.c.udpDropped.Add(int64(lost))
			s.c.dropped.Add(-int64(lost)) // counted once, as UDP drops
		}
	}
}

// trimLineEnd removes the line ends some senders put after a datagram's
// message.
func trimLineEnd(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}
