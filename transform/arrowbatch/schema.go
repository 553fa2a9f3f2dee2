package arrowbatch

import "github.com/weirlabs/weir/internal/logschema"

// Column indexes in logschema.Arrow().
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

// schema is the Arrow schema of every batch a Batcher builds before
// promotion (logschema.Arrow).
var schema = logschema.Arrow()
