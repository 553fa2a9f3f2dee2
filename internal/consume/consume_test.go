package consume

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirlabs/weir/internal/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource is a stream whose visible records and marks a test sets.
type fakeSource struct {
	mu      sync.Mutex
	marks   []Mark
	visible map[Position]record.Record
	scans   int
}

func newFakeSource(parts int) *fakeSource {
	return &fakeSource{marks: make([]Mark, parts), visible: map[Position]record.Record{}}
}

// show makes offsets of partition p visible; the records' bodies name
// their positions.
func (f *fakeSource) show(p int32, sev int32, offsets ...int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range offsets {
		f.visible[Position{p, o}] = record.Record{SeverityNumber: sev, Body: "r",
			Resource: []record.KV{{Key: "service.name", Value: "svc"}}}
		f.marks[p].Next = max(f.marks[p].Next, o+1)
	}
}

func (f *fakeSource) hide(p int32, offsets ...int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range offsets {
		delete(f.visible, Position{p, o})
	}
}

func (f *fakeSource) setMark(p int32, committed, next int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marks[p] = Mark{Committed: committed, Next: next}
}

func (f *fakeSource) Marks(string, string) []Mark {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.marks)
}

func (f *fakeSource) Sync(context.Context) error { return nil }

func (f *fakeSource) ScanPartition(_ context.Context, _, _ string, part int32, after int64, limit int, fn func(Position, record.Record) error) (int, error) {
	f.mu.Lock()
	f.scans++
	var ps []Position
	for p := range f.visible {
		if p.Partition == part && p.Offset > after {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b Position) int {
		if a.Less(b) {
			return -1
		}
		if b.Less(a) {
			return 1
		}
		return 0
	})
	ps = ps[:min(len(ps), limit)]
	recs := make([]record.Record, len(ps))
	for i, p := range ps {
		recs[i] = f.visible[p]
	}
	f.mu.Unlock()
	for i, p := range ps {
		if err := fn(p, recs[i]); err != nil {
			return i, err
		}
	}
	return len(ps), nil
}

func (f *fakeSource) OffsetsSince(context.Context, string, string, time.Time) (map[int32]int64, error) {
	return map[int32]int64{0: 2}, nil
}

func (p Position) Less(o Position) bool {
	return p.Partition < o.Partition || p.Partition == o.Partition && p.Offset < o.Offset
}

func testManager(t *testing.T, src Source) *Manager {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.PollInterval = time.Millisecond
	cfg.Heartbeat = 20 * time.Millisecond
	m, err := New(cfg, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// nextRecords calls Next until it returns records.
func nextRecords(t *testing.T, s *Subscription) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		b, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		if len(b.Records) > 0 {
			return b.Records
		}
	}
}

func positions(recs []Record) []Position {
	out := make([]Position, len(recs))
	for i, r := range recs {
		out[i] = r.Position
	}
	return out
}

// pending reports whether Next returns no records for a few polls.
func pending(t *testing.T, s *Subscription) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	for {
		b, err := s.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return true
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Records) > 0 {
			t.Errorf("unexpected records %v", positions(b.Records))
			return false
		}
	}
}

