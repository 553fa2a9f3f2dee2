// Package aside moves a damaged state file out of the way without
// deleting it: weir then goes on without it, and the file stays for an
// operator to inspect.
package aside

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/weirlabs/weir/internal/durable"
)

// Move renames the file at from to to, or, where something is at to
// already (an earlier damaged copy), to to.1, to.2, ... whichever is
// free first, and makes the rename durable (both directories fsynced). It
// returns the path the file now has. to's directory must exist.
func Move(from, to string) (string, error) {
	dest := to
	for n := 1; ; n++ {
		_, err := os.Lstat(dest)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("set aside %s: %w", from, err)
		}
		dest = to + "." + strconv.Itoa(n)
	}
	if err := os.Rename(from, dest); err != nil {
		return "", fmt.Errorf("set aside %s: %w", from, err)
	}
	if err := durable.SyncDir(filepath.Dir(dest)); err != nil {
		return "", fmt.Errorf("set aside %s: %w", from, err)
	}
	if filepath.Dir(from) != filepath.Dir(dest) {
		if err := durable.SyncDir(filepath.Dir(from)); err != nil {
			return "", fmt.Errorf("set aside %s: %w", from, err)
		}
	}
	return dest, nil
}
