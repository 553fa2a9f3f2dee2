package query

// DuckDB's memory_limit (Config.MemoryLimit) bounds what its buffer
// manager holds: the blocks of tables, hash tables, sorts and spills. It
// does not bound the strings and lists a vector holds while an
// expression is evaluated, nor a query's result while the driver
// collects it: SELECT repeat('x', 100000000 + i) FROM range(20) makes
// 2 GB in one vector, past any memory_limit, and a vector holds up to
// 2,048 such values. On a server that takes SQL from its users, that is
// one request that gets the process killed.
//
// DuckDB's own allocations go through its copy of jemalloc (in the Linux
// builds of the driver's prebuilt library). SetNativeMemoryLimit wraps
// the extent hooks of its arenas, so that every extent jemalloc commits
// is counted, and past the limit refused: DuckDB's allocation fails with
// its Out of Memory error (ErrResources to Run's caller), the query
// ends, and the process stays within bounds. The count is of committed
// extents: the live allocations and the free pages jemalloc has not yet
// given back (it decays them within about a second), so it is at least
// what DuckDB holds resident. What DuckDB allocates with the C library
// (its catalog, plans, and constants folded at planning) is not counted.

// NativeMemoryStats describes DuckDB's allocator, process-wide.
type NativeMemoryStats struct {
	// Supported reports whether this build counts and limits DuckDB's
	// allocations; the other fields are zero when it does not.
	Supported bool
	// Committed is the memory of the extents DuckDB's allocator holds
	// committed, in bytes.
	Committed int64
	// Peak is the most Committed has been since the hooks were
	// installed (by the first SetNativeMemoryLimit).
	Peak int64
	// Limit is the limit set by SetNativeMemoryLimit; 0 is none.
	Limit int64
	// Refused counts the commits refused because of the limit.
	Refused int64
}
