package sink_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/sink"
)

// compactConfig compacts files as soon as they are 50 ms old, sorting
// windows of 1,024 rows.
func compactConfig(t *testing.T) sink.Config {
	cfg := testConfig(t)
	cfg.CompactAge = 50 * time.Millisecond
	cfg.CompactSortRows = 1024
	return cfg
}

// TestCompaction publishes three files of one partition and one of
// another, compacts them, and checks that every row is in the compacted
// files once, sorted by service and time within each window, that the
// observer was told, that the old files are gone, that the lake is smaller,
// and that a restart sees the same files.
func TestCompaction(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	rec := &recorder{}
	l := newLake(t, cfg, rec)
	// 16 services interleaved row by row, each logging its own system's
	// lines: sorting brings each service's lines together.
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 6000, BatchRows: 1000, FirstOffset: 10, Start: hour0, Systems: LoadLoghubSystems(t)})
	defer ReleaseAll(recs)
	p := part("app", 0)
	for i := range 3 {
		write(t, l, p, recs[2*i:2*i+2])
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	other := part("other", 0)
	write(t, l, other, recs[:1])
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := l.Files()
	var beforeBytes int64
	for _, f := range before {
		if f.Partition == p {
			beforeBytes += f.Bytes
		}
	}
	if len(before) != 4 {
		t.Fatalf("%d files before compaction, want 4", len(before))
	}
	n, err := l.CompactAt(context.Background(), time.Now().Add(cfg.CompactAge))
	if err != nil || n != 4 {
		t.Fatalf("Compact = %d, %v; want 4 files replaced", n, err)
	}
	after := l.Files()
	if len(after) != 2 {
		t.Fatalf("files after compaction: %+v", after)
	}
	var f sink.FileInfo
	for _, g := range after {
		if !g.Compacted {
			t.Errorf("%s is not marked compacted", g.ID)
		}
		if g.Partition == p {
			f = g
		}
	}
	if f.Rows != 6000 || f.MinOffset != 10 || f.MaxOffset != 6009 || f.Columns != 13 {
		t.Errorf("compacted file %+v, want 6000 rows, offsets 10 to 6009", f)
	}
	if f.Bytes >= beforeBytes {
		t.Errorf("compacted file has %d bytes, the three files had %d", f.Bytes, beforeBytes)
	}
	for _, o := range before {
		if _, err := os.Stat(o.Path); !os.IsNotExist(err) {
			t.Errorf("replaced file %s still there (%v)", o.Path, err)
		}
	}
	replaced := 0
	for _, e := range rec.snapshot() {
		if e.replaced != nil {
			replaced += len(e.replaced)
			if !e.file.Compacted {
				t.Errorf("Replaced(%+v): not marked compacted", e.file)
			}
		}
	}
	if replaced != 4 {
		t.Errorf("observer told of %d replaced files, want 4", replaced)
	}

	// Every row once, with every column as written, each window sorted
	// by service then time.
	tbl := readTable(t, f.Path, memory.DefaultAllocator)
	defer tbl.Release()
	want := make(map[int64]string) // offset → every column's value
	for _, r := range recs {
		offs := r.Column(12).(*array.Int64)
		for i := range int(r.NumRows()) {
			want[offs.Value(i)] = rowText(r, i)
		}
	}
	tr := array.NewTableReader(tbl, 1<<20)
	defer tr.Release()
	row := 0
	var prevSvc string
	var prevTS arrow.Timestamp
	for tr.Next() {
		b := tr.RecordBatch()
		ts := b.Column(0).(*array.Timestamp)
		svc := b.Column(7).(*array.String)
		offs := b.Column(12).(*array.Int64)
		for i := range int(b.NumRows()) {
			o := offs.Value(i)
			w, ok := want[o]
			if !ok {
				t.Fatalf("row %d: offset %d twice or unknown", row, o)
			}
			if got := rowText(b, i); got != w {
				t.Fatalf("offset %d: row %s, want %s", o, got, w)
			}
			delete(want, o)
			if row%1024 != 0 && (svc.Value(i) < prevSvc || svc.Value(i) == prevSvc && ts.Value(i) < prevTS) {
				t.Fatalf("row %d (%s, %v) is out of order after (%s, %v)", row, svc.Value(i), ts.Value(i), prevSvc, prevTS)
			}
			prevSvc, prevTS = svc.Value(i), ts.Value(i)
			row++
		}
	}
	if len(want) != 0 {
		t.Errorf("%d rows missing after compaction", len(want))
	}

	// Compacted files are not compacted again; a restart sees them.
	if n, err := l.Compact(context.Background()); err != nil || n != 0 {
		t.Errorf("second Compact = %d, %v; want nothing to do", n, err)
	}
	shutdown(t, l)
	l2 := newLake(t, cfg, nil)
	defer shutdown(t, l2)
	if got := l2.Files(); len(got) != 2 || !got[0].Compacted || !got[1].Compacted || got[0].Rows+got[1].Rows != 7000 {
		t.Errorf("after restart: %+v", got)
	}
	if got := l2.LastOffset(p.Tenant, p.Stream, p.Part); got != 6010 {
		t.Errorf("LastOffset = %d, want 6010", got)
	}
	assertNoTemp(t, cfg.Dir)
}

