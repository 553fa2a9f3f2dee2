package query

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

func openEngine(t testing.TB, dir string) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Threads = 2
	e, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	return e
}

// openLake opens a lake in dir/lake that stages into e and publishes
// only on Flush and Shutdown (MaxFileAge is an hour), after tweak, if
// not nil, changed its settings. The caller shuts it down.
func openLake(t testing.TB, e *Engine, dir string, tweak func(*sink.Config)) *sink.Lake {
	t.Helper()
	cfg := sink.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "lake")
	cfg.MaxFileAge = time.Hour
	if tweak != nil {
		tweak(&cfg)
	}
	lake, err := sink.New(cfg, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	return lake
}

// rowsWriter collects a result in memory.
type rowsWriter struct {
	cols []Column
	rows [][]driver.Value
}

func (w *rowsWriter) Begin(cols []Column) error { w.cols = cols; return nil }
func (w *rowsWriter) Row(v []driver.Value) error {
	w.rows = append(w.rows, append([]driver.Value(nil), v...))
	return nil
}
func (w *rowsWriter) End(bool) error { return nil }

func queryInts(t *testing.T, e *Engine, sql string) []int64 {
	t.Helper()
	var w rowsWriter
	if _, err := e.Run(context.Background(), sql, Options{}, &w); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(w.rows) != 1 {
		t.Fatalf("%s: %d rows", sql, len(w.rows))
	}
	out := make([]int64, len(w.rows[0]))
	for i, v := range w.rows[0] {
		switch x := v.(type) {
		case int64:
			out[i] = x
		case nil:
		default:
			t.Fatalf("%s: column %d is %T", sql, i, v)
		}
	}
	return out
}

// TestNoDuplicatesOrGapsAcrossPublish stages records through the real
// transform and sink while another goroutine queries continuously: every
// answer must count each record once, and counts never go backwards, as
// files are published and their rows leave memory.
func TestNoDuplicatesOrGapsAcrossPublish(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	lake := openLake(t, e, dir, nil)
	tcfg := arrowbatch.DefaultConfig()
	tcfg.MaxRows = 50
	bt, err := arrowbatch.NewBatcher(tcfg, record.DefaultTenant, "app", 0, lake, nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var queryErr error
	queries := 0
	answered := make(chan struct{}, 1) // a query answered
	stopped := make(chan struct{})     // the querying goroutine returned
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stopped)
		last := int64(0)
		for ctx.Err() == nil {
			var w rowsWriter
			if _, err := e.Run(context.Background(), "SELECT count(*), count(DISTINCT _offset) FROM logs", Options{}, &w); err != nil {
				queryErr = err
				return
			}
			n, d := w.rows[0][0].(int64), w.rows[0][1].(int64)
			if n != d {
				queryErr = fmt.Errorf("count %d but %d distinct offsets: duplicates", n, d)
				return
			}
			if n < last {
				queryErr = fmt.Errorf("count went from %d to %d: a gap", last, n)
				return
			}
			last = n
			queries++
			select {
			case answered <- struct{}{}:
			default:
			}
		}
	}()

	const batches, per = 40, 100
	offset := int64(0)
	for i := 0; i < batches; i++ {
		recs := make([]record.Record, per)
		for j := range recs {
			recs[j] = record.Record{Body: fmt.Sprintf("b%d r%d", i, j), SeverityText: "INFO"}
		}
		b := record.NewBatch(record.DefaultTenant, "app", recs)
		b.Offset = offset
		offset += per
		if err := bt.Consume(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if i%8 == 7 {
			if err := lake.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := lake.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Two more answers after any signalled before: the second started
	// after every file was published and its segments retired.
	select {
	case <-answered:
	default:
	}
	for range 2 {
		select {
		case <-answered:
		case <-stopped: // failed: queryErr says why
		}
	}
	cancel()
	wg.Wait()
	if queryErr != nil {
		t.Fatal(queryErr)
	}
	got := queryInts(t, e, "SELECT count(*), count(DISTINCT _offset), min(_offset), max(_offset) FROM logs")
	if got[0] != batches*per || got[1] != batches*per || got[2] != 0 || got[3] != batches*per-1 {
		t.Fatalf("final count, distinct, min, max = %v", got)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "staging", "*", "*", "*", "*", "*.parquet")); len(segs) != 0 {
		t.Errorf("%d staging segments left after every file was published", len(segs))
	}
	if len(lake.Files()) < 5 {
		t.Errorf("%d files published; want one per flush", len(lake.Files()))
	}
	t.Logf("%d concurrent queries saw consistent counts", queries)

	// The per-stream view and a fresh engine over the same lake agree.
	if n := queryInts(t, e, "SELECT count(*) FROM app")[0]; n != batches*per {
		t.Errorf("view app: %d rows", n)
	}
	e2 := openEngine(t, dir)
	if err := e2.AddFiles(lake.Files()); err != nil {
		t.Fatal(err)
	}
	if n := queryInts(t, e2, "SELECT count(*) FROM app")[0]; n != batches*per {
		t.Errorf("fresh engine: %d rows", n)
	}
}

func TestRunRefusesAndClassifies(t *testing.T) {
	e := openEngine(t, t.TempDir())
	for _, sql := range []string{"CREATE TABLE x (i INT)", "SELECT * FROM read_parquet('/etc/*.parquet')", "PRAGMA threads=1", "SELECT $1"} {
		var w rowsWriter
		if _, err := e.Run(context.Background(), sql, Options{}, &w); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", sql, err)
		}
	}
	var w rowsWriter
	_, err := e.Run(context.Background(), "SELECT count(*) FROM range(1000000000) a, range(1000) b", Options{Timeout: 100 * time.Millisecond}, &w)
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("slow query: %v, want ErrTimeout", err)
	}
}

func TestFormats(t *testing.T) {
	e := openEngine(t, t.TempDir())
	const q = `SELECT 1::INTEGER AS i, 'a"b' AS s, NULL AS n, TIMESTAMPTZ '2024-01-02 03:04:05.123456+00' AS ts,
		DATE '2024-01-02' AS d, [1, 2] AS l, MAP {'k': 'v'} AS m, 1.5::DECIMAL(10,2) AS dec, 'NaN'::DOUBLE AS nan`
	cases := map[Format]string{
		FormatJSON: `{"i":1,"s":"a\"b","n":null,"ts":"2024-01-02T03:04:05.123456Z","d":"2024-01-02","l":[1,2],"m":{"k":"v"},"dec":1.5,"nan":"NaN"}` + "\n",
		FormatCSV:  "i,s,n,ts,d,l,m,dec,nan\n1,\"a\"\"b\",,2024-01-02T03:04:05.123456Z,2024-01-02,\"[1,2]\",\"{\"\"k\"\":\"\"v\"\"}\",1.5,NaN\n",
	}
	for f, want := range cases {
		var buf bytes.Buffer
		if _, err := e.Run(context.Background(), q, Options{}, NewWriter(f, &buf)); err != nil {
			t.Fatal(err)
		}
		if buf.String() != want {
			t.Errorf("format %d:\n got %s\nwant %s", f, buf.String(), want)
		}
	}
}
