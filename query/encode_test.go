package query

import (
	"bytes"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// marshalled is what encoding/json writes for a result value, the bytes
// appendJSON must reproduce.
func marshalled(t testing.TB, v any, typ string) []byte {
	t.Helper()
	b, err := json.Marshal(jsonValue(v, typ))
	if err != nil {
		t.Fatalf("json.Marshal(%#v): %v", v, err)
	}
	return b
}

// TestAppendJSONMatchesEncodingJSON: the scalar fast path writes the
// bytes encoding/json writes, for strings JSON escapes (jsonstr tests
// every byte value), floats at the edges of the exponent form and every
// integer type; values it does not handle go through encoding/json.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	vals := []struct {
		v   any
		typ string
	}{
		{nil, ""}, {true, ""}, {false, ""},
		{int8(-128), ""}, {int16(-32768), ""}, {int32(math.MinInt32), ""}, {int64(math.MinInt64), ""},
		{uint8(255), ""}, {uint16(65535), ""}, {uint32(math.MaxUint32), ""}, {uint64(math.MaxUint64), ""},
		{0.0, ""}, {math.Copysign(0, -1), ""}, {1.5, ""}, {-2.25e-7, ""}, {1e-6, ""}, {9.99e-7, ""}, {1e20, ""}, {1e21, ""},
		{123456789.125, ""}, {math.MaxFloat64, ""}, {math.SmallestNonzeroFloat64, ""},
		{float32(0.1), ""}, {float32(3e-9), ""}, {float32(math.MaxFloat32), ""},
		{math.NaN(), ""}, {math.Inf(1), ""}, {math.Inf(-1), ""},
		{time.Date(2026, 12, 5, 18, 4, 5, 123456000, time.UTC), "TIMESTAMP WITH TIME ZONE"},
		{time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), "DATE"},
		{"", ""}, {"plain text", ""}, {`<a href="x">&amp;</a>`, ""}, {"tab\tnew\nline\r\b\f\x00\x1f\x7f", ""},
		{"snow \u2603, line \u2028 para \u2029 end", ""}, {"bad \xff\xfe utf8 \xe2\x82", ""}, {"\\back\\slash\"", ""},
		{[]byte{1, 2, 3}, "BLOB"}, {big.NewInt(0).Lsh(big.NewInt(1), 100), "HUGEINT"},
		{[]any{int32(1), "two", nil}, "INTEGER[]"}, {map[string]any{"k": "v"}, "STRUCT(k VARCHAR)"},
	}
	for _, c := range vals {
		got, err := appendJSON([]byte("prefix"), c.v, c.typ)
		if err != nil {
			t.Fatalf("appendJSON(%#v): %v", c.v, err)
		}
		if want := append([]byte("prefix"), marshalled(t, c.v, c.typ)...); !bytes.Equal(got, want) {
			t.Errorf("appendJSON(%#v) = %s, encoding/json writes %s", c.v, got, want)
		}
	}
}

// FuzzAppendJSON: for any string and float, appendJSON writes what
// encoding/json does, and the result is valid JSON.
func FuzzAppendJSON(f *testing.F) {
	f.Add("plain", 1.5)
	f.Add("<&>\u2028\xff\x00\"\\", 1e21)
	f.Add("", -3e-7)
	f.Fuzz(func(t *testing.T, s string, x float64) {
		for _, v := range []any{s, x, float32(x)} {
			got, err := appendJSON(nil, v, "")
			if err != nil {
				t.Fatal(err)
			}
			if want := marshalled(t, v, ""); !bytes.Equal(got, want) {
				t.Fatalf("appendJSON(%#v) = %s, encoding/json writes %s", v, got, want)
			}
			if !json.Valid(got) {
				t.Fatalf("appendJSON(%#v) = %s: not valid JSON", v, got)
			}
		}
	})
}

// TestJSONDocumentInBlocks: /v1/sql's JSON document gathers rows into
// blocks before writing them; every row of an answer of many blocks
// arrives, in order, and an error after some blocks still ends the
// document with the rows before it and the error.
func TestJSONDocumentInBlocks(t *testing.T) {
	e := openEngine(t, t.TempDir())
	srv := httptest.NewServer(e.HTTPHandler(nil))
	defer srv.Close()
	post := func(sql string) (int, []byte) {
		body, _ := json.Marshal(map[string]any{"sql": sql, "max_rows": 1 << 20})
		res, err := http.Post(srv.URL, MediaJSON, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, b
	}
	type doc struct {
		Rows []struct {
			I int64  `json:"i"`
			S string `json:"s"`
		} `json:"rows"`
		Truncated bool   `json:"truncated"`
		Error     string `json:"error"`
	}
	const rows = 50_000 // about 1.5 MB: dozens of blocks
	status, body := post(fmt.Sprintf(`SELECT i, 'row <' || i || '> "q"' AS s FROM range(%d) t(i) ORDER BY i`, rows))
	var d doc
	if err := json.Unmarshal(body, &d); status != http.StatusOK || err != nil {
		t.Fatalf("status %d, %v: %.200s", status, err, body)
	}
	if len(d.Rows) != rows || d.Truncated || d.Error != "" {
		t.Fatalf("%d rows, truncated %v, error %q: want %d whole", len(d.Rows), d.Truncated, d.Error, rows)
	}
	for i, r := range d.Rows {
		if r.I != int64(i) || r.S != fmt.Sprintf(`row <%d> "q"`, i) {
			t.Fatalf("row %d is %+v", i, r)
		}
	}

	// An error once rows have been gathered (a query that fails part way
	// through its answer): the document holds them in order, then the
	// error.
	rec := httptest.NewRecorder()
	w := &jsonDocWriter{hw: &httpResult{w: rec, media: MediaJSON}}
	if err := w.Begin([]Column{{Name: "i", Type: "BIGINT"}, {Name: "s", Type: "VARCHAR"}}); err != nil {
		t.Fatal(err)
	}
	const before = 3_000 // a block and a part
	for i := range before {
		if err := w.Row([]driver.Value{int64(i), "x"}); err != nil {
			t.Fatal(err)
		}
	}
	w.fail(fmt.Errorf("stop at %d", before))
	d = doc{}
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatalf("not one JSON document: %v: %.200s", err, rec.Body.Bytes())
	}
	if len(d.Rows) != before || d.Error != fmt.Sprintf("stop at %d", before) {
		t.Fatalf("%d rows, error %q: want %d rows, then the error", len(d.Rows), d.Error, before)
	}
	for i, r := range d.Rows {
		if r.I != int64(i) {
			t.Fatalf("row %d is %+v", i, r)
		}
	}
}

// BenchmarkJSONRows encodes a dashboard histogram's rows: a timestamp in
// milliseconds, a severity and a count.
func BenchmarkJSONRows(b *testing.B) {
	var w ndjsonWriter
	if err := w.Begin([]Column{{Name: "t", Type: "BIGINT"}, {Name: "severity_text", Type: "VARCHAR"}, {Name: "n", Type: "BIGINT"}}); err != nil {
		b.Fatal(err)
	}
	vals := []driver.Value{int64(1796492921000), "WARN", int64(1234)}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = w.appendRow(buf[:0], vals); err != nil {
			b.Fatal(err)
		}
	}
}
