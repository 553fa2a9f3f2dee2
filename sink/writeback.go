package sink

import "os"

// writebackBytes is how much a file being written for publishing
// accumulates before its writeback is started (startWriteback).
//
// The lake fsyncs a published or compacted file once it is complete. On
// a journaling file system that fsync, of a 128 MiB file, writes it all
// at once, and the journal commit that waits for it holds up the
// write-ahead log's fdatasyncs, and so every DURABLE ack, for as long
// (bench/RESULTS.md, "Writeback started while files are written").
// Started every few MiB, the writes spread over the time the file takes
// to build and the final fsync has little left to do.
const writebackBytes = 8 << 20

// writebackFile is an io.Writer onto f, written from offset 0, that
// starts the writeback of every writebackBytes written.
type writebackFile struct {
	f       *os.File
	off     int64 // bytes written
	started int64 // writeback started below it
}

func (w *writebackFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if d := w.off - w.started; d >= writebackBytes {
		startWriteback(w.f, w.started, d)
		w.started = w.off
	}
	return n, err
}
