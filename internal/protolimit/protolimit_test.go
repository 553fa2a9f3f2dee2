package protolimit_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weirlabs/weir/internal/protolimit"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// testLimits are the limits ingest applies, with a small message count.
var testLimits = protolimit.Limits{
	MaxDepth:      128,
	ValueTypes:    []protoreflect.FullName{"weir.v1.AnyValue"},
	MaxValueDepth: 32,
	MaxMessages:   10_000,
}

func newChecker(t testing.TB, m proto.Message, lim protolimit.Limits) *protolimit.Checker {
	t.Helper()
	c, err := protolimit.New(m.ProtoReflect().Descriptor(), lim)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// layer is one length-prefixed message field around the next layer:
// prefix, then the field's tag and length, then the inner message.
type layer struct {
	prefix []byte
	field  protowire.Number
}

// nestWire encodes n layers, layer(0) outermost, around inner. It
// builds the encoding front to back in one buffer (the lengths are
// computed first, innermost first), so a million levels take linear
// time and no recursion.
func nestWire(n int, layerAt func(int) layer, inner []byte) []byte {
	sizes := make([]int, n+1)
	sizes[n] = len(inner)
	for i := n - 1; i >= 0; i-- {
		l := layerAt(i)
		sizes[i] = len(l.prefix) + protowire.SizeTag(l.field) + protowire.SizeBytes(sizes[i+1])
	}
	out := make([]byte, 0, sizes[0])
	for i := range n {
		l := layerAt(i)
		out = append(out, l.prefix...)
		out = protowire.AppendTag(out, l.field, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(sizes[i+1]))
	}
	return append(out, inner...)
}

// pushWithValue encodes a PushRequest of one record whose attribute "a"
// has a value nested levels deep (1 = a scalar), through arrays or
// key-value lists.
func pushWithValue(levels int, kvlist bool) []byte {
	scalar := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "x") // string_value
	stream := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "app")
	key := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "a")
	head := []layer{
		{stream, 2}, // PushRequest.records
		{nil, 6},    // Record.attributes
		{key, 2},    // KeyValue.value: the first AnyValue
	}
	var cycle []layer
	if kvlist {
		cycle = []layer{{nil, 7}, {nil, 1}, {key, 2}} // AnyValue.kvlist_value, KeyValueList.values, KeyValue.value
	} else {
		cycle = []layer{{nil, 6}, {nil, 1}} // AnyValue.array_value, ArrayValue.values
	}
	n := len(head) + (levels-1)*len(cycle)
	return nestWire(n, func(i int) layer {
		if i < len(head) {
			return head[i]
		}
		return cycle[(i-len(head))%len(cycle)]
	}, scalar)
}

// valueDepth returns the nesting of an attribute value (1 = a scalar).
func valueDepth(v *weirv1.AnyValue) int {
	d := 0
	for _, e := range v.GetArrayValue().GetValues() {
		d = max(d, valueDepth(e))
	}
	for _, kv := range v.GetKvlistValue().GetValues() {
		d = max(d, valueDepth(kv.GetValue()))
	}
	return d + 1
}

// TestDeepValues checks the attack: a million levels of attribute
// values are refused in a single linear pass, and the bound is exact: 32
// levels pass (and decode to 32 levels), 33 do not.
func TestDeepValues(t *testing.T) {
	t.Parallel()
	c := newChecker(t, &weirv1.PushRequest{}, testLimits)
	deep := pushWithValue(1_000_000, false)
	if len(deep) < 9<<20 || len(deep) > 16<<20 {
		t.Fatalf("the attack is %d bytes, want about 9.5 MB", len(deep))
	}
	err := c.Check(deep)
	if !errors.Is(err, protolimit.ErrTooDeep) || err.Error() != "attribute nesting deeper than 32 levels" {
		t.Fatalf("Check = %v, want attribute nesting deeper than 32 levels", err)
	}
	for _, kvlist := range []bool{false, true} {
		ok := pushWithValue(32, kvlist)
		if err := c.Check(ok); err != nil {
			t.Errorf("kvlist %t: 32 levels: %v", kvlist, err)
		}
		var req weirv1.PushRequest
		if err := req.UnmarshalVT(ok); err != nil {
			t.Fatal(err)
		}
		if d := valueDepth(req.GetRecords()[0].GetAttributes()[0].GetValue()); d != 32 {
			t.Errorf("kvlist %t: the encoding nests %d levels, want 32", kvlist, d)
		}
		if err := c.Check(pushWithValue(33, kvlist)); !errors.Is(err, protolimit.ErrTooDeep) {
			t.Errorf("kvlist %t: 33 levels: %v, want ErrTooDeep", kvlist, err)
		}
	}
}

