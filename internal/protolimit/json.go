package protolimit

// CheckJSON returns an error wrapping ErrTooDeep when the objects and
// arrays of the JSON text b nest deeper than maxDepth. It reads b once,
// without recursion or allocation, and does not check the syntax: it is
// run before a decoder (protojson) that does. protojson writes a message
// as an object and a repeated field as an array, so a message within
// Limits.MaxDepth nests at most JSONDepth(MaxDepth) deep in JSON.
func CheckJSON(b []byte, maxDepth int) error {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// Skip the string: brackets in it are text.
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if depth++; depth > maxDepth {
				return refuse(ErrTooDeep, "JSON nesting deeper than %d levels", maxDepth)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// JSONDepth returns the JSON nesting of a message nested maxDepth
// messages deep at most, as protojson writes it: an object per message
// and an array per repeated field, or a map's object and its value's;
// the well-known types Struct, Value and ListValue take more messages
// per JSON level, not fewer.
func JSONDepth(maxDepth int) int { return 2*maxDepth + 1 }

// CheckJSONRecords returns an error wrapping ErrTooManyRecords when the
// arrays that open at nesting depth in the JSON text b (the top-level
// value is at depth 1) hold more than max elements that are objects or
// arrays, all together: the records of a JSON request whose records are
// the elements of such arrays (OTLP's logRecords, Loki's values), counted
// before a decoder builds them. Scalar elements are not counted (no
// record is one). Like CheckJSON, it reads b once without allocating and
// does not check the syntax; arrays deeper than 64 levels are not told
// from objects, so run it after CheckJSON with a depth within that.
func CheckJSONRecords(b []byte, depth, max int) error {
	d, n := 0, 0
	var arrays uint64 // bit k: the container open at depth k+1 is an array
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			d++
			if d == depth+1 && depth >= 1 && depth <= 64 && arrays&(1<<(depth-1)) != 0 {
				if n++; n > max {
					return refuse(ErrTooManyRecords, "more than %d records in one message", max)
				}
			}
			if d >= 1 && d <= 64 { // d < 1 after stray closers
				if c == '[' {
					arrays |= 1 << (d - 1)
				} else {
					arrays &^= 1 << (d - 1)
				}
			}
		case '}', ']':
			d--
		}
	}
	return nil
}