// rowText is every column's value in row i of rec, as text.
func rowText(rec arrow.RecordBatch, i int) string {
	var sb strings.Builder
	for c := range int(rec.NumCols()) {
		sb.WriteString(rec.Column(c).ValueStr(i))
		sb.WriteByte('|')
	}
	return sb.String()
}

// keepingObserver takes replaced files and never deletes them, as a
// process that crashed right after compaction would.
type keepingObserver struct{ recorder }

func (k *keepingObserver) Replaced(sink.FileInfo, []sink.FileInfo) {}

// TestCompactionCrash: files a compacted file replaces that are still on
// disk at start-up are deleted, so no row is there twice.
func TestCompactionCrash(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	l := newLake(t, cfg, &keepingObserver{})
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 2000, BatchRows: 1000, Start: hour0})
	defer ReleaseAll(recs)
	p := part("app", 0)
	for _, r := range recs {
		write(t, l, p, []arrow.RecordBatch{r})
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	old := l.Files()
	if n, err := l.CompactAt(context.Background(), time.Now().Add(cfg.CompactAge)); err != nil || n != 2 {
		t.Fatalf("Compact = %d, %v", n, err)
	}
	shutdown(t, l)
	for _, o := range old {
		if _, err := os.Stat(o.Path); err != nil {
			t.Fatalf("replaced file %s should still be there before the restart: %v", o.Path, err)
		}
	}
	l2 := newLake(t, cfg, nil)
	defer shutdown(t, l2)
	files := l2.Files()
	if len(files) != 1 || !files[0].Compacted || files[0].Rows != 2000 {
		t.Fatalf("after restart: %+v", files)
	}
	for _, o := range old {
		if _, err := os.Stat(o.Path); !os.IsNotExist(err) {
			t.Errorf("replaced file %s not deleted at start-up (%v)", o.Path, err)
		}
	}
	if got := offsetsIn(t, files); len(got) != 2000 {
		t.Errorf("%d distinct offsets, want 2000", len(got))
	}
}

