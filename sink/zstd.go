package sink

import (
	"io"
	"sync"

	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/klauspost/compress/zstd"
)

// The lake's Parquet writers compress pages with arrow-go's zstd codec,
// whose block encoders live in a sync.Pool: every other garbage
// collection drops them (a busy ingest collects several times a second),
// the race detector drops a quarter of them at each Put, and each one
// is reset for streaming when returned, which allocates its window. A
// fresh encoder allocates a few MiB. zstdCodec replaces the codec's
// block encoding with a small free list per level that survives
// collections; decoding and streams stay arrow-go's.
//
// Its encoders use a window of zstdWindow instead of the 8 MiB default:
// each encodes one Parquet page at a time (1 MiB by default), so a longer
// window finds nothing more, while an encoder's history is twice its
// window, 16 MiB with the default, held by every idle encoder.
//
// Its frames carry no content checksum, as the frames of DuckDB's, Arrow
// C++'s and parquet-mr's writers do not: every reader of a page that
// has one hashes the whole decoded page again (4 % of DuckDB's time in a
// substring search over compacted files, bench/RESULTS.md "Pages without
// zstd checksums"). The cost: a page damaged at rest is caught only where
// zstd's own format or the Parquet decoding rejects it, as with those
// writers' files. Pages of up to zstdWindow get arrow-go's bytes but for
// the checksum's flag and its four bytes.
const zstdWindow = 1 << 20

// zstdIdle bounds the idle encoders kept per level. Encoding runs on
// at most Config.Encoders goroutines plus compaction and publishing, so
// more than this are rarely idle at once.
const zstdIdle = 8

type zstdCodec struct {
	base interface {
		compress.ErrorCodec
		compress.StreamingCodec
	}

	mu   sync.Mutex
	idle map[zstd.EncoderLevel][]*zstd.Encoder
}

func init() {
	base, err := compress.GetCodec(compress.Codecs.Zstd)
	if err != nil {
		panic(err) // arrow-go registers zstd in its own init
	}
	b, ok := base.(interface {
		compress.ErrorCodec
		compress.StreamingCodec
	})
	if !ok {
		panic("sink: arrow-go's zstd codec no longer decodes with errors and streams")
	}
	compress.RegisterCodec(compress.Codecs.Zstd, &zstdCodec{base: b, idle: map[zstd.EncoderLevel][]*zstd.Encoder{}})
}

func (c *zstdCodec) Encode(dst, src []byte) []byte {
	return c.EncodeLevel(dst, src, compress.DefaultCompressionLevel)
}

// EncodeLevel compresses src as one zstd frame, as arrow-go's codec
// does (same options but the window and the checksum, see zstdWindow).
func (c *zstdCodec) EncodeLevel(dst, src []byte, level int) []byte {
	l := zstd.SpeedDefault
	if level != compress.DefaultCompressionLevel {
		l = zstd.EncoderLevelFromZstd(level)
	}
	c.mu.Lock()
	var enc *zstd.Encoder
	if free := c.idle[l]; len(free) > 0 {
		enc = free[len(free)-1]
		free[len(free)-1] = nil
		c.idle[l] = free[:len(free)-1]
	}
	c.mu.Unlock()
	if enc == nil {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithZeroFrames(true), zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1), zstd.WithAllLitEntropyCompression(true), zstd.WithWindowSize(zstdWindow), zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err) // the options are constant and valid
		}
	}
	out := enc.EncodeAll(src, dst[:0])
	c.mu.Lock()
	if len(c.idle[l]) < zstdIdle {
		c.idle[l] = append(c.idle[l], enc)
	}
	c.mu.Unlock()
	return out
}

func (c *zstdCodec) CompressBound(n int64) int64 { return c.base.CompressBound(n) }
func (c *zstdCodec) Decode(dst, src []byte) []byte {
	return c.base.Decode(dst, src)
}
func (c *zstdCodec) DecodeWithError(dst, src []byte) ([]byte, error) {
	return c.base.DecodeWithError(dst, src)
}
func (c *zstdCodec) NewReader(r io.Reader) io.ReadCloser { return c.base.NewReader(r) }
func (c *zstdCodec) NewWriter(w io.Writer) io.WriteCloser {
	return c.base.NewWriter(w)
}
func (c *zstdCodec) NewWriterLevel(w io.Writer, level int) (io.WriteCloser, error) {
	return c.base.NewWriterLevel(w, level)
}
