package iceberg_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	ice "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/weirlabs/weir/sink/iceberg"
)

// restServer serves the Iceberg REST catalog protocol's table endpoints
// over a hadoop catalog: enough of a REST catalog for weir's
// reconciler, so that the REST path (iceberg-go's client, the config's
// token) is exercised without an external service. It is a double of
// the protocol, not a conforming server.
func restServer(t *testing.T, backing catalog.Catalog, token string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, code int, err error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": err.Error(), "type": "Error", "code": code}})
	}
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	tableReply := func(w http.ResponseWriter, meta table.Metadata, loc string) {
		raw, err := json.Marshal(meta)
		if err != nil {
			fail(w, 500, err)
			return
		}
		reply(w, map[string]any{"metadata-location": loc, "metadata": json.RawMessage(raw), "config": map[string]string{}})
	}
	status := func(err error) int {
		switch {
		case errors.Is(err, catalog.ErrNoSuchTable), errors.Is(err, catalog.ErrNoSuchNamespace):
			return 404
		case errors.Is(err, catalog.ErrTableAlreadyExists), errors.Is(err, catalog.ErrNamespaceAlreadyExists), errors.Is(err, table.ErrCommitFailed):
			return 409
		}
		return 500
	}
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"defaults": map[string]string{}, "overrides": map[string]string{}})
	})
	mux.HandleFunc("GET /v1/namespaces", func(w http.ResponseWriter, r *http.Request) {
		nss, err := backing.ListNamespaces(r.Context(), nil)
		if err != nil {
			fail(w, status(err), err)
			return
		}
		if nss == nil {
			nss = []table.Identifier{}
		}
		reply(w, map[string]any{"namespaces": nss})
	})
	mux.HandleFunc("POST /v1/namespaces", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Namespace  []string          `json:"namespace"`
			Properties map[string]string `json:"properties"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, 400, err)
			return
		}
		if err := backing.CreateNamespace(r.Context(), req.Namespace, req.Properties); err != nil {
			fail(w, status(err), err)
			return
		}
		reply(w, map[string]any{"namespace": req.Namespace, "properties": map[string]string{}})
	})
	mux.HandleFunc("GET /v1/namespaces/{ns}", func(w http.ResponseWriter, r *http.Request) {
		ns := r.PathValue("ns")
		ok, err := backing.CheckNamespaceExists(r.Context(), table.Identifier{ns})
		switch {
		case err != nil:
			fail(w, 500, err)
		case !ok:
			fail(w, 404, catalog.ErrNoSuchNamespace)
		default:
			reply(w, map[string]any{"namespace": []string{ns}, "properties": map[string]string{}})
		}
	})
	mux.HandleFunc("GET /v1/namespaces/{ns}/tables", func(w http.ResponseWriter, r *http.Request) {
		ids := []map[string]any{}
		for id, err := range backing.ListTables(r.Context(), table.Identifier{r.PathValue("ns")}) {
			if err != nil {
				fail(w, status(err), err)
				return
			}
			ids = append(ids, map[string]any{"namespace": id[:len(id)-1], "name": id[len(id)-1]})
		}
		reply(w, map[string]any{"identifiers": ids})
	})
	mux.HandleFunc("POST /v1/namespaces/{ns}/tables", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name   string             `json:"name"`
			Schema *ice.Schema        `json:"schema"`
			Spec   *ice.PartitionSpec `json:"partition-spec"`
			Props  ice.Properties     `json:"properties"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, 400, err)
			return
		}
		tbl, err := backing.CreateTable(r.Context(), table.Identifier{r.PathValue("ns"), req.Name}, req.Schema,
			catalog.WithPartitionSpec(req.Spec), catalog.WithProperties(req.Props))
		if err != nil {
			fail(w, status(err), err)
			return
		}
		tableReply(w, tbl.Metadata(), tbl.MetadataLocation())
	})
	mux.HandleFunc("GET /v1/namespaces/{ns}/tables/{t}", func(w http.ResponseWriter, r *http.Request) {
		tbl, err := backing.LoadTable(r.Context(), table.Identifier{r.PathValue("ns"), r.PathValue("t")})
		if err != nil {
			fail(w, status(err), err)
			return
		}
		tableReply(w, tbl.Metadata(), tbl.MetadataLocation())
	})
	mux.HandleFunc("POST /v1/namespaces/{ns}/tables/{t}", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Requirements table.Requirements `json:"requirements"`
			Updates      table.Updates      `json:"updates"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, 400, err)
			return
		}
		meta, loc, err := backing.CommitTable(r.Context(), table.Identifier{r.PathValue("ns"), r.PathValue("t")}, req.Requirements, req.Updates)
		if err != nil {
			fail(w, status(err), err)
			return
		}
		tableReply(w, meta, loc)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			fail(w, 401, errors.New("not authorized"))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRESTCatalog runs the reconciler against a REST catalog with a
// bearer token: tables are created and follow publishes and compaction
// through the REST protocol; a wrong token is refused with a clear
// error.
func TestRESTCatalog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.openLake(t)
	srv := restServer(t, e.catalog(t), "s3cret")

	bad := iceberg.DefaultConfig()
	bad.Catalog, bad.URI, bad.Token = iceberg.CatalogREST, srv.URL, "wrong"
	if _, err := iceberg.OpenCatalog(context.Background(), bad); err == nil {
		t.Fatal("a wrong token opened the catalog")
	}

	cfg := iceberg.DefaultConfig()
	cfg.Catalog, cfg.URI, cfg.Token = iceberg.CatalogREST, srv.URL, "s3cret"
	cat, err := iceberg.OpenCatalog(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := iceberg.New(cfg, l, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	app := want{}
	write(t, l, app, "app", 0, 0, 100, hour0, false)
	write(t, l, app, "app", 0, 100, 100, hour0, false)
	sync(t, r)
	checkTable(t, cat, l, "app", app)
	compact(t, l)
	sync(t, r)
	checkTable(t, cat, l, "app", app)
	// The same table, read through the backing catalog directly.
	checkTable(t, e.catalog(t), l, "app", app)
	if s := r.Stats(); s.Snapshots != 2 {
		t.Fatalf("stats: %+v", s)
	}
}
