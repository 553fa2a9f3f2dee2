package otlp

import (
	"encoding/base64"
	"math"
	"strconv"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/weirlabs/weir/internal/jsonstr"
	"github.com/weirlabs/weir/internal/record"
)

// weir keeps attribute values as text (record.Record): OTLP values are
// written in the same canonical forms as weir's own AnyValue, so that a
// value reads the same whichever protocol sent it and the transform
// stage types promoted columns alike (int64 from integers, float64 from
// numbers, bool from true/false):
//
//	string           as is
//	bool             true or false
//	int              decimal
//	double           shortest decimal that reads back the same ('g'); NaN, +Inf, -Inf
//	bytes            standard base64
//	array            JSON text
//	key-value list   flattened: one attribute per leaf, keys joined with "."
//	                 (an empty list is kept as {}); in a body or an array, JSON text
//	empty            ""
//
// The nesting of values is bounded by the codecs before decoding
// (ingest.MaxValueDepth), which bounds the recursion here.

// scalarText returns the text of a value that is not an array or a
// key-value list, and false for those.
func scalarText(v *commonpb.AnyValue) (string, bool) {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue, true
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue), true
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10), true
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64), true
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue), true
	case *commonpb.AnyValue_ArrayValue, *commonpb.AnyValue_KvlistValue:
		return "", false
	}
	return "", true
}

// valueText returns the text of a value, JSON for arrays and key-value
// lists: the form of a body.
func valueText(v *commonpb.AnyValue) string {
	if s, ok := scalarText(v); ok {
		return s
	}
	return string(appendJSON(nil, v))
}

// appendKVs appends attributes to dst, nested key-value lists flattened
// under prefix (the keys of the enclosing lists, each followed by ".").
func appendKVs(dst []record.KV, prefix string, kvs []*commonpb.KeyValue) []record.KV {
	for _, kv := range kvs {
		key := kv.GetKey()
		if prefix != "" {
			key = prefix + key
		}
		v := kv.GetValue()
		if l, ok := v.GetValue().(*commonpb.AnyValue_KvlistValue); ok {
			if len(l.KvlistValue.GetValues()) == 0 {
				dst = append(dst, record.KV{Key: key, Value: "{}"})
				continue
			}
			dst = appendKVs(dst, key+".", l.KvlistValue.GetValues())
			continue
		}
		s, ok := scalarText(v)
		if !ok {
			s = string(appendJSON(nil, v))
		}
		dst = append(dst, record.KV{Key: key, Value: s})
	}
	return dst
}

// appendJSON appends v as JSON: key-value lists as objects (keys in
// their order on the wire), bytes as base64 strings, numbers that JSON
// cannot hold (NaN, infinities) as strings.
func appendJSON(dst []byte, v *commonpb.AnyValue) []byte {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return jsonstr.Append(dst, x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		return strconv.AppendBool(dst, x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.AppendInt(dst, x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		f := x.DoubleValue
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return jsonstr.Append(dst, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x.BytesValue)
		return append(dst, '"')
	case *commonpb.AnyValue_ArrayValue:
		dst = append(dst, '[')
		for i, e := range x.ArrayValue.GetValues() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, e)
		}
		return append(dst, ']')
	case *commonpb.AnyValue_KvlistValue:
		dst = append(dst, '{')
		for i, kv := range x.KvlistValue.GetValues() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonstr.Append(dst, kv.GetKey())
			dst = append(dst, ':')
			dst = appendJSON(dst, kv.GetValue())
		}
		return append(dst, '}')
	}
	return append(dst, "null"...)
}
