package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/weirlabs/weir/internal/tlsfiles"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// HTTP/2 limits of the server that the configuration does not set.
const (
	// readHeaderTimeout bounds the time a client takes to send a
	// request's headers.
	readHeaderTimeout = 10 * time.Second
	// maxStreamsPerConn bounds the concurrent HTTP/2 streams (RPCs) of
	// one connection.
	maxStreamsPerConn = 100
	// pingAfter is how long an HTTP/2 connection may be silent before
	// the server pings it; a peer that does not answer within
	// pingTimeout is gone, and its connection and streams are closed.
	pingAfter   = time.Minute
	pingTimeout = 15 * time.Second
)

// weirServices are the services whose streaming methods, found in their
// descriptors, get no fixed read deadline.
var weirServices = []string{
	weirv1connect.IngestServiceName, weirv1connect.QueryServiceName,
	weirv1connect.TailServiceName, weirv1connect.AdminServiceName,
	weirv1connect.SubscribeServiceName,
}

// reflectionStreams are the paths of server reflection's one method, a
// bidirectional stream. Its descriptors are registered under another
// package name, so they are named here.
var reflectionStreams = []string{
	"/" + grpcreflect.ReflectV1ServiceName + "/ServerReflectionInfo",
	"/" + grpcreflect.ReflectV1AlphaServiceName + "/ServerReflectionInfo",
}

// newHTTPServer returns the server for h, which serves HTTP/1.1 and
// HTTP/2 without TLS (h2c) on one port, bounded by c.Server:
//
//   - a connection with no request in flight is closed after
//     idle_timeout (HTTP/1.1 keep-alive, HTTP/2 with no open stream);
//   - a unary request's body must arrive within read_timeout of the
//     handler starting;
//   - a streaming RPC (PushStream, Tail, Query, reflection) has no
//     overall deadline, but one whose request body is silent for
//     stream_idle_timeout ends with an error, and its handler can set
//     write deadlines through responseControllerFrom;
//   - an HTTP/2 connection that stops answering pings is closed.
//
// Serve it on limitListener(ln, c.Server.MaxConnections) to bound the
// connections too. Handlers' contexts derive from base.
func newHTTPServer(c *config, h http.Handler, base context.Context) (*http.Server, error) {
	streaming, err := streamingProcedures(weirServices...)
	if err != nil {
		return nil, err
	}
	for _, p := range reflectionStreams {
		streaming[p] = true
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true) // with TLS (server.tls)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           withDeadlines(h, streaming, c.Server.ReadTimeout, c.Server.StreamIdleTimeout),
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       c.Server.IdleTimeout,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: maxStreamsPerConn,
			SendPingTimeout:      pingAfter,
			PingTimeout:          pingTimeout,
		},
		BaseContext: func(net.Listener) context.Context { return base },
	}, nil
}

// streamingProcedures returns the HTTP paths of the client-, server- and
// bidirectionally-streaming methods of the named services, which must be
// in the global protobuf registry.
func streamingProcedures(services ...string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, fmt.Errorf("%s is not a service", name)
		}
		for i := range sd.Methods().Len() {
			if m := sd.Methods().Get(i); m.IsStreamingClient() || m.IsStreamingServer() {
				out["/"+name+"/"+string(m.Name())] = true
			}
		}
	}
	return out, nil
}

type responseControllerKey struct{}

// responseControllerFrom returns the ResponseController of the
// streaming RPC whose handler context is ctx, or nil. A handler that
// sets a write deadline with it must clear it (the zero time) once the
// write is done: on HTTP/2 an expired deadline resets the stream even
// when nothing is being written.
func responseControllerFrom(ctx context.Context) *http.ResponseController {
	rc, _ := ctx.Value(responseControllerKey{}).(*http.ResponseController)
	return rc
}

