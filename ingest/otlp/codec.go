package otlp

import (
	"errors"
	"fmt"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/protolimit"
)

// valueType is OTLP's recursive attribute value, whose nesting
// ingest.MaxValueDepth bounds.
const valueType protoreflect.FullName = "opentelemetry.proto.common.v1.AnyValue"

// recordType is the message whose count in a request httpin.MaxRecords
// bounds, before the request is decoded.
const recordType protoreflect.FullName = "opentelemetry.proto.logs.v1.LogRecord"

// bytesPerMessage bounds the messages of a request to one per this many
// bytes of Config.MaxMessageBytes, as ingest bounds its own requests: a
// request of empty messages cannot make the decoder allocate more than
// about eighteen times the size limit.
const bytesPerMessage = 4

// decoder decodes export requests after checking them against the
// bounds: nesting (ingest.MaxMessageDepth, and ingest.MaxValueDepth for
// attribute values) and the count of messages. Both protobuf decoders
// follow nested messages by recursion, so unchecked input could
// overflow the stack. It is safe for concurrent use.
type decoder struct {
	checker *protolimit.Checker
}

func newDecoder(maxBytes int) (*decoder, error) {
	c, err := protolimit.New((&collogspb.ExportLogsServiceRequest{}).ProtoReflect().Descriptor(), protolimit.Limits{
		MaxDepth:      ingest.MaxMessageDepth,
		ValueTypes:    []protoreflect.FullName{valueType},
		MaxValueDepth: ingest.MaxValueDepth,
		MaxMessages:   max(1, maxBytes/bytesPerMessage),
		RecordTypes:   []protoreflect.FullName{recordType},
		MaxRecords:    httpin.MaxRecords,
	})
	if err != nil {
		return nil, err
	}
	return &decoder{checker: c}, nil
}

// decodeProto decodes the binary protobuf encoding of a request.
// Strings must be valid UTF-8, as proto3 requires: a request with one
// that is not fails whole.
func (d *decoder) decodeProto(data []byte, req *collogspb.ExportLogsServiceRequest) error {
	if err := d.checker.Check(data); err != nil {
		return err
	}
	if err := proto.Unmarshal(data, req); err != nil {
		return fmt.Errorf("decode protobuf: %w", err)
	}
	return nil
}

// decodeJSON decodes a request in OTLP's JSON mapping: protobuf's JSON
// (lowerCamelCase or original field names, 64-bit integers as strings
// or numbers, enums as numbers or names, unknown fields ignored) except
// that trace and span ids are hex, not base64. protojson reads the ids
// as base64; hex digits are base64 digits and 32 (16) of them decode to
// 24 (12) bytes, which encode back to the same text, so the converter
// recovers the hex (converter.hexIDs). A string that is not base64
// either fails the request.
//
// The nesting of the text is checked before protojson reads it; the
// decoded message, encoded again, against the same bounds as binary
// requests.
func (d *decoder) decodeJSON(data []byte, req *collogspb.ExportLogsServiceRequest) error {
	if len(data) == 0 {
		return errors.New("empty body: a JSON request is an object")
	}
	if err := protolimit.CheckJSON(data, protolimit.JSONDepth(d.checker.Limits().MaxDepth)); err != nil {
		return err
	}
	// Log records are the objects in the logRecords arrays (depth 6:
	// resourceLogs[].scopeLogs[].logRecords[]), counted before protojson
	// builds them.
	if err := protolimit.CheckJSONRecords(data, 6, d.checker.Limits().MaxRecords); err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, req); err != nil {
		return fmt.Errorf("decode JSON: %w", err)
	}
	wire, err := proto.Marshal(req)
	if err != nil {
		return fmt.Errorf("check JSON request: %w", err)
	}
	return d.checker.Check(wire)
}

// protoCodec is the binary codec ("proto") of the gRPC handler.
type protoCodec struct{ d *decoder }

func (protoCodec) Name() string   { return "proto" }
func (protoCodec) IsBinary() bool { return true }

func (protoCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.Marshal(pm)
}

func (c protoCodec) Unmarshal(data []byte, m any) error {
	req, ok := m.(*collogspb.ExportLogsServiceRequest)
	if !ok {
		return fmt.Errorf("otlp: cannot decode %T", m)
	}
	proto.Reset(req)
	return c.d.decodeProto(data, req)
}

// jsonCodec is the JSON codec of the gRPC handler's Connect and gRPC
// JSON clients: OTLP's JSON mapping, as on /v1/logs.
type jsonCodec struct {
	name string
	d    *decoder
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
	req, ok := m.(*collogspb.ExportLogsServiceRequest)
	if !ok {
		return fmt.Errorf("otlp: cannot decode %T", m)
	}
	proto.Reset(req)
	return c.d.decodeJSON(data, req)
}
