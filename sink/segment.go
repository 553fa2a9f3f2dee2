package sink

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// Segment is a complete Parquet file, in the lake's encoding, holding the
// rows of one Write. An open file is the list of its segments; publishing
// it concatenates their row groups into the published file without
// decoding them (small segments are merged first, see mergeRows), so
// every row is encoded once. The segment lives beside the file it belongs
// to, under a temporary name, until the file is published or abandoned.
type Segment struct {
	Path  string // absolute path
	Rows  int64
	Bytes int64 // size of the file
}

// magic opens and closes every Parquet file.
const magic = "PAR1"

// writeSegment encodes the rows of recs, in order, into a new Parquet
// file at path with the lake's writer properties (chosen from recs' first
// rows, see writerProps) and returns its size. recs share one schema and
// hold at least one row. The file is not fsynced: a segment only matters
// once its rows are published, and publishing fsyncs the file they are
// copied into.
func writeSegment(cfg Config, mem memory.Allocator, path string, recs ...arrow.RecordBatch) (int64, error) {
	sc := recs[0].Schema()
	props, err := writerProps(cfg, mem, sc, recs)
	if err != nil {
		return 0, err
	}
	return writeParquet(path, sc, props, mem, func(w *pqarrow.FileWriter) error {
		return writeRows(w, recs, int64(cfg.RowGroupRows), mem)
	})
}

// minChunkRows is the part size from which writeRows encodes a part as
// it is, as one chunk of the table it writes: the Parquet writer's work
// per chunk (about 75 µs here, over 13 columns) outweighs a copy of up
// to about 500 rows, so runs of smaller parts are concatenated first.
// Measured by BenchmarkSegmentParts.
const minChunkRows = 512

// writeRows writes the rows of recs, in order, in row groups of up to
// rowGroupRows rows, as if they were one batch, without copying parts of
// minChunkRows rows or more.
func writeRows(w *pqarrow.FileWriter, recs []arrow.RecordBatch, rowGroupRows int64, mem memory.Allocator) error {
	if len(recs) == 1 {
		return w.Write(recs[0])
	}
	chunks := make([]arrow.RecordBatch, 0, len(recs))
	defer func() { releaseAll(chunks) }()
	run := 0 // start of the run of small parts not yet in chunks
	flush := func(end int) error {
		switch end - run {
		case 0:
		case 1:
			recs[run].Retain()
			chunks = append(chunks, recs[run])
		default:
			c, err := concatRecords(recs[run:end], mem)
			if err != nil {
				return err
			}
			chunks = append(chunks, c)
		}
		run = end
		return nil
	}
	for i, r := range recs {
		if r.NumRows() < minChunkRows {
			continue
		}
		if err := flush(i); err != nil {
			return err
		}
		r.Retain()
		chunks = append(chunks, r)
		run = i + 1
	}
	if err := flush(len(recs)); err != nil {
		return err
	}
	tbl := array.NewTableFromRecords(recs[0].Schema(), chunks)
	defer tbl.Release()
	return w.WriteTable(tbl, rowGroupRows)
}

// concatRecords returns the rows of recs, of one schema, as one record
// batch.
func concatRecords(recs []arrow.RecordBatch, mem memory.Allocator) (arrow.RecordBatch, error) {
	var rows int64
	for _, r := range recs {
		rows += r.NumRows()
	}
	sc := recs[0].Schema()
	cols := make([]arrow.Array, sc.NumFields())
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	arrs := make([]arrow.Array, len(recs))
	for c := range cols {
		for i, r := range recs {
			arrs[i] = r.Column(c)
		}
		a, err := array.Concatenate(arrs, mem)
		if err != nil {
			return nil, fmt.Errorf("concatenate column %s: %w", sc.Field(c).Name, err)
		}
		cols[c] = a
	}
	return array.NewRecordBatch(sc, cols, rows), nil
}

