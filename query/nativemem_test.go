package query

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
)

// TestMain runs the package's tests with DuckDB's allocator hooked, as
// weir serve runs it, where the build can hook it (without a limit).
func TestMain(m *testing.M) {
	_, _ = SetNativeMemoryLimit(0) // where it fails, TestNativeMemoryLimit says why
	os.Exit(m.Run())
}

// TestNativeMemoryLimit runs a query whose one vector of strings is far
// past DuckDB's memory_limit: with the native limit it fails with
// ErrResources, what DuckDB's allocator holds stays under the limit, and
// the engine answers the next query.
func TestNativeMemoryLimit(t *testing.T) {
	e := openEngine(t, t.TempDir())
	queryInts(t, e, "SELECT 1::BIGINT")  // DuckDB's start-up allocations are in
	prev, err := SetNativeMemoryLimit(0) // installs the hooks; no limit yet
	if err != nil {
		if runtime.GOOS == "linux" || os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skipf("this build cannot limit DuckDB's allocator: %v", err)
	}
	t.Cleanup(func() {
		if _, err := SetNativeMemoryLimit(prev); err != nil {
			t.Error(err)
		}
	})
	before := NativeMemory()
	t.Logf("DuckDB's allocator holds %d MiB before the query", before.Committed>>20)
	const room = 256 << 20
	if _, err := SetNativeMemoryLimit(before.Committed + room); err != nil {
		t.Fatal(err)
	}
	st := NativeMemory()
	if !st.Supported || st.Limit == 0 || st.Committed <= 0 {
		t.Fatalf("stats %+v after setting the limit", st)
	}

	// 20 strings of 100 MB in one vector: 2 GB; memory_limit is 1 GB.
	var w rowsWriter
	_, err = e.Run(context.Background(), "SELECT max(length(repeat('x', 100000000 + i::INT))) FROM range(20) t(i)", Options{}, &w)
	if !errors.Is(err, ErrResources) {
		t.Fatalf("err = %v, want ErrResources", err)
	}
	after := NativeMemory()
	if after.Committed > after.Limit {
		t.Errorf("DuckDB holds %d bytes committed, past the limit of %d", after.Committed, after.Limit)
	}
	if after.Refused <= st.Refused {
		t.Errorf("refusals %d → %d: the query failed for another reason: %v", st.Refused, after.Refused, err)
	}
	if got := queryInts(t, e, "SELECT count(*) FROM range(1000000) WHERE range % 7 = 0"); got[0] != 142858 {
		t.Errorf("count after the refused query = %d, want 142858", got[0])
	}

	// Within the limit the same kind of query runs.
	if got := queryInts(t, e, "SELECT max(length(repeat('x', 1000000 + i::INT)))::BIGINT FROM range(20) t(i)"); got[0] != 1000019 {
		t.Errorf("max length = %d, want 1000019", got[0])
	}
}