// TestMessageDepth checks MaxDepth on its own, for known message fields
// and for groups of unknown fields, which decoders walk as well.
func TestMessageDepth(t *testing.T) {
	t.Parallel()
	lim := protolimit.Limits{MaxDepth: 5, MaxMessages: 100}
	c := newChecker(t, &weirv1.PushRequest{}, lim)
	// PushRequest > Record > KeyValue > AnyValue > ArrayValue: 5 levels.
	five := nestWire(4, func(i int) layer { return layer{nil, []protowire.Number{2, 6, 2, 6}[i]} }, nil)
	if err := c.Check(five); err != nil {
		t.Errorf("5 levels: %v", err)
	}
	six := nestWire(5, func(i int) layer { return layer{nil, []protowire.Number{2, 6, 2, 6, 1}[i]} }, nil)
	if err := c.Check(six); !errors.Is(err, protolimit.ErrTooDeep) || !strings.Contains(err.Error(), "message nesting deeper than 5 levels") {
		t.Errorf("6 levels: %v", err)
	}
	groups := func(n int) []byte {
		var b []byte
		for range n {
			b = protowire.AppendTag(b, 99, protowire.StartGroupType)
		}
		for range n {
			b = protowire.AppendTag(b, 99, protowire.EndGroupType)
		}
		return b
	}
	if err := c.Check(groups(4)); err != nil {
		t.Errorf("unknown groups 4 deep (5 levels): %v", err)
	}
	if err := c.Check(groups(5)); !errors.Is(err, protolimit.ErrTooDeep) {
		t.Errorf("unknown groups 5 deep (6 levels): %v, want ErrTooDeep", err)
	}
}

// TestMessageCount checks MaxMessages against a flood of empty values,
// two bytes each on the wire.
func TestMessageCount(t *testing.T) {
	t.Parallel()
	c := newChecker(t, &weirv1.PushRequest{}, testLimits)
	flood := func(n int) []byte {
		var arr []byte
		for range n {
			arr = protowire.AppendTag(arr, 1, protowire.BytesType) // ArrayValue.values: an empty AnyValue
			arr = protowire.AppendVarint(arr, 0)
		}
		// PushRequest > Record > KeyValue > AnyValue > ArrayValue: 5 messages.
		return nestWire(4, func(i int) layer { return layer{nil, []protowire.Number{2, 6, 2, 6}[i]} }, arr)
	}
	if err := c.Check(flood(testLimits.MaxMessages - 5)); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	err := c.Check(flood(testLimits.MaxMessages - 4))
	if !errors.Is(err, protolimit.ErrTooManyMessages) || !strings.Contains(err.Error(), "more than 10000 messages") {
		t.Errorf("past the limit: %v", err)
	}
}

