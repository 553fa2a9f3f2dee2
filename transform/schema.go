package transform

import (
	"github.com/apache/arrow-go/v18/arrow"
)

// Column names of the log schema, in schema order. They follow the
// OpenTelemetry log data model in snake case.
const (
	ColTimestamp         = "timestamp"
	ColObservedTimestamp = "observed_timestamp"
	ColSeverityNumber    = "severity_number"
	ColSeverityText      = "severity_text"
	ColBody              = "body"
	ColAttributes        = "attributes"
	ColResource          = "resource"
	ColServiceName       = "service_name"
	ColTraceID           = "trace_id"
	ColSpanID            = "span_id"
	ColFlags             = "flags"
	ColPartition         = "_partition"
	ColOffset            = "_offset"
)

// Column indexes in Schema.
const (
	idxTimestamp = iota
	idxObservedTimestamp
	idxSeverityNumber
	idxSeverityText
	idxBody
	idxAttributes
	idxResource
	idxServiceName
	idxTraceID
	idxSpanID
	idxFlags
	idxPartition
	idxOffset
)

var tsType = &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}

var schema = arrow.NewSchema([]arrow.Field{
	{Name: ColTimestamp, Type: tsType},
	{Name: ColObservedTimestamp, Type: tsType},
	{Name: ColSeverityNumber, Type: arrow.PrimitiveTypes.Int32},
	{Name: ColSeverityText, Type: arrow.BinaryTypes.String},
	{Name: ColBody, Type: arrow.BinaryTypes.String},
	{Name: ColAttributes, Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)},
	{Name: ColResource, Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)},
	{Name: ColServiceName, Type: arrow.BinaryTypes.String},
	{Name: ColTraceID, Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: ColSpanID, Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: ColFlags, Type: arrow.PrimitiveTypes.Uint32},
	{Name: ColPartition, Type: arrow.PrimitiveTypes.Int32},
	{Name: ColOffset, Type: arrow.PrimitiveTypes.Int64},
}, nil)

// Schema returns the Arrow schema of every record batch transform emits and
// of every Parquet file the sink writes. docs/format.md documents it.
// The stream, tenant, date and hour are not columns: they are the batch's
// partition (hive directories in the lake).
func Schema() *arrow.Schema { return schema }