// writeParquet creates path, writes a Parquet file of schema sc with fill
// and returns its size. On error the file is removed.
func writeParquet(path string, sc *arrow.Schema, props *parquet.WriterProperties, mem memory.Allocator, fill func(*pqarrow.FileWriter) error) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create segment: %w", err)
	}
	size, err := func() (int64, error) {
		// The writer issues a write per page header and page; bufio turns
		// them into a few large ones. bufio.Writer is not an io.Closer, so
		// closing the Parquet writer leaves f open.
		buf := bufio.NewWriterSize(f, 256<<10)
		w, err := pqarrow.NewFileWriter(sc, buf, props, arrowWriterProps(mem))
		if err != nil {
			return 0, fmt.Errorf("start Parquet writer: %w", err)
		}
		err = fill(w)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, fmt.Errorf("encode: %w", err)
		}
		if err := buf.Flush(); err != nil {
			return 0, fmt.Errorf("write segment: %w", err)
		}
		return f.Seek(0, io.SeekCurrent)
	}()
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close segment: %w", cerr)
	}
	if err != nil {
		os.Remove(path)
		return 0, err
	}
	return size, nil
}

// mergeSegments decodes the segments and encodes their rows again into
// one new segment at path, whose row groups hold up to cfg.RowGroupRows
// rows. sc is the schema of every segment. It is how runs of small
// segments (a quiet stream's) become row groups of a useful size.
func mergeSegments(ctx context.Context, cfg Config, mem memory.Allocator, path string, sc *arrow.Schema, segs []Segment) (Segment, error) {
	// Encoding choices follow the first rows, as for any segment.
	var recs []arrow.RecordBatch
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	rows := int64(0)
	for _, s := range segs {
		// Read with Go's allocator, not mem: arrow-go's delta decoders
		// do not release what they allocate (mem would see a leak); the
		// garbage collector reclaims it.
		err := eachBatch(ctx, memory.DefaultAllocator, s.Path, func(r arrow.RecordBatch) error {
			if int(r.NumCols()) != sc.NumFields() {
				return fmt.Errorf("segment %s: %d columns, want %d", s.Path, r.NumCols(), sc.NumFields())
			}
			// The reader adds field metadata (PARQUET:field_id); the
			// rows are written back under the file's own schema.
			recs = append(recs, array.NewRecordBatch(sc, r.Columns(), r.NumRows()))
			return nil
		})
		if err != nil {
			return Segment{}, err
		}
		rows += s.Rows
	}
	props, err := writerProps(cfg, mem, sc, recs)
	if err != nil {
		return Segment{}, err
	}
	size, err := writeParquet(path, sc, props, mem, func(w *pqarrow.FileWriter) error {
		for _, r := range recs {
			if err := w.WriteBuffered(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Segment{}, err
	}
	return Segment{Path: path, Rows: rows, Bytes: size}, nil
}

// footer is a Parquet file's decoded footer and where its row groups'
// bytes lie.
type footer struct {
	meta *format.FileMetaData
	body int64 // bytes of row group data (and page indexes) after the leading magic
}

// decodeFooter decodes the footer of the Parquet file f of the given size.
func decodeFooter(f *os.File, size int64) (footer, error) {
	var tail [8]byte
	if size < int64(2*len(magic)+4) {
		return footer{}, fmt.Errorf("%s: %d bytes is too short for Parquet", f.Name(), size)
	}
	if _, err := f.ReadAt(tail[:], size-8); err != nil {
		return footer{}, fmt.Errorf("%s: read footer length: %w", f.Name(), err)
	}
	if string(tail[4:]) != magic {
		return footer{}, fmt.Errorf("%s: no Parquet magic at the end", f.Name())
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	body := size - 8 - n - int64(len(magic))
	if n == 0 || body < 0 {
		return footer{}, fmt.Errorf("%s: footer length %d does not fit the file's %d bytes", f.Name(), n, size)
	}
	raw := make([]byte, n)
	if _, err := f.ReadAt(raw, size-8-n); err != nil {
		return footer{}, fmt.Errorf("%s: read footer: %w", f.Name(), err)
	}
	var d format.FooterDecoder // one per file: its result aliases its buffer
	meta, _, err := d.Decode(raw)
	if err != nil {
		return footer{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if meta.EncryptionAlgorithm.Value != nil || len(meta.FooterSigningKeyMetadata) > 0 {
		return footer{}, fmt.Errorf("%s: encrypted Parquet is not supported", f.Name())
	}
	return footer{meta: meta, body: body}, nil
}

// concatSegments writes to dst (an empty file) one Parquet file holding
// the row groups of segs in order, byte for byte, and returns its size.
// The footer takes the first segment's schema, column orders and
// key-value metadata (ARROW:schema), followed by kv; every column chunk's
// offsets are moved to where its bytes now lie. All segments must have
// the same Parquet schema.
func concatSegments(dst *os.File, segs []Segment, kv [][2]string) (int64, error) {
	if len(segs) == 0 {
		return 0, errors.New("no segments")
	}
	if _, err := io.WriteString(dst, magic); err != nil {
		return 0, err
	}
	pos := int64(len(magic))
	wb := writeback{f: dst}
	var out format.FileMetaData
	for i, s := range segs {
		src, err := os.Open(s.Path)
		if err != nil {
			return 0, fmt.Errorf("open segment: %w", err)
		}
		ft, err := decodeFooter(src, s.Bytes)
		if err == nil {
			err = appendSegment(&out, ft, i == 0, pos)
		}
		if err == nil {
			// From one *os.File to another, io.Copy of a LimitedReader
			// moves the bytes in the kernel (copy_file_range on Linux).
			if _, err = src.Seek(int64(len(magic)), io.SeekStart); err == nil {
				var n int64
				n, err = io.Copy(dst, io.LimitReader(src, ft.body))
				if err == nil && n != ft.body {
					err = fmt.Errorf("copied %d of %d bytes", n, ft.body)
				}
			}
		}
		src.Close()
		if err != nil {
			return 0, fmt.Errorf("segment %s: %w", s.Path, err)
		}
		pos += ft.body
		wb.at(pos)
	}
	for _, p := range kv {
		out.KeyValueMetadata = append(out.KeyValueMetadata, format.KeyValue{Key: p[0], Value: p[1]})
	}
	meta, err := thrift.Marshal(new(thrift.CompactProtocol), &out)
	if err != nil {
		return 0, fmt.Errorf("encode footer: %w", err)
	}
	var tail [8]byte
	binary.LittleEndian.PutUint32(tail[:4], uint32(len(meta)))
	copy(tail[4:], magic)
	if _, err := dst.Write(append(meta, tail[:]...)); err != nil {
		return 0, fmt.Errorf("write footer: %w", err)
	}
	return pos + int64(len(meta)) + int64(len(tail)), nil
}

// appendSegment adds the row groups of ft, whose body now starts at pos
// of the output, to out. With first it also takes the file-level fields.
func appendSegment(out *format.FileMetaData, ft footer, first bool, pos int64) error {
	m := ft.meta
	if first {
		out.Version = m.Version
		out.Schema = append(out.Schema[:0], m.Schema...)
		out.CreatedBy = m.CreatedBy
		out.ColumnOrders = append(out.ColumnOrders[:0], m.ColumnOrders...)
		out.KeyValueMetadata = append(out.KeyValueMetadata[:0], m.KeyValueMetadata...)
	} else if !sameParquetSchema(out.Schema, m.Schema) {
		return errors.New("Parquet schema differs from the first segment's")
	}
	// Offsets in the segment count from its start; its body started right
	// after its leading magic, and now starts at pos.
	delta := pos - int64(len(magic))
	shift := func(off int64) int64 {
		if off == 0 { // unset optional offset
			return 0
		}
		return off + delta
	}
	for _, rg := range m.RowGroups {
		cols := make([]format.ColumnChunk, len(rg.Columns))
		for j, c := range rg.Columns {
			if c.FilePath != "" {
				return errors.New("column chunk in another file")
			}
			c.FileOffset = shift(c.FileOffset)
			c.MetaData.DataPageOffset = shift(c.MetaData.DataPageOffset)
			c.MetaData.IndexPageOffset = shift(c.MetaData.IndexPageOffset)
			c.MetaData.DictionaryPageOffset = shift(c.MetaData.DictionaryPageOffset)
			c.MetaData.BloomFilterOffset = shift(c.MetaData.BloomFilterOffset)
			c.OffsetIndexOffset = shift(c.OffsetIndexOffset)
			c.ColumnIndexOffset = shift(c.ColumnIndexOffset)
			cols[j] = c
		}
		rg.Columns = cols
		rg.FileOffset = shift(rg.FileOffset)
		rg.Ordinal = int16(len(out.RowGroups))
		out.RowGroups = append(out.RowGroups, rg)
		out.NumRows += rg.NumRows
	}
	return nil
}

// sameParquetSchema compares two flattened Parquet schemas by name, type,
// repetition and shape.
func sameParquetSchema(a, b []format.SchemaElement) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Name != y.Name || x.Type != y.Type || x.RepetitionType != y.RepetitionType || x.NumChildren != y.NumChildren {
			return false
		}
	}
	return true
}
