package iceberg

import (
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/weirlabs/weir/sink"
)

// Referenced reports whether the data file at location may be listed
// by the current snapshot of one of the tables: the lake must not
// delete its object yet (sink.Remote.Referenced). It is conservative:
// true for every location until a pass has loaded every weir table;
// true while a pass reads the lake's files, and then for every file
// that pass read (it may add them); for a table whose pass failed, its
// files as last seen plus those the failed commit tried to add.
// Files only older snapshots list are not referenced: time travel to
// them may find files gone. Quick and safe for concurrent use; it
// never calls the lake.
func (r *Reconciler) Referenced(location string) bool {
	r.refMu.Lock()
	defer r.refMu.Unlock()
	if !r.refsReady || r.reading || r.passRead[location] {
		return true
	}
	for _, locs := range r.refs {
		if locs[location] {
			return true
		}
	}
	return false
}

// lakeFiles returns the lake's committed files and records them as
// read by the running pass: from before the read until the end of the
// pass they count as referenced, so that the lake does not delete one
// that the pass is about to add.
func (r *Reconciler) lakeFiles() []sink.FileInfo {
	r.refMu.Lock()
	r.reading = true
	r.refMu.Unlock()
	files := r.lake.CommittedFiles()
	r.refMu.Lock()
	for _, f := range files {
		r.passRead[f.Location] = true
	}
	r.reading = false
	r.refMu.Unlock()
	return files
}

// setRefs records the data files table ident lists (nil: none, or no
// table).
func (r *Reconciler) setRefs(ident table.Identifier, files map[string]iceberg.DataFile) {
	locs := make(map[string]bool, len(files))
	for loc := range files {
		locs[loc] = true
	}
	r.refMu.Lock()
	r.refs[key(ident[0], ident[1])] = locs
	r.refMu.Unlock()
}

// endPassRefs ends a pass: the files it read no longer count unless a
// table lists them, and once the catalog was listed and every weir
// table's files are known, Referenced stops answering true for all.
func (r *Reconciler) endPassRefs() {
	r.mu.Lock()
	ready := r.listed
	var known []string
	for k := range r.known {
		known = append(known, k)
	}
	r.mu.Unlock()
	r.refMu.Lock()
	defer r.refMu.Unlock()
	clear(r.passRead)
	for _, k := range known {
		if _, ok := r.refs[k]; !ok {
			ready = false
		}
	}
	if ready {
		r.refsReady = true
	}
}
