package hec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/protolimit"
	"github.com/weirlabs/weir/internal/record"
)

// Bounds of one event.
const (
	// MaxDepth bounds the nesting of an event object; the object
	// itself is at depth 1.
	MaxDepth = 16
	// MaxFields bounds the members of an event's fields object,
	// nested ones counted.
	MaxFields = 1024
)

// HEC's answer codes that weir gives.
const (
	CodeSuccess       = 0
	CodeNoData        = 5
	CodeInvalidFormat = 6
	CodeInternal      = 8
	CodeBusy          = 9
	CodeNoEvent       = 12
	CodeBlankEvent    = 13
	CodeHealthy       = 17
)

// texts are HEC's texts of its codes.
var texts = map[int]string{
	CodeSuccess:       "Success",
	CodeNoData:        "No data",
	CodeInvalidFormat: "Invalid data format",
	CodeInternal:      "Internal server error",
	CodeBusy:          "Server is busy",
	CodeNoEvent:       "Event field is required",
	CodeBlankEvent:    "Event field cannot be blank",
	CodeHealthy:       "HEC is healthy",
}

// eventError is why an event cannot be stored, with HEC's code for it.
type eventError struct {
	code int
	msg  string
}

func (e *eventError) Error() string { return e.msg }

// Resource attributes the metadata of an event becomes, as the
// OpenTelemetry Collector's Splunk HEC receiver names them.
const (
	AttrHost       = "host.name"
	AttrSource     = "com.splunk.source"
	AttrSourcetype = "com.splunk.sourcetype"
	AttrIndex      = "com.splunk.index"
)

// meta is the metadata of an event or of a raw request.
type meta struct {
	Host       string `json:"host"`
	Source     string `json:"source"`
	Sourcetype string `json:"sourcetype"`
	Index      string `json:"index"`
}

func (m *meta) resource() []record.KV {
	var res []record.KV
	for _, kv := range []record.KV{{Key: AttrHost, Value: m.Host}, {Key: AttrSource, Value: m.Source},
		{Key: AttrSourcetype, Value: m.Sourcetype}, {Key: AttrIndex, Value: m.Index}} {
		if kv.Value != "" {
			res = append(res, kv)
		}
	}
	return res
}

// event is the JSON shape of one HEC event.
type event struct {
	meta
	Time   json.RawMessage `json:"time"`
	Event  json.RawMessage `json:"event"`
	Fields json.RawMessage `json:"fields"`
}

// decoded is one event, or the undecodable rest of a body.
type decoded struct {
	index string // the event's index, "" for none
	rec   record.Record
	err   error
}

// severityFields name the fields, then the members of an event object,
// whose value is the severity text, first first.
var severityFields = []string{"severity", "level", "log.level"}

// decodeEvents reads concatenated event objects. It never fails: an
// event that cannot be stored as it is comes back with its error (an
// *eventError) and its JSON text as the body, and text that is not JSON
// ends the events as one such record holding the rest of the body.
// bad is the index of the first event with an error, or -1. Only more
// than httpin.MaxRecords events fail, with httpin.TooManyRecords.
func decodeEvents(body []byte) (out []decoded, bad int, err error) {
	bad = -1
	dec := json.NewDecoder(bytes.NewReader(body))
	for n := 0; ; n++ {
		start := dec.InputOffset()
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return out, bad, nil
		}
		if n == httpin.MaxRecords {
			return nil, -1, httpin.TooManyRecords()
		}
		if err == nil {
			err = protolimit.CheckJSON(raw, MaxDepth)
		}
		if err != nil {
			rest := strings.TrimSpace(string(body[start:]))
			out = append(out, decoded{rec: record.Record{Body: rest}, err: &eventError{CodeInvalidFormat, fmt.Sprintf("event %d: not a JSON object: %v", n, err)}})
			if bad < 0 {
				bad = n
			}
			return out, bad, nil
		}
		d := decodeEvent(raw, n)
		if d.err != nil && bad < 0 {
			bad = n
		}
		out = append(out, d)
	}
}

func decodeEvent(raw json.RawMessage, n int) decoded {
	fail := func(code int, format string, args ...any) decoded {
		return decoded{rec: record.Record{Body: string(raw)}, err: &eventError{code, fmt.Sprintf("event %d: ", n) + fmt.Sprintf(format, args...)}}
	}
	if raw[0] != '{' {
		return fail(CodeInvalidFormat, "not a JSON object")
	}
	var e event
	if err := json.Unmarshal(raw, &e); err != nil {
		return fail(CodeInvalidFormat, "%v", err)
	}
	d := decoded{index: e.Index}
	r := &d.rec
	switch {
	case len(e.Event) == 0 || string(e.Event) == "null":
		return fail(CodeNoEvent, "no event field")
	case string(e.Event) == `""`:
		return fail(CodeBlankEvent, "the event field is blank")
	}
	r.Body, _ = httpin.Scalar(e.Event)
	ts, err := parseTime(e.Time)
	if err != nil {
		return fail(CodeInvalidFormat, "%v", err)
	}
	r.Timestamp = ts
	if len(e.Fields) > 0 && string(e.Fields) != "null" {
		if r.Attributes, err = httpin.Flatten(nil, e.Fields, MaxDepth, MaxFields); err != nil {
			return fail(CodeInvalidFormat, "fields: %v", err)
		}
	}
	r.Resource = e.resource()
	r.SeverityText = severity(r.Attributes, e.Event)
	r.SeverityNumber = record.ParseSeverity(r.SeverityText)
	return d
}

// severity is the first of severityFields in the fields, else in an
// event object's members, or "".
func severity(fields []record.KV, ev json.RawMessage) string {
	for _, k := range severityFields {
		for _, kv := range fields {
			if kv.Key == k && kv.Value != "" {
				return kv.Value
			}
		}
	}
	if ev[0] != '{' {
		return ""
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(ev, &members) != nil {
		return ""
	}
	for _, k := range severityFields {
		var s string
		if json.Unmarshal(members[k], &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

// parseTime reads an event's time: seconds since the epoch, a number or
// a string holding one, with up to nine decimals kept exactly. None (or
// null) is 0: the record gets its arrival time.
func parseTime(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	text := string(raw)
	if raw[0] == '"' {
		if json.Unmarshal(raw, &text) != nil {
			return 0, fmt.Errorf("time %s: want seconds since the epoch", raw)
		}
	}
	bad := fmt.Errorf("time %s: want seconds since the epoch, 1970 to 2262", raw)
	if strings.ContainsAny(text, "eE") {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil || f < 0 || f >= math.MaxInt64/1e9 || math.IsNaN(f) {
			return 0, bad
		}
		return int64(math.Round(f * 1e9)), nil
	}
	secText, frac, _ := strings.Cut(text, ".")
	sec, err := strconv.ParseInt(secText, 10, 64)
	if err != nil || strings.HasPrefix(secText, "-") || sec > math.MaxInt64/1_000_000_000-1 {
		return 0, bad
	}
	var ns int64
	for i := 0; i < 9; i++ {
		ns *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, bad
			}
			ns += int64(c - '0')
		}
	}
	for i := 9; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return 0, bad
		}
	}
	return sec*1e9 + ns, nil
}
