package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/consume"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/ui"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/query"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform"
)

// consumeConfig is the consume section with the groups' directory under
// the data directory.
func (c *config) consumeConfig() consume.Config {
	cc := consume.DefaultConfig()
	cc.Dir = filepath.Join(c.Data, "consumers")
	cc.MaxBatchRecords, cc.MaxTenantSubscriptions, cc.PollInterval, cc.Heartbeat, cc.MaxGroups =
		c.Consume.MaxBatchRecords, c.Consume.MaxTenantSubscriptions, c.Consume.PollInterval, c.Consume.Heartbeat, c.Consume.MaxGroups
	cc.MaxDeliveries = c.Consume.MaxDeliveries
	for name, g := range c.Consume.Groups {
		if g.MaxDeliveries != nil {
			if cc.GroupMaxDeliveries == nil {
				cc.GroupMaxDeliveries = map[string]int{}
			}
			cc.GroupMaxDeliveries[name] = *g.MaxDeliveries
		}
	}
	return cc
}

// consumeSource is what subscriptions read: the query engine's view of a
// stream, and the buffer's marks (the lake's for a stream the buffer
// has not opened since the start: everything of it is published then).
//
// Partitions beyond the buffer's (records written when the server ran
// with more partitions) are found in the lake's files at start-up; all
// their records are published, so their marks are the lake's.
type consumeSource struct {
	engine     *query.Engine
	buf        *buffer.Buffer
	lake       *sink.Lake
	partitions int
	// older holds, per stream with files of partitions beyond the
	// buffer's, one past the highest such partition.
	older map[streamID]int
}

type streamID struct{ tenant, stream string }

func newConsumeSource(engine *query.Engine, buf *buffer.Buffer, lake *sink.Lake, partitions int) consumeSource {
	s := consumeSource{engine: engine, buf: buf, lake: lake, partitions: partitions, older: map[streamID]int{}}
	for _, f := range lake.Files() {
		if p := f.Partition; int(p.Part) >= partitions {
			k := streamID{p.Tenant, p.Stream}
			s.older[k] = max(s.older[k], int(p.Part)+1)
		}
	}
	return s
}

func (s consumeSource) Marks(tenant, stream string) []consume.Mark {
	var out []consume.Mark
	if ms := s.buf.Marks(tenant, stream); ms != nil {
		out = make([]consume.Mark, len(ms))
		for i, m := range ms {
			out[i] = consume.Mark{Committed: m.Committed, Next: m.Next}
		}
	}
	for i := len(out); i < max(s.partitions, s.older[streamID{tenant, stream}]); i++ {
		o := s.lake.LastOffset(tenant, stream, int32(i))
		out = append(out, consume.Mark{Committed: o, Next: o})
	}
	return out
}

func (s consumeSource) Sync(ctx context.Context) error { return s.engine.Sync(ctx) }

func (s consumeSource) ScanPartition(ctx context.Context, tenant, stream string, part int32, after int64, limit int, fn func(consume.Position, record.Record) error) (int, error) {
	return s.engine.ScanPartition(ctx, tenant, stream, part, after, limit, func(p query.Position, r record.Record) error {
		return fn(consume.Position(p), r)
	})
}

func (s consumeSource) OffsetsSince(ctx context.Context, tenant, stream string, t time.Time) (map[int32]int64, error) {
	return s.engine.OffsetsSince(ctx, tenant, stream, t)
}

// consumeDeadLetters writes the records consumer groups give up on
// (consume.max_deliveries) to the tenant's dead-letter stream through
// the buffer, durably, like the records transforms reject: the original
// record with the weir.dead_letter.* attributes, stage "consume", the
// reason as the error.
type consumeDeadLetters struct {
	buf  *buffer.Buffer
	pipe *transform.Pipeline
}

