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

// writeback starts the writeback of a file written from offset 0, in
// steps of at least writebackBytes.
type writeback struct {
	f       *os.File
	started int64 // writeback started below it
}

// at records that f holds off bytes and starts the writeback of those
// past the last start once they are writebackBytes.
func (w *writeback) at(off int64) {
	if d := off - w.started; d >= writebackBytes {
		startWriteback(w.f, w.started, d)
		w.started = off
	}
}

// writebackFile is an io.Writer onto f, written from offset 0, that
// starts the writeback of every writebackBytes written.
type writebackFile struct {
	writeback
	off int64 // bytes written
}

func newWritebackFile(f *os.File) *writebackFile {
	return &writebackFile{writeback: writeback{f: f}}
}

func (w *writebackFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	w.at(w.off)
	return n, err
}
