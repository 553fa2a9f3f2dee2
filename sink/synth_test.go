package sink_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/logschema"
)

// This file builds synthetic log batches in logschema.Arrow() for the tests
// and benchmarks of this package. Identifiers are exported so that the
// black-box tests in package sink_test can use them too.

// SynthOptions shapes a run of synthetic log rows.
type SynthOptions struct {
	Rows        int       // total rows
	BatchRows   int       // rows per record batch (last one may be shorter)
	Part        int32     // value of the _partition column
	FirstOffset int64     // _offset of the first row; offsets are consecutive
	Start       time.Time // timestamp of the first row; rows are 1 ms apart
	Bodies      []string  // body lines, cycled; nil means generated lines
	// Systems, when set, replaces Bodies and the random services: row i
	// comes from system i%len(Systems) (service "sys-<index>"), taking
	// its lines in turn, as interleaved traffic of several services.
	Systems [][]string
	Seed    uint64
}

var synthServices = [...]string{
	"checkout", "payments", "frontend", "auth", "inventory", "search", "shipping", "notifications",
}

var synthHosts = func() []string {
	h := make([]string, 16)
	for i := range h {
		h[i] = fmt.Sprintf("node-%02d.eu-west-1.internal", i)
	}
	return h
}()

var synthFuncs = [...]string{
	"handleRequest", "Serve", "flushBatch", "(*Conn).Read", "retryLoop", "Dial", "processBatch", "commitOffsets",
}

// LoadLoghub returns the lines of the Loghub 2k samples in testdata/loghub
// (about 32,000 lines of 16 real systems, ~140 B each).
func LoadLoghub(tb testing.TB) []string {
	tb.Helper()
	var lines []string
	for _, sys := range LoadLoghubSystems(tb) {
		lines = append(lines, sys...)
	}
	return lines
}

// LoadLoghubSystems returns the lines of each Loghub 2k sample, one slice
// per system, in file name order.
func LoadLoghubSystems(tb testing.TB) [][]string {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "loghub", "*_2k.log"))
	if len(files) != 16 {
		tb.Fatalf("want the 16 Loghub samples in testdata/loghub, found %d", len(files))
	}
	sort.Strings(files)
	var systems [][]string
	for _, name := range files {
		var lines []string
		f, err := os.Open(name)
		if err != nil {
			tb.Fatal(err)
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
			tb.Fatal(err)
		}
		systems = append(systems, lines)
	}
	return systems
}

func generatedBodies(n int) []string {
	r := rand.New(rand.NewPCG(7, 7))
	verbs := []string{"accepted", "rejected", "retrying", "completed", "timed out", "opened", "closed"}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("request %08x %s after %d ms for user u%05d path=/api/v1/items/%d",
			r.Uint32(), verbs[r.IntN(len(verbs))], r.IntN(2000), r.IntN(50000), r.IntN(100000))
	}
	return out
}

// SynthBatches builds o.Rows rows in logschema.Arrow(): bodies cycled from
// o.Bodies, 8 services, severities INFO/WARN/ERROR at 80/10/10 %, three
// attributes and three resource attributes, a trace and span id on every
// 10th row. The caller owns the batches and must release them.
func SynthBatches(mem memory.Allocator, o SynthOptions) []arrow.RecordBatch {
	if o.BatchRows <= 0 {
		o.BatchRows = 8192
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	}
	if o.Bodies == nil {
		o.Bodies = generatedBodies(4096)
	}
	r := rand.New(rand.NewPCG(o.Seed, 42))
	b := array.NewRecordBuilder(mem, logschema.Arrow())
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
	ak := attrs.KeyBuilder().(*array.StringBuilder)
	av := attrs.ItemBuilder().(*array.StringBuilder)
	rk := res.KeyBuilder().(*array.StringBuilder)
	rv := res.ItemBuilder().(*array.StringBuilder)

	var out []arrow.RecordBatch
	start := o.Start.UnixNano()
	for i := 0; i < o.Rows; i++ {
		t := start + int64(i)*int64(time.Millisecond)
		ts.Append(arrow.Timestamp(t))
		obs.Append(arrow.Timestamp(t + int64(r.IntN(5_000_000))))
		var sn int32
		switch p := r.IntN(10); {
		case p < 8:
			sn = 9
		case p == 8:
			sn = 13
		default:
			sn = 17
		}
		sevNum.Append(sn)
		sevText.Append([...]string{9: "INFO", 13: "WARN", 17: "ERROR"}[sn])
		s := r.IntN(len(synthServices))
		service := synthServices[s]
		if n := len(o.Systems); n > 0 {
			sys := o.Systems[i%n]
			body.Append(sys[(i/n)%len(sys)])
			service = fmt.Sprintf("sys-%02d", i%n)
		} else {
			body.Append(o.Bodies[i%len(o.Bodies)])
		}
		host := synthHosts[r.IntN(len(synthHosts))]
		attrs.Append(true)
		ak.Append("code.function")
		av.Append(synthFuncs[r.IntN(len(synthFuncs))])
		ak.Append("thread.id")
		av.Append(fmt.Sprint(r.IntN(64)))
		ak.Append("http.status_code")
		av.Append([...]string{"200", "200", "200", "201", "204", "404", "500"}[r.IntN(7)])
		res.Append(true)
		rk.Append("service.name")
		rv.Append(service)
		rk.Append("host.name")
		rv.Append(host)
		rk.Append("deployment.environment")
		rv.Append("production")
		svc.Append(service)
		if i%10 == 0 {
			trace.Append(fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()))
			span.Append(fmt.Sprintf("%016x", r.Uint64()))
			flags.Append(1)
		} else {
			trace.AppendNull()
			span.AppendNull()
			flags.Append(0)
		}
		part.Append(o.Part)
		off.Append(o.FirstOffset + int64(i))
		if (i+1)%o.BatchRows == 0 || i == o.Rows-1 {
			out = append(out, b.NewRecordBatch())
		}
	}
	return out
}

// ReleaseAll releases every batch.
func ReleaseAll(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}
