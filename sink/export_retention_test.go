package sink

import (
	"context"
	"time"
)

// RetainAt is Retain as if the clock read now.
func (l *Lake) RetainAt(ctx context.Context, now time.Time) ([]FileInfo, error) {
	return l.retain(ctx, now)
}

// CompactAt is Compact as if the clock read now.
func (l *Lake) CompactAt(ctx context.Context, now time.Time) (int, error) {
	return l.compact(ctx, now)
}

// CompactionStatsAt is CompactionStats with the backlog at now.
func (l *Lake) CompactionStatsAt(now time.Time) CompactionStats { return l.compactionStats(now) }
