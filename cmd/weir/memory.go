package main

import (
	"bytes"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/query"
)

// The one memory setting. `memory` bounds the whole process; the
// settings that hold most of its memory are derived from it unless the
// configuration file sets them itself:
//
//   - query.memory_limit (DuckDB, outside Go's heap): a quarter;
//   - query.memory_ceiling (what DuckDB's allocator holds, every tenant's
//     database together, a hard limit: query.SetNativeMemoryLimit): twice
//     memory, or twice query.memory_limit if that is more. memory_limit
//     bounds what DuckDB's buffer manager holds; the ceiling also bounds
//     what it does not count: the strings of a vector being computed
//     (SELECT repeat('x', 100000000 + i) FROM range(20) holds 2 GB at
//     once) and a query's rows while the driver collects them whole
//     before the first is sent (about 0.5 KiB a row of the logs view, so
//     ~0.5 GiB for an answer of max_rows). It is not a budget within
//     memory but a bound that no query passes;
//   - buffer.max_bytes (records queued for the sink): an eighth;
//   - ingest.max_inflight_bytes (request bodies read and decompressed,
//     every ingest endpoint together, until their records are in the
//     buffer): an eighth, but at least twice ingest.max_message_bytes;
//   - sink.compaction.sort_rows: the largest power of two whose window
//     (~800 B a row, with room: the window's copies of the decoded
//     columns, the sorted copy that replaces them column by column, and
//     the column readers' buffers) fits in half;
//   - Go's soft memory limit (runtime/debug.SetMemoryLimit): memory less
//     DuckDB's share and less programReserve, unless GOMEMLIMIT is set in
//     the environment.
//
// The rest of the Go share goes to the batches being built and encoded
// (transform.max_bytes per stream partition being flushed, two per
// encoder in flight, and up to twice transform.max_bytes of their
// buffers kept for the next batches), connections and caches. Under the
// soft limit Go's collector runs at limitGCPercent, unless GOGC is set:
// the limit, not the doubling of a small live heap, decides how often it
// runs under load, and near the limit it works harder instead of letting
// the heap grow.
// bench/RESULTS.md records the peak RSS measured against it.
const (
	defaultMemory = "512MiB"
	minMemory     = 128 << 20
	// compactRowBytes is the memory a row takes while compaction sorts
	// it (sink.Config.CompactSortRows).
	compactRowBytes = 800
	// programReserve is what neither Go's limit nor DuckDB's counts: the
	// program's code (most of it DuckDB's), 103–107 MiB resident under
	// load, and DuckDB's allocations beyond its memory_limit, up to about
	// 10 MiB (bench/RESULTS.md, "Memory within the one setting"). Up to a
	// quarter of memory is set aside for it.
	programReserve = 120 << 20
	// limitGCPercent is Go's GOGC under the soft limit: a collection
	// when the heap has grown to five times what the last one left. At
	// saturation the write path makes ~400 MB/s of short-lived garbage
	// around a small live heap, so with the default of 100 the
	// collector took 4-6 % of the server's CPU; at 400 the heap grows
	// to the limit and it takes ~2 % (bench/RESULTS.md, "The collector
	// under the memory limit").
	limitGCPercent = 400
)

// configKeys returns the dotted paths of the mapping keys a YAML file
// sets, such as "query.memory_limit".
func configKeys(path string) (map[string]bool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		return map[string]bool{}, nil // decodeStrict reports it
	}
	keys := map[string]bool{}
	var walk func(n *yaml.Node, prefix string, depth int)
	walk = func(n *yaml.Node, prefix string, depth int) {
		if depth > 8 { // the config's sections are at most four deep
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix, depth+1)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := prefix + n.Content[i].Value
				keys[k] = true
				walk(n.Content[i+1], k+".", depth+1)
			}
		}
	}
	walk(&doc, "", 0)
	return keys, nil
}

