package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	rpprof "runtime/pprof"
	"strings"
	"time"

	"github.com/grafana/pyroscope-go"
)

// startPprof serves net/http/pprof on its own listener at addr, kept off
// the public port; "" serves nothing. stop closes it.
func startPprof(addr string, log *slog.Logger) (stop func(context.Context) error, err error) {
	if addr == "" {
		return func(context.Context) error { return nil }, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("profiling.pprof_addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	log.Info("pprof serving", "addr", ln.Addr().String())
	return func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}, nil
}

// startPyroscope pushes CPU, allocation, heap and goroutine profiles to a
// Pyroscope server at url every interval, tagged with the instance's
// address; goroutines carry a "stage" label (ingest, query, tail,
// pipeline, sink, wal) so profiles break down by pipeline stage. ""
// pushes nothing. stop flushes and ends the pushes.
func startPyroscope(url string, interval time.Duration, instance string, log *slog.Logger) (stop func() error, err error) {
	if url == "" {
		return func() error { return nil }, nil
	}
	p, err := pyroscope.Start(pyroscope.Config{
		ApplicationName: "weir",
		ServerAddress:   url,
		Tags:            map[string]string{"instance": instance},
		UploadRate:      interval,
		Logger:          pyroscopeLogger{log},
		ProfileTypes: []pyroscope.ProfileType{
			pyroscope.ProfileCPU, pyroscope.ProfileAllocObjects, pyroscope.ProfileAllocSpace,
			pyroscope.ProfileInuseObjects, pyroscope.ProfileInuseSpace, pyroscope.ProfileGoroutines,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("profiling.pyroscope_url: %w", err)
	}
	log.Info("pushing profiles to Pyroscope", "url", url, "every", interval)
	return p.Stop, nil
}

// pyroscopeLogger routes the Pyroscope client's messages to slog.
type pyroscopeLogger struct{ log *slog.Logger }

func (l pyroscopeLogger) Infof(format string, args ...any) {
	l.log.Debug("pyroscope: " + fmt.Sprintf(format, args...))
}
func (l pyroscopeLogger) Debugf(format string, args ...any) {
	l.log.Debug("pyroscope: " + fmt.Sprintf(format, args...))
}
func (l pyroscopeLogger) Errorf(format string, args ...any) {
	l.log.Warn("pyroscope: " + fmt.Sprintf(format, args...))
}

// stageLabels wraps h so that the goroutines serving its requests carry
// the pprof label stage=<stage of the route>.
func stageLabels(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rpprof.Do(r.Context(), rpprof.Labels("stage", stageOf(r.URL.Path)), func(ctx context.Context) {
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	})
}

// stageOf names the stage that serves a request path.
func stageOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/weir.v1.IngestService/"):
		return "ingest"
	case strings.HasPrefix(path, "/weir.v1.QueryService/"), path == "/v1/sql", strings.HasPrefix(path, "/ui/"):
		return "query"
	case strings.HasPrefix(path, "/weir.v1.TailService/"):
		return "tail"
	case strings.HasPrefix(path, "/weir.v1.AdminService/"):
		return "admin"
	}
	return "http"
}
