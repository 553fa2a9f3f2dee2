package query

import (
	"context"
	"fmt"
	"time"

	"github.com/weirlabs/weir/sink"
)

// OffsetsSince returns, for each partition of a tenant's stream ("" is the
// default tenant) that has visible records, the offset to read from to
// get its records whose timestamp is at or after t: the lowest offset of
// such a record, or one past the partition's highest visible offset when
// it has none. Partitions without visible records are absent. Like Scan
// it is for weir's own tools and takes a query slot.
func (e *Engine) OffsetsSince(ctx context.Context, tenant, stream string, t time.Time) (map[int32]int64, error) {
	c, err := e.catalog(tenant)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	known := c.streams[stream]
	c.mu.Unlock()
	if !known {
		return map[int32]int64{}, nil
	}
	release, err := e.acquire(ctx, c.tenant, false)
	if err != nil {
		return nil, err
	}
	defer release()
	// Evicted files of hours (dates, for day files) that may hold
	// records at or after t are fetched; those of earlier ones count by
	// their offsets.
	early := func(f sink.FileInfo) bool { return !f.Partition.End().After(t) }
	exit, err := e.prepareFilesExcept(ctx, c, func() []tableRef { return []tableRef{{name: stream, bound: tsBound{lo: t, hasLo: true}}} }, early)
	if err != nil {
		return nil, err
	}
	defer exit()
	ends := map[int32]int64{} // one past the last offset of early evicted files
	c.mu.Lock()
	for _, f := range c.evicted[stream] {
		if early(f) && f.MaxOffset >= 0 {
			ends[f.Partition.Part] = max(ends[f.Partition.Part], f.MaxOffset+1)
		}
	}
	c.mu.Unlock()
	q := fmt.Sprintf(`SELECT _partition, coalesce(min(_offset) FILTER (WHERE epoch_ns("timestamp") >= %d), -1), max(_offset) + 1
FROM %s GROUP BY _partition`, t.UnixNano(), quoteIdent(stream))
	rows, err := c.db.QueryContext(ctx, q)
	if err != nil {
		return nil, e.classify(ctx, err)
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var (
			part     int32
			off, end int64
		)
		if err := rows.Scan(&part, &off, &end); err != nil {
			return nil, fmt.Errorf("query: offsets of %s: %w", stream, err)
		}
		if off < 0 {
			off = max(end, ends[part])
		}
		out[part] = off
		delete(ends, part)
	}
	if err := rows.Err(); err != nil {
		return nil, e.classify(ctx, err)
	}
	for part, end := range ends {
		out[part] = end
	}
	return out, nil
}
