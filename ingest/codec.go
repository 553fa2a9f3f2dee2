package ingest

import (
	"errors"
	"fmt"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weirlabs/weir/internal/protolimit"
)

// Bounds on the shape of a request, checked by the codecs before the
// (recursive) decoders run; see protolimit. A request past one fails
// with INVALID_ARGUMENT and is not decoded.
const (
	// MaxValueDepth bounds the nesting of attribute values (AnyValue in
	// arrays and key-value lists): a scalar is one level.
	MaxValueDepth = 32
	// MaxMessageDepth bounds the nesting of messages in all: a request,
	// its records, their attributes and values, down to values
	// MaxValueDepth deep, take at most 3*MaxValueDepth+1 levels.
	MaxMessageDepth = 128
	// bytesPerMessage bounds the messages of a request to one per this
	// many bytes of Config.MaxMessageBytes, so that a request of empty
	// messages (two bytes each on the wire, about seventy once decoded)
	// cannot make the decoder allocate more than about eighteen times
	// the size limit. Real records take more than four bytes per
	// message: a key-value attribute with a one-byte key and value
	// takes nine bytes for its two messages.
	bytesPerMessage = 4
)

// valueTypes are the attribute value types whose nesting MaxValueDepth
// bounds.
var valueTypes = []protoreflect.FullName{"weir.v1.AnyValue"}

// recordTypes are the messages a request's record count counts: a batch
// of more than Config.MaxBatchRecords is refused before it is decoded,
// as a request of empty records takes two bytes a record on the wire and
// a few hundred once decoded.
var recordTypes = []protoreflect.FullName{"weir.v1.LogRecord"}

// wireLimits returns the limits of requests of at most maxBytes and
// maxRecords records a message.
func wireLimits(maxBytes, maxRecords int) protolimit.Limits {
	return protolimit.Limits{
		MaxDepth:      MaxMessageDepth,
		ValueTypes:    valueTypes,
		MaxValueDepth: MaxValueDepth,
		MaxMessages:   max(1, maxBytes/bytesPerMessage),
		RecordTypes:   recordTypes,
		MaxRecords:    max(1, maxRecords),
	}
}

// bounds checks messages of any type against one set of limits; it
// builds a protolimit.Checker per message type on first use. It is safe
// for concurrent use.
type bounds struct {
	lim      protolimit.Limits
	checkers sync.Map // protoreflect.FullName → *protolimit.Checker
}

func newBounds(maxBytes, maxRecords int) *bounds {
	return &bounds{lim: wireLimits(maxBytes, maxRecords)}
}

// check checks data, the wire encoding of a message of m's type.
func (b *bounds) check(data []byte, m proto.Message) error {
	md := m.ProtoReflect().Descriptor()
	c, ok := b.checkers.Load(md.FullName())
	if !ok {
		nc, err := protolimit.New(md, b.lim)
		if err != nil {
			return err
		}
		c, _ = b.checkers.LoadOrStore(md.FullName(), nc)
	}
	return c.(*protolimit.Checker).Check(data)
}

// Codec returns the binary protobuf codec ("proto") of the ingest
// service, with the bounds for requests of the default
// Config.MaxMessageBytes (Service.Handler uses its own). It decodes
// weir's messages with generated code (vtprotobuf), without reflection,
// and any other message with the standard library; both only after a
// non-recursive pass over the input has checked it against
// MaxValueDepth, MaxMessageDepth and the message count, since both
// decoders recurse into nested messages and a deep enough request would
// overflow the stack. Generated unmarshalling does not check that
// strings are valid UTF-8; the service validates every record's text
// itself and sends invalid records to the dead-letter stream. Clients
// may use it too (connect.WithCodec).
func Codec() connect.Codec {
	return vtCodec{newBounds(DefaultConfig().MaxMessageBytes, DefaultConfig().MaxBatchRecords)}
}

// Codecs returns handler options that install the codecs for requests
// of at most maxBytes, binary ("proto") and JSON ("json" and "json;
// charset=utf-8"), in place of Connect's defaults of the same names:
// every RPC of a handler built with them decodes only input within
// MaxValueDepth, MaxMessageDepth, one message per four bytes of
// maxBytes and the default Config.MaxBatchRecords records a message.
// Handlers of other services may use them; Service.Handler uses its
// own Config's bounds.
func Codecs(maxBytes int) []connect.HandlerOption {
	return codecs(maxBytes, DefaultConfig().MaxBatchRecords)
}

func codecs(maxBytes, maxRecords int) []connect.HandlerOption {
	b := newBounds(maxBytes, maxRecords)
	return []connect.HandlerOption{
		connect.WithCodec(vtCodec{b}),
		connect.WithCodec(jsonCodec{name: "json", b: b}),
		connect.WithCodec(jsonCodec{name: "json; charset=utf-8", b: b}),
	}
}

type vtMessage interface {
	proto.Message
	MarshalVT() ([]byte, error)
	UnmarshalVT([]byte) error
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
}

type vtCodec struct{ b *bounds }

func (vtCodec) Name() string   { return "proto" }
func (vtCodec) IsBinary() bool { return true }

func (vtCodec) Marshal(m any) ([]byte, error) {
	if v, ok := m.(vtMessage); ok {
		return v.MarshalVT()
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.Marshal(pm)
}

// MarshalAppend appends the encoding of m to dst, growing it once.
func (vtCodec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	v, ok := m.(vtMessage)
	if !ok {
		pm, ok := m.(proto.Message)
		if !ok {
			return nil, fmt.Errorf("%T is not a protobuf message", m)
		}
		return proto.MarshalOptions{}.MarshalAppend(dst, pm)
	}
	n := v.SizeVT()
	start := len(dst)
	if cap(dst)-start < n {
		grown := make([]byte, start, start+n)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+n]
	if _, err := v.MarshalToSizedBufferVT(dst[start:]); err != nil {
		return nil, err
	}
	return dst, nil
}

// Unmarshal checks data against the bounds, then decodes it into m.
func (c vtCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if err := c.b.check(data, pm); err != nil {
		return err
	}
	if v, ok := m.(vtMessage); ok {
		proto.Reset(v) // UnmarshalVT merges; the standard codec replaces
		return v.UnmarshalVT(data)
	}
	return proto.Unmarshal(data, pm)
}

// jsonCodec is Connect's JSON codec (protojson, unknown fields
// discarded) with the bounds: the nesting of the JSON text is checked
// before protojson reads it, so its recursion is bounded, and the
// decoded message against the rest.
type jsonCodec struct {
	name string
	b    *bounds
}

func (c jsonCodec) Name() string { return c.name }
func (jsonCodec) IsBinary() bool { return false }

func (jsonCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return protojson.Marshal(pm)
}

func (c jsonCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	if err := protolimit.CheckJSON(data, protolimit.JSONDepth(c.b.lim.MaxDepth)); err != nil {
		return err
	}
	// A push's records are the objects of its records array (depth 2),
	// counted before protojson builds them.
	if err := protolimit.CheckJSONRecords(data, 2, c.b.lim.MaxRecords); err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, pm); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	// The message nests at most JSONDepth levels, so encoding it again is
	// safe; the wire check then applies the same bounds as to binary
	// requests.
	wire, err := proto.Marshal(pm)
	if err != nil {
		return fmt.Errorf("check %T: %w", m, err)
	}
	return c.b.check(wire, pm)
}
