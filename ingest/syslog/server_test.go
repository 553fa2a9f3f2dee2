package syslog_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/syslog"
	"github.com/weirlabs/weir/internal/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sink is a Submitter that keeps what it is given and can be made to
// refuse with backpressure.
type sink struct {
	mu      sync.Mutex
	cond    *sync.Cond
	recs    map[string][]record.Record
	rejects map[string][]error
	full    int // refuse this many calls with RESOURCE_EXHAUSTED
	calls   int
}

func newSink() *sink {
	s := &sink{recs: map[string][]record.Record{}, rejects: map[string][]error{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *sink) Submit(_ context.Context, stream string, recs []record.Record, rejects []error, _ buffer.Level) (ingest.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.full > 0 {
		s.full--
		err := connect.NewError(connect.CodeResourceExhausted, errors.New("buffer full"))
		err.Meta().Set("Retry-After", "0")
		s.cond.Broadcast()
		return ingest.Result{}, err
	}
	s.recs[stream] = append(s.recs[stream], recs...)
	for i := range recs {
		var e error
		if rejects != nil {
			e = rejects[i]
		}
		s.rejects[stream] = append(s.rejects[stream], e)
	}
	s.cond.Broadcast()
	return ingest.Result{Records: len(recs)}, nil
}

// wait blocks until the stream holds n records.
func (s *sink) wait(t *testing.T, stream string, n int) []record.Record {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(10 * time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.recs[stream]) < n {
		if time.Now().After(deadline) {
			t.Fatalf("stream %s: %d records, want %d", stream, len(s.recs[stream]), n)
		}
		s.cond.Wait()
	}
	return append([]record.Record(nil), s.recs[stream]...)
}

func startServer(t *testing.T, sub syslog.Submitter, mutate func(*syslog.Config)) *syslog.Server {
	t.Helper()
	cfg := syslog.DefaultConfig()
	cfg.TCPAddr, cfg.UDPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.BatchDelay = 20 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := syslog.New(cfg, syslog.Deps{Submitter: sub})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

func attr(kvs []record.KV, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

func TestTCPAndUDP(t *testing.T) {
	sub := newSink()
	s := startServer(t, sub, func(c *syslog.Config) { c.StreamFromAppName = true })
	msg5424 := `<165>1 2026-03-01T10:00:00.000Z host1 billing 42 ID7 [ex@1 k="v"] paid`
	msg3164 := `<11>Mar  1 10:00:01 host2 cron[7]: job failed`
	conn, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "%d %s%d %s", len(msg5424), msg5424, len(msg3164), msg3164)
	conn.Close()
	recs := sub.wait(t, "billing", 1)
	r := recs[0]
	if r.Body != "paid" || r.SeverityText != "INFO" || attr(r.Resource, "host.name") != "host1" || attr(r.Resource, "service.name") != "billing" ||
		attr(r.Attributes, "syslog.procid") != "42" || attr(r.Attributes, "syslog.msgid") != "ID7" || attr(r.Attributes, "sd.ex@1.k") != "v" ||
		r.Timestamp != time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano() {
		t.Errorf("RFC 5424 record: %+v", r)
	}
	r = sub.wait(t, "cron", 1)[0]
	if r.Body != "job failed" || r.SeverityText != "ERROR" || attr(r.Resource, "host.name") != "host2" || attr(r.Attributes, "syslog.procid") != "7" {
		t.Errorf("RFC 3164 record: %+v", r)
	}

	udp, err := net.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	fmt.Fprintf(udp, "<14>1 - - - - - - over udp\n")
	r = sub.wait(t, "syslog", 1)[0]
	if r.Body != "over udp" || r.SeverityText != "INFO" {
		t.Errorf("UDP record: %+v", r)
	}
}

// TestBadInput sends garbage, an oversized line and valid lines on one
// connection: the valid are stored, the rest dead-lettered with their
// text; a broken octet count closes its connection and keeps what came
// before.
func TestBadInput(t *testing.T) {
	sub := newSink()
	s := startServer(t, sub, func(c *syslog.Config) { c.MaxTCPMessageBytes = 512 })
	conn, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "<13>Mar  1 10:00:00 h app: first\n\x00\xff garbage\n%s\n<13>Mar  1 10:00:00 h app: last\n", strings.Repeat("y", 2000))
	conn.Close()
	recs := sub.wait(t, "syslog", 4)
	sub.mu.Lock()
	rejects := sub.rejects["syslog"]
	sub.mu.Unlock()
	if recs[0].Body != "first" || rejects[0] != nil || recs[3].Body != "last" || rejects[3] != nil {
		t.Errorf("valid records: %+v %v", recs, rejects)
	}
	if recs[1].Body != "\x00\xff garbage" || rejects[1] == nil {
		t.Errorf("garbage: %q %v", recs[1].Body, rejects[1])
	}
	var tl *syslog.TooLargeError
	if len(recs[2].Body) != 512 || !errors.As(rejects[2], &tl) {
		t.Errorf("oversized: %d bytes, %v", len(recs[2].Body), rejects[2])
	}

	conn, err = net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "5 <13>a5x <13>b")
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err == nil {
		t.Error("the server kept a connection with a broken octet count open")
	}
	conn.Close()
	if r := sub.wait(t, "syslog", 5)[4]; r.Body != "<13>a" {
		t.Errorf("record before the broken count: %+v", r)
	}
	if st := s.Stats(); st.FramingErrors != 1 || st.Oversized != 1 || st.Unparseable < 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestBackpressureSlowsTCP refuses the first batches: the connection's
// records are submitted again until taken, none lost.
func TestBackpressureSlowsTCP(t *testing.T) {
	sub := newSink()
	sub.full = 3
	s := startServer(t, sub, func(c *syslog.Config) { c.BatchRecords = 10 })
	conn, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		fmt.Fprintf(conn, "<14>1 - h app - - - m%d\n", i)
	}
	conn.Close()
	recs := sub.wait(t, "syslog", 100)
	for i, r := range recs {
		if r.Body != fmt.Sprintf("m%d", i) {
			t.Fatalf("record %d: %q", i, r.Body)
		}
	}
	if st := s.Stats(); st.BackpressureWaits != 3 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestShutdownDrains checks that Shutdown submits what an open
// connection has sent and closes it.
func TestShutdownDrains(t *testing.T) {
	sub := newSink()
	cfg := syslog.DefaultConfig()
	cfg.TCPAddr = "127.0.0.1:0"
	cfg.BatchDelay = time.Hour // only Shutdown flushes
	s, err := syslog.New(cfg, syslog.Deps{Submitter: sub})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 5 {
		fmt.Fprintf(conn, "<14>1 - h app - - - m%d\n", i)
	}
	// Wait until the server has read the lines: the connection counts.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Messages < 5; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", s.Stats())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if recs := sub.wait(t, "syslog", 5); len(recs) != 5 {
		t.Errorf("%d records", len(recs))
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestShutdownWithoutStart(t *testing.T) {
	s, err := syslog.New(syslog.DefaultConfig(), syslog.Deps{Submitter: newSink()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
