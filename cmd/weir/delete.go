package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/query"
	"github.com/weirlabs/weir/sink"
)

// deleter carries out AdminService.Delete: the query engine finds the
// matching records, hour by hour, and the lake rewrites the files that
// hold them (docs/lake.md, "Delete").
type deleter struct {
	engine *query.Engine
	lake   *sink.Lake
	log    *slog.Logger
}

// Delete implements weirv1connect.AdminServiceHandler.
func (a adminService) Delete(ctx context.Context, req *connect.Request[weirv1.DeleteRequest]) (*connect.Response[weirv1.DeleteResponse], error) {
	if a.del == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("delete is not available on this server"))
	}
	resp, err := a.del.delete(ctx, auth.TenantOf(ctx), req.Msg)
	if err != nil {
		var ce *connect.Error
		if !errors.As(err, &ce) {
			err = connect.NewError(queryCode(err), err)
		}
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// queryCode maps the query engine's errors to Connect codes.
func queryCode(err error) connect.Code {
	switch {
	case errors.Is(err, query.ErrUnknownStream):
		return connect.CodeNotFound
	case errors.Is(err, query.ErrInvalid):
		return connect.CodeInvalidArgument
	case errors.Is(err, query.ErrBusy), errors.Is(err, query.ErrResources):
		return connect.CodeResourceExhausted
	case errors.Is(err, query.ErrTimeout):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, query.ErrCanceled), errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	}
	return connect.CodeInternal
}

func (d *deleter) delete(ctx context.Context, tenant string, m *weirv1.DeleteRequest) (*weirv1.DeleteResponse, error) {
	if err := record.ValidateStream(m.GetStream()); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if strings.TrimSpace(m.GetWhere()) == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New(`where is required; use "true" to delete every record in the time range`))
	}
	if tenant == "" {
		tenant = record.DefaultTenant
	}
	spec := query.ExportSpec{
		Tenant: tenant,
		Stream: m.GetStream(),
		From:   time.Unix(0, int64(min(m.GetFromUnixNano(), math.MaxInt64))).UTC(),
		To:     time.Unix(0, int64(min(m.GetToUnixNano(), math.MaxInt64))).UTC(),
		Where:  m.GetWhere(),
	}
	if !m.GetDryRun() {
		// Records still in open files are published first, so that the
		// delete reaches every record acknowledged before the call.
		if err := d.lake.Flush(ctx); err != nil {
			return nil, fmt.Errorf("publish open files before deleting: %w", err)
		}
		if err := d.engine.Sync(ctx); err != nil {
			return nil, err
		}
	}
	hours, err := d.engine.ExportPlan(ctx, spec)
	if err != nil {
		return nil, err
	}
	resp := &weirv1.DeleteResponse{Hours: uint32(len(hours))}
	for _, h := range hours {
		resp.Matched += h.Rows
	}
	if m.GetDryRun() {
		d.log.Info("delete (dry run)", "tenant", tenant, "stream", spec.Stream, "from", spec.From, "to", spec.To, "where", spec.Where, "matched", resp.Matched)
		return resp, nil
	}
	for _, h := range hours {
		sets := map[int32]sink.OffsetSet{}
		err := d.engine.MatchingOffsets(ctx, spec, h.Hour, func(part int32, off int64) error {
			s := sets[part]
			if n := len(s); n > 0 && s[n-1].To == off {
				s[n-1].To++
			} else if n == 0 || s[n-1].To < off {
				s = append(s, sink.OffsetRange{From: off, To: off + 1})
			}
			sets[part] = s
			return nil
		})
		if err != nil {
			return resp, err
		}
		res, err := d.lake.DeleteRows(ctx, tenant, spec.Stream, h.Hour, sets)
		resp.Deleted += uint64(res.Rows)
		resp.FilesRewritten += uint32(res.Rewritten)
		resp.FilesRemoved += uint32(res.Removed)
		if err != nil {
			d.log.Error("delete failed part way; the records deleted so far stay deleted", "tenant", tenant, "stream", spec.Stream, "deleted", resp.Deleted, "err", err)
			return nil, err
		}
	}
	if err := d.engine.Sync(ctx); err != nil {
		return nil, err
	}
	d.log.Info("delete", "tenant", tenant, "stream", spec.Stream, "from", spec.From, "to", spec.To, "where", spec.Where,
		"matched", resp.Matched, "deleted", resp.Deleted, "files_rewritten", resp.FilesRewritten, "files_removed", resp.FilesRemoved)
	return resp, nil
}
