package sink

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet"

	"github.com/weirlabs/weir/internal/logschema"
)

// Rollups (docs/format.md, "Rollups"): compaction counts the rows of the
// file it writes by minute, service, severity and pattern id, and finds
// the file's most frequent bodies, and stores both in the file's own
// footer (metaRollup). Kept in the file they count, rollups are
// published, copied to object storage, evicted, rewritten by deletion and
// removed by retention with it: a crash can never leave a rollup without
// its rows or count rows twice. The query engine answers counts from the
// rollups of the files that have one and scans only the others
// (query.Engine, the log_counts and log_messages views).

// metaRollup is the footer key of a file's rollup (rollupDoc as JSON).
const metaRollup = "weir.rollup"

const (
	// rollupVersion is the version of the rollups compaction writes.
	// Version 1 (a JSON object per count, docs/format.md) is still read
	// by the query engine; version 2 holds the same counts as parallel
	// arrays in a fifth of the bytes, as every reader of the file keeps
	// its footer (bench/RESULTS.md, "Rollups in columns").
	rollupVersion = 2
	// RollupTopBodies is how many of a file's most frequent bodies its
	// rollup keeps, with their counts in the file.
	RollupTopBodies = 100
	// rollupMaxBodies bounds the distinct bodies counted per file: past
	// it, new bodies are not counted (their rows are still in counts),
	// so a file's top bodies are exact only while it has fewer distinct
	// bodies than that (rollupDoc.BodiesExact).
	rollupMaxBodies = 1 << 16
	// rollupMaxCounts bounds the counts of a rollup (about 12 bytes of
	// footer each): a file with more distinct minutes, services,
	// severities and pattern ids than that gets no rollup, and queries
	// scan it.
	rollupMaxCounts = 1 << 14
)

// rollupDoc is the JSON of metaRollup, version 2. Count i is the rows of
// minute Minute0+Minutes[i] (Unix minutes), service Services[Service[i]],
// severity SeverityNumber[i] and SeverityTexts[SeverityText[i]], and
// pattern Patterns[Pattern[i]] (none where Pattern[i] is null, and none
// for all when Pattern is absent): N[i] rows. Field names are short
// where they repeat, and N comes before any string (rollupCountsIn).
type rollupDoc struct {
	Version int `json:"v"`
	// Rows is the file's row count; the counts add up to it.
	Rows           int64    `json:"rows"`
	Minute0        int64    `json:"m0"`
	Minutes        []int64  `json:"m"`
	Service        []int    `json:"s"`
	SeverityNumber []int32  `json:"sn"`
	SeverityText   []int    `json:"st"`
	Pattern        []*int   `json:"p,omitempty"`
	N              []int64  `json:"n"`
	Services       []string `json:"services"`
	SeverityTexts  []string `json:"severity_texts"`
	Patterns       []string `json:"patterns,omitempty"`
	// Bodies are the file's RollupTopBodies most frequent bodies, most
	// frequent first (ties by body), with their exact counts in the file
	// when BodiesExact.
	Bodies      []rollupBody `json:"bodies"`
	BodiesExact bool         `json:"bodies_exact"`
}

type rollupBody struct {
	Body string `json:"b"`
	N    int64  `json:"n"`
}

type rollupKey struct {
	minute     int64
	service    string
	sevNum     int32
	sevText    string
	pattern    string
	hasPattern bool
}

// rollup accumulates the rollup of the rows added to it.
type rollup struct {
	invalid  bool // rows were added that a rollup cannot describe
	rows     int64
	counts   map[rollupKey]int64
	bodies   map[string]int64
	overflow bool // a body was not counted: rollupMaxBodies reached
}

func newRollup() *rollup {
	return &rollup{counts: map[rollupKey]int64{}, bodies: map[string]int64{}}
}

// rollupColumns are the columns a rollup reads; a schema without them in
// the log schema's types gets no rollup.
type rollupColumns struct {
	ts      *array.Timestamp
	service *array.String
	sevNum  *array.Int32
	sevText *array.String
	body    *array.String
	attrs   *array.Map
}