// withDeadlines wraps h with per-request read deadlines, set through
// http.ResponseController so that they apply to one request (one
// HTTP/2 stream) and not to the connection's other streams: a request
// to a path in streaming reads its body under a deadline of streamIdle
// that each read extends; any other request with a body must send it
// within readTimeout. The deadline is cleared once the body has been
// read to its end: an HTTP/1.1 server watches the connection for a
// hang-up after that, and an expired deadline would cancel the request.
func withDeadlines(h http.Handler, streaming map[string]bool, readTimeout, streamIdle time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// HTTP/1.1 keeps a connection whose request body failed to
		// arrive, out of step with its client: close it instead.
		var h1 http.Header
		if r.ProtoMajor == 1 {
			h1 = w.Header()
		}
		switch {
		case streaming[r.URL.Path]:
			r = r.WithContext(context.WithValue(r.Context(), responseControllerKey{}, rc))
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, h1: h1, idle: streamIdle}
		case r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0:
			if err := rc.SetReadDeadline(time.Now().Add(readTimeout)); err == nil {
				body := &deadlineBody{ReadCloser: r.Body, rc: rc, h1: h1, limit: readTimeout}
				r.Body = body
				if h1 != nil {
					// A request refused before its body was read (no
					// key, wrong header) must not leave the server
					// waiting for the rest of the body to reuse the
					// connection: close it after the answer instead.
					w = &closeUnread{ResponseWriter: w, body: body}
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody clears the request's read deadline when the body ends;
// with idle set, it first extends the deadline to idle from now, at most
// every idle/8 (a request is given between 7/8 idle and idle of
// silence) so that a fast stream does not pay for it on every read. A
// read that passes the deadline fails with a Connect DeadlineExceeded
// error that says which timeout passed and wraps os.ErrDeadlineExceeded
// (HTTP endpoints answer 408, ingest.BodyStatus).
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	h1       http.Header   // the response's, on HTTP/1.1
	idle     time.Duration // server.stream_idle_timeout, for streams
	limit    time.Duration // server.read_timeout, for other requests
	extended time.Time
	ended    bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.idle > 0 && !b.ended {
		if now := time.Now(); now.Sub(b.extended) >= b.idle/8 {
			_ = b.rc.SetReadDeadline(now.Add(b.idle)) // only ErrNotSupported, for writers without deadlines
			b.extended = now
		}
	}
	n, err := b.ReadCloser.Read(p)
	switch {
	case errors.Is(err, io.EOF) && !b.ended:
		b.ended = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		if b.h1 != nil {
			b.h1.Set("Connection", "close")
		}
		what := fmt.Sprintf("it did not arrive within server.read_timeout (%v)", b.limit)
		if b.idle > 0 {
			what = fmt.Sprintf("nothing came for server.stream_idle_timeout (%v)", b.idle)
		}
		err = connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("the request body timed out: %s: %w", what, err))
	}
	return n, err
}

// closeUnread answers an HTTP/1.1 request whose body was not read to its
// end with Connection: close.
type closeUnread struct {
	http.ResponseWriter
	body        *deadlineBody
	wroteHeader bool
}

func (c *closeUnread) WriteHeader(status int) {
	if !c.wroteHeader {
		c.wroteHeader = true
		if !c.body.ended {
			c.ResponseWriter.Header().Set("Connection", "close")
		}
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *closeUnread) Write(p []byte) (int, error) {
	if !c.wroteHeader {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (c *closeUnread) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Flush passes flushes on, for handlers that check for http.Flusher.
func (c *closeUnread) Flush() { http.NewResponseController(c.ResponseWriter).Flush() }

// limitListener returns a listener that holds at most n accepted
// connections open at once: Accept waits for one to close before it
// takes the next from ln, which leaves the rest in the kernel's backlog.
// Closing it unblocks a waiting Accept.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	slots     chan struct{} // one token per open connection
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitedListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitedConn gives its slot back when closed, once.
type limitedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes a TCP connection, which the HTTP/1.1 server
// does before closing one so that the client reads the last response.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// graceShutdown is how long requests in flight get to finish when the
// server shuts down, before streaming handlers are cancelled.
const graceShutdown = 5 * time.Second

// webServer serves weir's HTTP API (Connect, gRPC, gRPC-Web, the shipper
// protocols, the UI) on a listener, as a stage of the lifecycle.
// Streams outlive a graceful HTTP shutdown, so their handlers get a
// context that Shutdown cancels once the grace period is over.
type webServer struct {
	srv            *http.Server
	ln             net.Listener
	certs          *tlsfiles.Reloader // nil without TLS
	maxConns       int
	cancelHandlers context.CancelFunc

	started bool
	done    chan struct{} // closed when Serve returns
	err     error         // Serve's error (not ErrServerClosed), set before done is closed
}

// newWebServer returns the server of h on ln; handlers' contexts derive
// from base without its cancellation.
func newWebServer(c *config, h http.Handler, ln net.Listener, certs *tlsfiles.Reloader, base context.Context) (*webServer, error) {
	handlerCtx, cancel := context.WithCancel(context.WithoutCancel(base))
	srv, err := newHTTPServer(c, h, handlerCtx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &webServer{srv: srv, ln: ln, certs: certs, maxConns: c.Server.MaxConnections, cancelHandlers: cancel, done: make(chan struct{})}, nil
}

// Start serves on a goroutine until Shutdown; failed reports an early end.
func (w *webServer) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.started = true
	ln := limitListener(w.ln, w.maxConns)
	go func() {
		defer close(w.done)
		var err error
		if w.certs != nil {
			w.srv.TLSConfig = w.certs.TLSConfig()
			err = w.srv.ServeTLS(ln, "", "")
		} else {
			err = w.srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			w.err = err
		}
	}()
	return nil
}

// failed is closed when the server stops serving; its error is w.err.
func (w *webServer) failed() <-chan struct{} { return w.done }

// Shutdown stops accepting connections, gives requests in flight
// graceShutdown (within ctx) to finish, then cancels the handlers still
// running (open streams) and closes their connections.
func (w *webServer) Shutdown(ctx context.Context) error {
	graceCtx, cancel := context.WithTimeout(ctx, graceShutdown)
	err := w.srv.Shutdown(graceCtx)
	cancel()
	w.cancelHandlers()
	if err != nil {
		err = w.srv.Close()
	}
	if !w.started {
		return err
	}
	select {
	case <-w.done:
		return errors.Join(err, w.err)
	case <-ctx.Done():
		return errors.Join(err, context.Cause(ctx))
	}
}
