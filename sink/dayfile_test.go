package sink_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"

	"github.com/weirlabs/weir/sink"
)

// dayConfig is testConfig with day files on (the default).
func dayConfig(t *testing.T) sink.Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.DayFilesAfter = sink.DefaultConfig().DayFilesAfter
	cfg.CompactAge = 0
	return cfg
}

// timestamps returns the range of the timestamp column of a file.
func timestamps(t *testing.T, path string) (lo, hi time.Time) {
	t.Helper()
	tbl := readTable(t, path, memory.DefaultAllocator)
	defer tbl.Release()
	i := tbl.Schema().FieldIndices("timestamp")[0]
	first := true
	for _, c := range tbl.Column(i).Data().Chunks() {
		ts := c.(*array.Timestamp)
		for j := range ts.Len() {
			v := time.Unix(0, int64(ts.Value(j))).UTC()
			if first || v.Before(lo) {
				lo = v
			}
			if first || v.After(hi) {
				hi = v
			}
			first = false
		}
	}
	return lo, hi
}

// TestDayFiles writes rows of two hours of a long past date and of the
// current hour: the past hours share one day file under hour=24, the
// current hour keeps its own file; a restart reads the day file back as
// one (Partition.Day, LastOffset); a delete of one hour's rows rewrites
// the day file without them and keeps it a day file.
func TestDayFiles(t *testing.T) {
	t.Parallel()
	cfg := dayConfig(t)
	l := newLake(t, cfg, &recorder{})
	now := time.Now().UTC()
	day := time.Date(hour0.Year(), hour0.Month(), hour0.Day(), 0, 0, 0, 0, time.UTC)
	cur := now.Truncate(time.Hour)

	if got := l.FilePartition(part("app", 0), now); !got.Day || !got.Hour.Equal(day) {
		t.Errorf("FilePartition(%s) = %+v, want the day file of %s", hour0, got, day)
	}
	live := sink.Partition{Tenant: "acme", Stream: "app", Hour: cur}
	if got := l.FilePartition(live, now); got != live {
		t.Errorf("FilePartition(current hour) = %+v, want it unchanged", got)
	}
	recent := sink.Partition{Tenant: "acme", Stream: "app", Hour: cur.Add(-time.Hour)}
	if got := l.FilePartition(recent, now); got != recent {
		t.Errorf("FilePartition(previous hour) = %+v, want it unchanged (it ended less than DayFilesAfter ago)", got)
	}

	// A date's rows go to its day file once the date ended more than
	// DayFilesAfter (1h) ago.
	late := sink.Partition{Tenant: "acme", Stream: "app", Hour: day.Add(23 * time.Hour)}
	for _, c := range []struct {
		now time.Time
		day bool
	}{{day.Add(23*time.Hour + 30*time.Minute), false}, {day.Add(24*time.Hour + 59*time.Minute), false}, {day.Add(25 * time.Hour), true}} {
		if got := l.FilePartition(late, c.now); got.Day != c.day || c.day && !got.Hour.Equal(day) || !c.day && got != late {
			t.Errorf("FilePartition(%s) at %s = %+v, want the day file: %v", late.Hour, c.now, got, c.day)
		}
	}

	var recs []arrow.RecordBatch
	for i, start := range []time.Time{hour0, hour0.Add(2 * time.Hour), cur} {
		recs = append(recs, SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 100, BatchRows: 100, FirstOffset: int64(100 * i), Start: start})...)
	}
	defer ReleaseAll(recs)
	for i, h := range []time.Time{hour0, hour0.Add(2 * time.Hour), cur} {
		write(t, l, sink.Partition{Tenant: "acme", Stream: "app", Hour: h}, recs[i:i+1])
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := l.Files()
	if len(files) != 2 {
		t.Fatalf("%d files, want the day file and the current hour's: %+v", len(files), files)
	}
	var dayFile, hourFile sink.FileInfo
	for _, f := range files {
		if f.Partition.Day {
			dayFile = f
		} else {
			hourFile = f
		}
	}
	wantDir := filepath.Join("tenant=acme", "stream=app", "date="+day.Format("2006-01-02"), "hour=24")
	if dayFile.Rows != 200 || dayFile.MinOffset != 0 || dayFile.MaxOffset != 199 || !dayFile.Partition.Hour.Equal(day) ||
		!strings.HasSuffix(filepath.Dir(dayFile.Path), wantDir) || dayFile.Partition.Dir() != wantDir {
		t.Errorf("day file %+v, want 200 rows, offsets 0 to 199, in %s", dayFile, wantDir)
	}
	if lo, hi := timestamps(t, dayFile.Path); !lo.Equal(hour0) || hi.Before(hour0.Add(2*time.Hour)) || !hi.Before(day.Add(24*time.Hour)) {
		t.Errorf("day file's timestamps %s to %s, want both hours of %s", lo, hi, day.Format("2006-01-02"))
	}
	if end := dayFile.Partition.End(); !end.Equal(day.Add(24 * time.Hour)) {
		t.Errorf("day file's End = %s, want the end of its date", end)
	}
	if hourFile.Rows != 100 || !hourFile.Partition.Hour.Equal(cur) || hourFile.Partition.Day {
		t.Errorf("current hour's file %+v, want 100 rows of hour %s", hourFile, cur)
	}

	// A restart finds the day file as such.
	shutdown(t, l)
	l = newLake(t, cfg, &recorder{})
	defer shutdown(t, l)
	again := l.Files()
	if len(again) != 2 {
		t.Fatalf("after restart: %+v", again)
	}
	for i := range again {
		if again[i] != files[i] {
			t.Errorf("after restart: %+v, want %+v", again[i], files[i])
		}
	}
	if got := l.LastOffset("acme", "app", 0); got != 300 {
		t.Errorf("LastOffset after restart = %d, want 300", got)
	}

	// Deleting rows of one hour rewrites the day file that holds them.
	res, err := l.DeleteRows(context.Background(), "acme", "app", hour0.Add(2*time.Hour), map[int32]sink.OffsetSet{0: {{From: 150, To: 160}}})
	if err != nil || res.Rows != 10 || res.Rewritten != 1 {
		t.Fatalf("DeleteRows = %+v, %v; want 10 rows deleted from one rewritten file", res, err)
	}
	after := l.Files()
	if len(after) != 2 {
		t.Fatalf("after delete: %+v", after)
	}
	seen := offsetsIn(t, after)
	for o := range int64(300) {
		if want := o < 150 || o >= 160; (seen[o] == 1) != want {
			t.Errorf("offset %d seen %d times after the delete", o, seen[o])
		}
	}
	for _, f := range after {
		if f.Rows == 190 && (!f.Partition.Day || filepath.Base(filepath.Dir(f.Path)) != "hour=24") {
			t.Errorf("rewritten day file %+v is no longer a day file", f)
		}
	}
}

