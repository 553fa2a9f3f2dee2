package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/auth"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// tenantKey is an API key made for a test.
type tenantKey struct {
	token string
	key   auth.Key
}

func newTenantKey(t *testing.T, name, tenant string, roles ...auth.Role) tenantKey {
	t.Helper()
	token, hash, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return tenantKey{token: token, key: auth.Key{Name: name, Hash: hash, Tenant: tenant, Roles: roles}}
}

// client is an HTTP client that sends the key (none if token is "").
func keyClient(token string) *http.Client {
	c := newHTTPClient()
	if token != "" {
		c.Transport = bearer{token: token, next: c.Transport}
	}
	return c
}

// sqlAs runs SQL over /v1/sql with a key and returns the status and the
// decoded answer.
func sqlAs(t *testing.T, url, token, sql string) (int, sqlResult) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/sql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := keyClient(token).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var res sqlResult
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("%s: %d %s", sql, resp.StatusCode, raw)
	}
	return resp.StatusCode, res
}

// countAs waits until sql (one count) answers want for the key's tenant.
func countAs(t *testing.T, url, token, sql string, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for ; time.Now().Before(deadline); <-tick.C {
		status, res := sqlAs(t, url, token, sql)
		if status == http.StatusOK && len(res.Rows) == 1 {
			for _, v := range res.Rows[0] {
				last = fmt.Sprint(v)
			}
			if last == fmt.Sprint(want) {
				return
			}
		} else {
			last = fmt.Sprintf("status %d %s", status, res.Error)
		}
	}
	t.Fatalf("%s: %s, want %d", sql, last, want)
}

