package sink_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/sink"
)

const day = 24 * time.Hour

func TestRetentionExpired(t *testing.T) {
	t.Parallel()
	r := sink.Retention{
		Default: 0,
		Tenants: map[string]time.Duration{"acme": 30 * day},
		Streams: map[string]time.Duration{"acme/debug": 7 * day, "acme/audit": 0, "other/app": time.Hour},
	}
	now := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	f := func(tenant, stream string, hour time.Time, want bool) {
		t.Helper()
		p := sink.Partition{Tenant: tenant, Stream: stream, Hour: hour}
		if got := r.Expired(p, now); got != want {
			t.Errorf("Expired(%s/%s hour %s) = %v, want %v", tenant, stream, hour.Format(time.RFC3339), got, want)
		}
	}
	// The tenant's period: a file expires once its hour's end is 30
	// days old.
	f("acme", "app", now.Add(-30*day).Truncate(time.Hour).Add(-time.Hour), true)
	f("acme", "app", now.Add(-30*day).Truncate(time.Hour), false) // ends 12:00 + 1h > now - 30d
	f("acme", "app", now, false)
	// A stream's own period wins over its tenant's, also when it is 0.
	f("acme", "debug", now.Add(-8*day), true)
	f("acme", "debug", now.Add(-6*day), false)
	f("acme", "audit", now.Add(-365*day), false)
	// Default 0: other tenants keep everything, except a stream with a
	// period of its own.
	f("zeta", "app", now.Add(-365*day), false)
	f("other", "app", now.Add(-2*time.Hour), true)
	f("other", "app", now.Add(-time.Hour), false) // 11:00-12:00 ended 30 min ago

	if (sink.Retention{}).Enabled() || !r.Enabled() {
		t.Error("Enabled is wrong")
	}
	for _, bad := range []sink.Retention{
		{Default: -time.Hour},
		{Streams: map[string]time.Duration{"nostream": day}},
		{Tenants: map[string]time.Duration{"a/b": day}},
		{Default: day, Interval: time.Millisecond},
	} {
		cfg := sink.DefaultConfig()
		cfg.Dir = t.TempDir()
		cfg.Retention = bad
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", bad)
		}
	}
}

// retentionConfig keeps acme's streams 30 days, except "keep", kept
// forever.
func retentionConfig(t *testing.T) sink.Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.CompactAge = 0
	cfg.Retention = sink.Retention{
		Tenants: map[string]time.Duration{"acme": 30 * day},
		Streams: map[string]time.Duration{"acme/keep": 0},
	}
	return cfg
}

