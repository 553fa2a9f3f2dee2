package query

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// chunkRowsSQL makes a result of several chunks whose text values hold
// newlines, commas and quotes, and one value longer than a chunk.
const (
	chunkRows    = 20000
	chunkBigRow  = 7001
	chunkBigLen  = chunkBytes + chunkBytes/2
	chunkRowsSQL = `SELECT i, CASE WHEN i = 7001 THEN repeat('y', 393216)
		ELSE repeat('x', (i % 97)::INTEGER) || chr(10) || '"q", r' || i::VARCHAR END AS s
		FROM range(20000) t(i) ORDER BY i`
)

// wantChunkValue is s of row i of chunkRowsSQL.
func wantChunkValue(i int) string {
	if i == chunkBigRow {
		return strings.Repeat("y", chunkBigLen)
	}
	return strings.Repeat("x", i%97) + "\n\"q\", r" + strconv.Itoa(i)
}

// queryChunks runs sql through the Connect QueryService and returns the
// data of each response.
func queryChunks(t *testing.T, e *Engine, sql string, f weirv1.ResultFormat) [][]byte {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(NewService(e, nil).Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := weirv1connect.NewQueryServiceClient(srv.Client(), srv.URL)
	stream, err := client.Query(context.Background(), connect.NewRequest(&weirv1.QueryRequest{Sql: sql, Format: f, MaxRows: chunkRows}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var chunks [][]byte
	var rows uint64
	for stream.Receive() {
		m := stream.Msg()
		if len(m.GetData()) > 0 {
			chunks = append(chunks, m.GetData())
		}
		rows = m.GetRows()
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if rows != chunkRows {
		t.Fatalf("last response counts %d rows, want %d", rows, chunkRows)
	}
	if len(chunks) < 4 {
		t.Fatalf("%d chunks: the result should span several", len(chunks))
	}
	return chunks
}

// TestQueryChunksEndOnRows: every QueryResponse of a CSV or JSON lines
// result holds whole rows, so each decodes on its own, even when values
// hold newlines and one row is larger than a chunk.
func TestQueryChunksEndOnRows(t *testing.T) {
	e := openEngine(t, t.TempDir())
	t.Run("csv", func(t *testing.T) {
		next := 0
		for n, chunk := range queryChunks(t, e, chunkRowsSQL, weirv1.ResultFormat_RESULT_FORMAT_CSV) {
			checkChunkSize(t, n, chunk)
			r := csv.NewReader(bytes.NewReader(chunk))
			r.FieldsPerRecord = 2
			recs, err := r.ReadAll()
			if err != nil {
				t.Fatalf("chunk %d does not hold whole CSV rows: %v", n, err)
			}
			if n == 0 {
				if len(recs) == 0 || recs[0][0] != "i" || recs[0][1] != "s" {
					t.Fatalf("first chunk starts with %q, want the header", recs)
				}
				recs = recs[1:]
			}
			for _, rec := range recs {
				if rec[0] != strconv.Itoa(next) || rec[1] != wantChunkValue(next) {
					t.Fatalf("chunk %d: row %q, want row %d", n, rec[0], next)
				}
				next++
			}
		}
		if next != chunkRows {
			t.Errorf("%d rows, want %d", next, chunkRows)
		}
	})
	t.Run("json", func(t *testing.T) {
		next := 0
		for n, chunk := range queryChunks(t, e, chunkRowsSQL, weirv1.ResultFormat_RESULT_FORMAT_JSON) {
			checkChunkSize(t, n, chunk)
			if !bytes.HasSuffix(chunk, []byte("\n")) {
				t.Fatalf("chunk %d does not end a line", n)
			}
			for _, line := range bytes.Split(bytes.TrimSuffix(chunk, []byte("\n")), []byte("\n")) {
				var row struct {
					I int64  `json:"i"`
					S string `json:"s"`
				}
				if err := json.Unmarshal(line, &row); err != nil {
					t.Fatalf("chunk %d: line %.40q is not a whole row: %v", n, line, err)
				}
				if row.I != int64(next) || row.S != wantChunkValue(next) {
					t.Fatalf("chunk %d: row %d, want row %d", n, row.I, next)
				}
				next++
			}
		}
		if next != chunkRows {
			t.Errorf("%d rows, want %d", next, chunkRows)
		}
	})
}

// checkChunkSize: a chunk passes chunkBytes by less than a row, except
// the one that holds the row larger than a chunk.
func checkChunkSize(t *testing.T, n int, chunk []byte) {
	t.Helper()
	if len(chunk) >= chunkBytes+256 && !bytes.Contains(chunk, []byte(strings.Repeat("y", chunkBigLen))) {
		t.Errorf("chunk %d has %d bytes, past %d by more than a row", n, len(chunk), chunkBytes)
	}
}