// TestCompactionFailureIsolated: a file whose pages do not decode fails
// its group once; compaction then leaves it out (counted in Undecodable,
// not in the backlog), so the rest of its group and other groups are
// compacted and later passes do not fail.
func TestCompactionFailureIsolated(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	l := newLake(t, cfg, nil)
	defer shutdown(t, l)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 2000, BatchRows: 1000, Start: hour0})
	defer ReleaseAll(recs)
	for _, r := range recs {
		write(t, l, part("bad", 0), []arrow.RecordBatch{r}) // two files
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	write(t, l, part("good", 0), recs[1:])
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var bad sink.FileInfo
	for _, f := range l.Files() {
		if f.Partition.Stream == "bad" && bad.ID == "" {
			bad = f
		}
	}
	zeroPages(t, bad.Path)
	at := time.Now().Add(cfg.CompactAge)
	n, err := l.CompactAt(context.Background(), at)
	if err == nil || n != 1 {
		t.Fatalf("Compact = %d, %v; want the good file replaced and an error for the bad group", n, err)
	}
	if st := l.CompactionStatsAt(at); st.Files != 1 || st.Replaced != 1 || st.Failures != 1 || st.Undecodable != 1 || st.DueFiles != 1 {
		t.Errorf("after one group compacted and one failed: %+v; want one undecodable file and the bad group's other file due", st)
	}
	if n, err := l.CompactAt(context.Background(), at); err != nil || n != 1 {
		t.Errorf("second pass: Compact = %d, %v; want the bad group's sound file compacted", n, err)
	}
	if n, err := l.CompactAt(context.Background(), at); err != nil || n != 0 {
		t.Errorf("third pass: Compact = %d, %v; want nothing to do", n, err)
	}
	if st := l.CompactionStatsAt(at); st.Files != 2 || st.Failures != 1 || st.Undecodable != 1 || st.DueFiles != 0 {
		t.Errorf("after the passes: %+v", st)
	}
	for _, f := range l.Files() {
		if f.ID == bad.ID {
			continue
		}
		if !f.Compacted {
			t.Errorf("file not compacted: %+v", f)
		}
	}
	if i := slices.IndexFunc(l.Files(), func(f sink.FileInfo) bool { return f.ID == bad.ID }); i < 0 || l.Files()[i].Compacted {
		t.Errorf("the damaged file left the lake or changed")
	}
	assertNoTemp(t, cfg.Dir)
}