// fillRetention publishes rows of "app" at hour0 (offsets 0-999) and the
// current hour (1000-1999) of partition 0, "gone" at hour0 (partition
// 1, offsets 0-999) and "keep" at hour0.
func fillRetention(t *testing.T, l *sink.Lake, now time.Time) {
	t.Helper()
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 2000, BatchRows: 1000, Start: hour0})
	defer ReleaseAll(recs)
	other := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 1000, BatchRows: 1000, Part: 1, Start: hour0})
	defer ReleaseAll(other)
	write(t, l, part("app", 0), recs[:1])
	cur := part("app", 0)
	cur.Hour = now
	write(t, l, cur, recs[1:])
	write(t, l, part("gone", 1), other)
	write(t, l, part("keep", 0), recs[:1])
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func streamsOf(files []sink.FileInfo) map[string]int {
	m := map[string]int{}
	for _, f := range files {
		m[f.Partition.Stream]++
	}
	return m
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// TestRetention: expired files leave Files, the observer is told and
// deletes them, empty directories go, and a restart shows the same lake
// with the offsets of the removed files still counted.
func TestRetention(t *testing.T) {
	t.Parallel()
	cfg := retentionConfig(t)
	rec := &recorder{}
	l := newLake(t, cfg, rec)
	now := time.Now().UTC()
	fillRetention(t, l, now)
	if len(l.Files()) != 4 {
		t.Fatalf("files before retention: %+v", l.Files())
	}
	var expired []sink.FileInfo
	for _, f := range l.Files() {
		if f.Partition.Hour.Equal(hour0) && f.Partition.Stream != "keep" {
			expired = append(expired, f)
		}
	}
	got, err := l.RetainAt(context.Background(), now)
	if err != nil || len(got) != 2 {
		t.Fatalf("Retain = %+v, %v; want the 2 files of hour0 of app and gone", got, err)
	}
	if s := streamsOf(l.Files()); s["app"] != 1 || s["gone"] != 0 || s["keep"] != 1 {
		t.Errorf("files after retention: %v", s)
	}
	var told []sink.FileInfo
	for _, e := range rec.snapshot() {
		told = append(told, e.removed...)
	}
	if len(told) != 2 {
		t.Errorf("observer told of %d removed files, want 2", len(told))
	}
	for _, f := range expired {
		if exists(f.Path) || exists(filepath.Dir(f.Path)) || exists(filepath.Dir(filepath.Dir(f.Path))) {
			t.Errorf("%s or its hour or date directory is still there", f.Path)
		}
	}
	if st := l.RetentionStats(); st.Files != 2 || st.Rows != 2000 || st.Bytes == 0 {
		t.Errorf("RetentionStats = %+v", st)
	}
	// Nothing more expires.
	if got, err := l.RetainAt(context.Background(), now); err != nil || len(got) != 0 {
		t.Errorf("second Retain = %+v, %v", got, err)
	}
	// Removed offsets count as published: a write-ahead log replay must
	// not bring their rows back.
	set, err := l.PublishedOffsets(context.Background(), "acme", "app", 0, 0)
	if err != nil || len(set) != 1 || set[0] != (sink.OffsetRange{From: 0, To: 2000}) {
		t.Errorf("PublishedOffsets(app) = %v, %v; want [0, 2000)", set, err)
	}
	shutdown(t, l)

	l2 := newLake(t, cfg, nil)
	defer shutdown(t, l2)
	if s := streamsOf(l2.Files()); s["app"] != 1 || s["gone"] != 0 || s["keep"] != 1 {
		t.Errorf("files after restart: %v", s)
	}
	// The stream partition whose only file was removed continues where
	// it was, so offsets stay unique.
	if got := l2.LastOffset("acme", "gone", 1); got != 1000 {
		t.Errorf("LastOffset(gone) after restart = %d, want 1000", got)
	}
	set, err = l2.PublishedOffsets(context.Background(), "acme", "gone", 1, 500)
	if err != nil || len(set) != 1 || set[0] != (sink.OffsetRange{From: 500, To: 1000}) {
		t.Errorf("PublishedOffsets(gone, 500) after restart = %v, %v", set, err)
	}
}

// crashObserver takes files handed over by compaction and retention and
// never deletes them, as a process that crashed right after would.
type crashObserver struct{ recorder }

func (*crashObserver) Replaced(sink.FileInfo, []sink.FileInfo) {}
func (*crashObserver) Removed([]sink.FileInfo)                 {}

// TestRetentionCrash: a crash after the removal was decided but before
// the files were deleted (the observer still held them, so they are on
// disk) must not bring them back at the next start: they are deleted
// then, and so are the inputs of a removed compacted file that were
// still waiting for deletion.
func TestRetentionCrash(t *testing.T) {
	t.Parallel()
	cfg := retentionConfig(t)
	cfg.CompactAge = 50 * time.Millisecond
	cfg.CompactSortRows = 1024
	l := newLake(t, cfg, &crashObserver{})
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 2000, BatchRows: 1000, Start: hour0})
	defer ReleaseAll(recs)
	p := part("app", 0)
	for _, r := range recs {
		write(t, l, p, []arrow.RecordBatch{r})
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	inputs := l.Files()
	if n, err := l.CompactAt(context.Background(), time.Now().Add(cfg.CompactAge)); err != nil || n != 2 {
		t.Fatalf("Compact = %d, %v", n, err)
	}
	now := time.Now().UTC()
	fresh := part("app", 0)
	fresh.Hour = now
	write(t, l, fresh, recs[:1])
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	compacted := l.Files()[0]
	got, err := l.RetainAt(context.Background(), now)
	if err != nil || len(got) != 1 || got[0].ID != compacted.ID {
		t.Fatalf("Retain = %+v, %v; want the compacted file", got, err)
	}
	shutdown(t, l) // "crash": the observer never deleted anything
	for _, f := range append(inputs, compacted) {
		if !exists(f.Path) {
			t.Fatalf("%s should still be on disk before the restart", f.Path)
		}
	}

	l2 := newLake(t, cfg, nil)
	defer shutdown(t, l2)
	files := l2.Files()
	if len(files) != 1 || !files[0].Partition.Hour.Equal(now.Truncate(time.Hour)) {
		t.Fatalf("after restart: %+v; want only the current hour's file", files)
	}
	for _, f := range append(inputs, compacted) {
		if exists(f.Path) {
			t.Errorf("%s not deleted at start-up", f.Path)
		}
	}
	if exists(filepath.Dir(compacted.Path)) {
		t.Errorf("empty hour directory %s left", filepath.Dir(compacted.Path))
	}
	if got := l2.LastOffset("acme", "app", 0); got != 2000 {
		t.Errorf("LastOffset = %d, want 2000", got)
	}
	assertNoTemp(t, cfg.Dir)
}

