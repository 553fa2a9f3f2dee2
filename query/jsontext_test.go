package query

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// sameJSON reports whether a and b are equal, or both JSON for equal
// values (key order and escaping aside).
func sameJSON(a, b string) bool {
	if a == b {
		return true
	}
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}

// TestNestedAsJSONText: the row encodings take nested columns of strings,
// booleans and integers as the JSON text DuckDB writes for them; every
// answer means what the driver's values gave (key order and escaping
// aside), with the same column types, and other nested columns still
// come as driver values.
func TestNestedAsJSONText(t *testing.T) {
	e := openEngine(t, t.TempDir())
	const q = `SELECT i, MAP {'k': 'v<' || i || '>', 'quote"': e'line\nbreak ☃', 'z': NULL} AS m, [i, NULL, -i] AS l,
		{'a b': i::TINYINT, 'ok': i % 2 = 0, 'tags': ['x', 'y']} AS st, [MAP {'n': i::UBIGINT * 4000000000}] AS lm,
		[i::INTEGER, 2]::INTEGER[2] AS arr, [TIMESTAMPTZ '2024-01-02 03:04:05+00'] AS lts, [1.5, i] AS ld,
		MAP {i: 'by number'} AS mi, NULL::VARCHAR[] AS nl
		FROM range(3) t(i) ORDER BY i`
	textual := map[string]bool{"m": true, "l": true, "st": true, "lm": true, "arr": true, "nl": true}
	for _, f := range []Format{FormatJSON, FormatCSV, FormatArrow} {
		var gotBuf, wantBuf bytes.Buffer
		got := &colsWriter{ResultWriter: NewWriter(f, &gotBuf)}
		want := &colsWriter{ResultWriter: rowsOnly{NewWriter(f, &wantBuf)}}
		for _, w := range []*colsWriter{got, want} {
			if _, err := e.Run(context.Background(), q, Options{}, w); err != nil {
				t.Fatalf("format %d: %v", f, err)
			}
		}
		for i, c := range got.cols {
			w := want.cols[i]
			if c.Name != w.Name || c.Type != w.Type || c.jsonText != textual[c.Name] || w.jsonText {
				t.Errorf("format %d column %d: %+v, driver values give %+v; want JSON text %t", f, i, c, w, textual[c.Name])
			}
		}
		g, w := cells(t, f, gotBuf.Bytes()), cells(t, f, wantBuf.Bytes())
		if len(g) != len(w) || len(g) < 3 {
			t.Fatalf("format %d: %d rows, driver values give %d", f, len(g), len(w))
		}
		for r := range g {
			for c := range g[r] {
				if !sameJSON(g[r][c], w[r][c]) {
					t.Errorf("format %d row %d column %d:\n got %s\nwant %s", f, r, c, g[r][c], w[r][c])
				}
			}
		}
	}
}

// cells splits an answer in f into rows of cells, each as text (JSON for
// JSON lines).
func cells(t *testing.T, f Format, b []byte) [][]string {
	t.Helper()
	var out [][]string
	switch f {
	case FormatJSON:
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("not JSON: %v: %s", err, line)
			}
			row := []string{}
			for _, k := range []string{"i", "m", "l", "st", "lm", "arr", "lts", "ld", "mi", "nl"} {
				row = append(row, string(m[k]))
			}
			out = append(out, row)
		}
	case FormatCSV:
		recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		out = recs[1:]
	case FormatArrow:
		rd, err := ipc.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Release()
		for rd.Next() {
			rec := rd.RecordBatch()
			for r := range int(rec.NumRows()) {
				row := []string{}
				for c := range int(rec.NumCols()) {
					row = append(row, rec.Column(c).ValueStr(r))
				}
				out = append(out, row)
			}
		}
	}
	return out
}