// TestDayFileRetention: a day file expires once its whole date is older
// than the period, not its first hour.
func TestDayFileRetention(t *testing.T) {
	t.Parallel()
	r := sink.Retention{Default: time.Hour}
	day := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	p := sink.Partition{Tenant: "acme", Stream: "app", Hour: day, Day: true}
	for _, c := range []struct {
		now  time.Time
		want bool
	}{
		{day.Add(2 * time.Hour), false},
		{day.Add(24*time.Hour + 59*time.Minute), false},
		{day.Add(25 * time.Hour), true},
	} {
		if got := r.Expired(p, c.now); got != c.want {
			t.Errorf("day file of %s at %s: Expired = %v, want %v", day.Format("2006-01-02"), c.now, got, c.want)
		}
	}
	if hour := (sink.Partition{Tenant: "acme", Stream: "app", Hour: day}); !r.Expired(hour, day.Add(2*time.Hour)) {
		t.Error("the file of hour 00 has not expired two hours later")
	}
}

// TestDayFileCompaction: two day files of a date are compacted into one
// day file, sorted, with every row.
func TestDayFileCompaction(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	cfg.DayFilesAfter = time.Hour
	l := newLake(t, cfg, &recorder{})
	defer shutdown(t, l)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 2000, BatchRows: 1000, Start: hour0})
	defer ReleaseAll(recs)
	late := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 500, BatchRows: 500, FirstOffset: 2000, Start: hour0.Add(5 * time.Hour)})
	defer ReleaseAll(late)
	write(t, l, part("app", 0), recs[:1])
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(t, l, part("app", 0), recs[1:])
	write(t, l, sink.Partition{Tenant: "acme", Stream: "app", Hour: hour0.Add(5 * time.Hour)}, late)
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := l.Files()
	if len(before) != 2 || !before[0].Partition.Day || !before[1].Partition.Day {
		t.Fatalf("before compaction: %+v, want two day files", before)
	}
	if n, err := l.CompactAt(context.Background(), time.Now().Add(cfg.CompactAge)); err != nil || n != 2 {
		t.Fatalf("Compact = %d, %v; want 2 files replaced", n, err)
	}
	after := l.Files()
	if len(after) != 1 || !after[0].Compacted || !after[0].Partition.Day || after[0].Rows != 2500 ||
		filepath.Base(filepath.Dir(after[0].Path)) != "hour=24" {
		t.Fatalf("after compaction: %+v, want one compacted day file of 2500 rows", after)
	}
	if seen := offsetsIn(t, after); len(seen) != 2500 {
		t.Errorf("%d distinct offsets after compaction, want 2500", len(seen))
	}
}

