package protolimit_test

import (
	"encoding/json"
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/weirlabs/weir/internal/protolimit"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// messageShape returns the nesting and the message count of a decoded
// request, counting as the wire does (map entries are none here).
func messageShape(req *weirv1.PushRequest) (depth, valueDepth, messages int) {
	var kvs func(kvs []*weirv1.KeyValue, d, vd int)
	var value func(v *weirv1.AnyValue, d, vd int)
	value = func(v *weirv1.AnyValue, d, vd int) {
		messages++
		depth, valueDepth = max(depth, d), max(valueDepth, vd)
		if a := v.GetArrayValue(); a != nil {
			messages++
			depth = max(depth, d+1)
			for _, e := range a.GetValues() {
				value(e, d+2, vd+1)
			}
		}
		if l := v.GetKvlistValue(); l != nil {
			messages++
			depth = max(depth, d+1)
			kvs(l.GetValues(), d+2, vd)
		}
	}
	kvs = func(list []*weirv1.KeyValue, d, vd int) {
		for _, kv := range list {
			messages++
			depth = max(depth, d)
			if kv.GetValue() != nil {
				value(kv.GetValue(), d+1, vd+1)
			}
		}
	}
	messages, depth = 1, 1
	for _, r := range req.GetRecords() {
		messages++
		depth = max(depth, 2)
		kvs(r.GetAttributes(), 3, 0)
		kvs(r.GetResource(), 3, 0)
	}
	return depth, valueDepth, messages
}

// FuzzCheck feeds the checker arbitrary push requests: it never panics;
// what it accepts decodes (when it decodes) within the limits, so the
// recursive decoder is safe to run; what it calls malformed the decoder
// refuses too.
func FuzzCheck(f *testing.F) {
	lim := protolimit.Limits{MaxDepth: 12, ValueTypes: testLimits.ValueTypes, MaxValueDepth: 3, MaxMessages: 64}
	c := newChecker(f, &weirv1.PushRequest{}, lim)
	f.Add(pushWithValue(1, false))
	f.Add(pushWithValue(3, true))
	f.Add(pushWithValue(4, false))
	f.Add(pushWithValue(100, false))
	f.Add(pushWithValue(100, true))
	deepGroups := []byte{}
	for range 100 {
		deepGroups = protowire.AppendTag(deepGroups, 15, protowire.StartGroupType)
	}
	f.Add(deepGroups)
	good, _ := proto.Marshal(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{{
		Body: "b", TraceId: []byte{1, 2, 3},
		Attributes: []*weirv1.KeyValue{{Key: "k", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_IntValue{IntValue: 1}}}},
	}}})
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := c.Check(data)
		var req weirv1.PushRequest
		decodeErr := proto.Unmarshal(data, &req)
		switch {
		case err == nil:
			// The recursive generated decoder is safe to run on it
			// (it may refuse what the standard one takes as unknown
			// fields: a known field with another wire type).
			_ = (&weirv1.PushRequest{}).UnmarshalVT(data)
			if decodeErr != nil {
				return
			}
			d, vd, n := messageShape(&req)
			if d > lim.MaxDepth || vd > lim.MaxValueDepth || n > lim.MaxMessages {
				t.Errorf("accepted a request nested %d deep, values %d deep, %d messages", d, vd, n)
			}
		case errors.Is(err, protolimit.ErrMalformed):
			if decodeErr == nil {
				t.Errorf("Check: %v, but the decoder accepts it", err)
			}
		case errors.Is(err, protolimit.ErrTooDeep), errors.Is(err, protolimit.ErrTooManyMessages):
		default:
			t.Errorf("Check: unexpected error %v", err)
		}
	})
}

// FuzzCheckJSON feeds CheckJSON arbitrary text: it never panics, and
// what it accepts nests no deeper than the limit for encoding/json's
// reading of it.
func FuzzCheckJSON(f *testing.F) {
	f.Add([]byte(`{"stream":"app","records":[{"body":"x","attributes":[{"key":"a","value":{"arrayValue":{"values":[{"stringValue":"]"}]}}}]}]}`))
	f.Add([]byte(`"\\"[[[[`))
	deep := make([]byte, 0, 20000)
	for range 10000 {
		deep = append(deep, '[')
	}
	f.Add(deep)
	f.Fuzz(func(t *testing.T, data []byte) {
		err := protolimit.CheckJSON(data, 8)
		if err != nil && !errors.Is(err, protolimit.ErrTooDeep) {
			t.Errorf("unexpected error %v", err)
		}
		if err == nil && jsonDepth(data) > 8 {
			t.Errorf("accepted %q, nested %d deep", data, jsonDepth(data))
		}
	})
}

// jsonDepth is the deepest nesting of valid JSON text, and 0 for
// anything else.
func jsonDepth(data []byte) int {
	var v any
	if json.Unmarshal(data, &v) != nil {
		return 0
	}
	var depth func(v any) int
	depth = func(v any) int {
		d := 0
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				d = max(d, depth(e))
			}
			return d + 1
		case map[string]any:
			for _, e := range x {
				d = max(d, depth(e))
			}
			return d + 1
		}
		return 0
	}
	return depth(v)
}

// FuzzCheckJSONRecords feeds CheckJSONRecords arbitrary text: it never
// panics, and for valid JSON it refuses exactly when the arrays at depth
// 2 hold more container elements than the bound, as encoding/json reads
// them.
func FuzzCheckJSONRecords(f *testing.F) {
	f.Add([]byte(`{"records":[{},{"a":[{}]},[],1,"{"]}`))
	f.Add([]byte(`[[{}],{"x":[[],[]]}]`))
	f.Add([]byte(`"\\"[[[[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 3
		err := protolimit.CheckJSONRecords(data, 2, limit)
		if err != nil && !errors.Is(err, protolimit.ErrTooManyRecords) {
			t.Fatalf("unexpected error %v", err)
		}
		var v any
		if json.Unmarshal(data, &v) != nil || jsonDepth(data) > 64 {
			return
		}
		n := elementsAt(v, 1, 2)
		if (err != nil) != (n > limit) {
			t.Errorf("%q: %d elements at depth 2, error %v", data, n, err)
		}
	})
}

// elementsAt counts the container elements of the arrays at depth in
// v, which is at depth d.
func elementsAt(v any, d, depth int) int {
	n := 0
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			switch e.(type) {
			case []any, map[string]any:
				if d == depth {
					n++
				}
			}
			n += elementsAt(e, d+1, depth)
		}
	case map[string]any:
		for _, e := range x {
			n += elementsAt(e, d+1, depth)
		}
	}
	return n
}
