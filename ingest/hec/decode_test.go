package hec

import (
	"errors"
	"strings"
	"testing"

	"github.com/weirlabs/weir/ingest/internal/httpin"
)

func TestParseTime(t *testing.T) {
	for in, want := range map[string]int64{
		``:                      0,
		`null`:                  0,
		`1772366400`:            1772366400e9,
		`1772366400.123456789`:  1772366400123456789,
		`"1772366400.5"`:        1772366400500000000,
		`1.7723664e9`:           1772366400e9,
		`1772366400.1234567891`: 1772366400123456789,
	} {
		if got, err := parseTime([]byte(in)); err != nil || got != want {
			t.Errorf("parseTime(%s) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{`-1`, `-0.5`, `"-0.000000001"`, `-0`, `"soon"`, `1e300`, `true`, `99999999999999999999`, `1.2x`} {
		if got, err := parseTime([]byte(in)); err == nil {
			t.Errorf("parseTime(%s) = %d, want an error", in, got)
		}
	}
}

func TestDecodeEvents(t *testing.T) {
	body := `{"event": "a", "time": 1772366400} {"event": {"msg": "b", "level": "warn"}, "index": "web", "fields": {"k": "v"}}
{"time": 1}{"event": ""}{"event": "c", "fields": [1]} {"event": "d"} {"event": oops} {"event": "never read"}`
	evs, bad, err := decodeEvents([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if bad != 2 || len(evs) != 7 {
		t.Fatalf("bad %d, %d events: %+v", bad, len(evs), evs)
	}
	codes := []int{-1, -1, CodeNoEvent, CodeBlankEvent, CodeInvalidFormat, -1, CodeInvalidFormat}
	for i, e := range evs {
		code := -1
		var ee *eventError
		if errors.As(e.err, &ee) {
			code = ee.code
		}
		if code != codes[i] {
			t.Errorf("event %d: %v, want code %d", i, e.err, codes[i])
		}
	}
	if evs[1].rec.Body != `{"msg":"b","level":"warn"}` || evs[1].rec.SeverityText != "warn" || evs[1].index != "web" {
		t.Errorf("object event: %+v", evs[1])
	}
	if !strings.HasPrefix(evs[6].rec.Body, `{"event": oops}`) || !strings.Contains(evs[6].rec.Body, "never read") {
		t.Errorf("the rest of the body: %q", evs[6].rec.Body)
	}
}

// FuzzDecodeEvents: any body decodes without panic; an event without an
// error has a body, and only the last record can hold text that is not
// JSON.
func FuzzDecodeEvents(f *testing.F) {
	f.Add([]byte(`{"event": "a", "time": 1772366400.25, "host": "h", "fields": {"severity": "error"}}{"event": {"x": [1]}}`))
	f.Add([]byte(`{"event": ""} {"time": "x", "event": "y"} [1] "s" {`))
	f.Add([]byte(strings.Repeat(`{"event":`, 30) + `1` + strings.Repeat(`}`, 30)))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, bad, err := decodeEvents(body)
		if err != nil {
			if evs != nil || !errors.Is(err, httpin.ErrTooLarge) {
				t.Fatalf("%d events, %v", len(evs), err)
			}
			return
		}
		for i, e := range evs {
			if e.err == nil && e.rec.Body == "" {
				t.Fatalf("event %d stored with an empty body", i)
			}
			if e.err == nil && e.rec.Timestamp < 0 {
				t.Fatalf("event %d: negative time", i)
			}
			if e.err != nil && (bad < 0 || bad > i) {
				t.Fatalf("event %d failed but the first bad one is %d", i, bad)
			}
		}
		if bad >= len(evs) {
			t.Fatalf("bad %d of %d", bad, len(evs))
		}
	})
}
