// Package durable replaces small state files so that a crash leaves
// either the old content or the new, and the new survives once the call
// returns.
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data: it writes data to path+".tmp"
// (mode 0600: state is the server's alone), fsyncs it, renames it over
// path and fsyncs the directory. The directory must exist. On failure
// the temporary file is removed and path holds its old content, or, if
// only the directory's fsync failed, the new content not yet known to be
// durable. Calls for one path must not run concurrently: they share the
// temporary file, which a crash may leave behind and the next call
// replaces.
func WriteFile(path string, data []byte) error {
	tmp := path + ".tmp"
	// A leftover is removed, not truncated, so that the mode is this one.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = SyncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// SyncDir fsyncs directory dir, which makes its entries (files created,
// renamed or removed in it) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