// TestDayMerge: once a date is DayFilesAfter past, compaction merges the
// date's small files of a stream partition — compacted hour files and
// late ones — into one day file, leaves large files and lone files where
// they are, removes the emptied hour directories, merges the day file
// again with files that come later while it is small, and a restart
// after a merge whose old files were not yet deleted keeps every row once.
func TestDayMerge(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	cfg.DayFilesAfter = time.Hour
	// Hours of today: written as hour files, the date not yet past.
	day := time.Now().UTC().Truncate(24 * time.Hour)
	l := newLake(t, cfg, nil)
	var offset int64
	writeHour := func(l *sink.Lake, p sink.Partition, rows int) {
		t.Helper()
		recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: rows, BatchRows: 500, FirstOffset: offset, Part: p.Part, Start: p.Hour.Add(time.Minute), Seed: uint64(offset)})
		defer ReleaseAll(recs)
		offset += int64(rows)
		write(t, l, p, recs)
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	at := func(part int32, h int) sink.Partition {
		return sink.Partition{Tenant: "acme", Stream: "app", Part: part, Hour: day.Add(time.Duration(h) * time.Hour)}
	}
	for _, h := range []int{0, 1, 2} {
		writeHour(l, at(0, h), 1000)
		writeHour(l, at(0, h), 1000) // two files: the hour's own compaction makes one
	}
	writeHour(l, at(0, 3), 20000) // a busy hour: not small
	writeHour(l, at(1, 0), 1000)  // alone in its stream partition
	if n, err := l.CompactAt(context.Background(), time.Now().Add(cfg.CompactAge)); err != nil || n != 8 {
		t.Fatalf("hourly Compact = %d, %v; want the 8 files of partition 0 replaced and the lone one", n, err)
	}
	hourly := l.Files()
	shutdown(t, l)
	var small, big int64
	for _, f := range hourly {
		if f.Partition.Day || !f.Compacted {
			t.Fatalf("after hourly compaction: %+v", f)
		}
		if f.Rows == 20000 {
			big = f.Bytes
		} else {
			small = max(small, f.Bytes)
		}
	}
	if len(hourly) != 5 || big <= small {
		t.Fatalf("after hourly compaction: %d files, largest small %d B, big %d B; want 5 and big larger", len(hourly), small, big)
	}
	// Small files lie under a sixteenth of CompactInputBytes.
	cfg.CompactInputBytes = 16 * (small + big) / 2
	l = newLake(t, cfg, nil)
	past := day.Add(24*time.Hour + cfg.DayFilesAfter)
	if n, err := l.CompactAt(context.Background(), past.Add(-time.Second)); err != nil || n != 0 {
		t.Fatalf("Compact before the date is past = %d, %v; want nothing", n, err)
	}
	if n, err := l.CompactAt(context.Background(), past); err != nil || n != 3 {
		t.Fatalf("day merge = %d, %v; want the 3 small files of partition 0 replaced", n, err)
	}
	files := l.Files()
	var merged sink.FileInfo
	for _, f := range files {
		switch {
		case f.Partition.Day:
			merged = f
		case f.Rows == 20000 && f.Partition.Part == 0 && f.Partition.Hour.Equal(day.Add(3*time.Hour)):
		case f.Rows == 1000 && f.Partition.Part == 1 && f.Partition.Hour.Equal(day):
		default:
			t.Errorf("unexpected file after the day merge: %+v", f)
		}
	}
	if len(files) != 3 || merged.Rows != 6000 || !merged.Compacted || merged.Partition.Part != 0 ||
		!merged.Partition.Hour.Equal(day) || filepath.Base(filepath.Dir(merged.Path)) != "hour=24" {
		t.Fatalf("after the day merge: %+v", files)
	}
	if got := offsetsIn(t, files); len(got) != int(offset) {
		t.Errorf("%d distinct offsets after the day merge, want %d", len(got), offset)
	}
	if st := l.CompactionStats(); st.Files != 1 || st.DayMerges != 1 || st.Replaced != 3 || st.Rows != 6000 ||
		st.BytesWritten != merged.Bytes || st.BytesRead <= 0 || st.Busy <= 0 || st.Failures != 0 || st.DueFiles != 0 {
		t.Errorf("after the day merge: %+v", st)
	}
	// The next pass removes the emptied hour directories.
	if n, err := l.CompactAt(context.Background(), past); err != nil || n != 0 {
		t.Fatalf("Compact after the merge = %d, %v; want nothing", n, err)
	}
	for _, h := range []string{"hour=00", "hour=01", "hour=02"} {
		dir := filepath.Join(filepath.Dir(filepath.Dir(merged.Path)), h)
		_, err := os.Stat(dir)
		if h == "hour=00" && err != nil {
			t.Errorf("%s holds partition 1's file and must stay: %v", h, err)
		}
		if h != "hour=00" && !os.IsNotExist(err) {
			t.Errorf("%s not removed after the day merge (%v)", h, err)
		}
	}
	// A late file of the date is merged with the day file, still small.
	writeHour(l, at(0, 5), 500)
	if n, err := l.CompactAt(context.Background(), past.Add(cfg.CompactAge+time.Hour)); err != nil || n != 2 {
		t.Fatalf("merge of a late file = %d, %v; want the day file and the late one replaced", n, err)
	}
	shutdown(t, l)

	// A crash after the merge was published but before its old files
	// were deleted: the restart deletes them.
	writeLate := func() []sink.FileInfo {
		l := newLake(t, cfg, &keepingObserver{})
		writeHour(l, at(0, 6), 500)
		before := l.Files()
		if n, err := l.CompactAt(context.Background(), past.Add(cfg.CompactAge+2*time.Hour)); err != nil || n != 2 {
			t.Fatalf("merge of a second late file = %d, %v", n, err)
		}
		shutdown(t, l)
		return before
	}
	old := writeLate()
	l = newLake(t, cfg, nil)
	defer shutdown(t, l)
	files = l.Files()
	days := 0
	for _, f := range files {
		if f.Partition.Day {
			days++
			if f.Rows != 7000 {
				t.Errorf("day file of %d rows, want 7000", f.Rows)
			}
		}
	}
	if len(files) != 3 || days != 1 {
		t.Errorf("after the restart: %+v, want the day file, the busy hour and partition 1's file", files)
	}
	for _, o := range old {
		if o.Partition.Part == 0 && o.Rows != 20000 {
			if _, err := os.Stat(o.Path); !os.IsNotExist(err) {
				t.Errorf("replaced file %s not deleted at start-up (%v)", o.Path, err)
			}
		}
	}
	if got := offsetsIn(t, files); len(got) != int(offset) {
		t.Errorf("%d distinct offsets after the restart, want %d", len(got), offset)
	}
}

