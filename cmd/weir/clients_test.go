package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// findTool locates an external program in PATH or in Go's bin directory.
// Without it the test skips, except under CI (WEIR_CI=1), where .ci/run
// installs it and a missing tool is a failure.
func findTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("HOME"), "go", "bin")} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	if os.Getenv("WEIR_CI") == "1" {
		t.Fatalf("%s is not installed; .ci/run installs it", name)
	}
	t.Skipf("%s is not installed (.ci/run shows how to install it); skipping", name)
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// TestProtocols pushes with every protocol a client may speak on the one
// port (Connect binary and JSON, gRPC, gRPC-Web), unary and streaming, and
// checks each batch becomes queryable, also through the Connect Query.
func TestProtocols(t *testing.T) {
	s := startServer(t, "", nil)
	hc := newHTTPClient()
	clients := map[string]weirv1connect.IngestServiceClient{
		"connect":      weirv1connect.NewIngestServiceClient(hc, s.url),
		"connect_json": weirv1connect.NewIngestServiceClient(hc, s.url, connect.WithProtoJSON()),
		"grpc":         weirv1connect.NewIngestServiceClient(hc, s.url, connect.WithGRPC()),
		"grpc_web":     weirv1connect.NewIngestServiceClient(hc, s.url, connect.WithGRPCWeb()),
	}
	ctx := context.Background()
	for name, c := range clients {
		if _, err := c.Push(ctx, connect.NewRequest(&weirv1.PushRequest{
			Stream: "protocols", Records: []*weirv1.LogRecord{textRecord(name + " unary")},
		})); err != nil {
			t.Fatalf("%s Push: %v", name, err)
		}
		if name == "grpc_web" {
			continue // gRPC-Web has no bidirectional streams
		}
		st := c.PushStream(ctx)
		for i := uint64(1); i <= 3; i++ {
			if err := st.Send(&weirv1.PushStreamRequest{BatchId: i, Stream: "protocols", Records: []*weirv1.LogRecord{textRecord(name + " stream")}}); err != nil {
				t.Fatalf("%s Send: %v", name, err)
			}
		}
		// A bad batch is acknowledged with an error and the stream goes on.
		if err := st.Send(&weirv1.PushStreamRequest{BatchId: 4, Stream: "Bad-Name", Records: []*weirv1.LogRecord{textRecord("x")}}); err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&weirv1.PushStreamRequest{BatchId: 5, Stream: "protocols", Records: []*weirv1.LogRecord{textRecord(name + " stream")}}); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseRequest(); err != nil {
			t.Fatal(err)
		}
		for i := uint64(1); i <= 5; i++ {
			ack, err := st.Receive()
			if err != nil {
				t.Fatalf("%s Receive %d: %v", name, i, err)
			}
			if ack.GetBatchId() != i {
				t.Fatalf("%s: ack for batch %d, want %d", name, ack.GetBatchId(), i)
			}
			if i == 4 {
				if ack.GetErrorCode() != "invalid_argument" || ack.GetAccepted() != 0 || !strings.Contains(ack.GetErrorMessage(), "stream") {
					t.Errorf("%s: bad batch ack %v", name, ack)
				}
			} else if ack.GetErrorCode() != "" || ack.GetAccepted() != 1 {
				t.Errorf("%s: ack %v", name, ack)
			}
		}
		st.CloseResponse()
	}

	// A plain HTTP POST of Connect's JSON, as curl sends it.
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, "-sS", "--fail-with-body", "-X", "POST", "-H", "Content-Type: application/json", "-H", "Connect-Protocol-Version: 1",
			"--data", `{"stream":"protocols","records":[{"body":"curl unary","severityText":"WARN"}]}`,
			s.url+"/weir.v1.IngestService/Push").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"accepted":1`) {
			t.Fatalf("curl: %v: %s", err, out)
		}
	} else {
		t.Log("curl not found; the Connect JSON client above covered the same wire format")
	}

	want := map[string]int64{
		"connect unary": 1, "connect stream": 4, "connect_json unary": 1, "connect_json stream": 4,
		"grpc unary": 1, "grpc stream": 4, "grpc_web unary": 1,
	}
	if _, err := exec.LookPath("curl"); err == nil {
		want["curl unary"] = 1
	}
	var total int64
	for _, n := range want {
		total += n
	}
	waitCount(t, s.url, "SELECT count(*) FROM logs WHERE stream = 'protocols'", total)
	equalCounts(t, "bodies", countBy(t, s.url, "SELECT body, count(*) FROM protocols GROUP BY 1"), want)

	// The Connect Query reads the same, in JSON rows.
	_, q := newClients(s.url)
	st, err := q.Query(ctx, connect.NewRequest(&weirv1.QueryRequest{Sql: "SELECT count(*) AS n FROM logs WHERE stream = 'protocols'"}))
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	var cols []*weirv1.Column
	for st.Receive() {
		if len(st.Msg().GetColumns()) > 0 {
			cols = st.Msg().GetColumns()
		}
		data = append(data, st.Msg().GetData()...)
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	var row map[string]int64
	if err := json.Unmarshal(data, &row); err != nil || len(cols) != 1 || cols[0].GetName() != "n" {
		t.Fatalf("Query: cols %v, data %q, %v", cols, data, err)
	}
	if row["n"] != total {
		t.Errorf("Query count = %d, want %d", row["n"], total)
	}
}

// TestGrpcurlReflection pushes and queries with grpcurl, a generic gRPC
// client that learns the API from server reflection.
func TestGrpcurlReflection(t *testing.T) {
	grpcurl := findTool(t, "grpcurl")
	s := startServer(t, "", nil)
	addr := strings.TrimPrefix(s.url, "http://")
	out, err := exec.Command(grpcurl, "-plaintext", addr, "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "weir.v1.IngestService") || !strings.Contains(string(out), "weir.v1.QueryService") {
		t.Fatalf("grpcurl list: %v: %s", err, out)
	}
	out, err = exec.Command(grpcurl, "-plaintext", "-d",
		`{"stream":"grpcurl","records":[{"body":"from grpcurl","severityText":"ERROR"},{"body":"second","severityNumber":"SEVERITY_NUMBER_WARN"}]}`,
		addr, "weir.v1.IngestService/Push").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"accepted": 2`) {
		t.Fatalf("grpcurl Push: %v: %s", err, out)
	}
	waitCount(t, s.url, "SELECT count(*) FROM logs WHERE stream = 'grpcurl'", 2)
	equalCounts(t, "grpcurl severities", countBy(t, s.url, "SELECT severity_text || '/' || severity_number, count(*) FROM grpcurl GROUP BY 1"),
		map[string]int64{"ERROR/17": 1, "WARN/13": 1})
	out, err = exec.Command(grpcurl, "-plaintext", "-d", `{"sql":"SELECT body FROM grpcurl ORDER BY body"}`,
		addr, "weir.v1.QueryService/Query").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"data"`) {
		t.Fatalf("grpcurl Query: %v: %s", err, out)
	}
}
