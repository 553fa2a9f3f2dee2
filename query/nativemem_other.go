//go:build !linux || duckdb_use_lib || duckdb_use_static_lib

package query

import (
	"errors"
	"fmt"
)

// SetNativeMemoryLimit limits the memory DuckDB's allocator holds
// committed; this build cannot (DuckDB's copy of jemalloc is hooked only in
// the driver's prebuilt Linux library), so it returns an error and
// changes nothing.
func SetNativeMemoryLimit(limit int64) (int64, error) {
	if limit < 0 {
		return 0, fmt.Errorf("query: negative native memory limit %d", limit)
	}
	return 0, errors.New("query: DuckDB's allocator cannot be limited in this build (only the prebuilt Linux library's jemalloc can)")
}

// NativeMemory reports DuckDB's allocator as not supported in this
// build.
func NativeMemory() NativeMemoryStats { return NativeMemoryStats{} }

// relieveNativeMemory has nothing to do in this build.
func relieveNativeMemory() {}

// purgeNativeMemory has nothing to do in this build.
func purgeNativeMemory() {}
