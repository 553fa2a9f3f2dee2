package sink

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Config is what a user sets for the lake writer.
type Config struct {
	// Dir is the lake root, e.g. <data>/lake. New creates it if missing.
	Dir string
	// TargetFileBytes publishes a file once its segments' size reaches
	// it, so a file can end up larger by up to one batch.
	TargetFileBytes int64
	// MaxFileAge publishes a file at most this long after it received its
	// first row (give or take an fsync), so that rows become visible to
	// queries within MaxFileAge.
	MaxFileAge time.Duration
	// RowGroupRows is the most rows per Parquet row group. Each Write's
	// batch becomes one row group (cut at RowGroupRows) of the published
	// file; runs of batches under RowGroupRows/8 rows are merged into row
	// groups of up to RowGroupRows at publish. A Write holds up to one
	// row group of encoded pages in memory.
	RowGroupRows int64
	// ZstdLevel is the zstd compression level, 1 to 22. The encoder
	// (klauspost/compress) has four speeds: levels 1-2 map to "fastest",
	// 3-5 to "default", 6-9 to "better" and 10 and up to "best".
	ZstdLevel int
	// Codec compresses the files written at ingest (and left as they are
	// when compaction is off): CodecZstd at ZstdLevel (the default),
	// CodecLZ4, CodecSnappy or CodecNone. Compacted files are always
	// zstd at CompactZstdLevel. bench/RESULTS.md measures the trade-off:
	// the lighter codecs cost less CPU per row at ingest and take more
	// disk until compaction.
	Codec Codec
	// MaxOpenFiles bounds the files being written at once (one per
	// Partition with unpublished rows). Opening one more publishes the
	// file that has been open longest: in the background after Start
	// (up to MaxOpenFiles such files wait), else by the Write. An open
	// file costs its metadata in memory and its segments on disk, so the
	// default, 1,024, is set above the 796 stream-dates of the Loghub
	// backfill, which at 256 were published early and opened again
	// (bench/RESULTS.md, "Backfill ... day files").
	MaxOpenFiles int
	// DayFilesAfter sends the rows of a date (UTC) that ended more than
	// this long ago to one file per stream partition and date (a day
	// file, Partition.Day, under hour=24) instead of one per hour, so
	// that a backfill of sparse hours does not become thousands of tiny
	// files (bench/RESULTS.md, "Backfill ... day files"). Rows of today
	// (and of yesterday until DayFilesAfter past midnight) keep their
	// hour's file. Once a date is that far past, compaction also merges
	// its small files (hour files of a quiet stream, late day files)
	// into one day file per stream partition (docs/format.md,
	// "Compaction"). 0 turns day files off, at ingest and in compaction.
	DayFilesAfter time.Duration
	// Encoders is how many batches are encoded into segments at once,
	// across all streams; 0 means GOMAXPROCS. Batches of one stream
	// partition are encoded in parallel and committed to their file in
	// order (staging.go). Each encoder holds one batch and the queue as
	// many again, which bounds the Arrow memory of batches in flight.
	Encoders int
	// MaxDamagedFiles is how many damaged published files (a footer that
	// does not parse) New moves out of the lake, to <Dir>/.damaged/,
	// before it fails instead; 0 fails at the first. More than a few at
	// once suggests the wrong directory or a failing disk, which a person
	// should look at before the lake changes.
	MaxDamagedFiles int

	// CompactAge is how old (since its first row) a published file must
	// be before compaction rewrites it; 0 turns compaction off. See
	// Lake.Compact.
	CompactAge time.Duration
	// CompactInputBytes bounds the published bytes merged into one
	// compacted file.
	CompactInputBytes int64
	// CompactSortRows is the window, in rows, within which compaction
	// sorts by hour, service_name and timestamp. Compaction holds about one
	// window of decoded rows live, its sorted copy replacing it column
	// by column (~600 B a row for weir's log rows with the slack of
	// arrow-go's readers: ~150 MiB at the default), and the garbage it
	// makes can about double the process's heap before Go collects it
	// (GOMEMLIMIT bounds that; bench/RESULTS.md). Larger windows compress
	// better.
	CompactSortRows int64
	// CompactZstdLevel is the zstd level of compacted files (see
	// ZstdLevel); compaction runs off the ingest path, so it can afford
	// more than ZstdLevel.
	CompactZstdLevel int

	// Retention removes published files once their rows are older than
	// their stream's period; the zero value keeps everything. See
	// Lake.Retain.
	Retention Retention

	// Remote, when set, keeps the lake in object storage as well: see
	// Remote and docs/lake.md. nil keeps it on local disk only.
	Remote *Remote
	// OnCommitted, when set, is called whenever the set of files
	// CommittedFiles returns may have changed: a file published,
	// replaced or removed, an upload confirmed, an object deleted from
	// the bucket. It is called from the goroutine that made the change,
	// maybe while a file's lock is held: it must not block (nudge a
	// goroutine of your own) and may call Files and CommittedFiles only.
	OnCommitted func()
}

// DefaultConfig returns the defaults; Dir must still be set.
//
// RowGroupRows is 128 Ki rows. Measured on weir's log rows
// (bench/RESULTS.md), row groups of 128 Ki, 256 Ki and 1 Mi rows give
// files within 0.2 % of each other in size and the same encode speed, so
// the smallest wins: a Write buffers up to one row group (~3 MiB encoded
// instead of ~25 MiB at 1 Mi rows), and readers get finer min/max pruning
// and more units to scan in parallel (DuckDB's own row groups are 122,880
// rows). Row groups are usually smaller: one per batch of the transform
// stage (up to 64 Ki rows).
//
// Codec is a compression codec of the lake's Parquet files.
type Codec string

