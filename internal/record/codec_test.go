package record

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"runtime"
	"testing"
)

// normalized returns b with empty lists as nil and Bytes recomputed, the
// form DecodeBatch returns.
func normalized(b *Batch) *Batch {
	out := *b
	out.Records = nil
	out.Bytes = 0
	for _, r := range b.Records {
		if len(r.Attributes) == 0 {
			r.Attributes = nil
		}
		if len(r.Resource) == 0 {
			r.Resource = nil
		}
		out.Records = append(out.Records, r)
		out.Bytes += r.Size()
	}
	return &out
}

func roundTrip(t *testing.T, b *Batch) []byte {
	t.Helper()
	enc := AppendBatch(nil, b)
	got, err := DecodeBatch(enc)
	if err != nil {
		t.Fatalf("DecodeBatch: %v", err)
	}
	if want := normalized(b); !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// Appending keeps what dst held.
	prefix := []byte("prefix")
	if enc2 := AppendBatch(prefix, b); !bytes.Equal(enc2[:6], prefix) || !bytes.Equal(enc2[6:], enc) {
		t.Fatal("AppendBatch to a non-empty dst differs")
	}
	return enc
}

func fullRecord() Record {
	return Record{
		Timestamp:         1_767_323_045_123_456_789,
		ObservedTimestamp: 1_767_323_045_200_000_000,
		SeverityNumber:    SeverityWarn + 1,
		SeverityText:      "WARN2",
		Body:              "disk 93% full on /var — ünïcødé ✓",
		Attributes:        []KV{{"code.function", "flush"}, {"", ""}, {"empty.value", ""}},
		Resource:          []KV{{"service.name", "api"}, {"host.name", "h1"}},
		TraceID:           [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:            [8]byte{8, 7, 6, 5, 4, 3, 2, 1},
		Flags:             1,
	}
}

func TestBatchRoundTrip(t *testing.T) {
	t.Parallel()
	res := []KV{{"service.name", "api"}, {"host.name", "h1"}}
	other := []KV{{"service.name", "db"}}
	full := fullRecord()
	extremes := Record{
		Timestamp: math.MaxInt64, ObservedTimestamp: math.MinInt64,
		SeverityNumber: math.MinInt32, Flags: math.MaxUint32,
		TraceID: [16]byte{15: 1},
	}
	cases := []struct {
		name string
		b    *Batch
	}{
		{"no records", &Batch{Tenant: "acme", Stream: "web", Partition: 3, Offset: 99}},
		{"idempotent producer", &Batch{Tenant: "acme", Stream: "web", Offset: 5, ProducerID: "host-7/app", Sequence: 1 << 40, Records: []Record{{Body: "x"}}}},
		{"empty names", &Batch{Records: []Record{{}}}},
		{"zero record", NewBatch("t", "s", []Record{{}})},
		{"full record", NewBatch("acme", "web", []Record{full})},
		{"extremes", &Batch{Tenant: "a", Stream: "b", Partition: math.MinInt32, Offset: math.MinInt64,
			Records: []Record{extremes, {Timestamp: math.MinInt64, SeverityNumber: math.MaxInt32}, extremes}}},
		{"max partition and offset", &Batch{Partition: math.MaxInt32, Offset: math.MaxInt64, Records: []Record{{Body: "x"}}}},
		{"span id only", NewBatch("t", "s", []Record{{SpanID: [8]byte{1}}})},
		{"empty lists", NewBatch("t", "s", []Record{{Attributes: []KV{}, Resource: []KV{}}})},
		{"resource runs", NewBatch("t", "s", []Record{
			{Body: "1", Resource: res},
			{Body: "2", Resource: res},                       // same slice
			{Body: "3", Resource: append([]KV(nil), res...)}, // equal copy
			{Body: "4", Resource: other},                     // different
			{Body: "5"},                                      // none
			{Body: "6", Resource: other},                     // same as two back, not as previous
			{Body: "7", Resource: res[:1]},                   // prefix
			{Body: "8", Resource: []KV{{"service.name", "api"}, {"host.name", "h2"}}}, // one value differs
		})},
		{"timestamps out of order", NewBatch("t", "s", []Record{
			{Timestamp: 5_000, ObservedTimestamp: 1}, {Timestamp: 1_000}, {Timestamp: 9_999_999_999}, {Timestamp: 0, ObservedTimestamp: 7},
		})},
		{"realistic", realisticBatch(t, 1000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			roundTrip(t, tc.b)
		})
	}
}

func TestBatchSharesResources(t *testing.T) {
	t.Parallel()
	res := []KV{{"service.name", "api"}, {"host.name", "h1"}}
	b := NewBatch("t", "s", []Record{{Resource: res}, {Resource: append([]KV(nil), res...)}, {Resource: res}})
	got, err := DecodeBatch(AppendBatch(nil, b))
	if err != nil {
		t.Fatal(err)
	}
	r := got.Records
	if &r[0].Resource[0] != &r[2].Resource[0] || cap(r[0].Resource) != len(res) {
		t.Error("equal resources are not shared, or the shared slice has spare capacity")
	}
	// Appending to one record's list must not change another's.
	r[1].Resource = append(r[1].Resource, KV{"k", "v"})
	if len(r[0].Resource) != 2 || len(r[2].Resource) != 2 {
		t.Error("append to a shared resource list changed another record")
	}
}

func TestDecodeBatchDoesNotAlias(t *testing.T) {
	t.Parallel()
	enc := AppendBatch(nil, NewBatch("acme", "web", []Record{fullRecord()}))
	got, err := DecodeBatch(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		enc[i] = 0
	}
	if got.Tenant != "acme" || got.Records[0].Body != fullRecord().Body {
		t.Error("decoded strings alias the input")
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	t.Parallel()
	valid := AppendBatch(nil, NewBatch("acme", "web", []Record{fullRecord(), fullRecord(), {Body: "x"}}))
	for n := range len(valid) {
		if _, err := DecodeBatch(valid[:n]); !errors.Is(err, ErrInvalidBatch) {
			t.Fatalf("DecodeBatch of %d of %d bytes = %v, want ErrInvalidBatch", n, len(valid), err)
		}
	}
	f := func(name string, data []byte) {
		t.Helper()
		b, err := DecodeBatch(data)
		if !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: DecodeBatch = %+v, %v; want ErrInvalidBatch", name, b, err)
		}
	}
	f("trailing byte", append(bytes.Clone(valid), 0))
	f("version 2", append([]byte{2}, valid[1:]...))
	// header: version, "", "", partition 0, offset 0, 1 record, 0 attributes
	hdr := []byte{1, 0, 0, 0, 0, 1, 0}
	f("unknown mask bit", append(hdr, 0x80, 0x01, 0, 0, 0, 0))
	f("same resource first", append(hdr, maskSameResource, 0, 0, 0, 0))
	f("both resource bits", append(hdr, maskResource|maskSameResource, 0, 0, 0, 0))
	f("attributes not announced", append(hdr, maskAttributes, 0, 0, 0, 0, 1, 0, 0))
	f("empty attribute list", []byte{1, 0, 0, 0, 0, 1, 1, maskAttributes, 0, 0, 0, 0, 0, 0, 0})
	f("announced attributes unused", []byte{1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0})
	f("partition out of range", []byte{1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0}) // 2^31
	f("severity out of range", append(hdr, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0))
	f("flags out of range", append(hdr, maskFlags, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x1f))
	f("body past the end", append(hdr, 0, 0, 0, 0, 5, 'a'))
	f("varint overflow", []byte{1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f("trace id truncated", append(hdr, maskTraceID, 0, 0, 0, 0, 1, 2, 3))
}

// TestDecodeBatchBoundsAllocation feeds small inputs that announce huge
// counts and lengths: the decoder must refuse them before allocating.
func TestDecodeBatchBoundsAllocation(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f} // 2^56-1
	inputs := [][]byte{
		append(append([]byte{1, 0, 0, 0, 0}, huge...), 0),                     // records
		append(append([]byte{1, 0, 0, 0, 0, 1}, huge...), 0, 0, 0, 0, 0),      // attributes
		append(append([]byte{1}, huge...), 'a'),                               // tenant length
		append(append([]byte{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0}, huge...), 'a'), // body length
		{1, 0, 0, 0, 0, 200, 1, 0, 0, 0, 0},                                   // 200 records in 4 bytes
	}
	// The worst legitimate ratio: records of 5 bytes each.
	many := AppendBatch(nil, &Batch{Records: make([]Record, 10_000)})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := DecodeBatch(many); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 30*uint64(len(many)) {
		t.Errorf("decoding %d bytes of empty records allocated %d bytes, more than 30 times as much", len(many), n)
	}
	for _, in := range inputs {
		runtime.ReadMemStats(&before)
		_, err := DecodeBatch(in)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("DecodeBatch(%x) = %v", in, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("DecodeBatch(%x) allocated %d bytes", in, n)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	res := []KV{{"service.name", "api"}}
	for _, b := range []*Batch{
		{Tenant: "acme", Stream: "web", Partition: 1, Offset: 7},
		NewBatch("t", "s", []Record{fullRecord(), {Body: "x", Resource: res}, {Resource: res}, {}}),
		realisticBatch(f, 20),
	} {
		f.Add(AppendBatch(nil, b))
	}
	for _, data := range columnarSeeds(f) {
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidBatch) {
				t.Fatalf("error %v does not wrap ErrInvalidBatch", err)
			}
			return
		}
		if b.Cols != nil {
			checkDecodedColumnar(t, b)
			return
		}
		bytesWant := 0
		for i := range b.Records {
			bytesWant += b.Records[i].Size()
		}
		if b.Bytes != bytesWant {
			t.Fatalf("Bytes = %d, records add up to %d", b.Bytes, bytesWant)
		}
		enc := AppendBatch(nil, b)
		b2, err := DecodeBatch(enc)
		if err != nil {
			t.Fatalf("re-encoding of a decoded batch does not decode: %v", err)
		}
		if !reflect.DeepEqual(b, b2) {
			t.Fatalf("re-encoding changed the batch:\n%+v\n%+v", b, b2)
		}
		if enc2 := AppendBatch(nil, b2); !bytes.Equal(enc, enc2) {
			t.Fatal("encoding is not deterministic")
		}
	})
}

// loghubLines returns the lines of a Loghub sample, the bodies of
// realistic records.
func loghubLines(tb testing.TB) []string {
	tb.Helper()
	f, err := os.Open("../../testdata/loghub/HDFS_2k.log")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return lines
}

// realisticBatch returns n records like the pipeline benchmarks': Loghub
// HDFS bodies 1ms apart, severities INFO/WARN/ERROR 80/10/10 %, three
// attributes, the same three resource attributes (one partition holds one
// service), a trace and span id on every tenth record.
func realisticBatch(tb testing.TB, n int) *Batch {
	lines := loghubLines(tb)
	levels := []int32{SeverityInfo, SeverityInfo, SeverityInfo, SeverityInfo, SeverityInfo, SeverityInfo, SeverityInfo, SeverityInfo, SeverityWarn, SeverityError}
	funcs := []string{"PacketResponder.run", "DataXceiver.writeBlock", "FSNamesystem.addStoredBlock", "BlockManager.invalidate"}
	statuses := []string{"200", "201", "404", "500", "503"}
	res := []KV{{"service.name", "hdfs-datanode"}, {"host.name", "node-07.dc1.example.com"}, {"deployment.environment", "production"}}
	base := int64(1_767_323_045_000_000_000)
	recs := make([]Record, n)
	for i := range recs {
		sev := levels[i%len(levels)]
		r := Record{
			Timestamp:         base + int64(i)*1_000_000,
			ObservedTimestamp: base + int64(i)*1_000_000 + 250_000,
			SeverityNumber:    sev,
			SeverityText:      SeverityText(sev),
			Body:              lines[i%len(lines)],
			Attributes: []KV{
				{"code.function", funcs[i%len(funcs)]},
				{"thread.id", fmt.Sprint(i % 64)},
				{"http.status_code", statuses[i%len(statuses)]},
			},
			Resource: res,
		}
		if i%10 == 0 {
			for j := range r.TraceID {
				r.TraceID[j] = byte(i*7 + j)
			}
			for j := range r.SpanID {
				r.SpanID[j] = byte(i*3 + j)
			}
			r.Flags = 1
		}
		recs[i] = r
	}
	return NewBatch("default", "hdfs", recs)
}

func BenchmarkAppendBatch(b *testing.B) {
	batch := realisticBatch(b, 1000)
	enc := AppendBatch(nil, batch)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		enc = AppendBatch(enc[:0], batch)
	}
	b.ReportMetric(float64(len(enc))/1000, "B/record")
	b.ReportMetric(float64(batch.Bytes)/float64(len(enc)), "accounted/encoded")
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkDecodeBatch(b *testing.B) {
	enc := AppendBatch(nil, realisticBatch(b, 1000))
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBatch(enc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "records/s")
}
