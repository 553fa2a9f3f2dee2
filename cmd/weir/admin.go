package main

import (
	"context"
	"errors"
	"slices"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/ingest"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
	"github.com/weirlabs/weir/transform"
)

// adminService implements weirv1connect.AdminServiceHandler.
type adminService struct {
	reload func() (transform.Rules, error)
	replay *ingest.Replayer
}

var _ weirv1connect.AdminServiceHandler = adminService{}

func (a adminService) ReloadConfig(context.Context, *connect.Request[weirv1.ReloadConfigRequest]) (*connect.Response[weirv1.ReloadConfigResponse], error) {
	rules, err := a.reload()
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	var streams []string
	for s := range rules {
		streams = append(streams, s)
	}
	slices.Sort(streams)
	return connect.NewResponse(&weirv1.ReloadConfigResponse{Streams: streams}), nil
}

func (a adminService) ReplayDeadLetter(ctx context.Context, req *connect.Request[weirv1.ReplayDeadLetterRequest]) (*connect.Response[weirv1.ReplayDeadLetterResponse], error) {
	if t := req.Header().Get(ingest.TenantHeader); t != "" && t != "default" {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("dead letters of tenants other than the default one cannot be replayed yet"))
	}
	st, err := a.replay.Replay(ctx, req.Msg.GetStreams())
	if err != nil {
		var ce *connect.Error
		if !errors.As(err, &ce) {
			err = connect.NewError(connect.CodeInternal, err)
		}
		return nil, err
	}
	return connect.NewResponse(&weirv1.ReplayDeadLetterResponse{
		Read: st.Read, Replayed: st.Replayed, FailedAgain: st.FailedAgain, Dropped: st.Dropped, Skipped: st.Skipped,
	}), nil
}
