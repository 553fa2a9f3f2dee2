package query

import (
	"context"
	"fmt"
	"time"
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
	defer c.enter()()
	q := fmt.Sprintf(`SELECT _partition, coalesce(min(_offset) FILTER (WHERE epoch_ns("timestamp") >= %d), max(_offset) + 1)
FROM %s GROUP BY _partition`, t.UnixNano(), quoteIdent(stream))
	rows, err := c.db.QueryContext(ctx, q)
	if err != nil {
		return nil, e.classify(ctx, err)
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var (
			part int32
			off  int64
		)
		if err := rows.Scan(&part, &off); err != nil {
			return nil, fmt.Errorf("query: offsets of %s: %w", stream, err)
		}
		out[part] = off
	}
	if err := rows.Err(); err != nil {
		return nil, e.classify(ctx, err)
	}
	return out, nil
}
