package sink

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing the dirty pages of f in
// [off, off+n) to disk, without waiting for them (sync_file_range with
// SYNC_FILE_RANGE_WRITE), so that the fsync which makes f durable finds
// little left to write. It is advice: an error is ignored, and the fsync
// reports any that matters.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