// TestDayMergeKeepsRollups: hour files whose rollups together hold more
// counts than one file's rollup may are merged into several day files,
// each with its rollup, so that queries keep reading counts from
// rollups rather than scanning; the day files' rows are in order of
// hour first, newest first, in row groups of few hours each that run
// from the newest hours to the oldest, so that queries for the newest
// rows find them first and skip the others.
func TestDayMergeKeepsRollups(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	cfg.DayFilesAfter = time.Hour
	day := time.Now().UTC().Truncate(24 * time.Hour)
	l := newLake(t, cfg, nil)
	defer shutdown(t, l)
	// Every minute of 24 hours, 40 rows of random services and
	// severities: ~1,400 counts an hour, ~34,000 a day.
	var offset int64
	bodies := make([]string, 50)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("request %d served", i)
	}
	for h := range 24 {
		p := sink.Partition{Tenant: "acme", Stream: "app", Hour: day.Add(time.Duration(h) * time.Hour)}
		// One Write of 60 parts, a minute each.
		var parts []arrow.RecordBatch
		for m := range 60 {
			parts = append(parts, SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 40, BatchRows: 40, FirstOffset: offset, Start: p.Hour.Add(time.Duration(m) * time.Minute), Seed: uint64(offset), Bodies: bodies})...)
			offset += 40
		}
		err := l.Write(context.Background(), p, parts...)
		ReleaseAll(parts)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.CompactAt(context.Background(), time.Now().Add(cfg.CompactAge)); err != nil || n != 24 {
		t.Fatalf("hourly Compact = %d, %v; want 24 files replaced", n, err)
	}
	past := day.Add(24*time.Hour + cfg.DayFilesAfter)
	if n, err := l.CompactAt(context.Background(), past); err != nil || n != 24 {
		t.Fatalf("day merge = %d, %v; want the 24 hour files replaced", n, err)
	}
	files := l.Files()
	var rows int64
	for _, f := range files {
		if !f.Partition.Day || !f.Rollup {
			t.Errorf("after the day merge: %+v, want day files with rollups", f)
		}
		rows += f.Rows
	}
	if len(files) < 2 || len(files) > 12 || rows != offset {
		t.Fatalf("after the day merge: %d files of %d rows in all, want 2 to 12 holding %d", len(files), rows, offset)
	}
	if got := offsetsIn(t, files); len(got) != int(offset) {
		t.Errorf("%d distinct offsets, want %d", len(got), offset)
	}
	// Rows sorted by hour (newest first) within each sort window; row groups cut
	// at hours once they hold RowGroupRows/8 rows: 2,400 rows an hour
	// make row groups of 7 hours.
	minRows := cfg.RowGroupRows / 8
	span := time.Duration((minRows+2399)/2400) * time.Hour
	for _, f := range files {
		rdr, err := file.OpenParquetFile(f.Path, false)
		if err != nil {
			t.Fatal(err)
		}
		md := rdr.MetaData()
		col := md.Schema.ColumnIndexByName("timestamp")
		var lo, hi, prevMax int64
		for rg := range md.NumRowGroups() {
			cc, err := md.RowGroup(rg).ColumnChunk(col)
			if err != nil {
				t.Fatal(err)
			}
			st, err := cc.Statistics()
			if err != nil {
				t.Fatal(err)
			}
			s := st.(*metadata.Int64Statistics)
			if rg == 0 || s.Min() < lo {
				lo = s.Min()
			}
			hi = max(hi, s.Max())
			if d := time.Duration(s.Max() - s.Min()); d >= span {
				t.Errorf("%s: row group %d of %d spans %s, want under %s", f.ID, rg, md.NumRowGroups(), d, span)
			}
			if rg > 0 && s.Max() > prevMax {
				t.Errorf("%s: row group %d ends at %v, after row group %d (%v): want the newest hours first",
					f.ID, rg, time.Unix(0, s.Max()).UTC(), rg-1, time.Unix(0, prevMax).UTC())
			}
			prevMax = s.Max()
		}
		rdr.Close()
		if time.Duration(hi-lo) >= span && md.NumRowGroups() < 2 {
			t.Errorf("%s spans %s in %d row group", f.ID, time.Duration(hi-lo), md.NumRowGroups())
		}
		tbl := readTable(t, f.Path, memory.DefaultAllocator)
		tr := array.NewTableReader(tbl, tbl.NumRows())
		tr.Next()
		rec := tr.RecordBatch()
		ts := rec.Column(int(rec.Schema().FieldIndices("timestamp")[0])).(*array.Timestamp)
		svc := rec.Column(int(rec.Schema().FieldIndices("service_name")[0])).(*array.String)
		for i := 1; i < int(rec.NumRows()); i++ {
			if int64(i)%cfg.CompactSortRows == 0 {
				continue // a new window
			}
			h0, h1 := time.Duration(ts.Value(i-1)).Truncate(time.Hour), time.Duration(ts.Value(i)).Truncate(time.Hour)
			if h1 > h0 || h1 == h0 && svc.Value(i) < svc.Value(i-1) || h1 == h0 && svc.Value(i) == svc.Value(i-1) && ts.Value(i) < ts.Value(i-1) {
				t.Fatalf("%s: row %d is not in order of hour (newest first), service and time after row %d", f.ID, i, i-1)
			}
		}
		tr.Release()
		tbl.Release()
	}
}

