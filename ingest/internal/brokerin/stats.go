package brokerin

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// Stats are a source's counters since it started.
type Stats struct {
	Messages     int64 // messages received, including redeliveries
	Records      int64 // records the pipeline took (stored or dead-lettered)
	DeadLettered int64 // of Records, those in weir's dead-letter stream
	Retries      int64 // submits retried after backpressure or unavailability
	Errors       int64 // broker errors (fetch, commit, ack, connection)
	Dropped      int64 // messages given up on: refused for good by the pipeline
	Rejected     int64 // messages handed back to the broker as poison (its dead-letter exchange or queue)
	Lag          int64 // messages the broker holds that the source has not read, where the broker says; -1 = unknown
	Extensions   int64 // visibility timeouts extended for slow batches (SQS)
}

// Counters are a source's atomic counters.
type Counters struct {
	Messages, Records, DeadLettered, Retries, Errors, Dropped, Rejected, Lag, Extensions atomic.Int64
	lastLog                                                                              atomic.Int64
}

// Stats returns the counters.
func (c *Counters) Stats() Stats {
	return Stats{
		Messages: c.Messages.Load(), Records: c.Records.Load(), DeadLettered: c.DeadLettered.Load(),
		Retries: c.Retries.Load(), Errors: c.Errors.Load(), Dropped: c.Dropped.Load(),
		Rejected: c.Rejected.Load(), Lag: c.Lag.Load(), Extensions: c.Extensions.Load(),
	}
}

// Warn logs at most once a second, so a broken broker or a flood of bad
// messages cannot flood the log; the counters keep the full story.
func (c *Counters) Warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := c.lastLog.Load()
	if now-last < int64(time.Second) || !c.lastLog.CompareAndSwap(last, now) {
		return
	}
	log.Warn(msg, args...)
}
