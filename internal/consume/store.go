package consume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weirlabs/weir/internal/durable"
)

// groupKey names a consumer group: groups are per tenant and stream.
type groupKey struct{ tenant, stream, group string }

// offsetsFile is the on-disk form of a group's committed offsets.
type offsetsFile struct {
	// Offsets maps a partition (in decimal) to the offset of the next
	// record the group wants.
	Offsets map[string]int64 `json:"offsets"`
}

func (c *Config) groupPath(k groupKey) string {
	return filepath.Join(c.Dir, "tenant="+k.tenant, "stream="+k.stream, "group="+k.group+".json")
}

// loadOffsets reads a group's committed offsets; a group that never
// committed has none. A file that does not parse is ErrOffsetsDamaged:
// saveOffsets replaces it whole, so only damage at rest makes one.
func loadOffsets(path string) (map[int32]int64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[int32]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consume: read offsets: %w", err)
	}
	var f offsetsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrOffsetsDamaged, path, err)
	}
	out := make(map[int32]int64, len(f.Offsets))
	for k, v := range f.Offsets {
		p, err := strconv.ParseInt(k, 10, 32)
		if err != nil || p < 0 || v < 0 {
			return nil, fmt.Errorf("%w: %s: bad entry %q: %d", ErrOffsetsDamaged, path, k, v)
		}
		out[int32(p)] = v
	}
	return out, nil
}

// saveOffsets replaces a group's offsets file atomically: a temporary
// file is written and fsynced, renamed over the old one, and the
// directory fsynced, so a crash leaves the old offsets or the new ones.
func saveOffsets(path string, offsets map[int32]int64) error {
	f := offsetsFile{Offsets: make(map[string]int64, len(offsets))}
	for p, o := range offsets {
		f.Offsets[strconv.Itoa(int(p))] = o
	}
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("consume: offsets: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		// New directories (stream=, tenant=, consumers) must be durable
		// entries of their parents, up to the data directory.
		tenantDir := filepath.Dir(dir)
		root := filepath.Dir(tenantDir)
		for _, d := range []string{tenantDir, root, filepath.Dir(root)} {
			if err := durable.SyncDir(d); err != nil {
				return fmt.Errorf("consume: offsets: %w", err)
			}
		}
	}
	if err := durable.WriteFile(path, data); err != nil {
		return fmt.Errorf("consume: write offsets: %w", err)
	}
	return nil
}

// scanGroups lists the groups that have an offsets file under dir.
func scanGroups(dir string) ([]groupKey, error) {
	var out []groupKey
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == dir {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) != 3 {
			return nil
		}
		t, ok1 := strings.CutPrefix(parts[0], "tenant=")
		s, ok2 := strings.CutPrefix(parts[1], "stream=")
		g, ok3 := strings.CutPrefix(parts[2], "group=")
		g, ok4 := strings.CutSuffix(g, ".json")
		if ok1 && ok2 && ok3 && ok4 {
			out = append(out, groupKey{t, s, g})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("consume: scan groups: %w", err)
	}
	return out, nil
}
