package buffer

// Mark is how far a stream partition has got.
type Mark struct {
	// Committed is the commit watermark: every record below it is in a
	// published file, or will never be (docs/durability.md, "The commit
	// watermark").
	Committed int64
	// Next is the offset the partition gives the next record pushed.
	Next int64
}

// Marks returns the marks of each partition of a tenant's stream, indexed
// by partition, or nil when the buffer has no such stream (no push since
// the start and no log to recover). Safe for concurrent use.
func (b *Buffer) Marks(tenant, name string) []Mark {
	v, ok := b.streams.Load(streamKey{tenant, name})
	if !ok {
		return nil
	}
	s := v.(*stream)
	out := make([]Mark, len(s.parts))
	for i, p := range s.parts {
		// Committed first: it never passes next, so read in this order
		// the pair is consistent.
		out[i].Committed = p.committed.Load()
		p.mu.Lock()
		out[i].Next = p.next
		p.mu.Unlock()
	}
	return out
}
