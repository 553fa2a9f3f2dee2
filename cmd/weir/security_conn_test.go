package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// httpGet sends one keep-alive GET on conn and reads the response.
func httpGet(t *testing.T, conn net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
}

// waitClosed reads conn until the server closes it, failing the test if
// that takes longer than patience.
func waitClosed(t *testing.T, conn net.Conn, r io.Reader, what string, patience time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(patience))
	if _, err := io.Copy(io.Discard, r); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: still open after %s", what, patience)
		}
		t.Logf("%s: closed with %v", what, err) // a reset is a close too
	}
}

// Idle connections are closed after server.idle_timeout, over HTTP/1.1
// and h2c, while a push stream open all along keeps working.
func TestSecurityIdleConnectionsClosed(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", func(c *config) { c.Server.IdleTimeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ingest, _ := newClients(s.url)
	st := ingest.PushStream(ctx)
	defer st.CloseRequest()
	pushOnStream(t, st, 1)

	addr := s.url[len("http://"):]
	h1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	br := bufio.NewReader(h1)
	httpGet(t, h1, br, "/healthz")
	waitClosed(t, h1, br, "idle HTTP/1.1 connection", 20*time.Second)

	h2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	// The h2c preface and an empty SETTINGS frame, then nothing.
	if _, err := io.WriteString(h2, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, h2, h2, "idle h2c connection", 20*time.Second)

	// The push stream lived through both idle timeouts.
	pushOnStream(t, st, 2)
	if err := st.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	if ack, err := st.Receive(); err == nil {
		t.Fatalf("ack after the stream's end: %v", ack)
	}
	push(t, ctx, ingest, "idle", weirv1.AckLevel_ACK_LEVEL_ACCEPTED, textRecord("unary"))
	waitCount(t, s.url, "SELECT count(*) FROM idle", 3)
}

// pushOnStream sends one record to stream "idle" on st as batch id and
// waits for its acknowledgement.
func pushOnStream(t *testing.T, st *connect.BidiStreamForClient[weirv1.PushStreamRequest, weirv1.PushStreamResponse], id uint64) {
	t.Helper()
	if err := st.Send(&weirv1.PushStreamRequest{BatchId: id, Stream: "idle", Records: []*weirv1.LogRecord{textRecord("on the stream")}}); err != nil {
		t.Fatalf("send %d: %v", id, err)
	}
	ack, err := st.Receive()
	if err != nil || ack.GetBatchId() != id || ack.GetAccepted() != 1 {
		t.Fatalf("ack of %d: %v %v", id, ack, err)
	}
}

// A push stream whose client is silent for server.stream_idle_timeout
// is ended, what it pushed is kept, and tails, silent by nature, over
// h2c and HTTP/1.1, outlive it and receive.
func TestSecurityStreamIdleTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", func(c *config) {
		c.Server.StreamIdleTimeout = 500 * time.Millisecond
		fastCommit(c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tails := map[string]*connect.ServerStreamForClient[weirv1.TailResponse]{}
	for name, hc := range map[string]*http.Client{"h2c": newHTTPClient(), "http/1.1": {Transport: &http.Transport{}}} {
		tails[name] = openTail(t, ctx, weirv1connect.NewTailServiceClient(hc, s.url), &weirv1.TailRequest{Streams: []string{"idle"}, Contains: "for the tails"})
	}
	ingest, _ := newClients(s.url)
	st := ingest.PushStream(ctx)
	defer st.CloseRequest()
	pushOnStream(t, st, 1)
	if ack, err := st.Receive(); err == nil || ctx.Err() != nil {
		t.Fatalf("silent push stream: %v %v; want it ended by the server", ack, err)
	}
	waitCount(t, s.url, "SELECT count(*) FROM idle", 1)
	push(t, ctx, ingest, "idle", weirv1.AckLevel_ACK_LEVEL_COMMITTED, textRecord("for the tails"))
	for name, tl := range tails {
		if !tl.Receive() {
			t.Fatalf("%s tail ended: %v", name, tl.Err())
		}
		if recs := tl.Msg().GetRecords(); len(recs) != 1 || recs[0].GetRecord().GetBody() != "for the tails" {
			t.Fatalf("%s tail got %v", name, tl.Msg())
		}
	}
}

// A unary request whose body does not arrive within server.read_timeout
// fails with 408 (deadline_exceeded over Connect), its connection is
// closed, and the server goes on serving.
func TestSecurityUnaryReadTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", func(c *config) { c.Server.ReadTimeout = 300 * time.Millisecond })
	for _, c := range []struct{ path, ctype, want string }{
		{"/v1/ingest/jsonl?stream=slow", "application/x-ndjson", "408 Request Timeout"},
		{"/weir.v1.IngestService/Push", "application/json", "deadline_exceeded"},
	} {
		conn, err := net.Dial("tcp", s.url[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Promise a body of 100 bytes and send none: the request holds
		// nothing of the in-flight budget, whose hold would end it too.
		if _, err := io.WriteString(conn, "POST "+c.path+" HTTP/1.1\r\nHost: localhost\r\nContent-Type: "+c.ctype+"\r\nConnect-Protocol-Version: 1\r\nContent-Length: 100\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Status + " " + string(text); !strings.Contains(got, c.want) || !strings.Contains(got, "server.read_timeout") {
			t.Errorf("%s with a stalled body: %s", c.path, got)
		}
		waitClosed(t, conn, br, "connection with a stalled unary body", 20*time.Second)
	}
	ingest, _ := newClients(s.url)
	push(t, context.Background(), ingest, "after", weirv1.AckLevel_ACK_LEVEL_ACCEPTED, textRecord("still served"))
}

// The server holds at most server.max_connections connections; the next
// one is served once one of them closes.
func TestSecurityConnectionLimit(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	cfg.Server.MaxConnections = 2
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	srv, err := newHTTPServer(&cfg, mux, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(limitListener(ln, cfg.Server.MaxConnections)) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()

	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		httpGet(t, c, bufio.NewReader(c), "/healthz")
		held = append(held, c)
	}
	third, err := net.Dial("tcp", ln.Addr().String()) // the kernel completes it; the server does not accept it
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if _, err := io.WriteString(third, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(third)
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a third connection past the limit of 2 was served: %v", err)
	}
	held[0].Close()
	third.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the third connection once one closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("third connection: %d", resp.StatusCode)
	}
}

// A unary request refused before its body is read (here: no Connect
// protocol header) closes its HTTP/1.1 connection instead of holding it
// while the rest of a stalled body never comes.
func TestSecurityRefusedStalledBody(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", func(c *config) { c.Server.ReadTimeout = time.Minute })
	conn, err := net.Dial("tcp", s.url[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /weir.v1.IngestService/Push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !resp.Close {
		t.Errorf("refused request: %d, close %v", resp.StatusCode, resp.Close)
	}
	waitClosed(t, conn, br, "connection of a refused request with a stalled body", 20*time.Second)
}
