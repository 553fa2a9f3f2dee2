package query

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/consume"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// writePartition writes records of one stream partition through the
// real transform and sink stages: each element of rows is one Arrow
// batch whose rows have those offsets, in that order.
func writePartition(t testing.TB, lake *sink.Lake, stream string, part int32, hour time.Time, rows [][]int64, publishEach bool) {
	t.Helper()
	if err := writeRows(lake, stream, part, hour, rows, publishEach); err != nil {
		t.Fatal(err)
	}
}

// writeRows is writePartition returning its error.
func writeRows(lake *sink.Lake, stream string, part int32, hour time.Time, rows [][]int64, publishEach bool) error {
	ctx := context.Background()
	tcfg := arrowbatch.DefaultConfig()
	for _, offs := range rows {
		tcfg.MaxRows = len(offs)
		bt, err := arrowbatch.NewBatcher(tcfg, record.DefaultTenant, stream, part, lake, nil, nil)
		if err != nil {
			return err
		}
		for lo := 0; lo < len(offs); {
			hi := lo + 1
			for hi < len(offs) && offs[hi] == offs[hi-1]+1 {
				hi++
			}
			recs := make([]record.Record, hi-lo)
			for j := range recs {
				recs[j] = testRecord(part, offs[lo+j], hour)
			}
			b := record.NewBatch(record.DefaultTenant, stream, recs)
			b.Partition, b.Offset = part, offs[lo]
			if err := bt.Consume(ctx, b); err != nil {
				return err
			}
			lo = hi
		}
		if err := bt.Close(ctx); err != nil {
			return err
		}
		if publishEach {
			if err := lake.Flush(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func testRecord(part int32, off int64, hour time.Time) record.Record {
	r := record.Record{
		Timestamp:         hour.Add(time.Duration(off) * time.Millisecond).UnixNano(),
		ObservedTimestamp: hour.Add(time.Hour).UnixNano() + off,
		SeverityNumber:    int32(off%24) + 1,
		SeverityText:      []string{"INFO", "WARN", "ERROR"}[off%3],
		Body:              fmt.Sprintf("p%d o%d", part, off),
		Attributes:        []record.KV{{Key: "k", Value: fmt.Sprint(off)}, {Key: "a", Value: "x"}},
		Resource:          []record.KV{{Key: "service.name", Value: fmt.Sprintf("svc%d", off%3)}},
		Flags:             uint32(off % 2),
	}
	if off%5 == 0 {
		r.TraceID[0], r.TraceID[15] = byte(off), 0xab
		r.SpanID[7] = byte(off)
	}
	return r
}

func seq(lo, hi int64) []int64 {
	var out []int64
	for o := lo; o < hi; o++ {
		out = append(out, o)
	}
	return out
}

// TestScanPartitionReadsParquetInOffsetOrder reads a partition spread
// over published files of two hours, a file whose rows are not in offset
// order, and staged segments, with a partition beside it, and checks
// every record and its fields against what was written.
func TestScanPartitionReadsParquetInOffsetOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := openEngine(t, dir)
	scfg := sink.DefaultConfig()
	scfg.Dir = filepath.Join(dir, "lake")
	scfg.MaxFileAge = time.Hour
	scfg.RowGroupRows = 1 << 10
	lake, err := sink.New(scfg, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Shutdown(context.Background())
	h1 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	h2 := h1.Add(time.Hour)
	// Offsets 0..2999 in hour 1, in row groups of 1,024; 3000..3999
	// shuffled (as priority lanes and compaction leave them) in hour 2;
	// 4000..4499 in hour 1 again; then staged only: 4500..4999 in hour 2.
	shuffled := seq(3000, 4000)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	writePartition(t, lake, "app", 1, h1, [][]int64{seq(0, 3000)}, true)
	writePartition(t, lake, "app", 1, h2, [][]int64{shuffled}, true)
	writePartition(t, lake, "app", 1, h1, [][]int64{seq(4000, 4500)}, true)
	writePartition(t, lake, "app", 0, h1, [][]int64{seq(0, 5000)}, true)
	writePartition(t, lake, "app", 1, h2, [][]int64{seq(4500, 5000)}, false)
	ctx := context.Background()
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	for _, after := range []int64{-1, 0, 1022, 2999, 3500, 4498, 4999} {
		var got []int64
		next := after
		for {
			n, err := e.ScanPartition(ctx, "", "app", 1, next, 700, func(p Position, r record.Record) error {
				if p.Partition != 1 {
					t.Fatalf("position %v", p)
				}
				want := testRecord(1, p.Offset, h1)
				if p.Offset >= 3000 && p.Offset < 4000 || p.Offset >= 4500 {
					want = testRecord(1, p.Offset, h2)
				}
				want.Attributes = slices.Clone(want.Attributes)
				if fmt.Sprint(r) != fmt.Sprint(want) {
					t.Fatalf("record at %v:\n got %+v\nwant %+v", p, r, want)
				}
				got = append(got, p.Offset)
				next = p.Offset
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n < 700 {
				break
			}
		}
		if want := seq(after+1, 5000); !slices.Equal(got, want) {
			t.Fatalf("after %d: %d records, first %v; want %d", after, len(got), got[:min(5, len(got))], len(want))
		}
	}
	if n, err := e.ScanPartition(ctx, "", "app", 2, -1, 10, func(Position, record.Record) error { return nil }); n != 0 || err != nil {
		t.Errorf("a partition without records: %d, %v", n, err)
	}
}

// lakeSource is cmd/weir's consume source over an engine whose stream
// is all published: every partition's marks are its end.
type lakeSource struct {
	e     *Engine
	marks []consume.Mark
}

func (s lakeSource) Marks(string, string) []consume.Mark { return slices.Clone(s.marks) }
func (s lakeSource) Sync(ctx context.Context) error      { return s.e.Sync(ctx) }
func (s lakeSource) ScanPartition(ctx context.Context, tenant, stream string, part int32, after int64, limit int, fn func(consume.Position, record.Record) error) (int, error) {
	return s.e.ScanPartition(ctx, tenant, stream, part, after, limit, func(p Position, r record.Record) error {
		return fn(consume.Position(p), r)
	})
}
func (s lakeSource) OffsetsSince(ctx context.Context, tenant, stream string, t time.Time) (map[int32]int64, error) {
	return s.e.OffsetsSince(ctx, tenant, stream, t)
}

// BenchmarkCatchUp measures a subscriber catching up from the earliest
// record of a stream of 1 Mi published records (two partitions, the
// lake's default row groups) through consume's Subscription, in the
// default batches of 1,000 records.
func BenchmarkCatchUp(b *testing.B) {
	const perPart = 512 << 10
	dir := b.TempDir()
	e := openEngine(b, dir)
	scfg := sink.DefaultConfig()
	scfg.Dir = filepath.Join(dir, "lake")
	scfg.MaxFileAge = time.Hour
	lake, err := sink.New(scfg, e, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer lake.Shutdown(context.Background())
	hour := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	marks := make([]consume.Mark, 2)
	for p := range int32(2) {
		var batches [][]int64
		for lo := int64(0); lo < perPart; lo += 64 << 10 {
			batches = append(batches, seq(lo, lo+64<<10))
		}
		writePartition(b, lake, "bench", p, hour, batches, false)
		marks[p] = consume.Mark{Committed: perPart, Next: perPart}
	}
	ctx := context.Background()
	if err := lake.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err := e.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	ccfg := consume.DefaultConfig()
	ccfg.Dir = filepath.Join(dir, "consumers")
	m, err := consume.New(ccfg, lakeSource{e, marks}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s, err := m.Subscribe(ctx, record.DefaultTenant, consume.Request{Stream: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for n < 2*perPart {
			batch, err := s.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			n += len(batch.Records)
		}
		s.Close()
	}
	b.ReportMetric(float64(b.N*2*perPart)/b.Elapsed().Seconds(), "records/s")
}

// TestScanPartitionWhilePublishing reads a partition with ScanPartition
// while its records are staged and their files published (the staged
// segments swapped for the file and deleted), and checks that every
// offset is read once, in order.
func TestScanPartitionWhilePublishing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := openEngine(t, dir)
	scfg := sink.DefaultConfig()
	scfg.Dir = filepath.Join(dir, "lake")
	scfg.MaxFileAge = time.Hour
	scfg.RowGroupRows = 1 << 10
	lake, err := sink.New(scfg, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Shutdown(context.Background())
	hour := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	const batches, size = 60, 100
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var written sync.WaitGroup
	written.Add(1)
	var writeErr error
	go func() {
		defer written.Done()
		for i := range batches {
			if writeErr = writeRows(lake, "app", 0, hour, [][]int64{seq(int64(i*size), int64((i+1)*size))}, i%5 == 4); writeErr != nil {
				cancel()
				return
			}
		}
	}()
	defer func() {
		written.Wait()
		if writeErr != nil {
			t.Fatalf("write: %v", writeErr)
		}
	}()
	next := int64(0)
	for next < batches*size {
		if err := ctx.Err(); err != nil {
			t.Fatalf("read up to %d: %v", next, err)
		}
		if err := e.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ScanPartition(ctx, "", "app", 0, next-1, 250, func(p Position, r record.Record) error {
			if p.Offset != next || r.Body != fmt.Sprintf("p0 o%d", p.Offset) {
				return fmt.Errorf("read %v %q, want offset %d", p, r.Body, next)
			}
			next++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}