// The codecs files written at ingest may use.
const (
	CodecZstd   Codec = "zstd"
	CodecLZ4    Codec = "lz4" // LZ4_RAW in Parquet's terms
	CodecSnappy Codec = "snappy"
	CodecNone   Codec = "none"
)

// ZstdLevel is 1 (fastest): measured, level 3 is no smaller and level 6
// saves 4.5 % on disk for 20 % more encode time.
func DefaultConfig() Config {
	return Config{
		TargetFileBytes: 128 << 20,
		MaxFileAge:      time.Minute,
		RowGroupRows:    128 << 10,
		ZstdLevel:       1,
		Codec:           CodecZstd,
		MaxOpenFiles:    1024,
		DayFilesAfter:   time.Hour,
		MaxDamagedFiles: 10,

		CompactAge:        5 * time.Minute,
		CompactInputBytes: 256 << 20,
		CompactSortRows:   256 << 10,
		CompactZstdLevel:  3,
	}
}

// Limits enforced by Validate.
const (
	minTargetFileBytes = 4 << 10
	minMaxFileAge      = 50 * time.Millisecond
	minRowGroupRows    = 1 << 10
	maxRowGroupRows    = 64 << 20
	maxEncoders        = 1024
)

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("sink: Dir must be set")
	case c.TargetFileBytes < minTargetFileBytes:
		return fmt.Errorf("sink: TargetFileBytes must be at least %d, got %d", minTargetFileBytes, c.TargetFileBytes)
	case c.MaxFileAge < minMaxFileAge:
		return fmt.Errorf("sink: MaxFileAge must be at least %s, got %s", minMaxFileAge, c.MaxFileAge)
	case c.RowGroupRows < minRowGroupRows || c.RowGroupRows > maxRowGroupRows:
		return fmt.Errorf("sink: RowGroupRows must be in [%d, %d], got %d", minRowGroupRows, maxRowGroupRows, c.RowGroupRows)
	case c.ZstdLevel < 1 || c.ZstdLevel > 22:
		return fmt.Errorf("sink: ZstdLevel must be in [1, 22], got %d", c.ZstdLevel)
	case c.Codec != CodecZstd && c.Codec != CodecLZ4 && c.Codec != CodecSnappy && c.Codec != CodecNone:
		return fmt.Errorf("sink: Codec must be %q, %q, %q or %q, got %q", CodecZstd, CodecLZ4, CodecSnappy, CodecNone, c.Codec)
	case c.MaxOpenFiles < 1:
		return fmt.Errorf("sink: MaxOpenFiles must be positive, got %d", c.MaxOpenFiles)
	case c.DayFilesAfter < 0:
		return fmt.Errorf("sink: DayFilesAfter must not be negative, got %s", c.DayFilesAfter)
	case c.Encoders < 0 || c.Encoders > maxEncoders:
		return fmt.Errorf("sink: Encoders must be in [0, %d], got %d", maxEncoders, c.Encoders)
	case c.MaxDamagedFiles < 0:
		return fmt.Errorf("sink: MaxDamagedFiles must not be negative, got %d", c.MaxDamagedFiles)
	case c.CompactAge < 0:
		return fmt.Errorf("sink: CompactAge must not be negative, got %s", c.CompactAge)
	case c.CompactAge > 0 && c.CompactAge < minMaxFileAge:
		return fmt.Errorf("sink: CompactAge must be 0 (off) or at least %s, got %s", minMaxFileAge, c.CompactAge)
	case c.CompactAge > 0 && c.CompactInputBytes < minTargetFileBytes:
		return fmt.Errorf("sink: CompactInputBytes must be at least %d, got %d", minTargetFileBytes, c.CompactInputBytes)
	case c.CompactAge > 0 && (c.CompactSortRows < minRowGroupRows || c.CompactSortRows > maxRowGroupRows):
		return fmt.Errorf("sink: CompactSortRows must be in [%d, %d], got %d", minRowGroupRows, maxRowGroupRows, c.CompactSortRows)
	case c.CompactAge > 0 && (c.CompactZstdLevel < 1 || c.CompactZstdLevel > 22):
		return fmt.Errorf("sink: CompactZstdLevel must be in [1, 22], got %d", c.CompactZstdLevel)
	}
	if c.Remote != nil {
		if err := c.Remote.validate(); err != nil {
			return err
		}
	}
	return c.Retention.validate()
}

// encoders is the number of encoders Start starts.
func (c Config) encoders() int {
	if c.Encoders > 0 {
		return c.Encoders
	}
	return runtime.GOMAXPROCS(0)
}

// tick is how often the age publisher looks for files due.
func (c Config) tick() time.Duration {
	return max(c.MaxFileAge/4, minMaxFileAge)
}

// compactTick is how often the compactor looks for files due.
func (c Config) compactTick() time.Duration {
	return min(max(c.CompactAge/4, minMaxFileAge), 10*time.Second)
}

// dataPageBytes is the Parquet data page size: 1 MiB (the usual size) for
// large targets, smaller for small ones so that the size estimate, which
// only sees finished pages, stays close.
func (c Config) dataPageBytes() int64 {
	return min(max(c.TargetFileBytes/32, 4<<10), 1<<20)
}
