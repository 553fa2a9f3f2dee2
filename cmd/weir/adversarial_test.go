package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// The adversarial suite runs attacks a hostile client tried against a
// real server and checks the documented refusal, that nothing on disk
// changed, and that the server kept acknowledging pushes throughout.
// docs/security.md lists what each case defends.

// diskState hashes every file under the lake and the write-ahead log.
func diskState(t *testing.T, data string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"lake", "wal"} {
		root := filepath.Join(data, sub)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			raw, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(raw)
			out[p] = hex.EncodeToString(sum[:])
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	return out
}

// steadyPusher pushes one record after another until stopped; a push
// that fails ends it.
type steadyPusher struct {
	stop  chan struct{}
	acked chan struct{} // a token after each acknowledged push
	wg    sync.WaitGroup
	err   error // the failure, read after wg.Wait
}

func startPusher(t *testing.T, url, stream string) *steadyPusher {
	p := &steadyPusher{stop: make(chan struct{}), acked: make(chan struct{}, 1)}
	ing, _ := newClients(url)
	p.wg.Go(func() {
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			_, err := ing.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: stream, Records: []*weirv1.LogRecord{textRecord("steady")}}))
			if err != nil {
				p.err = err
				close(p.acked)
				return
			}
			select {
			case p.acked <- struct{}{}:
			default:
			}
		}
	})
	return p
}

