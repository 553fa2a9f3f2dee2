package esbulk

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/protolimit"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/parse"
)

// Limits bound the work of decoding one bulk body; zero fields take the
// defaults.
type Limits struct {
	// MaxDepth bounds the nesting of objects and arrays in one line;
	// a deeper source document is refused (400 item) before it is
	// decoded. Default 64.
	MaxDepth int
	// FlattenDepth is how many levels of objects become dotted keys;
	// deeper objects are kept as JSON text. Default 16.
	FlattenDepth int
	// MaxFields bounds the attributes one document yields; the
	// top-level members past it are kept together as JSON text under
	// "_rest". Default 256.
	MaxFields int
}

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = 64
	}
	if l.FlattenDepth <= 0 {
		l.FlattenDepth = 16
	}
	if l.MaxFields <= 0 {
		l.MaxFields = 256
	}
	return l
}

// actionDepth bounds the nesting of an action line:
// {"index":{"dynamic_templates":{...}}} is three levels deep.
const actionDepth = 4

// Error types of the items weir refuses, as Elasticsearch names them.
const (
	typeParse       = "mapper_parsing_exception"
	typeIllegal     = "illegal_argument_exception"
	typeValidation  = "action_request_validation_exception"
	typeIndexName   = "invalid_index_name_exception"
	typeRejected    = "es_rejected_execution_exception"
	typeUnavailable = "unavailable_shards_exception"
)

// Item is one action of a bulk request, decoded.
type Item struct {
	// Action is "index", "create", "update" or "delete" as the request
	// named it, and "index" for an action line weir could not read.
	Action string
	// Index is the index the action or the request's path named; ID is
	// the action's _id, "" when it gave none.
	Index, ID string
	// Stream is the weir stream Index maps to.
	Stream string
	// Status is 0 for an item whose Record is to be stored, and the
	// HTTP status of its error otherwise, with ErrType and Reason.
	Status          int
	ErrType, Reason string
	// Record is the source document as a record; Reject, when not nil,
	// sends it to the dead-letter stream with that reason.
	Record record.Record
	Reject error
}

func (it *Item) fail(status int, typ, format string, args ...any) {
	it.Status, it.ErrType, it.Reason = status, typ, fmt.Sprintf(format, args...)
}

// Decoder turns bulk request bodies into items. It is safe for
// concurrent use.
type Decoder struct {
	lim   Limits
	json  parse.Parser
	times *parse.TimeParser
}

// NewDecoder returns a Decoder bounded by lim.
func NewDecoder(lim Limits) *Decoder {
	lim = lim.withDefaults()
	tp, err := parse.NewTimeParser(parse.TimeConfig{Layouts: []string{"rfc3339", "2006-01-02T15:04:05", "2006-01-02", "unix_ms"}})
	if err != nil {
		panic(err) // the layouts are constants
	}
	return &Decoder{lim: lim, json: parse.JSON(parse.JSONOptions{MaxDepth: lim.FlattenDepth, MaxFields: lim.MaxFields}), times: tp}
}

// Decode reads an NDJSON bulk body: action lines, each index, create and
// update action followed by its source line. pathIndex is the index of
// the request's path (/<index>/_bulk), the default for actions that name
// none. It returns one item per action, in order; blank lines are
// skipped.
//
// An action line that is not a JSON object with one of the four actions
// gives a 400 item. Whether the line after it is its source is then
// unknown: it is taken as the next action when it reads as one, and as
// the broken action's source otherwise. update and delete get a 400 item
// each (weir does not change stored records); the update's line is
// skipped. A source document that is not a JSON object, or nests deeper
// than Limits.MaxDepth, gives a 400 item; one whose @timestamp cannot be
// read is kept with a Reject, for the dead-letter stream. Only a body of
// more than httpin.MaxRecords actions fails, as a whole, with an error
// wrapping httpin.ErrTooLarge: it is refused as it is read, before its
// records exist.
func (d *Decoder) Decode(body []byte, pathIndex string) ([]Item, error) {
	var items []Item
	// Each action takes one or two lines.
	lines, ok := splitLines(body, 2*httpin.MaxRecords)
	if !ok {
		return nil, httpin.TooManyRecords()
	}
	for n := 0; n < len(lines); n++ {
		if len(items) == httpin.MaxRecords {
			return nil, httpin.TooManyRecords()
		}
		var it Item
		action, meta, err := readAction(lines[n])
		if err != nil {
			it.Action = "index"
			it.fail(http.StatusBadRequest, typeIllegal, "malformed action/metadata line %d: %v", lineNo(body, lines[n]), err)
			if n+1 < len(lines) {
				if _, _, err := readAction(lines[n+1]); err != nil {
					n++ // its source
				}
			}
			items = append(items, it)
			continue
		}
		it.Action, it.ID = action, meta.ID
		it.Index = meta.Index
		if it.Index == "" {
			it.Index = pathIndex
		}
		switch action {
		case "delete":
			it.fail(http.StatusBadRequest, typeIllegal, "unsupported action %q: weir keeps log records and does not delete them", action)
			items = append(items, it)
			continue
		case "update":
			n++ // the partial document
			it.fail(http.StatusBadRequest, typeIllegal, "unsupported action %q: weir keeps log records and does not update them", action)
			items = append(items, it)
			continue
		}
		if n+1 >= len(lines) {
			it.fail(http.StatusBadRequest, typeValidation, "the %s action on line %d has no source document after it", action, lineNo(body, lines[n]))
			items = append(items, it)
			continue
		}
		n++
		src := lines[n]
		switch {
		case it.Index == "":
			it.fail(http.StatusBadRequest, typeValidation, "index is missing: name it in the action's _index or in the path (/<index>/_bulk)")
		default:
			stream, err := record.StreamNameFrom(it.Index)
			if err != nil {
				it.fail(http.StatusBadRequest, typeIndexName, "index %s", err)
				break
			}
			it.Stream = stream
			d.document(&it, src)
		}
		items = append(items, it)
	}
	return items, nil
}

