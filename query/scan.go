package query

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/weirlabs/weir/internal/record"
)

// Position is a record's place in its stream: partition and offset.
type Position struct {
	Partition int32
	Offset    int64
}

// Less orders positions by partition, then offset.
func (p Position) Less(o Position) bool {
	return p.Partition < o.Partition || p.Partition == o.Partition && p.Offset < o.Offset
}

// Scan reads up to limit records of a tenant's stream ("" is the default
// tenant) that come after from, in position order, and calls fn with each; it returns
// how many it read (fewer than limit at the end of what is visible).
// It reads what queries see: published and staged records. It is for
// operators' tools (dead-letter replay), not for user SQL, and takes a
// query slot like any query.
func (e *Engine) Scan(ctx context.Context, tenant, stream string, from Position, limit int, fn func(Position, record.Record) error) (int, error) {
	return e.scan(ctx, tenant, stream, fmt.Sprintf("(_partition, _offset) > (%d, %d)", from.Partition, from.Offset), limit, fn)
}

// ScanPartition is Scan within one partition: it reads up to limit
// records of partition part with offsets above after, in offset order,
// and calls fn with each; it returns how many it read. It reads the
// published files and staged segments of the stream directly with a
// Parquet reader, not through DuckDB (partscan.go): row groups are
// chosen by their _partition and _offset statistics, and a row group
// read once stays decoded in a bounded cache for the scans that follow.
// It sees what queries see after Sync (and possibly more), each record
// once. The records passed to fn share memory with that cache: fn must
// not modify their slices. Like Scan it takes a query slot.
func (e *Engine) ScanPartition(ctx context.Context, tenant, stream string, part int32, after int64, limit int, fn func(Position, record.Record) error) (int, error) {
	c, err := e.catalog(tenant)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	known := c.streams[stream]
	c.mu.Unlock()
	if !known || limit <= 0 {
		return 0, nil
	}
	release, err := e.acquire(ctx, c.tenant, false)
	if err != nil {
		return 0, err
	}
	defer release()
	return e.scanPartition(ctx, c, stream, part, after, limit, fn)
}

// scan reads up to limit records of a stream that match where, in
// position order.
func (e *Engine) scan(ctx context.Context, tenant, stream, where string, limit int, fn func(Position, record.Record) error) (int, error) {
	c, err := e.catalog(tenant)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	known := c.streams[stream]
	c.mu.Unlock()
	if !known {
		return 0, nil
	}
	release, err := e.acquire(ctx, c.tenant, false)
	if err != nil {
		return 0, err
	}
	defer release()
	exit, err := e.prepareFiles(ctx, c, func() []tableRef { return []tableRef{{name: stream}} })
	if err != nil {
		return 0, err
	}
	defer exit()
	q := fmt.Sprintf(`SELECT _partition, _offset, epoch_ns("timestamp"), epoch_ns(observed_timestamp), severity_number,
severity_text, body, attributes, resource, trace_id, span_id, flags
FROM %s WHERE %s ORDER BY _partition, _offset LIMIT %d`,
		quoteIdent(stream), where, limit)
	rows, err := c.db.QueryContext(ctx, q)
	if err != nil {
		return 0, e.classify(ctx, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			pos          Position
			ts, obs      sql.NullInt64
			sev          sql.NullInt32
			sevText      sql.NullString
			body         sql.NullString
			attrs, res   duckdb.Map
			trace, span  sql.NullString
			flags        sql.NullInt64
			r            record.Record
			decodeFailed error
		)
		if err := rows.Scan(&pos.Partition, &pos.Offset, &ts, &obs, &sev, &sevText, &body, &attrs, &res, &trace, &span, &flags); err != nil {
			return n, fmt.Errorf("query: scan %s: %w", stream, err)
		}
		r.Timestamp, r.ObservedTimestamp = ts.Int64, obs.Int64
		r.SeverityNumber, r.SeverityText, r.Body = sev.Int32, sevText.String, body.String
		r.Attributes, r.Resource = kvsOf(attrs), kvsOf(res)
		r.Flags = uint32(flags.Int64)
		if trace.Valid {
			_, decodeFailed = hex.Decode(r.TraceID[:], []byte(trace.String))
		}
		if span.Valid && decodeFailed == nil {
			_, decodeFailed = hex.Decode(r.SpanID[:], []byte(span.String))
		}
		if decodeFailed != nil {
			return n, fmt.Errorf("query: scan %s at %d/%d: %w", stream, pos.Partition, pos.Offset, decodeFailed)
		}
		if err := fn(pos, r); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, e.classify(ctx, err)
	}
	return n, nil
}

// kvsOf converts a DuckDB MAP(VARCHAR, VARCHAR) to attributes sorted by
// key (the map does not keep the order they were pushed in).
func kvsOf(m duckdb.Map) []record.KV {
	if len(m) == 0 {
		return nil
	}
	kvs := make([]record.KV, 0, len(m))
	for k, v := range m {
		ks, _ := k.(string)
		vs, _ := v.(string)
		kvs = append(kvs, record.KV{Key: ks, Value: vs})
	}
	slices.SortFunc(kvs, func(a, b record.KV) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return kvs
}
