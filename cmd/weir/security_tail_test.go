package main

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/tail"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// startTailServer serves the tail of hub on loopback with the server's
// HTTP settings, and returns its URL.
func startTailServer(t *testing.T, hub *tail.Hub) string {
	t.Helper()
	cfg := defaultConfig()
	stopping, stop := context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.Handle(weirv1connect.NewTailServiceHandler(tailService{hub: hub, stopping: stopping}))
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
	t.Cleanup(func() {
		stop()
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// Viewers that subscribe and never read neither hold more than the
// hub's byte budget nor keep their slots: a new viewer gets in once they
// are idle, and receives records.
func TestSecurityTailIdleViewers(t *testing.T) {
	t.Parallel()
	const viewers = 8
	hub := tail.NewHub(tail.Config{MaxSubscribers: viewers, TotalBytes: 1 << 20, IdleTimeout: time.Second})
	url := startTailServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The stalled viewers share one connection with a small
	// flow-control window, so the server's sends to them block soon.
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	stalledHTTP := &http.Client{Transport: &http.Transport{
		Protocols: &protocols,
		HTTP2:     &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 10, MaxReceiveBufferPerStream: 64 << 10},
	}}
	stalled := weirv1connect.NewTailServiceClient(stalledHTTP, url)
	for range viewers {
		openTail(t, ctx, stalled, &weirv1.TailRequest{})
	}
	viewer := weirv1connect.NewTailServiceClient(newHTTPClient(), url)

	var offset int64
	publish := func(body string, n int) {
		recs := make([]record.Record, n)
		for i := range recs {
			recs[i] = record.Record{Body: body, SeverityNumber: record.SeverityInfo}
			for len(recs[i].Body) < 4096 && body == "" {
				recs[i].Body += rand.Text()
			}
		}
		hub.Publish(&record.Batch{Tenant: record.DefaultTenant, Stream: "s", Records: recs, Offset: offset})
		offset += int64(n)
		if q := hub.Stats().QueuedBytes; q > 1<<20 {
			t.Fatalf("%d bytes queued for the viewers, above the budget of 1 MiB", q)
		}
	}

	// Publish until the new viewer gets a slot (the first message of a
	// refused Tail carries the error), then a marker.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var stream *connect.ServerStreamForClient[weirv1.TailResponse]
	refused := 0
	for stream == nil {
		publish("", 32) // random, so that compression cannot fit it in the window
		st, err := viewer.Tail(ctx, connect.NewRequest(&weirv1.TailRequest{Contains: "marker"}))
		if err != nil {
			t.Fatal(err)
		}
		if st.Receive() {
			stream = st
			t.Cleanup(func() { st.Close() })
			break
		}
		if connect.CodeOf(st.Err()) != connect.CodeResourceExhausted {
			t.Fatalf("new viewer: %v", st.Err())
		}
		st.Close()
		refused++
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("the new viewer was refused %d times: the stalled viewers keep their slots", refused)
		}
	}
	if refused == 0 {
		t.Fatal("the new viewer got a slot while the stalled viewers held them all")
	}
	publish("marker", 1)
	if !stream.Receive() {
		t.Fatalf("new viewer: %v", stream.Err())
	}
	if recs := stream.Msg().GetRecords(); len(recs) != 1 || recs[0].GetRecord().GetBody() != "marker" {
		t.Fatalf("new viewer got %v", stream.Msg())
	}
	// A stalled viewer still in Next has not stalled yet: it does once
	// more records come.
	for hub.Stats().Subscribers != 1 {
		publish("", 32)
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%d subscribers, want the new viewer alone", hub.Stats().Subscribers)
		}
	}
}
