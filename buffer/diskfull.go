package buffer

import "github.com/weirlabs/weir/internal/wal"

// ErrNoSpace is matched by the error of a Push that a partition's
// write-ahead log could not take because its file system is full or the
// quota is used up (ENOSPC, EDQUOT); the error also matches the system's
// error. Push returns it at once, without waiting for room. The log undid
// the failed write and stays usable, and the room the batch reserved is
// given back: with one partition per stream (the default) nothing of the
// batch was logged or queued, and the same Push succeeds once space is
// freed. With several partitions, the parts already appended to other
// partitions' logs stay queued, so a retry writes them a second time.
// ingest maps ErrNoSpace to a resource-exhausted status.
var ErrNoSpace = wal.ErrNoSpace
