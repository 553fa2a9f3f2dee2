package sink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/weirlabs/weir/internal/logschema"
)

// offsetColumn is the column of a record's position in its stream
// partition.
const offsetColumn = logschema.Offset

// OffsetSet is a set of _offset values, as sorted, disjoint, half-open
// ranges [From, To).
type OffsetSet []OffsetRange

// OffsetRange is the half-open range of offsets [From, To).
type OffsetRange struct{ From, To int64 }

// Contains reports whether o is in the set.
func (s OffsetSet) Contains(o int64) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].To > o })
	return i < len(s) && s[i].From <= o
}

// PublishedOffsets returns the _offset values at or above from that are in
// published files of a stream partition, read from the files' _offset
// columns (only files whose offset statistics reach from are read). Recovery
// uses it to replay exactly the records of a write-ahead log that no
// published file holds. A file that compaction replaced and deleted while
// it was being read is no loss: the offsets are read again from the
// files then published, the replacement among them; so is an evicted
// file that left the lake while being fetched back (ErrGone).
func (l *Lake) PublishedOffsets(ctx context.Context, tenant, stream string, part int32, from int64) (OffsetSet, error) {
	var offs []int64
	var err error
	for range maxOffsetReads {
		if offs, err = l.publishedOffsets(ctx, tenant, stream, part, from); !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrGone) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	var set OffsetSet
	for _, o := range offs {
		if n := len(set); n > 0 && set[n-1].To >= o {
			set[n-1].To = max(set[n-1].To, o+1)
			continue
		}
		set = append(set, OffsetRange{From: o, To: o + 1})
	}
	// Offsets of files that retention removed were published once and
	// must not be replayed.
	return set.union(l.removedOffsets(streamKey{tenant: tenant, stream: stream, part: part}, from)), nil
}

// maxOffsetReads bounds PublishedOffsets' attempts: each retry follows a
// compaction that finished during the previous one.
const maxOffsetReads = 5

// publishedOffsets reads the _offset values at or above from of the
// stream partition's published files, unsorted. A file's offsets are
// known without reading it when it has as many rows as its offset range
// is long (offsets are unique within a file, so it holds every offset of
// that range): most files, since a stream partition's rows reach a file
// in offset order. That spares recovery the reads, the fetch of an
// evicted file, and a failure on a file whose pages are damaged. Other
// files are read; an evicted one is fetched back first.
func (l *Lake) publishedOffsets(ctx context.Context, tenant, stream string, part int32, from int64) ([]int64, error) {
	var files []FileInfo
	for _, f := range l.Files() {
		p := f.Partition
		if p.Tenant == tenant && p.Stream == stream && p.Part == part && f.MaxOffset >= from {
			files = append(files, f)
		}
	}
	var offs []int64
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if f.Rows == f.MaxOffset-f.MinOffset+1 {
			for o := max(f.MinOffset, from); o <= f.MaxOffset; o++ {
				offs = append(offs, o)
			}
			continue
		}
		release := func() {}
		if f.Evicted {
			r, err := l.fetch(ctx, []FileInfo{f}, false)
			if err != nil {
				return nil, fmt.Errorf("sink: fetch %s to read its offsets: %w", f.ID, err)
			}
			release = r
		}
		got, err := readOffsets(ctx, f.Path, from)
		release()
		if err != nil {
			return nil, err
		}
		offs = append(offs, got...)
	}
	return offs, nil
}

// readOffsets returns the _offset values >= from of one file.
func readOffsets(ctx context.Context, path string, from int64) ([]int64, error) {
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, fmt.Errorf("sink: open %s: %w", path, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("sink: read %s: %w", path, err)
	}
	sc, err := fr.Schema()
	if err != nil {
		return nil, fmt.Errorf("sink: schema of %s: %w", path, err)
	}
	idx := sc.FieldIndices(offsetColumn)
	if len(idx) != 1 {
		return nil, nil
	}
	cr, err := fr.GetColumn(ctx, idx[0])
	if err != nil {
		return nil, fmt.Errorf("sink: read %s of %s: %w", offsetColumn, path, err)
	}
	rgs := make([]int, pf.NumRowGroups())
	for i := range rgs {
		rgs[i] = i
	}
	col, err := fr.ReadColumn(rgs, cr)
	if err != nil {
		return nil, fmt.Errorf("sink: read %s of %s: %w", offsetColumn, path, err)
	}
	defer col.Release()
	var out []int64
	for _, chunk := range col.Chunks() {
		a, ok := chunk.(*array.Int64)
		if !ok {
			return nil, fmt.Errorf("sink: %s of %s is %s, not int64", offsetColumn, path, chunk.DataType())
		}
		for i, v := range a.Int64Values() {
			if a.IsValid(i) && v >= from {
				out = append(out, v)
			}
		}
	}
	return out, nil
}
