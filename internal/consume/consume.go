package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

// Position is a record's place in its stream.
type Position struct {
	Partition int32
	Offset    int64
}

// Mark is how far a stream partition has got (buffer.Mark).
type Mark struct {
	// Committed: every record below it is visible to Scan or never will
	// be (it was removed by retention, dropped, or lost to damage).
	Committed int64
	// Next is the offset the next record pushed to the partition gets.
	Next int64
}

// Source is what subscriptions read. Its methods must be safe for
// concurrent use.
type Source interface {
	// Marks returns the marks of each partition of the stream, indexed
	// by partition.
	Marks(tenant, stream string) []Mark
	// Sync returns once every record staged or published before the call
	// is visible to Scan.
	Sync(ctx context.Context) error
	// ScanPartition calls fn with up to limit visible records of
	// partition part with offsets above after, in offset order
	// (query.Engine.ScanPartition).
	ScanPartition(ctx context.Context, tenant, stream string, part int32, after int64, limit int, fn func(Position, record.Record) error) (int, error)
	// OffsetsSince returns, per partition with visible records, the
	// lowest offset of a record at or after t, or one past the highest
	// visible offset when there is none (query.Engine.OffsetsSince).
	OffsetsSince(ctx context.Context, tenant, stream string, t time.Time) (map[int32]int64, error)
}

// DeadRecord is a record a group gave up on, with why.
type DeadRecord struct {
	Position
	Record record.Record
	// Reason names the group and how often it delivered the record.
	Reason string
}

// DeadLetters takes the records that groups give up on
// (Config.MaxDeliveries). Its method must be safe for concurrent use.
type DeadLetters interface {
	// DeadLetter writes recs, records of tenant's stream, to the tenant's
	// dead-letter stream and returns once they are as safe as a pushed
	// record at the server's acknowledgement level. Writing the same
	// record again (the same group, stream and position) must not
	// duplicate it.
	DeadLetter(ctx context.Context, tenant, stream, group string, recs []DeadRecord) error
}

// Start is where a subscription starts reading a partition. The zero
// Start is the earliest record of every partition.
type Start struct {
	// Latest starts at the first record pushed after Subscribe.
	Latest bool
	// Offsets gives the first offset to read per partition; partitions
	// not listed start at the earliest record.
	Offsets map[int32]int64
	// Time, when set, starts each partition at its first record (in
	// offset order) whose timestamp is at or after it.
	Time time.Time
}

// Request describes a subscription.
type Request struct {
	Stream string
	// Group, when set, makes the subscription a member of that consumer
	// group of the stream. A partition the group has committed starts at
	// its committed offset; Start applies to the others.
	Group string
	Start Start
	// MinSeverity, when above 0, skips records with a lower severity
	// number (records without one included).
	MinSeverity int32
	// Service, when set, skips records whose service.name differs.
	Service string
	// MaxBatchRecords bounds a batch; 0 or above Config.MaxBatchRecords
	// means the latter.
	MaxBatchRecords int
}

// Record is a record read by a subscription.
type Record struct {
	Position
	Record record.Record
	// Redelivered is set when the group delivered the record before to a
	// member that gave up its partition without committing past it.
	Redelivered bool
}

// Batch is what Next returns: records (possibly none, for a heartbeat or
// a change of partitions) and the partitions the subscription owns.
type Batch struct {
	Records    []Record
	Partitions []int32
	// Lost names, for partitions the subscription owns, the offset after
	// the highest one retention removed before the group committed it
	// (see Manager.Lost). Each loss is reported once, to the member that
	// owns the partition then or next.
	Lost map[int32]int64
}

