package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/internal/auth"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
	"github.com/weirlabs/weir/transform"
)

// adminService implements weirv1connect.AdminServiceHandler.
type adminService struct {
	reload func() (transform.Rules, error)
	replay *ingest.Replayer
	log    *slog.Logger // gets the full text of reload errors
	del    *deleter     // delete.go; nil refuses Delete
}

var _ weirv1connect.AdminServiceHandler = adminService{}

func (a adminService) ReloadConfig(context.Context, *connect.Request[weirv1.ReloadConfigRequest]) (*connect.Response[weirv1.ReloadConfigResponse], error) {
	rules, err := a.reload()
	if err != nil {
		if a.log != nil {
			a.log.Error("config reload failed; the running processors stay", "err", err)
		}
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New(publicReloadError(err)))
	}
	var streams []string
	for s := range rules {
		streams = append(streams, s)
	}
	slices.Sort(streams)
	return connect.NewResponse(&weirv1.ReloadConfigResponse{Streams: streams}), nil
}

func (a adminService) ReplayDeadLetter(ctx context.Context, req *connect.Request[weirv1.ReplayDeadLetterRequest]) (*connect.Response[weirv1.ReplayDeadLetterResponse], error) {
	st, err := a.replay.Replay(ctx, auth.TenantOf(ctx), req.Msg.GetStreams())
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

// reloadLine finds the line a configuration error names: YAML and the
// stream rules report it as "line N" in their text, and nowhere else.
var reloadLine = regexp.MustCompile(`\bline ([0-9]+)\b`)

// publicReloadError is what a ReloadConfig caller learns of a failed
// reload: the file, the line and the field at that line, never the
// values, which may be secrets and which YAML and the stream rules quote
// in their errors. The full error goes to the server log.
//
// Errors about a file begin "config <file>: " (loadConfigFile and the
// reload wrap them so); the field is the key path of the entry at the
// named line, read from the file itself.
func publicReloadError(err error) string {
	const details = "the server log has the details"
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return fmt.Sprintf("config %s: %s: %v", pe.Path, pe.Op, pe.Err)
	}
	rest, ok := strings.CutPrefix(err.Error(), "config ")
	file, _, _ := strings.Cut(rest, ": ")
	if !ok || file == "" {
		return "config reload failed; " + details
	}
	msg := "config " + file
	m := reloadLine.FindStringSubmatch(rest)
	if m == nil {
		return msg + ": invalid; " + details
	}
	line, err := strconv.Atoi(m[1])
	if err != nil {
		return msg + ": invalid; " + details
	}
	msg += ": line " + m[1]
	if f := fieldAtLine(file, line); f != "" {
		msg += ": " + f
	}
	return msg + ": invalid value or syntax; " + details
}

// safeKey matches keys that fieldAtLine names as they are; others are
// shown as "?".
var safeKey = regexp.MustCompile(`^[A-Za-z0-9_.*-]{1,64}$`)

// fieldAtLine returns the key path (streams.app.processors[0].parse)
// of the innermost entry on line of the YAML file, or "" when the file
// cannot be read or parsed or no entry starts there.
func fieldAtLine(file string, line int) string {
	raw, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return ""
	}
	best, bestDepth := "", -1
	var walk func(n *yaml.Node, path string, depth int)
	walk = func(n *yaml.Node, path string, depth int) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path, depth)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if !safeKey.MatchString(k) {
					k = "?"
				}
				p := k
				if path != "" {
					p = path + "." + k
				}
				if n.Content[i].Line == line && depth > bestDepth {
					best, bestDepth = p, depth
				}
				walk(n.Content[i+1], p, depth+1)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if c.Line == line && depth > bestDepth {
					best, bestDepth = p, depth
				}
				walk(c, p, depth+1)
			}
		}
	}
	walk(&root, "", 0)
	return best
}