// finish waits for one more acknowledgement after the attacks, then stops
// the pusher; it fails the test if any push failed.
func (p *steadyPusher) finish(t *testing.T) {
	t.Helper()
	select {
	case <-p.acked: // may be a token from before the attacks
	default:
	}
	select {
	case _, ok := <-p.acked:
		if !ok {
			p.wg.Wait()
			t.Fatalf("a push failed during the attacks: %v", p.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no push was acknowledged after the attacks")
	}
	close(p.stop)
	p.wg.Wait()
	if p.err != nil {
		t.Fatalf("a push failed during the attacks: %v", p.err)
	}
}

// TestAdversarialSQL: statements that change state, however wrapped, are
// refused over HTTP and Connect, and change neither the lake, the log
// nor what queries see.
func TestAdversarialSQL(t *testing.T) {
	s := startServer(t, "", nil)
	if err := pushErr(t, s.url, "app", textRecord("one"), textRecord("two")); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 2)
	var published string
	for _, f := range lakeFiles(t, s.data) {
		published = f
	}
	walSegs, _ := filepath.Glob(filepath.Join(s.data, "wal", "*", "*"))
	target := filepath.Join(s.data, "lake", "forged.parquet")
	if published != "" {
		target = published
	}
	walTarget := filepath.Join(s.data, "wal", "x.log")
	if len(walSegs) > 0 {
		walTarget = walSegs[len(walSegs)-1]
	}
	before := diskState(t, s.data)
	pusher := startPusher(t, s.url, "steady")

	attacks := []string{
		"EXPLAIN ANALYZE COPY (SELECT 'forged' AS body) TO '" + target + "' (FORMAT parquet)",
		"EXPLAIN ANALYZE COPY (SELECT 'x') TO '" + walTarget + "'",
		"EXPLAIN ANALYZE COPY (SELECT 1) TO '" + filepath.Join(s.data, "lake", "tenant=default", "stream=app", "bad.parquet") + "' (FORMAT csv)",
		"EXPLAIN ANALYZE CREATE TABLE app AS SELECT 1",
		"EXPLAIN ANALYZE CREATE VIEW steady AS SELECT 1",
		"EXPLAIN ANALYZE CREATE MACRO read_parquet(x) AS TABLE SELECT 1 WHERE false",
		"EXPLAIN ANALYZE DROP VIEW logs",
		"EXPLAIN ANALYZE INSERT INTO app (body) VALUES ('x')",
		"EXPLAIN /**/ ANALYZE /**/ CREATE TABLE t AS SELECT 1",
		"SELECT * FROM enable_logging('QueryLog')",
		"SELECT * FROM duckdb_logs",
		"SELECT * FROM query('CREATE TABLE t AS SELECT 1')",
		"SELECT * FROM read_text('" + filepath.Join(s.data, "wal") + "/*/*')",
		"SELECT * FROM '" + walTarget + "'",
	}
	_, q := newClients(s.url)
	for _, sql := range attacks {
		status, raw, _ := postSQL(t, s.url, sql, "")
		if status != http.StatusBadRequest || !strings.Contains(string(raw), "invalid_argument") {
			t.Errorf("HTTP %s: %d %s", sql, status, raw)
		}
		st, err := q.Query(context.Background(), connect.NewRequest(&weirv1.QueryRequest{Sql: sql}))
		if err == nil {
			for st.Receive() {
			}
			err = st.Err()
		}
		wantCode(t, "Connect "+sql, err, connect.CodeInvalidArgument)
	}
	// Reading a published file directly is allowed; its rows are the
	// pushed ones, not forged.
	if n := mustSQL(t, s.url, "SELECT count(*) AS n FROM app WHERE body IN ('one', 'two')").Rows[0]["n"]; fmt.Sprint(n) != "2" {
		t.Errorf("app holds %v of its records", n)
	}
	if n := mustSQL(t, s.url, "SELECT count(*) AS n FROM logs WHERE body = 'forged'").Rows[0]["n"]; fmt.Sprint(n) != "0" {
		t.Errorf("forged records: %v", n)
	}
	// The engine's own rollup tables (query/rollups.go, schema weir_rollups) aside.
	if n := mustSQL(t, s.url, "SELECT count(*) AS n FROM duckdb_tables() WHERE NOT internal AND schema_name <> 'weir_rollups'").Rows[0]["n"]; fmt.Sprint(n) != "0" {
		t.Errorf("tables created: %v", n)
	}
	pusher.finish(t)
	after := diskState(t, s.data)
	for p, sum := range before {
		if after[p] != sum && !strings.Contains(p, string(filepath.Separator)+"wal"+string(filepath.Separator)) {
			t.Errorf("%s changed", p)
		}
	}
	if _, err := os.Stat(filepath.Join(s.data, "lake", "forged.parquet")); err == nil {
		t.Error("a forged file was written")
	}
}

// TestAdversarialBrowser: requests a hostile page can make a visitor's
// browser send (form posts, DNS rebinding, cross-origin fetches) are
// refused before any SQL runs.
func TestAdversarialBrowser(t *testing.T) {
	s := startServer(t, "", nil)
	send := func(method, path, ct, host, origin, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	const sql = `{"sql": "SELECT 42 AS answer"}`
	cases := []struct {
		name, method, path, ct, host, origin string
		want                                 int
	}{
		{"form post", "POST", "/v1/sql", "application/x-www-form-urlencoded", "", "", http.StatusUnsupportedMediaType},
		{"text post", "POST", "/v1/sql", "text/plain", "", "", http.StatusUnsupportedMediaType},
		{"no content type", "POST", "/v1/sql", "", "", "", http.StatusUnsupportedMediaType},
		{"rebinding host", "POST", "/v1/sql", "application/json", "attacker.example:7070", "", http.StatusMisdirectedRequest},
		{"rebinding host, UI", "GET", "/ui/schema", "", "attacker.example", "", http.StatusMisdirectedRequest},
		{"cross-origin", "POST", "/v1/sql", "application/json", "", "https://attacker.example", http.StatusForbidden},
		{"cross-origin push", "POST", "/weir.v1.IngestService/Push", "application/json", "", "https://attacker.example", http.StatusForbidden},
		{"Connect JSON without protocol header", "POST", "/weir.v1.IngestService/Push", "application/json", "", "", http.StatusBadRequest},
		{"same origin", "POST", "/v1/sql", "application/json", "", s.url, http.StatusOK},
	}
	for _, c := range cases {
		body := sql
		if strings.HasPrefix(c.path, "/weir.") {
			body = `{"stream": "forged", "records": [{"body": "x"}]}`
		}
		if st, raw := send(c.method, c.path, c.ct, c.host, c.origin, body); st != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, st, c.want, raw)
		}
	}
	if n := mustSQL(t, s.url, "SELECT count(*) AS n FROM logs").Rows[0]["n"]; fmt.Sprint(n) != "0" {
		t.Errorf("%v records were pushed by refused requests", n)
	}
}

