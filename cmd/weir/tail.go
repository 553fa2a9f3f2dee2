package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"

	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/tail"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// tailConsumer is a partition's consumer: the Batcher, then the live tail.
// It publishes each batch after the Batcher has normalised it.
type tailConsumer struct {
	*arrowbatch.Batcher // forwards Tick, Close, Oldest (buffer.Committer) and Flush (buffer.Flusher)
	hub                 *tail.Hub
}

var (
	_ buffer.Consumer  = tailConsumer{}
	_ buffer.Committer = tailConsumer{}
	_ buffer.Flusher   = tailConsumer{}
)

// Consume hands b to the Batcher and then publishes it to the hub.
// Batcher.Consume normalises the records in place and copies their
// values into Arrow builders; it keeps no reference to b, its records or
// their attribute slices once it returns, and nothing else touches b
// after Consume, so the hub may share the records' strings and slices.
// A batch the Batcher failed on is not published: tail is best effort.
//
// A columnar batch stays columnar through the Batcher while nobody tails;
// when someone does, it becomes records first, so that the hub can share
// them.
func (c tailConsumer) Consume(ctx context.Context, b *record.Batch) error {
	if b.Cols != nil && c.hub.Subscribed() {
		b.Materialize()
	}
	if err := c.Batcher.Consume(ctx, b); err != nil {
		return err
	}
	c.hub.Publish(b)
	return nil
}

// tailService serves weir.v1.TailService from a hub.
type tailService struct {
	hub *tail.Hub
	// stopping is done when the server begins to shut down; open tails
	// end then rather than holding up the graceful shutdown.
	stopping context.Context
}

func (s tailService) Tail(ctx context.Context, req *connect.Request[weirv1.TailRequest], stream *connect.ServerStream[weirv1.TailResponse]) error {
	m := req.Msg
	if n := m.GetMinSeverityNumber(); n < 0 || n > 24 {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("min_severity_number %d out of range 0..24", n))
	}
	tenant := auth.TenantOf(ctx)
	sub, err := s.hub.Subscribe(tail.Filter{
		Tenant:      tenant,
		Streams:     m.GetStreams(),
		Service:     m.GetService(),
		MinSeverity: m.GetMinSeverityNumber(),
		Contains:    m.GetContains(),
	})
	if errors.Is(err, tail.ErrTooManySubscribers) {
		return connect.NewError(connect.CodeResourceExhausted, err)
	} else if err != nil {
		return err
	}
	defer sub.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()

	// A viewer that stops reading blocks Send once the connection's
	// flow-control window is full; the write deadline ends it then, as
	// the hub closes a subscription that does not read for as long.
	idle := s.hub.Config().IdleTimeout
	rc := responseControllerFrom(ctx)
	send := func(resp *weirv1.TailResponse) error {
		if rc != nil {
			_ = rc.SetWriteDeadline(time.Now().Add(idle)) // only ErrNotSupported, for writers without deadlines
			defer rc.SetWriteDeadline(time.Time{})
		}
		return stream.Send(resp)
	}
	if err := send(&weirv1.TailResponse{}); err != nil {
		return err
	}
	for {
		items, missed, err := sub.Next(ctx)
		if err != nil {
			if s.stopping.Err() != nil {
				return connect.NewError(connect.CodeUnavailable, errors.New("server shutting down"))
			}
			if errors.Is(err, tail.ErrIdle) {
				return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("viewer did not read for %s: %w", idle, err))
			}
			return err
		}
		resp := &weirv1.TailResponse{Missed: missed, Records: make([]*weirv1.TailRecord, len(items))}
		for i := range items {
			it := &items[i]
			resp.Records[i] = &weirv1.TailRecord{
				Stream:    it.Stream,
				Partition: it.Partition,
				Offset:    it.Offset,
				Record:    recordToProto(&it.Record),
			}
		}
		if err := send(resp); err != nil {
			return err
		}
	}
}

// recordToProto converts a normalised record back to its wire form;
// attribute values become strings.
func recordToProto(r *record.Record) *weirv1.LogRecord {
	out := &weirv1.LogRecord{
		TimeUnixNano:         uint64(r.Timestamp),
		ObservedTimeUnixNano: uint64(r.ObservedTimestamp),
		SeverityNumber:       weirv1.SeverityNumber(r.SeverityNumber),
		SeverityText:         r.SeverityText,
		Body:                 r.Body,
		Attributes:           kvsToProto(r.Attributes),
		Resource:             kvsToProto(r.Resource),
		Flags:                r.Flags,
	}
	if r.TraceID != ([16]byte{}) {
		out.TraceId = r.TraceID[:]
	}
	if r.SpanID != ([8]byte{}) {
		out.SpanId = r.SpanID[:]
	}
	return out
}

func kvsToProto(kvs []record.KV) []*weirv1.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*weirv1.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = &weirv1.KeyValue{Key: kv.Key, Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: kv.Value}}}
	}
	return out
}
