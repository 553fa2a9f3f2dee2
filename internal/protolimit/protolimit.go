// Package protolimit bounds what decoding one protobuf message may cost
// before the decoder runs. Generated unmarshallers (vtprotobuf's, and
// protojson's and the standard library's up to their own limit of 10,000)
// follow nested messages by recursion, and each decoded message is an
// allocation: a few megabytes of wire data nesting a message a million
// levels deep overflow the goroutine stack, which kills the process, and
// two-byte empty messages make tens of times their size in memory.
//
// A Checker walks the wire bytes of a message once, without recursion
// (an explicit stack, bounded by the depth limit), driven by the
// message's descriptor so that it knows which fields hold messages, and
// refuses input that nests deeper or holds more messages than its Limits.
// CheckJSON does the same for the nesting of a JSON text, before
// protojson reads it. Every decoder of outside protobuf input in weir
// runs its input through them first, as ingest's Connect, gRPC and JSON
// codecs do, so that all of them share one bound.
package protolimit

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Errors of a refused input; the error returned wraps one of them and
// says which limit was passed. Callers match them with errors.Is.
var (
	// ErrTooDeep reports messages (or JSON values) nested deeper than
	// the limit.
	ErrTooDeep = errors.New("nested too deep")
	// ErrTooManyMessages reports more messages than the limit.
	ErrTooManyMessages = errors.New("too many messages")
	// ErrMalformed reports wire data that is not a valid encoding; the
	// decoder would refuse it too.
	ErrMalformed = errors.New("malformed protobuf")
	// ErrTooManyRecords reports more messages of the record types than
	// the limit.
	ErrTooManyRecords = errors.New("too many records")
)

// Limits bounds the shape of one message.
type Limits struct {
	// MaxDepth bounds the nesting of messages: the message itself is at
	// depth 1, its message fields at depth 2, and so on. Map entries and
	// groups count as messages. It must be at least 1.
	MaxDepth int
	// ValueTypes names the recursive attribute value types (such as
	// weir.v1.AnyValue or OpenTelemetry's AnyValue): how many of them
	// nest in each other is bounded by MaxValueDepth. A scalar attribute
	// value is at value depth 1.
	ValueTypes []protoreflect.FullName
	// MaxValueDepth bounds the nesting of ValueTypes; it must be at least
	// 1 when ValueTypes is set.
	MaxValueDepth int
	// MaxMessages bounds the messages in all, the message itself and
	// every map entry and group included: each costs the decoder an
	// allocation. It must be at least 1.
	MaxMessages int
	// RecordTypes names the message types that are records (such as
	// weir.v1.LogRecord or OpenTelemetry's LogRecord): how many of them a
	// message holds, at any depth, is bounded by MaxRecords, which must
	// be at least 1 when RecordTypes is set.
	RecordTypes []protoreflect.FullName
	MaxRecords  int
}

// Validate reports the first invalid limit.
func (l Limits) Validate() error {
	switch {
	case l.MaxDepth < 1:
		return fmt.Errorf("protolimit: MaxDepth must be at least 1, got %d", l.MaxDepth)
	case len(l.ValueTypes) > 0 && l.MaxValueDepth < 1:
		return fmt.Errorf("protolimit: MaxValueDepth must be at least 1 with ValueTypes, got %d", l.MaxValueDepth)
	case l.MaxMessages < 1:
		return fmt.Errorf("protolimit: MaxMessages must be at least 1, got %d", l.MaxMessages)
	case len(l.RecordTypes) > 0 && l.MaxRecords < 1:
		return fmt.Errorf("protolimit: MaxRecords must be at least 1 with RecordTypes, got %d", l.MaxRecords)
	}
	return nil
}

// limitError is a refusal: its text says which limit was passed, and it
// wraps the sentinel of its kind.
type limitError struct {
	msg  string
	kind error
}

func (e *limitError) Error() string { return e.msg }
func (e *limitError) Unwrap() error { return e.kind }

func refuse(kind error, format string, args ...any) error {
	return &limitError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// Checker checks the wire encoding of one message type against Limits.
// It is immutable, and safe for concurrent use.
type Checker struct {
	root *node
	lim  Limits
}

// node is what a Checker knows of a message type: which of its fields
// hold messages, and whether it is a value or a record type.
type node struct {
	value  bool
	record bool
	dense  []edge // by field number, for the low numbers
	sparse map[protowire.Number]edge
}

// edge is a field that holds a message: n is its type, group is set for
// a group (delimited by tags) rather than a length-prefixed message.
type edge struct {
	n     *node
	group bool
}

// maxDense bounds the field numbers looked up in a slice.
const maxDense = 64

// child returns the message type of field num encoded as a group or
// length-prefixed, or nil when the field is no such message (unknown
// fields, scalars, packed values, a wire type that does not match:
// the decoder keeps those as bytes or refuses them, without recursion).
func (n *node) child(num protowire.Number, group bool) *node {
	if n == nil {
		return nil
	}
	var e edge
	if int(num) < len(n.dense) {
		e = n.dense[num]
	} else if n.sparse != nil {
		e = n.sparse[num]
	}
	if e.group != group {
		return nil
	}
	return e.n
}

// New returns a Checker of messages of type md.
func New(md protoreflect.MessageDescriptor, lim Limits) (*Checker, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	values := make(map[protoreflect.FullName]bool, len(lim.ValueTypes))
	for _, n := range lim.ValueTypes {
		values[n] = true
	}
	records := make(map[protoreflect.FullName]bool, len(lim.RecordTypes))
	for _, n := range lim.RecordTypes {
		records[n] = true
	}
	nodes := map[protoreflect.FullName]*node{}
	var todo []protoreflect.MessageDescriptor
	get := func(md protoreflect.MessageDescriptor) *node {
		n, ok := nodes[md.FullName()]
		if !ok {
			n = &node{value: values[md.FullName()], record: records[md.FullName()]}
			nodes[md.FullName()] = n
			todo = append(todo, md)
		}
		return n
	}
	root := get(md)
	for len(todo) > 0 {
		md := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		n := nodes[md.FullName()]
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if fd.Message() == nil {
				continue
			}
			e := edge{n: get(fd.Message()), group: fd.Kind() == protoreflect.GroupKind}
			if num := fd.Number(); num < maxDense {
				if int(num) >= len(n.dense) {
					n.dense = append(n.dense, make([]edge, int(num)+1-len(n.dense))...)
				}
				n.dense[num] = e
			} else {
				if n.sparse == nil {
					n.sparse = map[protowire.Number]edge{}
				}
				n.sparse[num] = e
			}
		}
	}
	return &Checker{root: root, lim: lim}, nil
}

