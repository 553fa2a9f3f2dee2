// Package record defines the row and batch types that flow between weir's
// pipeline stages. Ingest converts wire messages into these types at the
// edge; no generated protobuf type travels past ingest.
package record

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
)

// DefaultTenant is the tenant of records that name none.
const DefaultTenant = "default"

// Record is one log record in the OpenTelemetry log data model.
//
// Attribute values are kept as text: scalars in their canonical form
// (integers in decimal, booleans as true/false, bytes in base64) and arrays
// and maps as JSON. The Parquet schema stores them as a map of strings.
type Record struct {
	Timestamp         int64 // ns since the Unix epoch; 0 = unknown
	ObservedTimestamp int64 // ns since the Unix epoch; 0 = unknown
	SeverityNumber    int32 // 0..24, OpenTelemetry severity number
	SeverityText      string
	Body              string
	Attributes        []KV
	Resource          []KV
	TraceID           [16]byte // zero = absent
	SpanID            [8]byte  // zero = absent
	Flags             uint32
}

// KV is one attribute.
type KV struct {
	Key   string
	Value string
}

// Size approximates the memory the record holds, for buffer accounting.
func (r *Record) Size() int {
	n := 96 + len(r.SeverityText) + len(r.Body)
	for _, kv := range r.Attributes {
		n += 32 + len(kv.Key) + len(kv.Value)
	}
	for _, kv := range r.Resource {
		n += 32 + len(kv.Key) + len(kv.Value)
	}
	return n
}

// ServiceName returns the value of the "service.name" resource attribute,
// or "" when there is none.
func (r *Record) ServiceName() string {
	for _, kv := range r.Resource {
		if kv.Key == "service.name" {
			return kv.Value
		}
	}
	return ""
}

// Lookup returns the value of key k in kvs; when k appears more than
// once, the last one counts (later attributes override earlier ones).
func Lookup(kvs []KV, k string) (string, bool) {
	for i := len(kvs) - 1; i >= 0; i-- {
		if kvs[i].Key == k {
			return kvs[i].Value, true
		}
	}
	return "", false
}

// Batch is a group of records for one stream of one tenant. Batches are the
// unit of buffering: a ring buffer slot holds one batch.
//
// A batch holds its rows in one of two forms: as Records, or, when Cols
// is set, as one Arrow record batch in logschema.Batch() (see
// NewColumnarBatch and the Col constants), and then Records is nil. Len
// counts the rows of either; Materialize turns columns into records.
//
// A batch has one owner at a time. Whoever hands a batch to the next stage
// must not touch it afterwards; whoever drops a columnar batch releases
// it (Release).
type Batch struct {
	Tenant  string
	Stream  string
	Records []Record
	// Cols holds the rows of a columnar batch; nil for a batch of
	// Records.
	Cols arrow.RecordBatch
	// IPC, when set, is the Arrow IPC stream Cols was read from by
	// ReadColumns with observed time IPCNow: the write-ahead log stores
	// these bytes as they came rather than encoding Cols again. Whoever
	// changes Cols clears it.
	IPC    []byte
	IPCNow int64
	// Bytes is the accounted size of the rows (see Record.Size for
	// Records, ColumnsSize for Cols); it is set by NewBatch and
	// NewColumnarBatch and must be kept in step by anyone who changes
	// the rows.
	Bytes int
	// Partition and Offset are assigned by the buffer: the stream partition
	// the batch was queued on and the offset of its first record in that
	// partition. Record i has offset Offset+i.
	Partition int32
	Offset    int64
	// ProducerID and Sequence identify the batch for idempotent producers:
	// a producer numbers its batches 1, 2, 3, ... and the buffer writes
	// each (ProducerID, Sequence) once. Empty ProducerID: no
	// de-duplication.
	ProducerID string
	Sequence   uint64
	// SequenceGaps relaxes the order check of idempotent producers for
	// this batch: any sequence above the producer's last accepted one is
	// taken, while retries of accepted ones are still recognised. Batches
	// derived from a producer's batch by transforms (routed records, dead
	// letters, streams whose processors may drop every record of a batch)
	// set it, since the destination stream sees only some of the
	// producer's sequence numbers.
	SequenceGaps bool
	// Rejects holds the errors of records that failed at the edge,
	// indexed like Records, or is nil when none did: a record whose wire
	// form held a value a Record cannot (a timestamp past the year 2262,
	// a trace id of 3 bytes) keeps what it could of the original, and its
	// error names the value left out. The transforms send such records to
	// the dead-letter stream with their errors, as they do records that
	// fail Validate, and clear Rejects; the buffer and the batch encoding
	// ignore it.
	Rejects []error
}

// NewBatch returns a batch of the records with Bytes computed.
func NewBatch(tenant, stream string, recs []Record) *Batch {
	b := &Batch{Tenant: tenant, Stream: stream, Records: recs}
	for i := range recs {
		b.Bytes += recs[i].Size()
	}
	return b
}