// TestRetentionSparesUnpublished: rows of an expired hour that are still
// in an open file are not touched; once published they expire too.
func TestRetentionSparesUnpublished(t *testing.T) {
	t.Parallel()
	cfg := retentionConfig(t)
	l := newLake(t, cfg, &recorder{})
	defer shutdown(t, l)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 1000, BatchRows: 1000, Start: hour0})
	defer ReleaseAll(recs)
	write(t, l, part("app", 0), recs)
	now := time.Now()
	if got, err := l.RetainAt(context.Background(), now); err != nil || len(got) != 0 {
		t.Fatalf("Retain with only an open file = %+v, %v", got, err)
	}
	if o, ok := l.OldestUnpublished("acme", "app", 0); !ok || o != 0 {
		t.Errorf("OldestUnpublished = %d, %v; the open file's rows must still be there", o, ok)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := l.RetainAt(context.Background(), now); err != nil || len(got) != 1 {
		t.Fatalf("Retain after the publish = %+v, %v", got, err)
	}
}

// TestRetentionBackground: with Start, retention runs beside compaction
// and the age publisher: old rows go, new rows stay, every new row once.
func TestRetentionBackground(t *testing.T) {
	t.Parallel()
	cfg := retentionConfig(t)
	cfg.MaxFileAge = 50 * time.Millisecond
	cfg.CompactAge = 50 * time.Millisecond
	cfg.CompactSortRows = 1024
	cfg.Retention.Interval = 50 * time.Millisecond
	l := newLake(t, cfg, &recorder{})
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)
	now := time.Now().UTC()
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 8000, BatchRows: 500, Start: hour0})
	defer ReleaseAll(recs)
	cur := part("app", 0)
	cur.Hour = now
	for i, r := range recs {
		p := part("app", 0) // even batches in the old hour, odd in the current one
		if i%2 == 1 {
			p = cur
		}
		write(t, l, p, []arrow.RecordBatch{r})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var oldRows, curRows int64
		compacted := true
		for _, f := range l.Files() {
			if f.Partition.Hour.Equal(hour0) {
				oldRows += f.Rows
			} else {
				curRows += f.Rows
				compacted = compacted && f.Compacted
			}
		}
		_, open := l.OldestUnpublished("acme", "app", 0)
		if oldRows == 0 && curRows == 4000 && compacted && !open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old rows %d (want 0), current rows %d (want 4000), compacted %v, open %v", oldRows, curRows, compacted, open)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
	seen := offsetsIn(t, l.Files())
	for o, n := range seen {
		if n != 1 || o/500%2 != 1 {
			t.Fatalf("offset %d seen %d times; want the odd batches' offsets once each", o, n)
		}
	}
	if len(seen) != 4000 {
		t.Errorf("%d offsets, want 4000", len(seen))
	}
	if st := l.RetentionStats(); st.Rows != 4000 {
		t.Errorf("retention removed %d rows, want 4000", st.Rows)
	}
}

// TestRetentionKeepsBusyDirectories: an expired hour directory in which
// a file is still open is not removed under it; it goes once that file
// is published and expired too.
func TestRetentionKeepsBusyDirectories(t *testing.T) {
	t.Parallel()
	cfg := retentionConfig(t)
	l := newLake(t, cfg, &recorder{})
	defer shutdown(t, l)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 2000, BatchRows: 1000, Start: hour0})
	defer ReleaseAll(recs)
	write(t, l, part("app", 0), recs[:1])
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(l.Files()[0].Path)
	write(t, l, part("app", 1), recs[1:]) // open, in the same hour directory
	now := time.Now()
	if got, err := l.RetainAt(context.Background(), now); err != nil || len(got) != 1 {
		t.Fatalf("Retain = %+v, %v", got, err)
	}
	if !exists(dir) {
		t.Fatalf("%s removed while a file was open in it", dir)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatalf("publishing the open file after retention: %v", err)
	}
	if got, err := l.RetainAt(context.Background(), now); err != nil || len(got) != 1 {
		t.Fatalf("second Retain = %+v, %v", got, err)
	}
	if exists(dir) {
		t.Errorf("%s left once empty", dir)
	}
}
