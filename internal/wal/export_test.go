package wal

import "log/slog"

// OpenWithSyncHook opens a log whose every fsync (of segments and of
// directories) calls hook with the path instead of syncing.
func OpenWithSyncHook(dir string, opts Options, log *slog.Logger, hook func(path string) error) (*Log, error) {
	return open(dir, opts, log, hook, nil)
}

// OpenWithWriteHook opens a log whose every write to a segment first calls
// hook with the file's path and the write's length; the write then stores
// only the first n bytes and fails with err if err is not nil. Fsyncs are
// skipped.
func OpenWithWriteHook(dir string, opts Options, log *slog.Logger, hook func(path string, size int) (n int, err error)) (*Log, error) {
	return open(dir, opts, log, func(string) error { return nil }, hook)
}

// OpenWithRemoveHook opens a log that calls hook instead of deleting a
// segment in Remove.
func OpenWithRemoveHook(dir string, opts Options, log *slog.Logger, hook func(path string) error) (*Log, error) {
	l, err := open(dir, opts, log, nil, nil)
	if err == nil {
		l.removeHook = hook
	}
	return l, err
}

// Stats returns the number of fsyncs of segment data so far and the
// number of records appended.
func (l *Log) Stats() (fsyncs, appends uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats.fsyncs, l.stats.appends
}

// Format internals for tests that build or check segment files by hand.
const (
	HeaderSize      = headerSize
	FrameHeaderSize = frameHeaderSize
)

func SegmentHeader() []byte             { return appendHeader(nil) }
func SegmentName(index uint64) string   { return segmentName(index) }
func FrameHeader(payload []byte) []byte { return appendFrameHeader(nil, payload) }