// Errors of the manager.
var (
	// ErrTooManySubscriptions means the tenant has
	// Config.MaxTenantSubscriptions open subscriptions.
	ErrTooManySubscriptions = errors.New("consume: too many subscriptions")
	// ErrTooManyGroups means the manager knows Config.MaxGroups groups.
	ErrTooManyGroups = errors.New("consume: too many consumer groups")
	// ErrInvalid marks a request that is wrong whatever the state.
	ErrInvalid = errors.New("consume: invalid request")
	// ErrOffsetsDamaged means the group's offsets file does not parse:
	// the group is refused until the file is restored or removed (the
	// group then starts over at its members' start position), which
	// takes effect at the group's next request.
	ErrOffsetsDamaged = errors.New("consume: the group's offsets file is damaged")
)

// Manager keeps the subscriptions and consumer groups of one server. Its
// methods are safe for concurrent use; it starts no goroutines.
//
// Lock order: group.saveMu, then Manager.mu.
type Manager struct {
	cfg Config
	src Source
	log *slog.Logger

	dead        DeadLetters
	redelivered atomic.Int64
	deadLetters atomic.Int64
	lost        atomic.Int64

	mu     sync.Mutex
	subs   map[string]int // open subscriptions per tenant
	groups map[groupKey]*group
}

// group is a consumer group's state. Its fields are guarded by
// Manager.mu.
type group struct {
	key       groupKey
	saveMu    sync.Mutex       // serialises writes of the offsets file
	committed map[int32]int64  // durable: loaded from and saved to the offsets file
	delivered map[int32]int64  // per partition, one past the highest offset delivered by a former owner
	spans     map[int32][]span // per partition, what former owners delivered and the group did not commit
	lost      map[int32]int64  // per partition, the end of a loss not yet reported
	lostUpTo  map[int32]int64  // per partition, the end of the losses counted so far
	members   []*Subscription  // in order of joining
	owner     map[int32]*Subscription
	nparts    int
	changed   chan struct{} // closed and replaced when members or owners change
}

// span is offsets [lo, hi) of a partition that one owner delivered.
type span struct{ lo, hi int64 }

// maxSpans bounds the spans a group remembers per partition; past it the
// oldest is forgotten (its records count one delivery less).
const maxSpans = 64

// deliveries is how many of spans hold offset o.
func deliveries(spans []span, o int64) int {
	n := 0
	for _, sp := range spans {
		if sp.lo <= o && o < sp.hi {
			n++
		}
	}
	return n
}

// New returns a manager over src and loads the committed offsets of the
// groups found under cfg.Dir. dead takes the records groups give up on;
// it may be nil only when no group has a limit of deliveries.
func New(cfg Config, src Source, dead DeadLetters, log *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dead == nil && (cfg.MaxDeliveries > 0 || len(cfg.GroupMaxDeliveries) > 0) {
		return nil, errors.New("consume: a limit of deliveries needs a dead-letter writer")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, src: src, dead: dead, log: log, subs: map[string]int{}, groups: map[groupKey]*group{}}
	keys, err := scanGroups(cfg.Dir)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if _, err := m.groupLocked(k); err != nil {
			// One damaged file refuses its group, not the start.
			if errors.Is(err, ErrOffsetsDamaged) {
				log.Error("consume: a consumer group's offsets file is damaged; the group is refused until the file is restored or removed",
					"tenant", k.tenant, "stream", k.stream, "group", k.group, "err", err)
				continue
			}
			return nil, err
		}
	}
	return m, nil
}

// groupLocked returns a group's state, loading its offsets on first use.
// m.mu must be held (or m not yet shared).
func (m *Manager) groupLocked(k groupKey) (*group, error) {
	if g := m.groups[k]; g != nil {
		return g, nil
	}
	if len(m.groups) >= m.cfg.MaxGroups {
		return nil, fmt.Errorf("%w: %d groups, the limit", ErrTooManyGroups, len(m.groups))
	}
	committed, err := loadOffsets(m.cfg.groupPath(k))
	if err != nil {
		return nil, err
	}
	g := &group{key: k, committed: committed, delivered: map[int32]int64{}, spans: map[int32][]span{}, lost: map[int32]int64{}, lostUpTo: map[int32]int64{}, owner: map[int32]*Subscription{}, changed: make(chan struct{})}
	m.groups[k] = g
	return g, nil
}