// TestRecordCount: records are counted apart from messages, empty ones
// too (two bytes each on the wire).
func TestRecordCount(t *testing.T) {
	t.Parallel()
	lim := testLimits
	lim.RecordTypes, lim.MaxRecords = []protoreflect.FullName{"weir.v1.LogRecord"}, 100
	c := newChecker(t, &weirv1.PushRequest{}, lim)
	push := func(n int) []byte {
		req := &weirv1.PushRequest{Stream: "s"}
		for range n {
			req.Records = append(req.Records, &weirv1.LogRecord{})
		}
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := c.Check(push(100)); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	err := c.Check(push(101))
	if !errors.Is(err, protolimit.ErrTooManyRecords) || !strings.Contains(err.Error(), "more than 100 records") {
		t.Errorf("past the limit: %v", err)
	}
}

// TestMalformed checks that broken encodings are refused, as the
// decoder refuses them, and that what the checker skips (scalars, packed
// and unknown fields, fields of a message type sent with another wire
// type) passes.
func TestMalformed(t *testing.T) {
	t.Parallel()
	c := newChecker(t, &weirv1.PushRequest{}, testLimits)
	valid := pushWithValue(3, true)
	valid = protowire.AppendTag(valid, 3, protowire.VarintType) // ack_level
	valid = protowire.AppendVarint(valid, 2)
	valid = protowire.AppendTag(valid, 1000, protowire.Fixed64Type) // unknown
	valid = protowire.AppendFixed64(valid, 1)
	valid = protowire.AppendTag(valid, 2, protowire.Fixed32Type) // records, as a fixed32: the decoder's problem
	valid = protowire.AppendFixed32(valid, 1)
	if err := c.Check(valid); err != nil {
		t.Fatalf("valid: %v", err)
	}
	for name, b := range map[string][]byte{
		"truncated":        valid[:len(valid)-3],
		"bad tag":          {0x80},
		"field zero":       {0x00, 0x00},
		"wire type 7":      {0x0f},
		"length past end":  {0x12, 0x05, 0x00},
		"inner past outer": {0x12, 0x02, 0x32, 0x05, 0x00, 0x00},
		"group not ended":  protowire.AppendTag(nil, 99, protowire.StartGroupType),
		"stray group end":  protowire.AppendTag(nil, 99, protowire.EndGroupType),
		"wrong group end":  protowire.AppendTag(protowire.AppendTag(nil, 98, protowire.StartGroupType), 99, protowire.EndGroupType),
	} {
		err := c.Check(b)
		if !errors.Is(err, protolimit.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
		if proto.Unmarshal(b, &weirv1.PushRequest{}) == nil {
			t.Errorf("%s: the decoder accepts it", name)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat(`{"a":[`, 500_000) + strings.Repeat(`]}`, 500_000)
	if err := protolimit.CheckJSON([]byte(deep), 257); !errors.Is(err, protolimit.ErrTooDeep) || err.Error() != "JSON nesting deeper than 257 levels" {
		t.Errorf("deep: %v", err)
	}
	for _, s := range []string{
		`{"a":"[[[[[[[[[["}`,        // brackets in strings are text
		`{"a":"\"[[[[[[[[[["}`,      // an escaped quote does not end the string
		`{"a":"\\"}`,                // an escaped backslash does
		`[[[[[[[[[[]]]]]]]]]]`,      // ten levels
		`{"a": [1, {"b": [2]}, 3]}`, // four
		`"unterminated [[[[[[[[[[[[`,
	} {
		if err := protolimit.CheckJSON([]byte(s), 10); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if err := protolimit.CheckJSON([]byte(`{"a":"\\"[[[[[[[[[[[]]]]]]]]]]]}`), 10); err == nil {
		t.Error("eleven levels after an escaped backslash pass")
	}
}

func TestLimitsValidate(t *testing.T) {
	t.Parallel()
	for _, lim := range []protolimit.Limits{
		{MaxDepth: 0, MaxMessages: 1},
		{MaxDepth: 1, MaxMessages: 0},
		{MaxDepth: 1, MaxMessages: 1, ValueTypes: []protoreflect.FullName{"weir.v1.AnyValue"}},
		{MaxDepth: 1, MaxMessages: 1, RecordTypes: []protoreflect.FullName{"weir.v1.LogRecord"}},
	} {
		if _, err := protolimit.New((&weirv1.PushRequest{}).ProtoReflect().Descriptor(), lim); err == nil {
			t.Errorf("%+v: no error", lim)
		}
	}
}

// BenchmarkCheck measures the pass over a push of 1,000 records, each
// with a resource and two attributes, against decoding it.
func BenchmarkCheck(b *testing.B) {
	req := &weirv1.PushRequest{Stream: "app"}
	for i := range 1000 {
		req.Records = append(req.Records, &weirv1.LogRecord{
			TimeUnixNano: uint64(i), SeverityText: "INFO", Body: strings.Repeat("x", 120),
			Attributes: []*weirv1.KeyValue{
				{Key: "thread.id", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_IntValue{IntValue: int64(i)}}},
				{Key: "code.function", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "PacketResponder.run"}}},
			},
			Resource: []*weirv1.KeyValue{{Key: "service.name", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "datanode"}}}},
		})
	}
	wire, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	c := newChecker(b, req, protolimit.Limits{MaxDepth: 128, ValueTypes: testLimits.ValueTypes, MaxValueDepth: 32, MaxMessages: 1 << 22})
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if err := c.Check(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshalvt", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			var m weirv1.PushRequest
			if err := m.UnmarshalVT(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestCheckJSONRecords(t *testing.T) {
	t.Parallel()
	otlp := func(n int) string {
		recs := strings.TrimSuffix(strings.Repeat(`{"body":{"stringValue":"[{x}]"}},`, n), ",")
		return `{"resourceLogs":[{"resource":{"attributes":[{"key":"a","value":{"stringValue":"b"}},{"key":"c","value":{"arrayValue":{"values":[{"intValue":"1"}]}}}]},` +
			`"scopeLogs":[{"scope":{"name":"s","attributes":[{"key":"d","value":{}}]},"logRecords":[` + recs + `]},{"logRecords":[{}]}]}]}`
	}
	// Three records and one: the resource's and scope's attributes,
	// at other depths or in objects, are not records.
	if err := protolimit.CheckJSONRecords([]byte(otlp(3)), 6, 4); err != nil {
		t.Errorf("four records against four: %v", err)
	}
	if err := protolimit.CheckJSONRecords([]byte(otlp(3)), 6, 3); !errors.Is(err, protolimit.ErrTooManyRecords) {
		t.Errorf("four records against three: %v", err)
	}
	loki := `{"streams":[{"stream":{"app":"[x]"},"values":[["1","a"],["2","b",{"k":"v"}]]},{"stream":{},"values":[["3","c"]]}]}`
	if err := protolimit.CheckJSONRecords([]byte(loki), 4, 3); err != nil {
		t.Errorf("three entries against three: %v", err)
	}
	if err := protolimit.CheckJSONRecords([]byte(loki), 4, 2); !errors.Is(err, protolimit.ErrTooManyRecords) {
		t.Errorf("three entries against two: %v", err)
	}
	// A flood of empty records is refused as soon as it passes the bound.
	flood := `{"records":[` + strings.Repeat(`{},`, 1_000_000) + `{}]}`
	if err := protolimit.CheckJSONRecords([]byte(flood), 2, 100_000); !errors.Is(err, protolimit.ErrTooManyRecords) || err.Error() != "more than 100000 records in one message" {
		t.Errorf("flood: %v", err)
	}
}