func rollupColumnsOf(rec arrow.RecordBatch) (rollupColumns, bool) {
	var c rollupColumns
	sc := rec.Schema()
	cols := rec.Columns()
	var ok [6]bool
	c.ts, ok[0] = column[*array.Timestamp](sc, cols, logschema.Timestamp)
	c.service, ok[1] = column[*array.String](sc, cols, logschema.ServiceName)
	c.sevNum, ok[2] = column[*array.Int32](sc, cols, logschema.SeverityNumber)
	c.sevText, ok[3] = column[*array.String](sc, cols, logschema.SeverityText)
	c.body, ok[4] = column[*array.String](sc, cols, logschema.Body)
	c.attrs, ok[5] = column[*array.Map](sc, cols, logschema.Attributes)
	if !ok[0] || !ok[1] || !ok[2] || !ok[3] || !ok[4] || !ok[5] {
		return c, false
	}
	if u := c.ts.DataType().(*arrow.TimestampType).Unit; u != arrow.Nanosecond {
		return c, false
	}
	if _, isStr := c.attrs.Keys().(*array.String); !isStr {
		return c, false
	}
	if _, isStr := c.attrs.Items().(*array.String); !isStr {
		return c, false
	}
	return c, true
}

// add counts the rows of rec. When rec lacks a column the rollup needs,
// or has NULL where the log schema has none, the rollup becomes invalid
// and the file gets none (valid reports it).
func (r *rollup) add(rec arrow.RecordBatch) {
	if r.invalid {
		return
	}
	c, ok := rollupColumnsOf(rec)
	if !ok || c.ts.NullN() > 0 || c.service.NullN() > 0 || c.sevNum.NullN() > 0 || c.sevText.NullN() > 0 {
		r.invalid = true
		return
	}
	keys := c.attrs.Keys().(*array.String)
	items := c.attrs.Items().(*array.String)
	offs := c.attrs.Offsets()
	n := int(rec.NumRows())
	for i := range n {
		var k rollupKey
		// Floor to the minute in milliseconds, as the query views'
		// (epoch_ms(timestamp) // 60000) * 60000 for times after 1970.
		ms := int64(c.ts.Value(i)) / 1e6
		k.minute = ms - ms%60000
		if ms < 0 && ms%60000 != 0 {
			k.minute -= 60000
		}
		k.service, k.sevNum, k.sevText = c.service.Value(i), c.sevNum.Value(i), c.sevText.Value(i)
		if c.attrs.IsValid(i) {
			// The last value of the key wins, as DuckDB's map extract.
			for j := offs[i+1] - 1; j >= offs[i]; j-- {
				if keys.Value(int(j)) == patternIDAttr {
					if items.IsValid(int(j)) {
						k.pattern, k.hasPattern = items.Value(int(j)), true
					}
					break
				}
			}
		}
		if cnt, ok := r.counts[k]; ok {
			r.counts[k] = cnt + 1
		} else if len(r.counts) == rollupMaxCounts {
			r.invalid = true
			return
		} else {
			// Arrow strings alias the batch's buffers: copy what is kept.
			k.service, k.sevText, k.pattern = strings.Clone(k.service), strings.Clone(k.sevText), strings.Clone(k.pattern)
			r.counts[k] = 1
		}
		if c.body.IsValid(i) {
			b := c.body.Value(i)
			if cnt, ok := r.bodies[b]; ok {
				r.bodies[b] = cnt + 1
			} else if len(r.bodies) < rollupMaxBodies {
				r.bodies[strings.Clone(b)] = 1
			} else {
				r.overflow = true
			}
		}
	}
	r.rows += int64(n)
}

// valid reports whether the rollup describes every row added.
func (r *rollup) valid() bool { return !r.invalid }

// patternIDAttr is the attribute the pattern processor sets
// (transform.AttrPatternID; sink does not import transform).
const patternIDAttr = "pattern.id"

// rollupCountsIn returns how many counts the metaRollup value v holds,
// without decoding it (readFooter reads every file's footer at start).
// Within JSON strings a quote is escaped, so a key's text appears
// nowhere else: a version 1 rollup has one "m" key per count, and
// version 2 has one array "n" of numbers, before any string.
func rollupCountsIn(v string) int {
	if strings.HasPrefix(v, `{"v":1,`) {
		return strings.Count(v, `"m":`)
	}
	i := strings.Index(v, `"n":[`)
	if i < 0 {
		return 0
	}
	list := v[i+len(`"n":[`):]
	list = list[:max(strings.IndexByte(list, ']'), 0)]
	if list == "" {
		return 0
	}
	return strings.Count(list, ",") + 1
}