// TestAdversarialResources: a result far larger than memory is cut at the
// row limit without growing the server, and a compressed request that
// expands past the size limit is refused after decompression.
func TestAdversarialResources(t *testing.T) {
	s := startServer(t, "", nil)
	pusher := startPusher(t, s.url, "steady")
	start := time.Now()
	res := mustSQL(t, s.url, "SELECT * FROM generate_series(1, 1e12::BIGINT)")
	if !res.Truncated || len(res.Rows) == 0 {
		t.Errorf("huge result: truncated %v, %d rows", res.Truncated, len(res.Rows))
	}
	t.Logf("a 10^12-row query answered its first %d rows in %s", len(res.Rows), time.Since(start))

	// CSV says it was cut, in a trailer.
	status, _, trailer := postSQL(t, s.url, "SELECT * FROM range(100)", "text/csv")
	if status != 200 {
		t.Fatalf("CSV: %d", status)
	}
	if trailer.Get("Weir-Truncated") != "" {
		t.Errorf("whole CSV marked truncated")
	}
	body := []byte(`{"sql": "SELECT * FROM range(100)", "max_rows": 10}`)
	status, _, trailer = post(t, s.url+"/v1/sql", body, "text/csv")
	if status != 200 || trailer.Get("Weir-Truncated") != "true" {
		t.Errorf("cut CSV: %d, trailer %v", status, trailer)
	}

	// 64 MiB of SQL that gzip makes small.
	q := weirv1connect.NewQueryServiceClient(newHTTPClient(), s.url, connect.WithSendGzip())
	st, err := q.Query(context.Background(), connect.NewRequest(&weirv1.QueryRequest{Sql: "SELECT 1 " + strings.Repeat(" ", 64<<20)}))
	if err == nil {
		for st.Receive() {
		}
		err = st.Err()
	}
	wantCode(t, "gzip bomb", err, connect.CodeResourceExhausted)
	pusher.finish(t)
}

// TestAdversarialMemory runs weir as its own process (the ceiling on
// DuckDB's allocator is a setting of the process) with memory: 256MiB,
// and sends a query whose one vector of strings holds 2 GB, far past
// DuckDB's memory_limit: it fails with RESOURCE_EXHAUSTED at
// query.memory_ceiling (twice memory), the process stays well under
// the 2 GB, and it goes on answering queries and taking pushes.
func TestAdversarialMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the ceiling on DuckDB's allocator is enforced in Linux builds only, and the test reads /proc")
	}
	data := t.TempDir()
	config := filepath.Join(data, "weir.yaml")
	if err := os.WriteFile(config, []byte("memory: 256MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startWeir(t, filepath.Join(data, "d"), config)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", p.logs.String())
		}
	})
	url := p.url
	if v := metric(t, url, "weir_query_native_memory_limit_bytes"); v != 512<<20 {
		t.Fatalf("ceiling %v, want 512 MiB (twice memory)", v)
	}
	pusher := startPusher(t, url, "steady")

	status, raw, _ := postSQL(t, url, "SELECT max(length(repeat('x', 100000000 + i::INT))) FROM range(20) t(i)", "")
	var res sqlResult
	_ = json.Unmarshal(raw, &res)
	if status != http.StatusTooManyRequests || res.Code != "resource_exhausted" {
		t.Fatalf("2 GB in one vector: %d %s", status, raw)
	}
	if metric(t, url, "weir_query_native_memory_refused_total") == 0 {
		t.Error("no allocation refused at the ceiling: the query failed for another reason")
	}
	if peak := metric(t, url, "weir_query_native_memory_peak_bytes"); peak > 512<<20 {
		t.Errorf("DuckDB's allocator held %v bytes, past the 512 MiB ceiling", peak)
	}
	status, raw, _ = postSQL(t, url, "SELECT max(length(repeat('x', 1000000 + i::INT)))::BIGINT AS n FROM range(20) t(i)", "")
	if status != http.StatusOK || !strings.Contains(string(raw), `"n":1000019`) {
		t.Errorf("a query within the ceiling: %d %s", status, raw)
	}
	pusher.finish(t)

	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var hwm int64
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &hwm)
		}
	}
	t.Logf("peak RSS %d MiB", hwm>>10)
	if hwm == 0 || hwm<<10 > 1<<30 {
		t.Errorf("peak RSS %d KiB: want under 1 GiB (the 512 MiB ceiling, Go's share and the program)", hwm)
	}
}
