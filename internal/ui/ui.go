package ui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Config configures the web UI.
type Config struct {
	// Dashboards is an optional dashboards file in YAML (docs/ui.md).
	// Its dashboards follow the built-in one; one named like the
	// built-in dashboard replaces it. Nil or empty means the built-in
	// dashboard only.
	Dashboards []byte
	// DashboardsName names the file in errors, typically its path.
	DashboardsName string
	// Query runs one read-only SQL statement and returns its rows as
	// column name → value, for GET /ui/schema. It must be safe to call
	// concurrently, honour ctx, and bound the rows it returns. Nil makes
	// /ui/schema answer 501 Not Implemented.
	Query func(ctx context.Context, sql string) ([]map[string]any, error)
	// Ingest returns the caller's counters by ingest endpoint, for GET
	// /ui/ingest and the overview. It must be safe to call concurrently.
	// Nil makes /ui/ingest answer an empty list.
	Ingest func(ctx context.Context) []IngestEndpoint
	// Groups returns the caller's consumer groups, for GET /ui/groups and
	// the Consumers view. It must be safe to call concurrently. Nil makes
	// /ui/groups answer an empty list.
	Groups func(ctx context.Context) []ConsumerGroup
}

// ConsumerGroup is a consumer group of a stream (docs/consume.md) and
// its progress per partition.
type ConsumerGroup struct {
	Stream     string              `json:"stream"`
	Group      string              `json:"group"`
	Members    int                 `json:"members"`
	Partitions []ConsumerPartition `json:"partitions"`
}

// ConsumerPartition is a group's progress in one partition: its
// committed offset (-1 for none), the partition's end (the offset of its
// next record), the lag between them, and whether a member owns it now.
type ConsumerPartition struct {
	Partition int32 `json:"partition"`
	Committed int64 `json:"committed"`
	End       int64 `json:"end"`
	Lag       int64 `json:"lag"`
	Owned     bool  `json:"owned"`
}

// IngestEndpoint counts the records one ingest endpoint (protocol) took
// since the server started.
type IngestEndpoint struct {
	Endpoint     string           `json:"endpoint"`
	Records      int64            `json:"records"`
	Bytes        int64            `json:"bytes"`
	DeadLettered int64            `json:"dead_lettered"`
	Errors       map[string]int64 `json:"errors"`
}

// Handler returns the UI's HTTP handler. It serves
//
//   - the application at / (index.html) and its static assets;
//   - GET /ui/dashboards: the dashboards as JSON;
//   - GET /ui/schema: streams, columns and attribute keys (see schema.go);
//   - GET /ui/ingest: {"endpoints": [IngestEndpoint...]};
//   - GET /ui/groups: {"groups": [ConsumerGroup...]};
//
// and answers 404 for any other path, so it can be mounted at "/" as the
// fallback of a mux with more specific routes. The dashboards are parsed
// and validated here: a bad file is an error naming the file and, where
// YAML gives one, the line. The handler is safe for concurrent use.
func Handler(cfg Config) (http.Handler, error) {
	dashboards, err := loadDashboards(cfg.Dashboards, cfg.DashboardsName)
	if err != nil {
		return nil, err
	}
	dashJSON, err := json.Marshal(map[string]any{"dashboards": dashboards})
	if err != nil {
		return nil, fmt.Errorf("ui: encode dashboards: %w", err)
	}
	files, err := loadAssets()
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/dashboards", getOnly(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(dashJSON)
	}))
	mux.Handle("/ui/schema", getOnly(schemaHandler{query: cfg.Query}.ServeHTTP))
	mux.Handle("/ui/ingest", getOnly(func(w http.ResponseWriter, r *http.Request) {
		eps := []IngestEndpoint{}
		if cfg.Ingest != nil {
			eps = append(eps, cfg.Ingest(r.Context())...)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]any{"endpoints": eps})
	}))
	mux.Handle("/ui/groups", getOnly(func(w http.ResponseWriter, r *http.Request) {
		groups := []ConsumerGroup{}
		if cfg.Groups != nil {
			groups = append(groups, cfg.Groups(r.Context())...)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]any{"groups": groups})
	}))
	mux.Handle("/", files)
	return secureHeaders(mux), nil
}

// contentTypes are the media types of the embedded assets, by extension.
// They are fixed here rather than taken from the system's MIME tables, so
// that ES modules are always served as JavaScript.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
}

// asset is one embedded file, ready to serve.
type asset struct {
	data  []byte
	ctype string
	etag  string
}

// assets serves the embedded files by path; "/" is index.html.
type assets map[string]asset

func loadAssets() (assets, error) {
	out := assets{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("ui: embedded file %s has no known content type", p)
		}
		data, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[strings.TrimPrefix(p, "static")] = asset{data: data, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out["/"] = out["/index.html"]
	return out, nil
}

func (a assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := a[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if !methodGet(w, r) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("ETag", f.etag)
	// The assets change only with the binary: revalidate each time, and
	// let the ETag make that cheap.
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
}

// getOnly restricts a handler to GET and HEAD. The UI's routes sit under
// the "/" fallback, so the mux's own method matching would answer 404
// rather than 405.
func getOnly(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if methodGet(w, r) {
			next(w, r)
		}
	})
}

func methodGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// secureHeaders adds the headers every UI response carries: the app
// loads nothing from other origins, runs no inline script or style, and
// may not be framed.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}