// TestDayMergeShortRetention: a stream kept for less than a week keeps
// its hour files past their date, so that its rows expire by the hour;
// one kept for a week or more has them merged.
func TestDayMergeShortRetention(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	cfg.DayFilesAfter = time.Hour
	cfg.Retention.Streams = map[string]time.Duration{"acme/short": 6 * 24 * time.Hour, "acme/week": 7 * 24 * time.Hour}
	cfg.Retention.Interval = 24 * time.Hour // Retain is not called
	l := newLake(t, cfg, nil)
	defer shutdown(t, l)
	day := time.Now().UTC().Truncate(24 * time.Hour)
	var offset int64
	for _, stream := range []string{"short", "week"} {
		for h := range 3 {
			p := sink.Partition{Tenant: "acme", Stream: stream, Hour: day.Add(time.Duration(h) * time.Hour)}
			recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 500, BatchRows: 500, FirstOffset: offset, Start: p.Hour})
			write(t, l, p, recs)
			ReleaseAll(recs)
			offset += 500
		}
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, err := l.CompactAt(context.Background(), day.Add(25*time.Hour+cfg.CompactAge)); err != nil || n != 6 {
		t.Fatalf("Compact = %d, %v; want week's 3 files merged and short's 3 compacted each", n, err)
	}
	count := map[string]int{}
	for _, f := range l.Files() {
		if f.Partition.Day != (f.Partition.Stream == "week") || !f.Compacted {
			t.Errorf("%s: day %v, compacted %v", f.Partition.Dir(), f.Partition.Day, f.Compacted)
		}
		count[f.Partition.Stream]++
	}
	if count["short"] != 3 || count["week"] != 1 {
		t.Errorf("files per stream: %v, want short 3 and week 1", count)
	}
}