func TestOutOfOrderVisibility(t *testing.T) {
	t.Parallel()
	src := newFakeSource(1)
	m := testManager(t, src)
	s, err := m.Subscribe(context.Background(), "t", Request{Stream: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 2 (a priority record) is visible before 1.
	src.show(0, 17, 0, 2)
	src.setMark(0, 0, 3)
	if got := positions(nextRecords(t, s)); !slices.Equal(got, []Position{{0, 0}}) {
		t.Fatalf("got %v, want 0/0 only", got)
	}
	if !pending(t, s) {
		t.Fatal("offset 2 delivered before 1")
	}
	src.show(0, 9, 1)
	if got := positions(nextRecords(t, s)); !slices.Equal(got, []Position{{0, 1}, {0, 2}}) {
		t.Fatalf("got %v, want 0/1 0/2", got)
	}
}

func TestGapsBelowCommitted(t *testing.T) {
	t.Parallel()
	src := newFakeSource(2)
	m := testManager(t, src)
	// Retention removed 0..4 of partition 0; partition 1 has 0..1.
	src.show(0, 9, 5, 6)
	src.show(1, 9, 0, 1)
	src.setMark(0, 7, 7)
	src.setMark(1, 2, 2)
	s, err := m.Subscribe(context.Background(), "t", Request{Stream: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []Position
	for len(got) < 4 {
		got = append(got, positions(nextRecords(t, s))...)
	}
	slices.SortFunc(got, func(a, b Position) int {
		if a.Less(b) {
			return -1
		}
		return 1
	})
	if want := []Position{{0, 5}, {0, 6}, {1, 0}, {1, 1}}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// 7 is never visible (dropped); once the watermark passes it, 8 is
	// delivered.
	src.show(0, 9, 8)
	src.setMark(0, 7, 9)
	if !pending(t, s) {
		t.Fatal("8 delivered while 7 may still come")
	}
	src.setMark(0, 9, 9)
	if got := positions(nextRecords(t, s)); !slices.Equal(got, []Position{{0, 8}}) {
		t.Fatalf("got %v, want 0/8", got)
	}
	// Caught up: no more scans.
	src.mu.Lock()
	before := src.scans
	src.mu.Unlock()
	pending(t, s)
	src.mu.Lock()
	after := src.scans
	src.mu.Unlock()
	if after != before {
		t.Errorf("a caught-up subscription scanned %d times", after-before)
	}
}

func TestStartsAndFilters(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		req   Request
		after []int64 // shown after Subscribe
		want  []int64
	}{
		{"earliest", Request{}, []int64{4}, []int64{0, 1, 2, 3, 4}},
		{"latest", Request{Start: Start{Latest: true}}, []int64{4, 5}, []int64{4, 5}},
		{"offset", Request{Start: Start{Offsets: map[int32]int64{0: 2}}}, []int64{4}, []int64{2, 3, 4}},
		{"time", Request{Start: Start{Time: time.Unix(1, 0)}}, []int64{4}, []int64{2, 3, 4}},
		{"severity", Request{MinSeverity: 17}, []int64{4}, []int64{1, 3}},
		{"service", Request{Service: "other"}, []int64{4}, nil},
		{"small batches", Request{MaxBatchRecords: 1}, []int64{4}, []int64{0, 1, 2, 3, 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src := newFakeSource(1)
			src.show(0, 9, 0, 2, 4)
			src.show(0, 17, 1, 3)
			src.hide(0, 4)
			src.setMark(0, 4, 4)
			m := testManager(t, src)
			req := c.req
			req.Stream = "s"
			s, err := m.Subscribe(context.Background(), "t", req)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			src.show(0, 9, c.after...)
			var got []int64
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			for {
				b, err := s.Next(ctx)
				if err != nil {
					break
				}
				if req.MaxBatchRecords > 0 && len(b.Records) > req.MaxBatchRecords {
					t.Errorf("batch of %d records", len(b.Records))
				}
				for _, r := range b.Records {
					got = append(got, r.Offset)
				}
				if len(got) >= len(c.want) && len(c.want) > 0 {
					break
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestSubscriptionLimit(t *testing.T) {
	t.Parallel()
	src := newFakeSource(1)
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.MaxTenantSubscriptions = 1
	m, err := New(cfg, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Subscribe(context.Background(), "a", Request{Stream: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Subscribe(context.Background(), "a", Request{Stream: "s"}); !errors.Is(err, ErrTooManySubscriptions) {
		t.Fatalf("second subscription of a tenant: %v", err)
	}
	other, err := m.Subscribe(context.Background(), "b", Request{Stream: "s"})
	if err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	other.Close()
	s.Close()
	s.Close()
	if st := m.Stats(); st.Subscriptions != 0 {
		t.Fatalf("%d open after Close", st.Subscriptions)
	}
}

// partitionsOf calls Next until the subscription owns want.
func partitionsOf(t *testing.T, s *Subscription, want []int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for !slices.Equal(s.Partitions(), want) {
		if _, err := s.Next(ctx); err != nil {
			t.Fatalf("partitions %v, want %v: %v", s.Partitions(), want, err)
		}
	}
}

func TestGroupHandover(t *testing.T) {
	t.Parallel()
	src := newFakeSource(2)
	src.show(0, 9, 0, 1, 2)
	src.show(1, 9, 0, 1)
	src.setMark(0, 3, 3)
	src.setMark(1, 2, 2)
	m := testManager(t, src)
	ctx := context.Background()
	a, err := m.Subscribe(ctx, "t", Request{Stream: "s", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	partitionsOf(t, a, []int32{0, 1})
	b, err := m.Subscribe(ctx, "t", Request{Stream: "s", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// a gives partition 1 up at its next Next; b takes it then.
	partitionsOf(t, a, []int32{0})
	partitionsOf(t, b, []int32{1})
	if got := positions(nextRecords(t, a)); !slices.Equal(got, []Position{{0, 0}, {0, 1}, {0, 2}}) {
		t.Fatalf("a got %v", got)
	}
	if err := m.Commit("t", "s", "g", map[int32]int64{0: 1}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	partitionsOf(t, b, []int32{0, 1})
	var got []Record
	for len(got) < 4 {
		got = append(got, nextRecords(t, b)...)
	}
	var p0 []Record
	for _, r := range got {
		if r.Partition == 0 {
			p0 = append(p0, r)
		}
	}
	if len(p0) != 2 || p0[0].Offset != 1 || !p0[0].Redelivered || p0[1].Offset != 2 || !p0[1].Redelivered {
		t.Fatalf("partition 0 after the handover: %+v, want 1 and 2 redelivered", p0)
	}
	if st := m.Stats(); st.Redelivered != 2 {
		t.Errorf("redelivered %d, want 2", st.Redelivered)
	}
	// Another group gets everything.
	c, err := m.Subscribe(ctx, "t", Request{Stream: "s", Group: "h"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var all []Record
	for len(all) < 5 {
		all = append(all, nextRecords(t, c)...)
	}
	for _, r := range all {
		if r.Redelivered {
			t.Errorf("group h: %v redelivered", r.Position)
		}
	}
}

func TestCommitDurable(t *testing.T) {
	t.Parallel()
	src := newFakeSource(2)
	src.setMark(0, 10, 10)
	src.setMark(1, 4, 4)
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	m, err := New(cfg, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Commit("t", "s", "g", map[int32]int64{0: 3}); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit("t", "s", "g", map[int32]int64{1: 4}); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit("t", "s", "g", map[int32]int64{0: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative offset: %v", err)
	}
	m2, err := New(cfg, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lags := m2.Lags()
	slices.SortFunc(lags, func(a, b Lag) int { return int(a.Partition - b.Partition) })
	want := []Lag{{"t", "s", "g", 0, 7}, {"t", "s", "g", 1, 0}}
	if !slices.Equal(lags, want) {
		t.Fatalf("lags after a restart %v, want %v", lags, want)
	}
	// A member starts at the committed offsets.
	src.show(0, 9, 2, 3)
	src.show(1, 9, 4)
	s, err := m2.Subscribe(context.Background(), "t", Request{Stream: "s", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []Position
	for len(got) < 2 {
		got = append(got, positions(nextRecords(t, s))...)
	}
	if !slices.Contains(got, Position{0, 3}) || !slices.Contains(got, Position{1, 4}) || len(got) != 2 {
		t.Fatalf("got %v, want 0/3 and 1/4", got)
	}
}

// TestGroupStandby: with one partition, the oldest member owns it and the
// others wait; when it leaves, the next oldest resumes from the commit.
func TestGroupStandby(t *testing.T) {
	t.Parallel()
	src := newFakeSource(1)
	src.show(0, 9, 0, 1, 2, 3)
	src.setMark(0, 4, 4)
	m := testManager(t, src)
	ctx := context.Background()
	var members []*Subscription
	for range 3 {
		s, err := m.Subscribe(ctx, "t", Request{Stream: "s", Group: "g"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		members = append(members, s)
	}
	a, b, c := members[0], members[1], members[2]
	if !slices.Equal(a.Partitions(), []int32{0}) || len(b.Partitions()) != 0 || len(c.Partitions()) != 0 {
		t.Fatalf("partitions %v %v %v, want the oldest member to own the one partition", a.Partitions(), b.Partitions(), c.Partitions())
	}
	if got := positions(nextRecords(t, a)); len(got) != 4 {
		t.Fatalf("a got %v", got)
	}
	if !pending(t, b) {
		t.Fatal("a standby received records")
	}
	if err := m.Commit("t", "s", "g", map[int32]int64{0: 3}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	partitionsOf(t, b, []int32{0})
	got := nextRecords(t, b)
	if len(got) != 1 || got[0].Offset != 3 || !got[0].Redelivered {
		t.Fatalf("b resumed with %+v, want 3, redelivered", got)
	}
	if len(c.Partitions()) != 0 {
		t.Fatalf("c owns %v", c.Partitions())
	}
}

// deadLetters keeps what a manager gives up on.
type deadLetters struct {
	mu   sync.Mutex
	recs []DeadRecord
}

func (d *deadLetters) DeadLetter(_ context.Context, tenant, stream, group string, recs []DeadRecord) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recs = append(d.recs, recs...)
	return nil
}

// TestMaxDeliveries: records two members received without committing
// go to the dead-letter writer instead of to the third, which commits
// past them and goes on with the next records; another group is not
// affected.
func TestMaxDeliveries(t *testing.T) {
	t.Parallel()
	src := newFakeSource(1)
	src.show(0, 9, 0, 1, 2)
	src.setMark(0, 3, 3)
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.PollInterval = time.Millisecond
	cfg.Heartbeat = 20 * time.Millisecond
	cfg.MaxDeliveries = 2
	cfg.GroupMaxDeliveries = map[string]int{"patient": 0}
	dead := &deadLetters{}
	if _, err := New(cfg, src, nil, nil); err == nil {
		t.Fatal("New with a limit of deliveries and no dead-letter writer succeeded")
	}
	m, err := New(cfg, src, dead, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deliver := func(group string, want []Position, redelivered bool) {
		t.Helper()
		s, err := m.Subscribe(ctx, "t", Request{Stream: "s", Group: group})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got := nextRecords(t, s)
		if !slices.Equal(positions(got), want) || got[0].Redelivered != redelivered {
			t.Fatalf("%s: got %+v, want %v", group, got, want)
		}
	}
	all := []Position{{0, 0}, {0, 1}, {0, 2}}
	deliver("g", all, false)
	// A commit of the first record: it is not delivered again.
	if err := m.Commit("t", "s", "g", map[int32]int64{0: 1}); err != nil {
		t.Fatal(err)
	}
	deliver("g", all[1:], true)
	deliver("patient", all, false)
	deliver("patient", all, true)
	// g delivered 1 and 2 twice (0 was committed): the next member
	// gives them up and gets the next record.
	s, err := m.Subscribe(ctx, "t", Request{Stream: "s", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src.show(0, 9, 3)
	src.setMark(0, 4, 4)
	if ps := positions(nextRecords(t, s)); !slices.Equal(ps, []Position{{0, 3}}) {
		t.Fatalf("after max_deliveries: %v, want 0/3", ps)
	}
	dead.mu.Lock()
	var deadPos []Position
	for _, d := range dead.recs {
		deadPos = append(deadPos, d.Position)
		if !strings.Contains(d.Reason, `"g"`) || !strings.Contains(d.Reason, "2 times") {
			t.Errorf("reason %q", d.Reason)
		}
	}
	dead.mu.Unlock()
	if !slices.Equal(deadPos, []Position{{0, 1}, {0, 2}}) {
		t.Fatalf("dead-lettered %v, want 0/1 and 0/2", deadPos)
	}
	if st := m.Stats(); st.DeadLettered != 2 {
		t.Errorf("Stats.DeadLettered = %d, want 2", st.DeadLettered)
	}
	for _, l := range m.Lags() {
		if l.Group == "g" && l.Records != 1 {
			t.Errorf("lag of g after giving up: %d, want 1 (the commit moved past the dead letters)", l.Records)
		}
	}
	// The group without a limit still gets 0..2, a third time.
	p, err := m.Subscribe(ctx, "t", Request{Stream: "s", Group: "patient"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := nextRecords(t, p); len(got) != 4 || !got[0].Redelivered {
		t.Fatalf("group without a limit: %+v", got)
	}
}

// TestHeldAndLost: the lowest committed offset holds a partition; a loss
// below groups' commits is counted once per group and reported once, to
// the member that owns the partition.
func TestHeldAndLost(t *testing.T) {
	t.Parallel()
	src := newFakeSource(1)
	src.show(0, 9, 10, 11)
	src.setMark(0, 12, 12)
	m := testManager(t, src)
	if _, ok := m.Held("t", "s", 0); ok {
		t.Fatal("held without groups")
	}
	for g, o := range map[string]int64{"g": 5, "h": 8} {
		if err := m.Commit("t", "s", g, map[int32]int64{0: o}); err != nil {
			t.Fatal(err)
		}
	}
	if o, ok := m.Held("t", "s", 0); !ok || o != 5 {
		t.Fatalf("Held = %d, %v; want 5", o, ok)
	}
	if _, ok := m.Held("t", "other", 0); ok {
		t.Fatal("another stream held")
	}
	m.Lost("t", "s", 0, 7)  // g loses 5 and 6
	m.Lost("t", "s", 0, 7)  // reported again: not counted twice
	m.Lost("t", "s", 0, 10) // g loses 7..9, h 8 and 9
	if st := m.Stats(); st.Lost != 7 {
		t.Fatalf("Stats.Lost = %d, want 7", st.Lost)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := m.Subscribe(ctx, "t", Request{Stream: "s", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Records) != 0 || b.Lost[0] != 10 || len(b.Lost) != 1 {
		t.Fatalf("first batch %+v, want the loss of partition 0 up to 10", b)
	}
	if got := positions(nextRecords(t, s)); !slices.Equal(got, []Position{{0, 10}, {0, 11}}) {
		t.Fatalf("after the loss: %v", got)
	}
	b, err = s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Lost != nil {
		t.Fatalf("the loss reported twice: %+v", b)
	}
}
