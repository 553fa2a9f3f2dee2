package sink

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/parquet/compress"
)

// TestZstdCodec: the registered zstd codec writes the bytes arrow-go's
// own codec writes for pages up to its window but for the content
// checksum, at every level weir uses, from many goroutines at once;
// larger pages round-trip; and it keeps no more idle encoders than its
// bound.
func TestZstdCodec(t *testing.T) {
	got, err := compress.GetCodec(compress.Codecs.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := got.(*zstdCodec)
	if !ok {
		t.Fatalf("registered zstd codec is %T, want *zstdCodec", got)
	}
	var src []byte
	for i := range 2000 {
		src = fmt.Appendf(src, "2026-01-02T03:04:05Z host-%d GET /api/v1/items/%d 200\n", i%17, i*7919%1000)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for _, level := range []int{compress.DefaultCompressionLevel, 1, 3, 9} {
				in := src[g*100:]
				want := withoutChecksum(t, c.base.EncodeLevel(nil, in, level))
				out := c.EncodeLevel(make([]byte, 0, 16), in, level)
				if !bytes.Equal(out, want) {
					t.Errorf("level %d: %d bytes, arrow-go's codec writes %d different ones", level, len(out), len(want))
					return
				}
				back, err := c.DecodeWithError(nil, out)
				if err != nil || !bytes.Equal(back, in) {
					t.Errorf("level %d: decoded %d bytes (%v), want the %d encoded", level, len(back), err, len(in))
					return
				}
			}
		})
	}
	wg.Wait()
	var big []byte
	for i := 0; len(big) < 3*zstdWindow; i++ {
		big = fmt.Appendf(big, "%d %x\n", i, i*2654435761)
	}
	for _, level := range []int{compress.DefaultCompressionLevel, 3} {
		back, err := c.DecodeWithError(nil, c.EncodeLevel(nil, big, level))
		if err != nil || !bytes.Equal(back, big) {
			t.Fatalf("level %d: a %d-byte page decoded to %d bytes (%v)", level, len(big), len(back), err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for l, free := range c.idle {
		if len(free) > zstdIdle {
			t.Errorf("level %v: %d idle encoders kept, bound %d", l, len(free), zstdIdle)
		}
	}
}

// withoutChecksum is frame, one zstd frame with a content checksum,
// without it: the checksum flag of its frame header descriptor cleared
// and the checksum's four bytes after the last block dropped.
func withoutChecksum(t *testing.T, frame []byte) []byte {
	t.Helper()
	const descriptor, checksumFlag = 4, 1 << 2 // after the 4-byte magic number
	if len(frame) < descriptor+1+4 || frame[descriptor]&checksumFlag == 0 {
		t.Fatalf("arrow-go's codec wrote a %d-byte frame without a content checksum", len(frame))
	}
	out := bytes.Clone(frame[:len(frame)-4])
	out[descriptor] &^= checksumFlag
	return out
}
