package sink

import (
	"log/slog"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// NewWithAllocator is New with the allocator the Parquet writers use, so
// that tests can check them with memory.NewCheckedAllocator.
func NewWithAllocator(cfg Config, obs Observer, log *slog.Logger, mem memory.Allocator) (*Lake, error) {
	return newLake(cfg, obs, log, mem)
}

// WriterProps returns the properties the Lake would write a file with,
// for the encoding benchmarks.
func WriterProps(cfg Config, first arrow.RecordBatch) (*parquet.WriterProperties, pqarrow.ArrowWriterProperties, error) {
	props, err := writerProps(cfg, memory.DefaultAllocator, first.Schema(), []arrow.RecordBatch{first})
	return props, arrowWriterProps(memory.DefaultAllocator), err
}

// ConcatRecords returns the rows of recs, of one schema, as one batch:
// what the lake does with a Write's small parts.
func ConcatRecords(recs []arrow.RecordBatch) arrow.RecordBatch {
	rec, err := concatRecords(recs, memory.DefaultAllocator)
	if err != nil {
		panic(err)
	}
	return rec
}

// SchemaIdentity returns f's schema identity (0 when unknown).
func SchemaIdentity(f FileInfo) uint64 { return f.schema }

// WithSchemaIdentity returns f with schema identity id.
func WithSchemaIdentity(f FileInfo, id uint64) FileInfo {
	f.schema = id
	return f
}

// ReadFooter reads a published file's footer as New does, and reports
// whether an error it returns makes the file damaged (set aside) rather
// than unreadable (refused).
func ReadFooter(path string) (FileInfo, bool, error) {
	info, _, err := readFooter(path, Partition{}, "")
	return info, err != nil && isDamage(err), err
}
