package httpin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/weirlabs/weir/internal/protolimit"
	"github.com/weirlabs/weir/internal/record"
)

// Errors of Flatten, besides protolimit.ErrTooDeep for nesting past the
// bound.
var (
	// ErrNotObject reports JSON text that is not one object.
	ErrNotObject = errors.New("not a JSON object")
	// ErrTooManyFields reports an object with more members, nested ones
	// counted, than the bound.
	ErrTooManyFields = errors.New("too many fields")
)

// Flatten appends the members of the JSON object obj to dst as
// attributes: nested objects become dotted keys ("a": {"b": 1} is a.b=1),
// arrays their compact JSON text, strings their text, numbers their
// literal and booleans true or false; null members are left out. The
// object itself is at depth 1, and obj may nest no deeper than maxDepth,
// which is checked before decoding (protolimit.ErrTooDeep); more than
// maxFields members in all fail with ErrTooManyFields. It never recurses:
// each nested object is read by its own decoder on an explicit stack,
// which costs a pass over its bytes per level, bounded by maxDepth.
func Flatten(dst []record.KV, obj []byte, maxDepth, maxFields int) ([]record.KV, error) {
	if err := protolimit.CheckJSON(obj, maxDepth); err != nil {
		return dst, err
	}
	// json.Valid is one pass with no recursion; past it the decoders
	// below see only valid JSON.
	if !json.Valid(obj) {
		return dst, fmt.Errorf("%w: invalid JSON", ErrNotObject)
	}
	type level struct {
		dec    *json.Decoder
		prefix string
	}
	open := func(b []byte, prefix string) (level, error) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		tok, err := dec.Token()
		if err != nil {
			return level{}, fmt.Errorf("%w: %v", ErrNotObject, err)
		}
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			return level{}, ErrNotObject
		}
		return level{dec: dec, prefix: prefix}, nil
	}
	top, err := open(obj, "")
	if err != nil {
		return dst, err
	}
	stack := []level{top}
	fields := 0
	for len(stack) > 0 {
		l := stack[len(stack)-1]
		if !l.dec.More() {
			if _, err := l.dec.Token(); err != nil { // the closing brace
				return dst, fmt.Errorf("%w: %v", ErrNotObject, err)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		tok, err := l.dec.Token()
		if err != nil {
			return dst, fmt.Errorf("%w: %v", ErrNotObject, err)
		}
		key, ok := tok.(string)
		if !ok {
			return dst, fmt.Errorf("%w: want a member name, got %v", ErrNotObject, tok)
		}
		var raw json.RawMessage
		if err := l.dec.Decode(&raw); err != nil {
			return dst, fmt.Errorf("%w: member %q: %v", ErrNotObject, key, err)
		}
		if fields++; fields > maxFields {
			return dst, fmt.Errorf("%w: more than %d", ErrTooManyFields, maxFields)
		}
		key = l.prefix + key
		if raw[0] == '{' {
			nested, err := open(raw, key+".")
			if err != nil {
				return dst, err
			}
			stack = append(stack, nested)
			continue
		}
		if v, ok := Scalar(raw); ok {
			dst = append(dst, record.KV{Key: key, Value: v})
		}
	}
	return dst, nil
}

// Scalar returns the text of a JSON value as an attribute holds it:
// a string's text, a number's literal, true or false, and the compact
// JSON of an array or object. ok is false for null and for anything that
// is not valid JSON.
func Scalar(raw json.RawMessage) (v string, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case 'n':
		return "", false
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case '[', '{':
		var b bytes.Buffer
		if json.Compact(&b, raw) != nil {
			return "", false
		}
		return b.String(), true
	}
	if !json.Valid(raw) {
		return "", false
	}
	return string(raw), true
}
