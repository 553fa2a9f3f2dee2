package query

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// TestTenantIsolation: each tenant's queries see its own records, staged
// and published, and cannot reach another tenant's files by any path.
func TestTenantIsolation(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	lake := openLake(t, e, dir, nil)
	push := func(tenant string, n int) {
		t.Helper()
		bt, err := arrowbatch.NewBatcher(arrowbatch.DefaultConfig(), tenant, "app", 0, lake, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs := make([]record.Record, n)
		for i := range recs {
			recs[i] = record.Record{Body: fmt.Sprintf("%s %d", tenant, i), SeverityText: "INFO"}
		}
		if err := bt.Consume(context.Background(), record.NewBatch(tenant, "app", recs)); err != nil {
			t.Fatal(err)
		}
		if err := bt.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	push("acme", 3)
	push("globex", 5)
	if err := lake.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	push("acme", 2) // staged, not yet published
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer lake.Shutdown(context.Background())

	count := func(tenant, sql string) int64 {
		t.Helper()
		var w rowsWriter
		if _, err := e.Run(context.Background(), sql, Options{Tenant: tenant}, &w); err != nil {
			t.Fatalf("%s as %s: %v", sql, tenant, err)
		}
		return w.rows[0][0].(int64)
	}
	if n := count("acme", "SELECT count(*) FROM logs WHERE body LIKE 'acme%'"); n != 5 {
		t.Errorf("acme sees %d of its 5 records", n)
	}
	if n := count("acme", "SELECT count(*) FROM app WHERE body NOT LIKE 'acme%'"); n != 0 {
		t.Errorf("acme sees %d records of others", n)
	}
	if n := count("globex", "SELECT count(*) FROM logs"); n != 5 {
		t.Errorf("globex sees %d records, want its 5", n)
	}
	if n := count("", "SELECT count(*) FROM logs"); n != 0 {
		t.Errorf("the default tenant sees %d records of others", n)
	}
	if got := e.Streams("globex"); len(got) != 1 || got[0] != "app" {
		t.Errorf("globex streams %v", got)
	}

	var globexFiles []string
	for _, f := range lake.Files() {
		if f.Partition.Tenant == "globex" {
			globexFiles = append(globexFiles, f.Path)
		}
	}
	if len(globexFiles) == 0 {
		t.Fatal("globex has no published file")
	}
	// A Parquet file where globex's answers are written, as if one were
	// being sent: acme's database may not read it either.
	planted := filepath.Join(dir, "tmp", "query", "tenant=globex", "results", "planted.parquet")
	data, err := os.ReadFile(globexFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(planted, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"SELECT count(*) FROM read_parquet('" + planted + "')",
		"SELECT count(*) FROM read_parquet('" + filepath.Join(dir, "tmp") + "/**/*.parquet')",
		"SELECT count(*) FROM read_parquet('" + globexFiles[0] + "')",
		"SELECT count(*) FROM read_parquet('" + filepath.Join(dir, "lake") + "/**/*.parquet')",
		"SELECT count(*) FROM read_parquet('" + filepath.Join(dir, "staging") + "/**/*.parquet')",
		"SELECT count(*) FROM parquet_metadata('" + globexFiles[0] + "')",
	} {
		var w rowsWriter
		_, err := e.Run(context.Background(), sql, Options{Tenant: "acme"}, &w)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Permission") {
			t.Errorf("%s as acme: %v, want a permission error", sql, err)
		}
	}
	// Its own files acme may read by path.
	for _, f := range lake.Files() {
		if f.Partition.Tenant == "acme" {
			if n := count("acme", "SELECT count(*) FROM read_parquet('"+f.Path+"')"); n != 3 {
				t.Errorf("acme's own file has %d rows", n)
			}
		}
	}
	var w rowsWriter
	if _, err := e.Run(context.Background(), "SELECT 1", Options{Tenant: "Bad Tenant"}, &w); err == nil {
		t.Error("an invalid tenant ran a query")
	}
}

// TestTenantSlots: one tenant holding its share of the slots leaves the
// rest to others.
func TestTenantSlots(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.MaxConcurrent, cfg.TenantConcurrent = 2, 1
	e, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	release, err := e.acquire(context.Background(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := e.catalog("acme"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.acquire(ctx, "default", false); !errors.Is(err, ErrBusy) {
		t.Errorf("second slot of the same tenant: %v, want ErrBusy", err)
	}
	var w rowsWriter
	if _, err := e.Run(context.Background(), "SELECT 1", Options{Tenant: "acme", Timeout: 10 * time.Second}, &w); err != nil {
		t.Errorf("another tenant's query: %v", err)
	}
}

// TestNamedFileCutInContext: DuckDB quotes the query's line under its
// message, cut short in the middle of a path the query names; that path
// is still the query's, so a missing file it names is its mistake, not
// the server's failure. The data directory is short so that the cut
// falls after the tenant's folder.
func TestNamedFileCutInContext(t *testing.T) {
	dir, err := os.MkdirTemp("", "wq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := openEngine(t, dir)
	named := filepath.Join(dir, "lake", "tenant=default", strings.Repeat("none-", 20)+".parquet")
	var w rowsWriter
	_, err = e.Run(context.Background(), "SELECT * FROM read_parquet('"+named+"')", Options{}, &w)
	var fe *fileError
	if !errors.Is(err, ErrInvalid) || errors.As(err, &fe) || !strings.Contains(err.Error(), "...") {
		t.Errorf("%v: want ErrInvalid with DuckDB's cut context, not the server's failure", err)
	}
}