func (d consumeDeadLetters) DeadLetter(ctx context.Context, tenant, stream, group string, recs []consume.DeadRecord) error {
	byPart := map[int32][]consume.DeadRecord{}
	for _, r := range recs {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	for part, rs := range byPart {
		out := make([]record.Record, len(rs))
		last := int64(0)
		for i := range rs {
			out[i] = d.pipe.DeadLetter(&rs[i].Record, stream, "consume", fmt.Sprintf("partition %d offset %d: %s", part, rs[i].Offset, rs[i].Reason))
			last = max(last, rs[i].Offset)
		}
		b := record.NewBatch(tenant, logschema.DeadLetterStream, out)
		// Giving the same records up again (a member died before the
		// commit past them) is recognised as a retry.
		b.ProducerID = fmt.Sprintf("consume/%s/%s/%d", stream, group, part)
		b.Sequence, b.SequenceGaps = uint64(last)+1, true
		if err := d.buf.Push(ctx, b, buffer.Durable); err != nil {
			return err
		}
	}
	return nil
}

// retentionHold keeps expired lake files that hold records a consumer
// group has not committed, for up to consume.max_retention_hold past
// their expiry; after that retention removes them and the groups are
// told what they lost (docs/consume.md, "Retention").
type retentionHold struct {
	ret     sink.Retention // the periods
	maxHold time.Duration
	m       atomic.Pointer[consume.Manager]
	held    atomic.Int64 // files kept, per retention run that looked at them
	forced  atomic.Int64 // files removed although a group had not committed them
}

// keep is sink.Retention.Hold. Until the groups are known (set), it keeps
// every file within the hold limit.
func (h *retentionHold) keep(f sink.FileInfo, now time.Time) bool {
	p := f.Partition
	expiredAt := p.End().Add(h.ret.Period(p.Tenant, p.Stream)) // the end of the file's hour (date, for a day file)
	within := now.Before(expiredAt.Add(h.maxHold))
	m := h.m.Load()
	if m == nil {
		return within
	}
	held, ok := m.Held(p.Tenant, p.Stream, p.Part)
	if !ok || f.MaxOffset < held {
		return false // every group committed past it
	}
	if within {
		h.held.Add(1)
		return true
	}
	h.forced.Add(1)
	m.Lost(p.Tenant, p.Stream, p.Part, f.MaxOffset+1)
	return false
}

// set makes the groups of m hold retention.
func (h *retentionHold) set(m *consume.Manager) { h.m.Store(m) }

// subscribeService serves weir.v1.SubscribeService.
type subscribeService struct {
	m *consume.Manager
	// stopping is done when the server begins to shut down; open
	// subscriptions end then rather than holding up the graceful
	// shutdown.
	stopping context.Context
	// sendTimeout bounds one send: a subscriber that reads nothing for
	// that long is gone (its group partitions go to other members).
	sendTimeout time.Duration
}

func (s subscribeService) Subscribe(ctx context.Context, req *connect.Request[weirv1.SubscribeRequest], stream *connect.ServerStream[weirv1.SubscribeResponse]) error {
	m := req.Msg
	r, err := subscribeRequest(m)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	sub, err := s.m.Subscribe(ctx, auth.TenantOf(ctx), r)
	if err != nil {
		return s.rpcErr(err)
	}
	defer sub.Close()

	rc := responseControllerFrom(ctx)
	send := func(resp *weirv1.SubscribeResponse) error {
		if rc != nil {
			_ = rc.SetWriteDeadline(time.Now().Add(s.sendTimeout)) // only ErrNotSupported, for writers without deadlines
			defer rc.SetWriteDeadline(time.Time{})
		}
		return stream.Send(resp)
	}
	if err := send(&weirv1.SubscribeResponse{Partitions: sub.Partitions()}); err != nil {
		return err
	}
	for {
		b, err := sub.Next(ctx)
		if err != nil {
			return s.rpcErr(err)
		}
		resp := &weirv1.SubscribeResponse{Partitions: b.Partitions, Records: make([]*weirv1.ConsumedRecord, len(b.Records))}
		for _, p := range slices.Sorted(maps.Keys(b.Lost)) {
			resp.Lost = append(resp.Lost, &weirv1.PartitionOffset{Partition: p, Offset: b.Lost[p]})
		}
		for i := range b.Records {
			cr := &b.Records[i]
			resp.Records[i] = &weirv1.ConsumedRecord{
				Partition:   cr.Partition,
				Offset:      cr.Offset,
				Record:      recordToProto(&cr.Record),
				Redelivered: cr.Redelivered,
			}
		}
		if err := send(resp); err != nil {
			return err
		}
	}
}

func (s subscribeService) Commit(ctx context.Context, req *connect.Request[weirv1.CommitRequest]) (*connect.Response[weirv1.CommitResponse], error) {
	m := req.Msg
	if err := validateConsumer(m.GetStream(), m.GetGroup()); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if m.GetGroup() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("a group is required"))
	}
	offsets := make(map[int32]int64, len(m.GetOffsets()))
	for _, po := range m.GetOffsets() {
		offsets[po.GetPartition()] = po.GetOffset()
	}
	if err := s.m.Commit(auth.TenantOf(ctx), m.GetStream(), m.GetGroup(), offsets); err != nil {
		return nil, s.rpcErr(err)
	}
	return connect.NewResponse(&weirv1.CommitResponse{}), nil
}

// rpcErr maps the manager's errors to Connect codes.
func (s subscribeService) rpcErr(err error) error {
	switch {
	case s.stopping.Err() != nil:
		return connect.NewError(connect.CodeUnavailable, errors.New("server shutting down"))
	case errors.Is(err, consume.ErrInvalid):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, consume.ErrTooManySubscriptions), errors.Is(err, consume.ErrTooManyGroups), errors.Is(err, query.ErrBusy):
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, consume.ErrOffsetsDamaged):
		// The file's path and parse error are the server's log's, not
		// the client's.
		return connect.NewError(connect.CodeDataLoss, fmt.Errorf("%w; an operator must restore or remove it", consume.ErrOffsetsDamaged))
	}
	return err
}