// Validation errors. Callers match them with errors.Is.
var (
	ErrInvalidStream    = errors.New("invalid stream name")
	ErrInvalidTenant    = errors.New("invalid tenant id")
	ErrInvalidUTF8      = errors.New("invalid UTF-8")
	ErrInvalidTimestamp = errors.New("timestamp out of range")
	ErrInvalidSeverity  = errors.New("severity number out of range")
	ErrEmptyBatch       = errors.New("batch has no records")
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// reservedStreams are names a stream may not take, compared without
// regard to case: each stream is a SQL view, and these would shadow
// DuckDB's catalog schemas, tables and functions or weir's own view of
// every stream (logs).
var reservedStreams = []string{"information_schema", "pg_catalog", "main", "temp", "system", "memory", "logs"}

// reservedStreamPrefixes start names a stream may not take: DuckDB's
// catalog functions and views (duckdb_tables, pragma_table_info,
// sqlite_master and the like).
var reservedStreamPrefixes = []string{"duckdb_", "sqlite_", "pragma_"}

// ValidateStream reports whether name is a valid stream name: 1 to 64
// characters of [a-z0-9_], starting with a letter, and not reserved.
// Stream names appear in storage paths and as SQL view names, so the
// rule is strict. Reserved, whatever their case, are the names of
// DuckDB's catalog (information_schema, pg_catalog, main, temp, system,
// memory, and anything starting with duckdb_, sqlite_ or pragma_) and
// logs, weir's view of every stream. Names starting with "_" are weir's
// own streams (the dead-letter stream); the rule already refuses them.
func ValidateStream(name string) error {
	lower := strings.ToLower(name)
	if slices.Contains(reservedStreams, lower) || slices.ContainsFunc(reservedStreamPrefixes, func(p string) bool { return strings.HasPrefix(lower, p) }) {
		return fmt.Errorf("%w %q: the name is reserved for SQL catalog objects (information_schema, pg_catalog, main, temp, system, memory, logs, duckdb_*, sqlite_*, pragma_*); choose another", ErrInvalidStream, name)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: want 1 to 64 characters of [a-z0-9_] starting with a letter", ErrInvalidStream, name)
	}
	return nil
}

// ValidateTenant reports whether id is a valid tenant id; the rule is the
// one for stream names.
func ValidateTenant(id string) error {
	if !nameRE.MatchString(id) {
		return fmt.Errorf("%w %q: want 1 to 64 characters of [a-z0-9_] starting with a letter", ErrInvalidTenant, id)
	}
	return nil
}

// Limits bounds what a valid record may hold.
type Limits struct {
	// MaxFuture is how far past the validation time a timestamp may lie.
	MaxFuture time.Duration
	// MaxPast is how far before the validation time a record's time (its
	// timestamp, or its observed timestamp when it has none) may lie; 0
	// means any time since 1970. The lake keeps a file per stream and
	// hour or date, so records spread over many dates cost a file each.
	MaxPast time.Duration
}

// Window returns the times, in ns since the Unix epoch, that lim accepts
// at time now: lo to hi inclusive. lo is 0 when MaxPast is 0.
func (lim Limits) Window(now time.Time) (lo, hi int64) {
	if lim.MaxPast > 0 {
		lo = max(now.Add(-lim.MaxPast).UnixNano(), 0)
	}
	return lo, now.Add(lim.MaxFuture).UnixNano()
}

// Validate checks the record against lim at time now. It rejects invalid
// UTF-8 in any text, negative, far-future or (with MaxPast) too old
// timestamps, and severity numbers outside 0..24. index names the record
// in the error.
func (r *Record) Validate(index int, now time.Time, lim Limits) error {
	if err := r.ValidateRanges(index, now, lim); err != nil {
		return err
	}
	return r.validateText(index)
}

// Time is the time the lake files r under: its timestamp, or its
// observed timestamp when it has none; 0 if it has neither (it is then
// filed under the time it reaches the sink).
func (r *Record) Time() int64 {
	if r.Timestamp != 0 {
		return r.Timestamp
	}
	return r.ObservedTimestamp
}

// ValidateRanges is the part of Validate that checks timestamps and the
// severity number, for records whose text is known to be valid.
func (r *Record) ValidateRanges(index int, now time.Time, lim Limits) error {
	minTS, maxTS := lim.Window(now)
	if r.Timestamp < 0 || r.Timestamp > maxTS {
		return fmt.Errorf("record %d: %w: timestamp %d ns is before 1970 or more than %s in the future", index, ErrInvalidTimestamp, r.Timestamp, lim.MaxFuture)
	}
	if r.ObservedTimestamp < 0 || r.ObservedTimestamp > maxTS {
		return fmt.Errorf("record %d: %w: observed timestamp %d ns is before 1970 or more than %s in the future", index, ErrInvalidTimestamp, r.ObservedTimestamp, lim.MaxFuture)
	}
	if t := r.Time(); t != 0 && t < minTS {
		return fmt.Errorf("record %d: %w: timestamp %d ns is more than %s in the past", index, ErrInvalidTimestamp, t, lim.MaxPast)
	}
	if r.SeverityNumber < 0 || r.SeverityNumber > 24 {
		return fmt.Errorf("record %d: %w: %d (want 0 to 24)", index, ErrInvalidSeverity, r.SeverityNumber)
	}
	return nil
}

func (r *Record) validateText(index int) error {
	if !utf8.ValidString(r.Body) {
		return fmt.Errorf("record %d: body: %w", index, ErrInvalidUTF8)
	}
	if !utf8.ValidString(r.SeverityText) {
		return fmt.Errorf("record %d: severity text: %w", index, ErrInvalidUTF8)
	}
	for _, kv := range r.Attributes {
		if !utf8.ValidString(kv.Key) || !utf8.ValidString(kv.Value) {
			return fmt.Errorf("record %d: attribute %q: %w", index, kv.Key, ErrInvalidUTF8)
		}
	}
	for _, kv := range r.Resource {
		if !utf8.ValidString(kv.Key) || !utf8.ValidString(kv.Value) {
			return fmt.Errorf("record %d: resource attribute %q: %w", index, kv.Key, ErrInvalidUTF8)
		}
	}
	return nil
}