// TestTenantsSideBySide: two tenants with their own keys push, query,
// tail and replay dead letters on one server, and nothing one does
// reaches the other; requests without a key or without the role are
// refused with the documented codes.
func TestTenantsSideBySide(t *testing.T) {
	acme := newTenantKey(t, "acme", "acme", auth.RoleIngest, auth.RoleQuery, auth.RoleTail, auth.RoleAdmin)
	globex := newTenantKey(t, "globex", "globex", auth.RoleIngest, auth.RoleQuery, auth.RoleTail, auth.RoleAdmin)
	shipper := newTenantKey(t, "acme-shipper", "acme", auth.RoleIngest)
	metrics := newTenantKey(t, "prometheus", "", auth.RoleMetrics)
	s := startServer(t, "", func(c *config) {
		c.Auth.Keys = []auth.Key{acme.key, globex.key, shipper.key, metrics.key}
	})
	ctx := context.Background()

	// Each tenant tails its stream before pushing.
	tailCtx, stopTails := context.WithCancel(ctx)
	defer stopTails()
	tails := map[string]*connect.ServerStreamForClient[weirv1.TailResponse]{}
	for name, k := range map[string]tenantKey{"acme": acme, "globex": globex} {
		tails[name] = openTail(t, tailCtx, weirv1connect.NewTailServiceClient(keyClient(k.token), s.url), &weirv1.TailRequest{Streams: []string{"app"}})
	}

	push := func(k tenantKey, recs ...*weirv1.LogRecord) (*connect.Response[weirv1.PushResponse], error) {
		ing := weirv1connect.NewIngestServiceClient(keyClient(k.token), s.url)
		req := connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs})
		// A client cannot choose its tenant: the key does.
		req.Header().Set("Weir-Tenant", "globex")
		return ing.Push(ctx, req)
	}
	badTrace := textRecord("acme bad trace")
	badTrace.TraceId = []byte{1, 2, 3}
	if _, err := push(acme, textRecord("acme one"), textRecord("acme two"), badTrace); err != nil {
		t.Fatal(err)
	}
	if _, err := push(shipper, textRecord("acme three")); err != nil {
		t.Fatal(err)
	}
	if _, err := push(globex, textRecord("globex one")); err != nil {
		t.Fatal(err)
	}

	countAs(t, s.url, acme.token, "SELECT count(*) FROM app", 3)
	countAs(t, s.url, globex.token, "SELECT count(*) FROM app", 1)
	countAs(t, s.url, acme.token, "SELECT count(*) FROM logs WHERE body LIKE 'globex%'", 0)
	countAs(t, s.url, globex.token, "SELECT count(*) FROM logs WHERE body LIKE 'acme%'", 0)
	countAs(t, s.url, acme.token, "SELECT count(*) FROM _dead_letter", 1)
	countAs(t, s.url, globex.token, "SELECT count(*) FROM _dead_letter", 0)

	// Connect Query answers for the key's tenant too.
	q := weirv1connect.NewQueryServiceClient(keyClient(globex.token), s.url)
	st, err := q.Query(ctx, connect.NewRequest(&weirv1.QueryRequest{Sql: "SELECT string_agg(body, ',') AS b FROM logs"}))
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for st.Receive() {
		data = append(data, st.Msg().GetData()...)
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "globex one") || strings.Contains(string(data), "acme") {
		t.Errorf("globex's Connect query answered %s", data)
	}

	// Each tail saw its own tenant's records only.
	for name, stream := range tails {
		want := map[string]int{"acme": 3, "globex": 1}[name]
		got := 0
		for got < want && stream.Receive() {
			for _, r := range stream.Msg().GetRecords() {
				if !strings.HasPrefix(r.GetRecord().GetBody(), name) {
					t.Errorf("%s's tail received %q", name, r.GetRecord().GetBody())
				}
				got++
			}
		}
		if got != want {
			t.Errorf("%s's tail received %d records, want %d", name, got, want)
		}
	}

	// Neither tenant can read the other's files by path.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, s.data, func(c *config) { c.Auth.Keys = []auth.Key{acme.key, globex.key, shipper.key, metrics.key} })
	countAs(t, s.url, acme.token, "SELECT count(*) FROM app", 3)
	files := lakeFiles(t, s.data)
	if len(files) == 0 {
		t.Fatal("nothing was published")
	}
	for _, f := range files {
		if !strings.Contains(f, "tenant=globex") {
			continue
		}
		status, res := sqlAs(t, s.url, acme.token, "SELECT count(*) FROM read_parquet('"+f+"')")
		if status != http.StatusBadRequest || !strings.Contains(res.Error, "Permission") {
			t.Errorf("acme read globex's %s: %d %s", f, status, res.Error)
		}
	}

	// Dead-letter replay reads the caller's tenant only.
	for name, k := range map[string]tenantKey{"acme": acme, "globex": globex} {
		admin := weirv1connect.NewAdminServiceClient(keyClient(k.token), s.url)
		resp, err := admin.ReplayDeadLetter(ctx, connect.NewRequest(&weirv1.ReplayDeadLetterRequest{}))
		if err != nil {
			t.Fatalf("%s replay: %v", name, err)
		}
		if want := map[string]uint64{"acme": 1, "globex": 0}[name]; resp.Msg.GetRead() != want {
			t.Errorf("%s replay read %d dead letters, want %d", name, resp.Msg.GetRead(), want)
		}
	}

	// Refusals.
	_, err = push(tenantKey{})
	wantCode(t, "push without a key", err, connect.CodeUnauthenticated)
	_, err = push(tenantKey{token: "weir_notakey"}, textRecord("x"))
	wantCode(t, "push with an unknown key", err, connect.CodeUnauthenticated)
	st, err = weirv1connect.NewQueryServiceClient(keyClient(shipper.token), s.url).Query(ctx, connect.NewRequest(&weirv1.QueryRequest{Sql: "SELECT 1"}))
	if err == nil {
		for st.Receive() {
		}
		err = st.Err()
	}
	wantCode(t, "query with an ingest-only key", err, connect.CodePermissionDenied)
	if status, res := sqlAs(t, s.url, "", "SELECT 1"); status != http.StatusUnauthorized || res.Code != "unauthenticated" {
		t.Errorf("SQL without a key: %d %+v", status, res)
	}
	if status, res := sqlAs(t, s.url, shipper.token, "SELECT 1"); status != http.StatusForbidden || res.Code != "permission_denied" {
		t.Errorf("SQL with an ingest-only key: %d %+v", status, res)
	}
	for _, c := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {acme.token, http.StatusForbidden}, {metrics.token, http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/metrics", nil)
		resp, err := keyClient(c.token).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("/metrics: %d, want %d", resp.StatusCode, c.want)
		}
	}
	resp, err := http.Get(s.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz without a key: %d", resp.StatusCode)
	}
}
