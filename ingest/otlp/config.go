package otlp

import (
	"fmt"
	"strings"

	"github.com/weirlabs/weir/internal/record"
)

// Config says how requests are bounded and where their records go.
//
// A record's stream is, in this order: Stream when set; the stream named
// by the request's Weir-Stream header (gRPC metadata weir-stream), which
// must be a valid stream name; the value of StreamAttribute, looked up
// in the record's resource attributes and then in its own attributes,
// made into a stream name (see record.StreamNameFrom); DefaultStream.
type Config struct {
	// Stream, when set, is the stream of every record, whatever the
	// request says.
	Stream string
	// StreamAttribute names the attribute whose value names a record's
	// stream; "service.name" by default.
	StreamAttribute string
	// DefaultStream is the stream of records without StreamAttribute, or
	// whose value makes no valid stream name.
	DefaultStream string
	// MaxMessageBytes bounds a request body, both as sent and after
	// decompression; a larger one fails whole (HTTP 413, gRPC
	// RESOURCE_EXHAUSTED). It also bounds the messages a request may
	// hold to one per four bytes (see ingest.MaxValueDepth).
	MaxMessageBytes int
}

// DefaultConfig returns the configuration that sends each service's
// logs to a stream named after it, and the rest to "otel".
func DefaultConfig() Config {
	return Config{
		StreamAttribute: "service.name",
		DefaultStream:   "otel",
		MaxMessageBytes: 16 << 20,
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	if c.Stream != "" {
		if err := record.ValidateStream(c.Stream); err != nil {
			return fmt.Errorf("otlp: stream: %w", err)
		}
	}
	if err := record.ValidateStream(c.DefaultStream); err != nil {
		return fmt.Errorf("otlp: default_stream: %w", err)
	}
	if c.Stream == "" && c.StreamAttribute == "" {
		return fmt.Errorf("otlp: stream_attribute is empty and no fixed stream is set")
	}
	if c.MaxMessageBytes < 1024 {
		return fmt.Errorf("otlp: MaxMessageBytes must be at least 1024, got %d", c.MaxMessageBytes)
	}
	return nil
}

// streamOf returns the stream of records whose StreamAttribute value is
// v (found is false when they have none).
func (c *Config) streamOf(v string, found bool) string {
	if found {
		if s, err := record.StreamNameFrom(v); err == nil {
			return s
		}
	}
	return c.DefaultStream
}

// headerStream reads the stream a request names in its header; "" when
// it names none.
func headerStream(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	if err := record.ValidateStream(v); err != nil {
		return "", fmt.Errorf("header %s: %w", StreamHeader, err)
	}
	return v, nil
}