// encode returns the rollup as metaRollup's value.
func (r *rollup) encode() (string, error) {
	keys := make([]rollupKey, 0, len(r.counts))
	for k := range r.counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b rollupKey) int {
		return cmp.Or(cmp.Compare(a.minute, b.minute), strings.Compare(a.service, b.service),
			cmp.Compare(a.sevNum, b.sevNum), strings.Compare(a.sevText, b.sevText),
			comparePatterns(a, b))
	})
	n := len(keys)
	doc := rollupDoc{Version: rollupVersion, Rows: r.rows, BodiesExact: !r.overflow,
		Minutes: make([]int64, n), Service: make([]int, n), SeverityNumber: make([]int32, n),
		SeverityText: make([]int, n), N: make([]int64, n), Services: []string{}, SeverityTexts: []string{},
		Bodies: []rollupBody{}}
	services, texts, patterns := map[string]int{}, map[string]int{}, map[string]int{}
	index := func(m map[string]int, names *[]string, s string) int {
		i, ok := m[s]
		if !ok {
			i = len(*names)
			m[s] = i
			*names = append(*names, s)
		}
		return i
	}
	if n > 0 {
		doc.Minute0 = keys[0].minute / 60000 // minutes are floored, so exact
	}
	for i, k := range keys {
		doc.Minutes[i] = k.minute/60000 - doc.Minute0
		doc.Service[i] = index(services, &doc.Services, k.service)
		doc.SeverityNumber[i] = k.sevNum
		doc.SeverityText[i] = index(texts, &doc.SeverityTexts, k.sevText)
		doc.N[i] = r.counts[k]
		if k.hasPattern {
			if doc.Pattern == nil {
				doc.Pattern = make([]*int, n)
			}
			p := index(patterns, &doc.Patterns, k.pattern)
			doc.Pattern[i] = &p
		}
	}
	for b, n := range r.bodies {
		doc.Bodies = append(doc.Bodies, rollupBody{Body: b, N: n})
	}
	slices.SortFunc(doc.Bodies, func(a, b rollupBody) int {
		return cmp.Or(cmp.Compare(b.N, a.N), strings.Compare(a.Body, b.Body))
	})
	if len(doc.Bodies) > RollupTopBodies {
		doc.Bodies = doc.Bodies[:RollupTopBodies]
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("encode rollup: %w", err)
	}
	return string(out), nil
}

// comparePatterns orders keys without a pattern id before those with
// one, and those by pattern id.
func comparePatterns(a, b rollupKey) int {
	switch {
	case a.hasPattern != b.hasPattern && !a.hasPattern:
		return -1
	case a.hasPattern != b.hasPattern:
		return 1
	}
	return strings.Compare(a.pattern, b.pattern)
}

// compactedProps are the writer properties of compacted files beyond
// writerProps': a bloom filter on trace_id in every row group, which
// lets readers (DuckDB) skip the row groups that cannot hold a looked-up
// trace id. It is sized at 1 % false positives for the trace ids of a
// row group of min(rowGroupRows, rows) rows with as many trace ids, plus
// a quarter, as first (the first rows written) has: about 1.2 bytes per
// trace id (a reader reads the filter of every row group it considers,
// so a filter sized for every row would cost ten times the reading
// where one row in ten has a trace id).
func compactedProps(rowGroupRows, rows int64, first arrow.RecordBatch) []parquet.WriterProperty {
	ndv := min(rowGroupRows, rows)
	if idx := first.Schema().FieldIndices(logschema.TraceID); len(idx) == 1 && first.NumRows() > 0 {
		c := first.Column(idx[0])
		ndv = ndv * int64(c.Len()-c.NullN()) / int64(c.Len()) * 5 / 4
	}
	return []parquet.WriterProperty{
		parquet.WithBloomFilterEnabledFor(logschema.TraceID, true),
		parquet.WithBloomFilterNDVFor(logschema.TraceID, max(1, ndv)),
		parquet.WithBloomFilterFPPFor(logschema.TraceID, 0.01),
	}
}

// appendRollup appends r's footer entry to meta if r is valid.
func appendRollup(meta [][2]string, r *rollup) ([][2]string, error) {
	if !r.valid() {
		return meta, nil
	}
	v, err := r.encode()
	if err != nil {
		return meta, err
	}
	return append(meta, [2]string{metaRollup, v}), nil
}