// TestCompactionSchemaRuns: files of one partition with as many columns
// but different schemas (promoted columns that changed) are compacted in
// runs of one schema, not refused at every pass; a day merge does the
// same.
func TestCompactionSchemaRuns(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	cfg.DayFilesAfter = time.Hour
	l := newLake(t, cfg, nil)
	defer shutdown(t, l)
	day := time.Now().UTC().Truncate(24 * time.Hour)
	p := sink.Partition{Tenant: "acme", Stream: "app", Hour: day}
	var offset int64
	with := func(name string) arrow.RecordBatch {
		rec := promotedBatch(offset, p.Hour, name)
		offset += 100
		return rec
	}
	// user, user, region, region, user: a new schema publishes the
	// open file, so five files of one hour.
	for _, name := range []string{"user", "user", "region", "region", "user"} {
		rec := with(name)
		write(t, l, p, []arrow.RecordBatch{rec})
		rec.Release()
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if files := l.Files(); len(files) != 5 || files[0].Columns != files[2].Columns {
		t.Fatalf("%d files before compaction, want 5 of one column count", len(files))
	}
	if n, err := l.CompactAt(context.Background(), time.Now().Add(cfg.CompactAge)); err != nil || n != 5 {
		t.Fatalf("Compact = %d, %v; want the 5 files replaced, in runs of one schema", n, err)
	}
	var rows []int64
	for _, f := range l.Files() {
		if !f.Compacted {
			t.Errorf("%s not compacted", f.ID)
		}
		rows = append(rows, f.Rows)
	}
	slices.Sort(rows)
	if !slices.Equal(rows, []int64{100, 200, 200}) {
		t.Errorf("rows of the compacted files: %v, want runs of 200, 200 and 100", rows)
	}
	// Past the date, the day merge takes runs of one schema too: the two
	// "user" files are not neighbours, so each stays.
	if n, err := l.CompactAt(context.Background(), day.Add(25*time.Hour+cfg.CompactAge)); err != nil || n != 0 {
		t.Fatalf("day merge = %d, %v; want nothing merged", n, err)
	}
	if st := l.CompactionStats(); st.Failures != 0 {
		t.Errorf("%d compactions failed", st.Failures)
	}
	if got := offsetsIn(t, l.Files()); len(got) != int(offset) {
		t.Errorf("%d distinct offsets, want %d", len(got), offset)
	}
}

// TestSchemaIdentity checks that a file's schema identity is the same
// as it is published, after a restart reads it from its footer, and in
// the file compaction writes from it, so that compaction groups files by
// schema without reading footers: a compacted file and a file published
// since, of one schema, are merged into a day file.
func TestSchemaIdentity(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	cfg.DayFilesAfter = time.Hour
	day := time.Now().UTC().Truncate(24 * time.Hour)
	p := sink.Partition{Tenant: "acme", Stream: "app", Hour: day}
	q := p // for the promoted column
	q.Stream = "other"
	var offset int64
	publish := func(l *sink.Lake, p sink.Partition, promoted string) sink.FileInfo {
		t.Helper()
		rec := promotedBatch(offset, p.Hour, promoted)
		offset += 100
		defer rec.Release()
		write(t, l, p, []arrow.RecordBatch{rec})
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		files := l.Files()
		return files[len(files)-1]
	}
	l := newLake(t, cfg, nil)
	plain, promoted := publish(l, p, ""), publish(l, q, "user")
	id := sink.SchemaIdentity(plain)
	if id == 0 || sink.SchemaIdentity(promoted) == 0 || id == sink.SchemaIdentity(promoted) {
		t.Fatalf("identities %x and %x: want two, neither 0", id, sink.SchemaIdentity(promoted))
	}
	shutdown(t, l)

	l = newLake(t, cfg, nil)
	defer shutdown(t, l)
	for _, f := range l.Files() {
		want := id
		if f.ID == promoted.ID {
			want = sink.SchemaIdentity(promoted)
		}
		if got := sink.SchemaIdentity(f); got != want {
			t.Errorf("%s read back from its footer: identity %x, published as %x", f.ID, got, want)
		}
	}
	// Each is alone in its run of one schema: compacted on its own.
	if n, err := l.CompactAt(context.Background(), time.Now().Add(cfg.CompactAge)); err != nil || n != 2 {
		t.Fatalf("Compact = %d, %v; want each file compacted on its own", n, err)
	}
	var compacted sink.FileInfo
	for _, f := range l.Files() {
		if f.Compacted && f.Columns == plain.Columns {
			compacted = f
		}
	}
	if got := sink.SchemaIdentity(compacted); got != id {
		t.Fatalf("compacted file's identity %x, its input's %x", got, id)
	}
	// A late file of the plain schema: the day merge takes it with the
	// compacted plain file only if their identities agree.
	late := publish(l, p, "")
	if got := sink.SchemaIdentity(late); got != id {
		t.Fatalf("late file's identity %x, want %x", got, id)
	}
	if n, err := l.CompactAt(context.Background(), day.Add(25*time.Hour+cfg.CompactAge)); err != nil || n != 2 {
		t.Fatalf("day merge = %d, %v; want the compacted and the late plain files merged", n, err)
	}
	for _, f := range l.Files() {
		if f.Partition.Stream == p.Stream && (f.Rows != 200 || sink.SchemaIdentity(f) != id) {
			t.Errorf("plain file %s: %d rows, identity %x; want the day file of 200 rows, %x", f.ID, f.Rows, sink.SchemaIdentity(f), id)
		}
	}
	if st := l.CompactionStats(); st.Failures != 0 {
		t.Errorf("%d compactions failed", st.Failures)
	}
}

// promotedBatch returns 100 rows of the log schema from offset first at
// hour, with one more string column if promoted names it.
func promotedBatch(first int64, hour time.Time, promoted string) arrow.RecordBatch {
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 100, BatchRows: 100, FirstOffset: first, Start: hour})
	r := recs[0]
	if promoted == "" {
		return r
	}
	defer r.Release()
	b := array.NewStringBuilder(memory.DefaultAllocator)
	defer b.Release()
	for range 100 {
		b.Append(promoted + "-value")
	}
	extra := b.NewArray()
	defer extra.Release()
	fields := append(slices.Clone(r.Schema().Fields()), arrow.Field{Name: promoted, Type: arrow.BinaryTypes.String, Nullable: true})
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), append(slices.Clone(r.Columns()), extra), r.NumRows())
}