// validateConsumer checks a stream's and a group's names; a group is
// named like a stream (it names a file). The dead-letter stream can be
// consumed too.
func validateConsumer(stream, group string) error {
	if stream != logschema.DeadLetterStream {
		if err := record.ValidateStream(stream); err != nil {
			return fmt.Errorf("stream: %w", err)
		}
	}
	if group != "" {
		if err := record.ValidateStream(group); err != nil {
			return fmt.Errorf("group: %w", err)
		}
	}
	return nil
}

// subscribeRequest converts a SubscribeRequest.
func subscribeRequest(m *weirv1.SubscribeRequest) (consume.Request, error) {
	if err := validateConsumer(m.GetStream(), m.GetGroup()); err != nil {
		return consume.Request{}, err
	}
	if n := m.GetMinSeverityNumber(); n < 0 || n > 24 {
		return consume.Request{}, fmt.Errorf("min_severity_number %d out of range 0..24", n)
	}
	r := consume.Request{
		Stream:          m.GetStream(),
		Group:           m.GetGroup(),
		MinSeverity:     m.GetMinSeverityNumber(),
		Service:         m.GetService(),
		MaxBatchRecords: int(min(m.GetMaxBatchRecords(), 1<<30)),
	}
	switch st := m.GetStart().(type) {
	case *weirv1.SubscribeRequest_Edge:
		r.Start.Latest = st.Edge == weirv1.StartEdge_START_EDGE_LATEST
	case *weirv1.SubscribeRequest_Offsets:
		r.Start.Offsets = map[int32]int64{}
		for _, po := range st.Offsets.GetOffsets() {
			r.Start.Offsets[po.GetPartition()] = po.GetOffset()
		}
	case *weirv1.SubscribeRequest_TimeUnixNano:
		r.Start.Time = time.Unix(0, st.TimeUnixNano)
	}
	return r, nil
}

// groupRows lists tenant's consumer groups for the UI (nil m: none yet).
func groupRows(m *consume.Manager, tenant string) []ui.ConsumerGroup {
	if m == nil {
		return nil
	}
	var out []ui.ConsumerGroup
	for _, g := range m.Groups(tenant) {
		cg := ui.ConsumerGroup{Stream: g.Stream, Group: g.Group, Members: g.Members, Partitions: make([]ui.ConsumerPartition, len(g.Partitions))}
		for i, p := range g.Partitions {
			cg.Partitions[i] = ui.ConsumerPartition(p)
		}
		out = append(out, cg)
	}
	return out
}

// consumeCollector exports the subscriptions' and groups' metrics.
type consumeCollector struct {
	m    *consume.Manager
	hold *retentionHold
}

var (
	descGroupLag      = prometheus.NewDesc("weir_consumer_group_lag_records", "Records of a stream partition pushed but not committed by a consumer group.", []string{"tenant", "stream", "group", "partition"}, nil)
	descSubscriptions = prometheus.NewDesc("weir_consumer_subscriptions", "Open subscriptions (SubscribeService).", nil, nil)
	descRedelivered   = prometheus.NewDesc("weir_consumer_redelivered_records_total", "Records delivered again to a consumer group after a member gave up their partition without committing them.", nil, nil)
	descDeadLettered  = prometheus.NewDesc("weir_consumer_dead_lettered_records_total", "Records consumer groups delivered max_deliveries times without a commit and wrote to the dead-letter stream instead.", nil, nil)
	descLost          = prometheus.NewDesc("weir_consumer_lost_records_total", "Offsets retention removed before consumer groups committed them (past consume.max_retention_hold), counted once per group.", nil, nil)
	descHeldFiles     = prometheus.NewDesc("weir_retention_held_files_total", "Expired lake files retention kept because a consumer group had not committed their records, counted per retention run.", nil, nil)
	descForcedFiles   = prometheus.NewDesc("weir_retention_forced_files_total", "Expired lake files retention removed although a consumer group had not committed their records (past consume.max_retention_hold).", nil, nil)
)

func (c consumeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descGroupLag
	ch <- descSubscriptions
	ch <- descRedelivered
	ch <- descDeadLettered
	ch <- descLost
	ch <- descHeldFiles
	ch <- descForcedFiles
}

func (c consumeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.m.Lags() {
		ch <- prometheus.MustNewConstMetric(descGroupLag, prometheus.GaugeValue, float64(l.Records), l.Tenant, l.Stream, l.Group, fmt.Sprint(l.Partition))
	}
	s := c.m.Stats()
	ch <- prometheus.MustNewConstMetric(descSubscriptions, prometheus.GaugeValue, float64(s.Subscriptions))
	ch <- prometheus.MustNewConstMetric(descRedelivered, prometheus.CounterValue, float64(s.Redelivered))
	ch <- prometheus.MustNewConstMetric(descDeadLettered, prometheus.CounterValue, float64(s.DeadLettered))
	ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(s.Lost))
	ch <- prometheus.MustNewConstMetric(descHeldFiles, prometheus.CounterValue, float64(c.hold.held.Load()))
	ch <- prometheus.MustNewConstMetric(descForcedFiles, prometheus.CounterValue, float64(c.hold.forced.Load()))
}