// Limits returns the checker's limits.
func (c *Checker) Limits() Limits { return c.lim }

// frame is a message being walked.
type frame struct {
	n     *node // nil for a group of an unknown field
	end   int   // where a length-prefixed message ends; for a group, where its parent does
	group protowire.Number
}

// Check walks b, the wire encoding of a message of the checker's type,
// and returns an error wrapping ErrTooDeep, ErrTooManyMessages or
// ErrTooManyRecords when it passes a limit, or ErrMalformed when it is
// not a valid encoding. Its
// work is linear in len(b) and it allocates only when messages nest
// deeper than a few dozen levels.
func (c *Checker) Check(b []byte) error {
	var buf [48]frame
	stack := append(buf[:0], frame{n: c.root, end: len(b)})
	values := 0
	if c.root.value {
		values = 1
	}
	messages, records := 1, 0
	pos := 0
	for {
		top := &stack[len(stack)-1]
		if pos == top.end {
			if top.group != 0 {
				return refuse(ErrMalformed, "%v: group %d not ended", ErrMalformed, top.group)
			}
			if len(stack) == 1 {
				return nil
			}
			if top.n != nil && top.n.value {
				values--
			}
			stack = stack[:len(stack)-1]
			continue
		}
		num, typ, n := protowire.ConsumeTag(b[pos:top.end])
		if n < 0 {
			return refuse(ErrMalformed, "%v: field tag at byte %d: %v", ErrMalformed, pos, protowire.ParseError(n))
		}
		pos += n
		var child *node
		childEnd := top.end
		group := protowire.Number(0)
		switch typ {
		case protowire.VarintType:
			_, n = protowire.ConsumeVarint(b[pos:top.end])
		case protowire.Fixed32Type:
			_, n = protowire.ConsumeFixed32(b[pos:top.end])
		case protowire.Fixed64Type:
			_, n = protowire.ConsumeFixed64(b[pos:top.end])
		case protowire.BytesType:
			l, m := protowire.ConsumeVarint(b[pos:top.end])
			if m < 0 {
				n = m
				break
			}
			if l > uint64(top.end-pos-m) {
				return refuse(ErrMalformed, "%v: field %d at byte %d: length %d past the end of its message", ErrMalformed, num, pos, l)
			}
			if child = top.n.child(num, false); child != nil {
				n, childEnd = m, pos+m+int(l)
			} else {
				n = m + int(l)
			}
		case protowire.StartGroupType:
			child, group, n = top.n.child(num, true), num, 0
		case protowire.EndGroupType:
			if top.group != num {
				return refuse(ErrMalformed, "%v: end of group %d at byte %d outside that group", ErrMalformed, num, pos)
			}
			if top.n != nil && top.n.value {
				values--
			}
			stack = stack[:len(stack)-1]
			continue
		default:
			return refuse(ErrMalformed, "%v: wire type %d at byte %d", ErrMalformed, typ, pos)
		}
		if n < 0 {
			return refuse(ErrMalformed, "%v: field %d at byte %d: %v", ErrMalformed, num, pos, protowire.ParseError(n))
		}
		pos += n
		if child == nil && group == 0 {
			continue
		}
		if messages++; messages > c.lim.MaxMessages {
			return refuse(ErrTooManyMessages, "more than %d messages in one message", c.lim.MaxMessages)
		}
		if child != nil && child.record {
			if records++; records > c.lim.MaxRecords {
				return refuse(ErrTooManyRecords, "more than %d records in one message", c.lim.MaxRecords)
			}
		}
		if child != nil && child.value {
			if values++; values > c.lim.MaxValueDepth {
				return refuse(ErrTooDeep, "attribute nesting deeper than %d levels", c.lim.MaxValueDepth)
			}
		}
		if len(stack) >= c.lim.MaxDepth {
			return refuse(ErrTooDeep, "message nesting deeper than %d levels", c.lim.MaxDepth)
		}
		stack = append(stack, frame{n: child, end: childEnd, group: group})
	}
}
