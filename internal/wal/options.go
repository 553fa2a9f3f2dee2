package wal

import (
	"errors"
	"fmt"
	"time"
)

// SyncPolicy says when the log fsyncs.
type SyncPolicy int

const (
	// SyncEvery makes Sync(pos) return after an fsync that covers pos.
	// Concurrent Syncs share one fsync (group commit); an Append that no
	// one Syncs is never fsynced until Close or the next segment roll.
	SyncEvery SyncPolicy = iota
	// SyncInterval makes a background goroutine fsync every
	// Options.Interval if anything was appended since the last fsync;
	// Sync(pos) waits for the first fsync that covers pos and never
	// triggers one itself.
	SyncInterval
)

// String returns "every" or "interval".
func (p SyncPolicy) String() string {
	switch p {
	case SyncEvery:
		return "every"
	case SyncInterval:
		return "interval"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// Bounds on Options fields.
const (
	maxSegmentBytes = 1 << 40
	maxRecordBytes  = 1 << 30
)

// Options is what a user sets for a log. Start from DefaultOptions; the
// zero Options is not valid.
type Options struct {
	// SegmentBytes is the size at which the log rolls to a new segment:
	// the first Append after the current segment reaches it starts a new
	// one, so a segment exceeds it by at most one record.
	SegmentBytes int64
	// Policy says when the log fsyncs; see SyncPolicy.
	Policy SyncPolicy
	// Interval is the fsync period under SyncInterval; ignored otherwise.
	Interval time.Duration
	// MaxRecordBytes bounds one payload. A larger Append fails with
	// ErrTooLarge; Open fails if the log holds a larger record (one
	// written with a larger bound), because Replay could not deliver it.
	MaxRecordBytes int
	// SkipDamage makes Open skip damage it would otherwise refuse: a bad
	// record or segment header anywhere but a torn tail, and a missing
	// segment. Each damaged span (from the first bad byte to the next
	// valid record, or to the end of a segment that is not the last) is
	// logged, listed by Log.Damage and reported by Scan where it lies in
	// the log; Replay passes over it. Records before and after a damaged
	// span are kept. A segment of another format version is refused
	// either way.
	SkipDamage bool
}

// DefaultOptions returns 64 MiB segments, SyncEvery, a 10ms interval (for
// when the policy is changed to SyncInterval) and 64 MiB records at most.
func DefaultOptions() Options {
	return Options{
		SegmentBytes:   64 << 20,
		Policy:         SyncEvery,
		Interval:       10 * time.Millisecond,
		MaxRecordBytes: 64 << 20,
	}
}

// Validate reports every field that is out of range.
func (o Options) Validate() error {
	var errs []error
	if o.SegmentBytes <= headerSize || o.SegmentBytes > maxSegmentBytes {
		errs = append(errs, fmt.Errorf("segment bytes %d: want %d to %d", o.SegmentBytes, headerSize+1, int64(maxSegmentBytes)))
	}
	switch o.Policy {
	case SyncEvery:
	case SyncInterval:
		if o.Interval <= 0 {
			errs = append(errs, fmt.Errorf("interval %s: want more than 0 with policy %s", o.Interval, o.Policy))
		}
	default:
		errs = append(errs, fmt.Errorf("policy %d: want SyncEvery or SyncInterval", int(o.Policy)))
	}
	if o.MaxRecordBytes < 1 || o.MaxRecordBytes > maxRecordBytes {
		errs = append(errs, fmt.Errorf("max record bytes %d: want 1 to %d", o.MaxRecordBytes, maxRecordBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wal options: %w", err)
	}
	return nil
}
