package query

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// TestScanPartitionAndOffsetsSince reads positions of two partitions,
// part published and part staged.
func TestScanPartitionAndOffsetsSince(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := openEngine(t, dir)
	lake := openLake(t, e, dir, nil)
	defer lake.Shutdown(context.Background())
	base := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for part := range int32(2) {
		tcfg := arrowbatch.DefaultConfig()
		tcfg.MaxRows = 10 // each batch written at once
		bt, err := arrowbatch.NewBatcher(tcfg, record.DefaultTenant, "app", part, lake, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 { // the first batch published, the second staged
			recs := make([]record.Record, 10)
			for j := range recs {
				off := i*10 + j
				recs[j] = record.Record{Body: fmt.Sprintf("p%d o%d", part, off), Timestamp: base.Add(time.Duration(off) * time.Minute).UnixNano()}
			}
			b := record.NewBatch(record.DefaultTenant, "app", recs)
			b.Partition, b.Offset = part, int64(i*10)
			if err := bt.Consume(ctx, b); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				if err := lake.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := bt.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	var got []Position
	n, err := e.ScanPartition(ctx, "", "app", 1, 7, 5, func(p Position, r record.Record) error {
		if want := fmt.Sprintf("p%d o%d", p.Partition, p.Offset); r.Body != want {
			t.Errorf("record at %v: %q", p, r.Body)
		}
		got = append(got, p)
		return nil
	})
	if err != nil || n != 5 {
		t.Fatalf("ScanPartition: %d, %v", n, err)
	}
	for i, p := range got {
		if p != (Position{1, int64(8 + i)}) {
			t.Fatalf("ScanPartition after 1/7: %v", got)
		}
	}
	if n, err := e.ScanPartition(ctx, "", "app", 0, 19, 5, func(Position, record.Record) error { return nil }); n != 0 || err != nil {
		t.Errorf("ScanPartition past the end: %d, %v", n, err)
	}

	since, err := e.OffsetsSince(ctx, "", "app", base.Add(12*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(since) != 2 || since[0] != 12 || since[1] != 12 {
		t.Errorf("OffsetsSince 10:12 = %v, want 12 in both partitions", since)
	}
	since, err = e.OffsetsSince(ctx, "", "app", base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if since[0] != 20 || since[1] != 20 {
		t.Errorf("OffsetsSince after every record = %v, want 20 (the end) in both partitions", since)
	}
	if since, err := e.OffsetsSince(ctx, "", "nothing", base); err != nil || len(since) != 0 {
		t.Errorf("OffsetsSince of an unknown stream = %v, %v", since, err)
	}
}
