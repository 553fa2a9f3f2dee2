package query

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// TestSlowRemovalHoldsUpNothing blocks the deletion of the staging
// segments that a publish retires, and checks that staging new rows and
// making them visible go on meanwhile: a publish retires hundreds of
// segments at once, and deleting them once held the catalog's lock, which
// the sink's encoders need to stage rows, for as long as the unlinks took
// (the stall of acknowledgements at saturation each time files of many
// streams were published together).
func TestSlowRemovalHoldsUpNothing(t *testing.T) {
	entered := make(chan string, 1)
	release := make(chan struct{})
	removeFile = func(path string) error {
		select {
		case entered <- path:
			<-release // only the first removal blocks
		default:
		}
		return os.Remove(path)
	}
	t.Cleanup(func() { removeFile = os.Remove })
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	dir := t.TempDir()
	e := openEngine(t, dir)
	lake := openLake(t, e, dir, nil)
	if err := lake.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lake.Shutdown(context.Background()) })
	tcfg := arrowbatch.DefaultConfig()
	tcfg.MaxRows = 10
	bt, err := arrowbatch.NewBatcher(tcfg, record.DefaultTenant, "app", 0, lake, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	offset := int64(0)
	push := func(n int) error {
		recs := make([]record.Record, n)
		for j := range recs {
			recs[j] = record.Record{Body: fmt.Sprintf("r%d", offset+int64(j)), SeverityText: "INFO"}
		}
		b := record.NewBatch(record.DefaultTenant, "app", recs)
		b.Offset = offset
		offset += int64(n)
		return bt.Consume(context.Background(), b)
	}
	count := func() (int64, error) {
		var w rowsWriter
		if _, err := e.Run(context.Background(), "SELECT count(*) FROM app", Options{}, &w); err != nil {
			return 0, err
		}
		return w.rows[0][0].(int64), nil
	}

	if err := push(50); err != nil { // five staged segments
		t.Fatal(err)
	}
	if err := lake.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered: // the published file's segments are being deleted
	case <-time.After(10 * time.Second):
		t.Fatal("no staging segment was deleted after the publish")
	}

	// With that deletion blocked, new rows are staged and become visible.
	// (Before the fix both waited for the catalog's lock, for ever here;
	// the goroutine lets the test fail instead of hanging.)
	visible := make(chan error, 1)
	go func() {
		if err := push(30); err != nil {
			visible <- err
			return
		}
		for {
			n, err := count()
			if err != nil || n == 80 {
				visible <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	select {
	case err := <-visible:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("new rows were not staged and visible within 20s while a removal was blocked")
	}
	close(release)
	released = true
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := lake.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := queryInts(t, e, "SELECT count(*) FROM app")[0]; n != 80 {
		t.Fatalf("%d rows after the last publish; want 80", n)
	}
	// Every retired segment is deleted in the end.
	deadline := time.Now().Add(10 * time.Second)
	for {
		segs, _ := filepath.Glob(filepath.Join(dir, "staging", "*", "*", "*", "*", "*.parquet"))
		if len(segs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d staging segments left after every file was published", len(segs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