// splitLines returns the non-blank lines of body without their line
// ends, or false when there are more than max.
func splitLines(body []byte, max int) ([][]byte, bool) {
	var out [][]byte
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) > 0 {
			if len(out) == max {
				return nil, false
			}
			out = append(out, line)
		}
	}
	return out, true
}

// lineNo is the 1-based line number of line, a sub-slice of body.
func lineNo(body, line []byte) int {
	if len(line) == 0 {
		return 0
	}
	off := cap(body) - cap(line)
	return bytes.Count(body[:off], []byte{'\n'}) + 1
}

// actionMeta are the fields of an action weir uses; the others
// (routing, pipeline, require_alias, dynamic_templates, _type, ...) are
// accepted and ignored.
type actionMeta struct {
	Index string `json:"_index"`
	ID    string `json:"_id"`
}

// readAction reads an action line: a JSON object with one member, the
// action, whose value is an object.
func readAction(line []byte) (string, actionMeta, error) {
	var meta actionMeta
	if err := protolimit.CheckJSON(line, actionDepth); err != nil {
		return "", meta, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return "", meta, fmt.Errorf("not a JSON object: %v", err)
	}
	if len(m) != 1 {
		return "", meta, fmt.Errorf("want one action (index, create, update or delete), found %d members", len(m))
	}
	for action, raw := range m {
		switch action {
		case "index", "create", "update", "delete":
		default:
			return "", meta, fmt.Errorf("unknown action %q: want index, create, update or delete", truncate(action, 32))
		}
		if err := json.Unmarshal(raw, &meta); err != nil || !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
			return "", meta, fmt.Errorf("the %s action's metadata must be an object with string _index and _id", action)
		}
		return action, meta, nil
	}
	panic("unreachable")
}

// Fields of a source document that weir maps to the record's own fields,
// tried in order; the first present wins and is not kept as an
// attribute.
var (
	bodyKeys      = []string{"message", "log", "msg"}
	timestampKeys = []string{"@timestamp", "timestamp"}
	severityKeys  = []string{"log.level", "level", "severity"}
)

// resourcePrefixes start the ECS fields that describe where a record
// comes from rather than the event: they go to the record's resource,
// as OpenTelemetry's resource attributes do.
var resourcePrefixes = []string{"service.", "host.", "container.", "cloud.", "kubernetes.", "k8s.", "agent.", "deployment."}

// document decodes the source line src into it.Record.
func (d *Decoder) document(it *Item, src []byte) {
	if err := protolimit.CheckJSON(src, d.lim.MaxDepth); err != nil {
		it.fail(http.StatusBadRequest, typeParse, "failed to parse the source document: %v", err)
		return
	}
	fields, err := d.json.Parse(nil, string(src))
	if err != nil {
		it.fail(http.StatusBadRequest, typeParse, "failed to parse the source document: %v", err)
		return
	}
	r := &it.Record
	used := make([]bool, len(fields))
	find := func(keys []string) (string, bool) {
		for _, k := range keys {
			for i, kv := range fields {
				if kv.Key == k && !used[i] {
					used[i] = true
					return kv.Value, true
				}
			}
		}
		return "", false
	}
	r.Body, _ = find(bodyKeys)
	if ts, ok := find(timestampKeys); ok {
		ns, err := d.times.Parse(ts)
		if err != nil {
			it.Reject = fmt.Errorf("@timestamp %q: want RFC 3339 or epoch milliseconds", truncate(ts, 64))
			r.Attributes = append(r.Attributes, record.KV{Key: "@timestamp", Value: ts})
		} else {
			r.Timestamp = ns
		}
	}
	if lvl, ok := find(severityKeys); ok {
		if n, text := parse.Severity(lvl); n != 0 {
			r.SeverityNumber, r.SeverityText = n, text
		} else {
			r.SeverityText = truncate(lvl, 32)
		}
	}
	for i, kv := range fields {
		if used[i] {
			continue
		}
		switch {
		case kv.Key == "trace.id" && len(kv.Value) == 32 && decodeHex(r.TraceID[:], kv.Value):
		case kv.Key == "span.id" && len(kv.Value) == 16 && decodeHex(r.SpanID[:], kv.Value):
		case hasAnyPrefix(kv.Key, resourcePrefixes):
			r.Resource = append(r.Resource, kv)
		default:
			r.Attributes = append(r.Attributes, kv)
		}
	}
	r.Attributes = append(r.Attributes, record.KV{Key: "es.index", Value: it.Index})
	if it.ID != "" {
		r.Attributes = append(r.Attributes, record.KV{Key: "es.id", Value: it.ID})
	}
}

// decodeHex fills dst from the hex text s, or leaves it alone and
// returns false.
func decodeHex(dst []byte, s string) bool {
	var tmp [16]byte
	n, err := hex.Decode(tmp[:], []byte(s))
	if err != nil || n != len(dst) {
		return false
	}
	copy(dst, tmp[:n])
	return true
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// truncate cuts s to at most n bytes, at a character boundary, and
// marks the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
