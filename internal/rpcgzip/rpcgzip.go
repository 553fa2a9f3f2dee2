// Package rpcgzip is the gzip decompressor of weir's Connect and gRPC
// handlers. connect-go's own inflates a message that passes the
// handler's read bound to its end, only to report its size: a message
// of a few megabytes can hold a core for seconds. This one stops at the
// bound, and can charge what it inflates to a Meter while the message
// is being decompressed.
package rpcgzip

import (
	"compress/gzip"
	"fmt"
	"io"

	"connectrpc.com/connect"
)

// A Meter is charged what messages inflate to.
type Meter interface {
	// Take charges n more bytes to a message that holds held; an error
	// fails the message with it.
	Take(held, n int64) error
	// Give returns n charged bytes.
	Give(n int64)
}

// step is the unit of reads and charges.
const step = 64 << 10

// Option returns the handler option that decompresses gzip messages
// with a decompressor that fails a message (RESOURCE_EXHAUSTED) once it
// passes maxMessageBytes, charging m (nil: nothing) as it inflates. It
// replaces connect-go's gzip; give it with connect.WithReadMaxBytes of
// the same bound.
func Option(maxMessageBytes int, m Meter) connect.HandlerOption {
	return connect.WithHandlerOptions(
		connect.WithCompression("gzip", nil, nil), // connect-go's, replaced
		connect.WithCompression("gzip",
			func() connect.Decompressor { return &decompressor{m: m, max: int64(maxMessageBytes)} },
			func() connect.Compressor { return gzip.NewWriter(io.Discard) }))
}

// decompressor inflates one message at a time; what it charged is
// returned when it is reset or closed.
type decompressor struct {
	zr   gzip.Reader
	m    Meter
	max  int64
	out  int64 // bytes inflated since the last reset
	held int64 // bytes charged to m
}

func (d *decompressor) Read(p []byte) (int, error) {
	if d.out > d.max {
		return 0, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("the message is larger than %d bytes once decompressed", d.max))
	}
	if len(p) > step {
		p = p[:step]
	}
	n, err := d.zr.Read(p)
	d.out += int64(n)
	if d.m != nil && d.out > d.held {
		need := (d.out - d.held + step - 1) / step * step
		if cerr := d.m.Take(d.held, need); cerr != nil {
			return n, cerr
		}
		d.held += need
	}
	return n, err
}

func (d *decompressor) Reset(r io.Reader) error {
	d.give()
	return d.zr.Reset(r)
}

func (d *decompressor) Close() error {
	d.give()
	return d.zr.Close()
}

func (d *decompressor) give() {
	if d.m != nil && d.held > 0 {
		d.m.Give(d.held)
	}
	d.held, d.out = 0, 0
}
