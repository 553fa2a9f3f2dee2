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
