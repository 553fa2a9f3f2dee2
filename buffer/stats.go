package buffer

// Stats is a snapshot of the buffer's state and counters.
type Stats struct {
	// QueuedRecords and QueuedBytes are reserved or queued and not yet
	// taken by a consumer. They never exceed Config.MaxRecords and
	// Config.MaxBytes.
	QueuedRecords int64
	QueuedBytes   int64
	// Streams is the number of streams created so far.
	Streams int

	// Cumulative counters.
	PushedBatches int64 // Push calls that returned nil
	PushedRecords int64 // records in those batches
	RejectedFull  int64 // Push calls that returned an ErrFull error
	ConsumeErrors int64 // Consumer.Consume calls that returned an error
	TickErrors    int64 // Consumer.Tick calls that returned an error
	CloseErrors   int64 // Consumer.Close calls that returned an error

	// Uncommitted is the number of records pushed but not yet in a
	// published file, over all partitions: what COMMITTED acks wait for
	// and what the write-ahead logs must keep.
	Uncommitted int64
	// Replaying is the number of batches recovered from the write-ahead
	// logs that consumers have not taken yet; recovery is delivered when
	// it is zero.
	Replaying int64

	// Damage that recovery (in New) found in the write-ahead logs and
	// skipped, each also logged at error level with its segment and byte
	// offset. A damaged segment is kept until its records are published,
	// so a restart before then finds and counts the same damage again.
	WALDamage int64 // damaged spans skipped (a bad record, several bad records in a row, a missing segment)
	// WALLostRecords counts the unpublished records known to be in
	// damaged spans and not salvaged. Damage with no intact record on
	// one side has an unknown number of records and adds none.
	WALLostRecords int64
	// WALSalvagedRecords counts records decoded from damaged log records
	// and written to their tenant's _dead_letter stream (stage "wal").
	WALSalvagedRecords int64
	// RecoveryFailures counts streams whose logs could not be recovered
	// at all (for example a segment of another format version): they are
	// left untouched on disk, logged at error level, and a push to such
	// a stream fails with ErrStreamUnavailable (its cause in the chain)
	// until the log is repaired.
	RecoveryFailures int64
	// ProducerTablesDamaged counts streams whose saved table of
	// idempotent producers did not parse: set aside beside it
	// (producers.json.damaged), logged at error level, and the stream went
	// on with the producers its log shows.
	ProducerTablesDamaged int64
}

// Stats returns a snapshot of the buffer's state and counters. It is safe
// to call concurrently with everything else.
func (b *Buffer) Stats() Stats {
	var uncommitted, replaying int64
	b.streams.Range(func(_, v any) bool {
		for _, p := range v.(*stream).parts {
			replaying += p.replaying.Load()
			p.mu.Lock()
			next := p.next
			p.mu.Unlock()
			uncommitted += max(0, next-p.committed.Load())
		}
		return true
	})
	return Stats{
		Uncommitted:   uncommitted,
		Replaying:     replaying,
		QueuedRecords: b.hot.records.Load(),
		QueuedBytes:   b.hot.bytes.Load(),
		Streams:       int(b.nstreams.Load()),
		PushedBatches: b.hot.pushedBatches.Load(),
		PushedRecords: b.hot.pushedRecords.Load(),
		RejectedFull:  b.rejectedFull.Load(),
		ConsumeErrors: b.consumeErrors.Load(),
		TickErrors:    b.tickErrors.Load(),
		CloseErrors:   b.closeErrors.Load(),

		WALDamage:             b.walDamage.Load(),
		WALLostRecords:        b.walLost.Load(),
		WALSalvagedRecords:    b.walSalvaged.Load(),
		RecoveryFailures:      b.recoveryFailures.Load(),
		ProducerTablesDamaged: b.producersDamaged.Load(),
	}
}
