package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// Discard is an IngestService that decodes each request (and the Arrow
// IPC stream of a batch sent as arrow_ipc) and acknowledges it at once
// without storing anything: the ceiling for the clients, the RPC layer
// and protobuf. It is safe for concurrent use.
type Discard struct{}

var _ weirv1connect.IngestServiceHandler = Discard{}

// Push acknowledges the batch.
func (Discard) Push(_ context.Context, req *connect.Request[weirv1.PushRequest]) (*connect.Response[weirv1.PushResponse], error) {
	n, err := discardCount(req.Msg.GetRecords(), req.Msg.GetArrowIpc())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&weirv1.PushResponse{Accepted: uint32(n), AckLevel: req.Msg.GetAckLevel()}), nil
}

// discardCount returns the records of a batch: its records, or the rows
// of its Arrow IPC stream, which it decodes.
func discardCount(recs []*weirv1.LogRecord, arrowIPC []byte) (int, error) {
	if len(arrowIPC) == 0 {
		return len(recs), nil
	}
	n, err := arrowRows(arrowIPC)
	if err != nil {
		return 0, connect.NewError(connect.CodeInvalidArgument, err)
	}
	return n, nil
}

// PushStream acknowledges each batch as it arrives, in order.
func (Discard) PushStream(_ context.Context, st *connect.BidiStream[weirv1.PushStreamRequest, weirv1.PushStreamResponse]) error {
	for {
		req, err := st.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ack := &weirv1.PushStreamResponse{BatchId: req.GetBatchId(), AckLevel: req.GetAckLevel()}
		n, err := discardCount(req.GetRecords(), req.GetArrowIpc())
		if err != nil {
			code := connect.CodeOf(err)
			ack.Code, ack.ErrorCode, ack.ErrorMessage = weirv1.ErrorCode(code), code.String(), err.Error()
		}
		ack.Accepted = uint32(n)
		if err := st.Send(ack); err != nil {
			return err
		}
	}
}

// DiscardServer serves Discard on a loopback port over HTTP/1.1 and
// cleartext HTTP/2, as weir serve does.
type DiscardServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// StartDiscard starts a DiscardServer on 127.0.0.1 and a free port. The
// caller must call Shutdown.
func StartDiscard() (*DiscardServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(weirv1connect.NewIngestServiceHandler(Discard{}))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s := &DiscardServer{
		srv:  &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// URL returns the server's base URL.
func (s *DiscardServer) URL() string { return "http://" + s.ln.Addr().String() }

// Shutdown stops the server, waiting until ctx ends for open calls, then
// closing them.
func (s *DiscardServer) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