// notifyLocked wakes the group's members to rebalance.
func (g *group) notifyLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// dropIfIdleLocked forgets a group with no members, no committed
// offsets and no records delivered (whose deliveries count towards
// MaxDeliveries).
func (m *Manager) dropIfIdleLocked(g *group) {
	if len(g.members) == 0 && len(g.committed) == 0 && len(g.delivered) == 0 {
		delete(m.groups, g.key)
	}
}

// Subscription reads one stream for one subscriber. Next and Close must
// be called from one goroutine.
type Subscription struct {
	m      *Manager
	tenant string
	req    Request
	max    int
	latest []Mark            // the marks when it subscribed, for Start.Latest
	since  map[int32]int64   // for Start.Time
	group  *group            // nil outside a group
	curs   map[int32]*cursor // the partitions it owns
	rr     int               // the partition to read first next time
	told   bool              // its partitions were returned since they changed
	closed bool
}

// cursor is a subscription's progress in one partition.
type cursor struct {
	first int64 // where it started
	next  int64 // the next offset to deliver
	// redeliverBelow marks records below it as redelivered.
	redeliverBelow int64
}

// Subscribe opens a subscription of tenant to req.Stream. The caller
// must Close it. Stream and group names are the caller's to validate.
func (m *Manager) Subscribe(ctx context.Context, tenant string, req Request) (*Subscription, error) {
	if req.Stream == "" {
		return nil, fmt.Errorf("%w: a stream is required", ErrInvalid)
	}
	for p, o := range req.Start.Offsets {
		if p < 0 || o < 0 {
			return nil, fmt.Errorf("%w: start offset %d:%d is negative", ErrInvalid, p, o)
		}
	}
	s := &Subscription{m: m, tenant: tenant, req: req, max: m.cfg.MaxBatchRecords, curs: map[int32]*cursor{}}
	if req.MaxBatchRecords > 0 {
		s.max = min(s.max, req.MaxBatchRecords)
	}
	s.latest = m.src.Marks(tenant, req.Stream)
	if !req.Start.Time.IsZero() {
		since, err := m.src.OffsetsSince(ctx, tenant, req.Stream, req.Start.Time)
		if err != nil {
			return nil, err
		}
		s.since = since
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subs[tenant] >= m.cfg.MaxTenantSubscriptions {
		return nil, fmt.Errorf("%w: tenant %q has %d open, the limit", ErrTooManySubscriptions, tenant, m.subs[tenant])
	}
	if req.Group == "" {
		for p := range s.latest {
			s.curs[int32(p)] = &cursor{next: s.startOf(int32(p))}
		}
	} else {
		g, err := m.groupLocked(groupKey{tenant, req.Stream, req.Group})
		if err != nil {
			return nil, err
		}
		s.group = g
		g.members = append(g.members, s)
		g.nparts = max(g.nparts, len(s.latest))
		g.notifyLocked()
		s.rebalanceLocked()
		s.told = true // the caller reports the first partitions
	}
	m.subs[tenant]++
	return s, nil
}

// startOf is where the subscription starts partition p without a
// committed offset.
func (s *Subscription) startOf(p int32) int64 {
	st := s.req.Start
	switch {
	case st.Latest:
		if int(p) < len(s.latest) {
			return s.latest[p].Next
		}
	case st.Offsets != nil:
		return st.Offsets[p]
	case !st.Time.IsZero():
		return s.since[p]
	}
	return 0
}

// Partitions returns the partitions the subscription owns, sorted.
func (s *Subscription) Partitions() []int32 {
	return slices.Sorted(maps.Keys(s.curs))
}

// rebalanceLocked gives up the partitions the group now assigns to
// another member and takes those assigned to s that no one holds. It
// reports whether the partitions of s changed. m.mu must be held.
func (s *Subscription) rebalanceLocked() bool {
	g := s.group
	i := slices.Index(g.members, s)
	if i < 0 {
		return false
	}
	mine := func(p int32) bool { return g.members[int(p)%len(g.members)] == s }
	changed := false
	for p, c := range s.curs {
		if !mine(p) {
			g.gaveUpLocked(p, c)
			delete(s.curs, p)
			delete(g.owner, p)
			changed = true
		}
	}
	for p := range int32(g.nparts) {
		if !mine(p) || g.owner[p] != nil {
			continue
		}
		start, ok := g.committed[p]
		if !ok {
			start = s.startOf(p)
		}
		g.owner[p] = s
		g.spans[p] = slices.DeleteFunc(g.spans[p], func(sp span) bool { return sp.hi <= start })
		s.curs[p] = &cursor{first: start, next: start, redeliverBelow: g.delivered[p]}
		changed = true
	}
	if changed {
		g.notifyLocked() // partitions given up may be waited for
		s.told = false
	}
	return changed
}

// gaveUpLocked records what the owner of p delivered before giving it
// up. m.mu must be held.
func (g *group) gaveUpLocked(p int32, c *cursor) {
	if c.next <= c.first {
		return // delivered nothing
	}
	g.delivered[p] = max(g.delivered[p], c.next)
	sp := append(g.spans[p], span{c.first, c.next})
	if len(sp) > maxSpans {
		sp = slices.Delete(sp, 0, len(sp)-maxSpans)
	}
	g.spans[p] = sp
}

// Next returns the next batch: the records that follow those returned
// before, in offset order per partition, once some are visible; an
// empty batch when the partitions owned changed or after
// Config.Heartbeat without records. It returns ctx's error when ctx is
// done.
func (s *Subscription) Next(ctx context.Context) (Batch, error) {
	m := s.m
	heartbeat := time.NewTimer(m.cfg.Heartbeat)
	defer heartbeat.Stop()
	poll := time.NewTimer(m.cfg.PollInterval)
	defer poll.Stop()
	for {
		var changed <-chan struct{}
		if s.group != nil {
			m.mu.Lock()
			s.rebalanceLocked()
			changed = s.group.changed
			m.mu.Unlock()
			if !s.told {
				s.told = true
				return Batch{Partitions: s.Partitions()}, nil
			}
		}
		if lost := s.takeLost(); lost != nil {
			return Batch{Partitions: s.Partitions(), Lost: lost}, nil
		}
		recs, progressed, err := s.read(ctx)
		if err != nil {
			return Batch{}, err
		}
		if len(recs) > 0 {
			return Batch{Records: recs, Partitions: s.Partitions()}, nil
		}
		if progressed {
			continue // only skipped records so far: read on
		}
		poll.Reset(m.cfg.PollInterval)
		select {
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		case <-changed:
		case <-poll.C:
		case <-heartbeat.C:
			return Batch{Partitions: s.Partitions()}, nil
		}
	}
}

// takeLost returns the losses of the partitions s owns that no member
// was told of yet, and forgets them.
func (s *Subscription) takeLost() map[int32]int64 {
	g := s.group
	if g == nil {
		return nil
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	var out map[int32]int64
	for p, next := range g.lost {
		if _, mine := s.curs[p]; mine {
			if out == nil {
				out = map[int32]int64{}
			}
			out[p] = next
			delete(g.lost, p)
		}
	}
	return out
}

// Held returns the lowest offset that a consumer group of tenant's stream
// committed for partition part, and whether any group committed it:
// records at or above it are not processed by every group yet.
// Retention keeps them (docs/consume.md).
func (m *Manager) Held(tenant, stream string, part int32) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	held, ok := int64(0), false
	for k, g := range m.groups {
		if k.tenant != tenant || k.stream != stream {
			continue
		}
		if c, committed := g.committed[part]; committed && (!ok || c < held) {
			held, ok = c, true
		}
	}
	return held, ok
}

// Lost tells the groups of tenant's stream that retention removed the
// records of partition part below next: each group whose committed
// offset is below it learns next in a Batch (Batch.Lost) and the lost
// offsets are counted (Stats.Lost). Committed offsets do not change; the
// group's next commit moves them.
func (m *Manager) Lost(tenant, stream string, part int32, next int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, g := range m.groups {
		if k.tenant != tenant || k.stream != stream {
			continue
		}
		c, ok := g.committed[part]
		if !ok || c >= next {
			continue
		}
		from := max(c, g.lostUpTo[part])
		if next > from {
			m.lost.Add(next - from)
			g.lostUpTo[part] = next
		}
		g.lost[part] = max(g.lost[part], next)
		g.notifyLocked()
	}
}

// errStop ends a Scan early.
var errStop = errors.New("stop")

// read returns the next records of the partitions s owns, up to s.max,
// and whether any cursor moved.
func (s *Subscription) read(ctx context.Context) ([]Record, bool, error) {
	m := s.m
	// The marks are read before Sync: every record below a mark's
	// Committed is visible to the Scans below, or gone for good.
	marks := m.src.Marks(s.tenant, s.req.Stream)
	parts := s.Partitions()
	var behind []int32
	var ahead int64 // records not yet read, at most
	for _, p := range parts {
		if int(p) < len(marks) && s.curs[p].next < marks[p].Next {
			behind = append(behind, p)
			ahead += marks[p].Next - s.curs[p].next
		}
	}
	if len(behind) == 0 {
		return nil, false, nil
	}
	if err := m.src.Sync(ctx); err != nil {
		return nil, false, err
	}
	out := make([]Record, 0, min(int64(s.max), ahead))
	progressed := false
	s.rr++
	for i := range behind {
		if len(out) >= s.max {
			break
		}
		p := behind[(s.rr+i)%len(behind)]
		moved, err := s.readPartition(ctx, p, marks[p], &out)
		if err != nil {
			return nil, false, err
		}
		progressed = progressed || moved
	}
	return out, progressed, nil
}

// readPartition appends the next records of partition p to out, up to
// s.max in all, and reports whether the cursor moved.
//
// Records become visible out of offset order (priority records overtake
// others; batches of different files stage independently), so a visible
// record above the cursor is delivered only once every offset before it
// is delivered or known gone: below mark.Committed, everything that was
// ever going to be visible is (the caller read the mark before Sync).
func (s *Subscription) readPartition(ctx context.Context, p int32, mark Mark, out *[]Record) (bool, error) {
	c := s.curs[p]
	start := c.next
	limit := s.max - len(*out)
	blocked := false
	var spans []span
	maxDel := 0
	if g := s.group; g != nil {
		if maxDel = s.m.cfg.maxDeliveries(g.key.group); maxDel > 0 {
			s.m.mu.Lock()
			spans = slices.Clone(g.spans[p])
			s.m.mu.Unlock()
		}
	}
	var dead []DeadRecord
	n, err := s.m.src.ScanPartition(ctx, s.tenant, s.req.Stream, p, c.next-1, limit, func(pos Position, r record.Record) error {
		if pos.Offset < c.next {
			return nil
		}
		if pos.Offset > c.next {
			switch {
			case pos.Offset <= mark.Committed:
				c.next = pos.Offset // the records between are gone
			case c.next < mark.Committed:
				c.next = mark.Committed
			}
			if pos.Offset > c.next {
				blocked = true // not yet visible
				return errStop
			}
		}
		if s.match(&r) && maxDel > 0 {
			if d := deliveries(spans, pos.Offset); d >= maxDel {
				dead = append(dead, DeadRecord{Position: pos, Record: r,
					Reason: fmt.Sprintf("consumer group %q delivered it %d times without a commit (max_deliveries %d)", s.group.key.group, d, maxDel)})
				c.next = pos.Offset + 1
				return nil
			}
		}
		if s.match(&r) {
			red := pos.Offset < c.redeliverBelow
			if red {
				s.m.redelivered.Add(1)
			}
			*out = append(*out, Record{Position: pos, Record: r, Redelivered: red})
		}
		c.next = pos.Offset + 1
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return false, fmt.Errorf("consume: read %s partition %d: %w", s.req.Stream, p, err)
	}
	if !blocked && n < limit && c.next < mark.Committed {
		c.next = mark.Committed // the end of what is visible: the rest below it is gone
	}
	if len(dead) > 0 {
		if err := s.giveUp(ctx, p, c, dead); err != nil {
			return false, err
		}
	}
	return c.next != start, nil
}

// giveUp writes records the group delivered too often to the dead-letter
// stream, then commits past those that start the uncommitted part of
// the partition (the others are committed with the records after them).
func (s *Subscription) giveUp(ctx context.Context, p int32, c *cursor, dead []DeadRecord) error {
	m, g := s.m, s.group
	if err := m.dead.DeadLetter(ctx, s.tenant, s.req.Stream, g.key.group, dead); err != nil {
		return fmt.Errorf("consume: dead-letter records of %s partition %d: %w", s.req.Stream, p, err)
	}
	m.deadLetters.Add(int64(len(dead)))
	m.mu.Lock()
	at, ok := g.committed[p]
	m.mu.Unlock()
	if !ok {
		at = c.first
	}
	past := at
	for _, d := range dead {
		if d.Offset == past {
			past++
		}
	}
	if past == at {
		return nil
	}
	if err := m.commit(s.tenant, s.req.Stream, g.key.group, map[int32]int64{p: past}, true); err != nil {
		return fmt.Errorf("consume: commit past dead-lettered records: %w", err)
	}
	return nil
}

// match applies the request's filters.
func (s *Subscription) match(r *record.Record) bool {
	if s.req.MinSeverity > 0 && r.SeverityNumber < s.req.MinSeverity {
		return false
	}
	if s.req.Service != "" {
		found := false
		for _, kv := range r.Resource {
			if kv.Key == "service.name" {
				found = kv.Value == s.req.Service
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Close ends the subscription; a group member's partitions go to the
// other members. Close is safe to call more than once.
func (s *Subscription) Close() {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	m.subs[s.tenant]--
	if m.subs[s.tenant] == 0 {
		delete(m.subs, s.tenant)
	}
	if g := s.group; g != nil {
		for p, c := range s.curs {
			g.gaveUpLocked(p, c)
			delete(g.owner, p)
		}
		g.members = slices.DeleteFunc(g.members, func(o *Subscription) bool { return o == s })
		g.notifyLocked()
		m.dropIfIdleLocked(g)
	}
	clear(s.curs)
}

// Commit stores a group's offsets durably: for each partition, the
// offset of the next record the group wants. Partitions not named keep
// their committed offsets. It returns once the offsets file is fsynced.
func (m *Manager) Commit(tenant, stream, name string, offsets map[int32]int64) error {
	return m.commit(tenant, stream, name, offsets, false)
}

// commit is Commit; with onlyForward, a partition's offset is only ever
// raised.
func (m *Manager) commit(tenant, stream, name string, offsets map[int32]int64, onlyForward bool) error {
	if stream == "" || name == "" {
		return fmt.Errorf("%w: a stream and a group are required", ErrInvalid)
	}
	for p, o := range offsets {
		if p < 0 || o < 0 {
			return fmt.Errorf("%w: offset %d:%d is negative", ErrInvalid, p, o)
		}
	}
	k := groupKey{tenant, stream, name}
	m.mu.Lock()
	g, err := m.groupLocked(k)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	m.mu.Lock()
	next := maps.Clone(g.committed)
	m.mu.Unlock()
	for p, o := range offsets {
		if cur, ok := next[p]; !onlyForward || !ok || o > cur {
			next[p] = o
		}
	}
	if err := saveOffsets(m.cfg.groupPath(k), next); err != nil {
		return err
	}
	m.mu.Lock()
	g.committed = next
	for p, o := range next {
		g.spans[p] = slices.DeleteFunc(g.spans[p], func(sp span) bool { return sp.hi <= o })
	}
	m.groups[k] = g // in case it was dropped while saving
	m.mu.Unlock()
	return nil
}

// Lag is how far a group's committed offset is behind a partition's end.
type Lag struct {
	Tenant, Stream, Group string
	Partition             int32
	Records               int64
}

// Lags returns the lag of every partition of every group that has
// committed offsets or members.
func (m *Manager) Lags() []Lag {
	type snap struct {
		k         groupKey
		committed map[int32]int64
	}
	m.mu.Lock()
	snaps := make([]snap, 0, len(m.groups))
	for k, g := range m.groups {
		snaps = append(snaps, snap{k, maps.Clone(g.committed)})
	}
	m.mu.Unlock()
	var out []Lag
	for _, sn := range snaps {
		for p, mk := range m.src.Marks(sn.k.tenant, sn.k.stream) {
			out = append(out, Lag{Tenant: sn.k.tenant, Stream: sn.k.stream, Group: sn.k.group, Partition: int32(p),
				Records: max(0, mk.Next-sn.committed[int32(p)])})
		}
	}
	return out
}

// GroupInfo describes a consumer group for operators (the UI).
type GroupInfo struct {
	Stream, Group string
	// Members is the number of members subscribed now.
	Members    int
	Partitions []PartitionInfo
}

// PartitionInfo is a group's progress in one partition of its stream.
type PartitionInfo struct {
	Partition int32
	// Committed is the group's committed offset, -1 when it has none.
	Committed int64
	// End is the offset the partition's next record gets.
	End int64
	// Lag is End minus Committed (minus 0 without a commit).
	Lag int64
	// Owned reports whether a member owns the partition now.
	Owned bool
}

// Groups returns tenant's consumer groups (those with committed offsets
// or members), sorted by stream and name.
func (m *Manager) Groups(tenant string) []GroupInfo {
	type snap struct {
		info      GroupInfo
		committed map[int32]int64
		owned     map[int32]bool
	}
	m.mu.Lock()
	var snaps []snap
	for k, g := range m.groups {
		if k.tenant != tenant {
			continue
		}
		sn := snap{info: GroupInfo{Stream: k.stream, Group: k.group, Members: len(g.members)}, committed: maps.Clone(g.committed), owned: map[int32]bool{}}
		for p := range g.owner {
			sn.owned[p] = true
		}
		snaps = append(snaps, sn)
	}
	m.mu.Unlock()
	out := make([]GroupInfo, 0, len(snaps))
	for _, sn := range snaps {
		for p, mk := range m.src.Marks(tenant, sn.info.Stream) {
			c, ok := sn.committed[int32(p)]
			pi := PartitionInfo{Partition: int32(p), Committed: -1, End: mk.Next, Lag: max(0, mk.Next-c), Owned: sn.owned[int32(p)]}
			if ok {
				pi.Committed = c
			}
			sn.info.Partitions = append(sn.info.Partitions, pi)
		}
		out = append(out, sn.info)
	}
	slices.SortFunc(out, func(a, b GroupInfo) int {
		if a.Stream != b.Stream {
			return strings.Compare(a.Stream, b.Stream)
		}
		return strings.Compare(a.Group, b.Group)
	})
	return out
}

// Stats are the manager's counters.
type Stats struct {
	// Subscriptions open now.
	Subscriptions int
	// Redelivered counts records delivered again to a group.
	Redelivered int64
	// DeadLettered counts records groups gave up on (MaxDeliveries) and
	// wrote to the dead-letter stream.
	DeadLettered int64
	// Lost counts offsets retention removed before groups committed them
	// (Lost), once per group.
	Lost int64
}

// Stats returns the counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	n := 0
	for _, c := range m.subs {
		n += c
	}
	m.mu.Unlock()
	return Stats{Subscriptions: n, Redelivered: m.redelivered.Load(), DeadLettered: m.deadLetters.Load(), Lost: m.lost.Load()}
}
