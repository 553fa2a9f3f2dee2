package sink

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Mend puts the bucket's copy of the published file at path in place of
// its local copy: for a local copy that a reader found damaged, cut short
// or missing while the lake runs (a query that could not read it, a
// compaction that could not decode it). The bucket's copy was checked by
// checksum when it was put; its footer is read and must describe the
// file's rows and offsets. The damaged local copy, if any, goes under
// .damaged/ (docs/durability.md, "A damaged lake file"). Readers that
// have the old copy open go on reading it; the next ones read the new.
//
// Mend does nothing and reports false for a lake not in object storage,
// a lake shut down, a path that is no file of the lake, a file evicted or
// not yet uploaded, a file it looked at before (each once, whatever the
// outcome), and a local copy that holds the bucket's bytes already. It is
// safe for concurrent use.
func (l *Lake) Mend(ctx context.Context, path string) (bool, error) {
	if l.rem == nil {
		return false, nil
	}
	id := strings.TrimSuffix(filepath.Base(path), fileExt)
	l.mu.Lock()
	i, ok := l.indexLocked(id)
	if l.closed || !ok || l.files[i].Path != path || l.files[i].Evicted || l.mended[id] {
		l.mu.Unlock()
		return false, nil
	}
	f := l.files[i]
	l.rem.mu.Lock()
	_, uploaded := l.rem.uploaded[id]
	l.rem.mu.Unlock()
	if !uploaded {
		l.mu.Unlock()
		return false, nil
	}
	if l.mended == nil {
		l.mended = make(map[string]bool)
	}
	l.mended[id] = true
	l.mu.Unlock()

	rel, err := filepath.Rel(l.cfg.Dir, path)
	if err != nil {
		return false, err
	}
	d := &DamagedFile{Path: rel, Bytes: f.Bytes, Err: "a reader could not read it", part: f.Partition, id: id}
	tmp, err := l.fetchSound(ctx, d)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp) // gone once renamed into place
	got, _, err := readFooter(tmp, f.Partition, id)
	if err != nil {
		return false, err
	}
	if err := sameRows(got, f); err != nil {
		return false, fmt.Errorf("sink: mend %s: %w", rel, err)
	}
	if same, err := sameBytes(tmp, path); err == nil && same {
		return false, nil
	}

	// As download: eviction and removal wait, and a file that left the
	// lake or was evicted meanwhile is not brought back.
	c := &l.cache
	c.trimMu.Lock()
	defer c.trimMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if i, ok := l.indexLocked(id); l.closed || !ok || l.files[i].Evicted {
		return false, nil
	}
	if _, _, err := l.restore(d, tmp); err != nil {
		return false, err
	}
	delete(l.undecodable, path)
	l.rem.mu.Lock()
	l.rem.stats.Mended++
	l.rem.mu.Unlock()
	return true, nil
}
