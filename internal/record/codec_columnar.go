package record

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// columnarVersion is the first byte of an encoded columnar batch (see
// docs/wal.md, "Columnar batch payload"); codecVersion is that of a batch
// of records.
const columnarVersion = 2

// appendColumnar appends the encoding of a columnar batch: the header of
// a batch of records with the row count and the observed time of rows
// without one in place of the records, then an Arrow IPC stream of the
// rows: b.IPC as it is when set, else Cols encoded.
func appendColumnar(dst []byte, b *Batch) []byte {
	dst = append(dst, columnarVersion)
	dst = appendString(dst, b.Tenant)
	dst = appendString(dst, b.Stream)
	dst = binary.AppendVarint(dst, int64(b.Partition))
	dst = binary.AppendVarint(dst, b.Offset)
	dst = appendString(dst, b.ProducerID)
	dst = binary.AppendUvarint(dst, b.Sequence)
	dst = binary.AppendUvarint(dst, uint64(b.Cols.NumRows()))
	dst = binary.AppendVarint(dst, b.IPCNow)
	if b.IPC != nil {
		return append(dst, b.IPC...)
	}
	w := appendWriter{dst}
	iw := ipc.NewWriter(&w, ipc.WithSchema(batchSchema))
	err := iw.Write(b.Cols)
	if err == nil {
		err = iw.Close()
	}
	if err != nil {
		// Writing to memory fails only for a batch not in the schema.
		panic(fmt.Sprintf("record: encode columnar batch: %v", err))
	}
	return w.b
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// decodeColumnar decodes a batch encoded by appendColumnar. The batch's
// columns are views of a copy of data, read through ReadColumns, which
// bounds what the stream may make it allocate.
func decodeColumnar(data []byte) (*Batch, error) {
	d := decoder{data: data, pos: 1}
	b := &Batch{}
	d.header(b)
	rows := d.uvarint("row count", "")
	b.IPCNow = d.varint("observed time")
	if d.err != nil {
		return nil, d.err
	}
	// Every accepted column takes at least a byte per row.
	stream := bytes.Clone(data[d.pos:])
	if rows == 0 || rows > uint64(len(stream)) {
		return nil, fmt.Errorf("%w: %d rows in a stream of %d bytes", ErrInvalidBatch, rows, len(stream))
	}
	cols, err := ReadColumns(stream, b.IPCNow, int(rows), memory.DefaultAllocator, 64<<10+len(stream))
	if err != nil {
		return nil, fmt.Errorf("%w: columns: %w", ErrInvalidBatch, err)
	}
	if cols.NumRows() != int64(rows) {
		cols.Release()
		return nil, fmt.Errorf("%w: %d rows announced, %d in the stream", ErrInvalidBatch, rows, cols.NumRows())
	}
	b.Cols, b.IPC, b.Bytes = cols, stream, ColumnsSize(cols)
	return b, nil
}
