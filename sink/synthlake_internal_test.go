package sink

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

// TestWriteSyntheticLake writes a compacted lake for the dashboard query
// benchmarks (bench/RESULTS.md, "Rollups") without a server: each hour's
// rows go through compaction's writer (writeSorted), so files, rollups
// and bloom filters are those compaction makes, and are published as
// compacted files; then the lake's compaction merges the small ones of
// past dates into day files, as a running server's would. It runs only when WEIR_SYNTH_LAKE names the lake
// directory to write (a server's <data>/lake):
//
//	WEIR_SYNTH_LAKE=/tmp/d/lake WEIR_SYNTH_ROWS=1000000 go test -run TestWriteSyntheticLake -timeout 2h ./sink/
//	weir serve --data /tmp/d
//
// The rows are shaped like weir bench's Loghub source (bench/source.go):
// the lines of testdata/loghub as bodies, in turn, 7 services, severity
// 80 % INFO, 10 % WARN, 10 % ERROR and a trace id on every tenth row, in
// stream "bench" of the default tenant, spread evenly over
// WEIR_SYNTH_HOURS hours (default 84: three and a half days) ending with
// the current hour, or with the hour of WEIR_SYNTH_END (RFC 3339), so
// that a lake can be made again with the same share of today's hours.
func TestWriteSyntheticLake(t *testing.T) {
	dir := os.Getenv("WEIR_SYNTH_LAKE")
	if dir == "" {
		t.Skip("WEIR_SYNTH_LAKE is not set: no synthetic lake to write")
	}
	rows := synthEnvInt(t, "WEIR_SYNTH_ROWS", 1_000_000)
	hours := synthEnvInt(t, "WEIR_SYNTH_HOURS", 84)
	cfg := DefaultConfig()
	cfg.Dir = dir
	lines := synthLoghub(t)
	end := time.Now().UTC()
	if e := os.Getenv("WEIR_SYNTH_END"); e != "" {
		var err error
		if end, err = time.Parse(time.RFC3339, e); err != nil {
			t.Fatalf("WEIR_SYNTH_END: %v", err)
		}
	}
	end = end.UTC().Truncate(time.Hour).Add(time.Hour)
	start := end.Add(-time.Duration(hours) * time.Hour)
	step := (end.Sub(start) - time.Millisecond) / time.Duration(rows)
	began := time.Now()
	// Two hours at a time: one per core.
	var wg sync.WaitGroup
	hoursCh := make(chan int)
	errs := make(chan error, hours)
	for range 2 {
		wg.Go(func() {
			for h := range hoursCh {
				if err := synthHour(cfg, lines, start, step, rows, h); err != nil {
					errs <- err
				}
			}
		})
	}
	for h := range hours {
		hoursCh <- h
	}
	close(hoursCh)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown(context.Background())
	// What a running server's compactor then does: the small hour files
	// of past dates become day files.
	merged, err := l.compact(context.Background(), time.Now().Add(cfg.CompactAge))
	if err != nil {
		t.Fatal(err)
	}
	var n, bytes int64
	for _, f := range l.Files() {
		if !f.Rollup {
			t.Errorf("%s has no rollup", f.Path)
		}
		n += f.Rows
		bytes += f.Bytes
	}
	if n != int64(rows) {
		t.Fatalf("the lake holds %d rows, want %d", n, rows)
	}
	t.Logf("%d rows over %d hours in %d files of %d bytes (%d hour files merged into day files), written in %s",
		rows, hours, len(l.Files()), bytes, merged, time.Since(began).Round(time.Second))
}

// synthHour writes the rows of hour h (counted from start) as one
// compacted file.
func synthHour(cfg Config, lines []string, start time.Time, step time.Duration, rows, h int) error {
	hourStart := start.Add(time.Duration(h) * time.Hour)
	first := int((hourStart.Sub(start) + step - 1) / step)
	last := min(rows, int((hourStart.Add(time.Hour).Sub(start)+step-1)/step))
	if first >= last {
		return nil
	}
	p := Partition{Tenant: record.DefaultTenant, Stream: "bench", Hour: hourStart}
	id := newID(time.Now())
	dir := filepath.Join(cfg.Dir, p.Dir())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	info := FileInfo{Partition: p, Rows: int64(last - first), MinOffset: int64(first), MaxOffset: int64(last - 1), Columns: logschema.Arrow().NumFields(), Compacted: true}
	services := []string{"checkout", "payments", "inventory", "auth", "search", "gateway", "notifications"}
	r := rand.New(rand.NewPCG(uint64(h), 2))
	tmp := filepath.Join(dir, tmpName(id))
	err := writeSorted(context.Background(), cfg, tmp, &info, [][2]string{{metaCompacted, "1"}, {metaReplaces, ""}}, func(fn func(arrow.RecordBatch) error) error {
		b := array.NewRecordBuilder(memory.DefaultAllocator, logschema.Arrow())
		defer b.Release()
		ts := b.Field(0).(*array.TimestampBuilder)
		obs := b.Field(1).(*array.TimestampBuilder)
		sevNum := b.Field(2).(*array.Int32Builder)
		sevText := b.Field(3).(*array.StringBuilder)
		body := b.Field(4).(*array.StringBuilder)
		attrs := b.Field(5).(*array.MapBuilder)
		res := b.Field(6).(*array.MapBuilder)
		svc := b.Field(7).(*array.StringBuilder)
		trace := b.Field(8).(*array.StringBuilder)
		span := b.Field(9).(*array.StringBuilder)
		flags := b.Field(10).(*array.Uint32Builder)
		part := b.Field(11).(*array.Int32Builder)
		off := b.Field(12).(*array.Int64Builder)
		rk := res.KeyBuilder().(*array.StringBuilder)
		rv := res.ItemBuilder().(*array.StringBuilder)
		for i := first; i < last; i++ {
			at := start.Add(time.Duration(i) * step).UnixNano()
			ts.Append(arrow.Timestamp(at))
			obs.Append(arrow.Timestamp(at + int64(r.IntN(5e6))))
			switch r.IntN(10) {
			case 0:
				sevNum.Append(13)
				sevText.Append("WARN")
			case 1:
				sevNum.Append(17)
				sevText.Append("ERROR")
			default:
				sevNum.Append(9)
				sevText.Append("INFO")
			}
			body.Append(lines[i%len(lines)])
			attrs.Append(true)
			s := services[r.IntN(len(services))]
			res.Append(true)
			rk.Append("service.name")
			rv.Append(s)
			svc.Append(s)
			if i%10 == 9 {
				trace.Append(fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()))
				span.Append(fmt.Sprintf("%016x", r.Uint64()))
				flags.Append(1)
			} else {
				trace.AppendNull()
				span.AppendNull()
				flags.Append(0)
			}
			part.Append(0)
			off.Append(int64(i))
			if (i-first+1)%(64<<10) == 0 || i == last-1 {
				rec := b.NewRecordBatch()
				err := fn(rec)
				rec.Release()
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("hour %d: %w", h, err)
	}
	return os.Rename(tmp, filepath.Join(dir, id+fileExt))
}

// synthLoghub returns the lines of the Loghub samples in testdata/loghub.
func synthLoghub(t *testing.T) []string {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "loghub", "*_2k.log"))
	if len(files) != 16 {
		t.Fatalf("want the 16 Loghub samples in testdata/loghub, found %d", len(files))
	}
	sort.Strings(files)
	var lines []string
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if line := sc.Text(); line != "" {
				lines = append(lines, line)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return lines
}

func synthEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
