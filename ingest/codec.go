package ingest

import (
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
)

// Codec returns the binary protobuf codec ("proto") of the ingest
// service: generated marshalling (vtprotobuf) for weir's messages, which
// decodes push requests without reflection, and the standard library for
// any other message. Generated unmarshalling does not check that strings
// are valid UTF-8; the service validates every record's text itself and
// sends invalid records to the dead-letter stream. Clients may use it too
// (connect.WithCodec).
func Codec() connect.Codec { return vtCodec{} }

type vtMessage interface {
	proto.Message
	MarshalVT() ([]byte, error)
	UnmarshalVT([]byte) error
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
}

type vtCodec struct{}

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

func (vtCodec) Unmarshal(data []byte, m any) error {
	if v, ok := m.(vtMessage); ok {
		proto.Reset(v) // UnmarshalVT merges; the standard codec replaces
		return v.UnmarshalVT(data)
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.Unmarshal(data, pm)
}