// applyMemory sets the settings derived from c.Memory that set does not
// name (see above). An empty or zero memory derives nothing and sets no
// Go memory limit.
func (c *config) applyMemory(set map[string]bool) error {
	m, err := parseBytes(c.Memory)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	if m == 0 {
		return nil
	}
	if m < minMemory {
		return fmt.Errorf("memory: %s is less than the minimum of 128MiB", c.Memory)
	}
	if !set["query.memory_limit"] {
		c.Query.MemoryLimit = strconv.FormatInt(m/4>>20, 10) + "MiB"
	}
	if !set["query.memory_ceiling"] {
		ceil := 2 * m
		if duck, err := parseBytes(c.Query.MemoryLimit); err == nil {
			ceil = max(ceil, 2*duck)
		}
		c.Query.MemoryCeiling = strconv.FormatInt(ceil>>20, 10) + "MiB"
	}
	if !set["buffer.max_bytes"] {
		c.Buffer.MaxBytes = m / 8
	}
	if !set["ingest.max_inflight_bytes"] {
		c.Ingest.MaxInflightBytes = max(m/8, 2*int64(c.Ingest.MaxMessageBytes))
	}
	if !set["sink.compaction.sort_rows"] {
		rows := m / 2 / compactRowBytes
		c.Sink.Compaction.SortRows = min(int64(1)<<(bits.Len64(uint64(rows))-1), 4<<20)
	}
	return nil
}

// goMemoryLimit is the soft limit serve gives Go's runtime: memory less
// DuckDB's share and the program's reserve, but at least a quarter of
// memory; 0 (no limit) when memory is not set.
func (c *config) goMemoryLimit() int64 {
	m, err := parseBytes(c.Memory)
	if err != nil || m == 0 {
		return 0
	}
	duck, err := parseBytes(c.Query.MemoryLimit)
	if err != nil {
		duck = m
	}
	return max(m-duck-min(programReserve, m/4), m/4)
}

// goGCPercent is the GOGC serve gives Go's runtime: limitGCPercent when
// serve sets Go's soft limit (memory is set, GOMEMLIMIT is not) and GOGC
// is not set, otherwise 0 for Go's own setting. getenv reads the
// environment.
func (c *config) goGCPercent(getenv func(string) string) int {
	if c.goMemoryLimit() == 0 || getenv("GOMEMLIMIT") != "" || getenv("GOGC") != "" {
		return 0
	}
	return limitGCPercent
}

// parseBytes parses a size such as 512MiB, 1GB or 1048576: an integer
// with an optional unit, B, KB, MB, GB, TB (powers of 1000, as DuckDB
// reads them) or KiB, MiB, GiB, TiB (powers of 1024). "" is 0.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size such as 512MiB", s)
	}
	mult := int64(1)
	switch strings.ToLower(strings.TrimSpace(s[i:])) {
	case "", "b":
	case "kb":
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "tb":
		mult = 1e12
	case "kib":
		mult = 1 << 10
	case "mib":
		mult = 1 << 20
	case "gib":
		mult = 1 << 30
	case "tib":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("%q: unknown unit %q (B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, s[i:])
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// nativeMemoryCollector exports what query.NativeMemory reports, when
// the build can count DuckDB's allocations.
type nativeMemoryCollector struct{}

var (
	descNativeCommitted = prometheus.NewDesc("weir_query_native_memory_bytes", "Memory DuckDB's allocator holds committed, every tenant's database together (query.NativeMemory).", nil, nil)
	descNativePeak      = prometheus.NewDesc("weir_query_native_memory_peak_bytes", "The most weir_query_native_memory_bytes has been since start.", nil, nil)
	descNativeLimit     = prometheus.NewDesc("weir_query_native_memory_limit_bytes", "query.memory_ceiling as enforced; 0 when none.", nil, nil)
	descNativeRefused   = prometheus.NewDesc("weir_query_native_memory_refused_total", "Requests of DuckDB's allocator refused at query.memory_ceiling; each failed a query with RESOURCE_EXHAUSTED.", nil, nil)
)

func (nativeMemoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNativeCommitted
	ch <- descNativePeak
	ch <- descNativeLimit
	ch <- descNativeRefused
}

func (nativeMemoryCollector) Collect(ch chan<- prometheus.Metric) {
	st := query.NativeMemory()
	if !st.Supported {
		return
	}
	ch <- prometheus.MustNewConstMetric(descNativeCommitted, prometheus.GaugeValue, float64(st.Committed))
	ch <- prometheus.MustNewConstMetric(descNativePeak, prometheus.GaugeValue, float64(st.Peak))
	ch <- prometheus.MustNewConstMetric(descNativeLimit, prometheus.GaugeValue, float64(st.Limit))
	ch <- prometheus.MustNewConstMetric(descNativeRefused, prometheus.CounterValue, float64(st.Refused))
}
