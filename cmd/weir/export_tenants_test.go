package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/auth"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// TestExportDeleteTenants: export and delete act on the caller's
// tenant only, with the key in WEIR_TOKEN as for every command; delete
// needs the admin role, export the query role.
func TestExportDeleteTenants(t *testing.T) {
	acme := newTenantKey(t, "acme", "acme", auth.RoleIngest, auth.RoleQuery, auth.RoleAdmin)
	reader := newTenantKey(t, "acme-reader", "acme", auth.RoleQuery)
	globex := newTenantKey(t, "globex", "globex", auth.RoleIngest, auth.RoleQuery)
	s := startServer(t, "", func(c *config) { c.Auth.Keys = []auth.Key{acme.key, reader.key, globex.key} })
	for _, k := range []tenantKey{acme, globex} {
		ing := weirv1connect.NewIngestServiceClient(keyClient(k.token), s.url)
		recs := []*weirv1.LogRecord{textRecord(k.key.Tenant + " one"), textRecord(k.key.Tenant + " two")}
		if _, err := ing.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs})); err != nil {
			t.Fatal(err)
		}
		countAs(t, s.url, k.token, "SELECT count(*) FROM app", 2)
	}
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)

	t.Setenv("WEIR_TOKEN", globex.token)
	dest := filepath.Join(t.TempDir(), "out")
	if out, err := runWeir(t, "export", "--server", s.url, "--stream", "app", "--from", from, "--format", "jsonl", "--dest", dest); err != nil || !strings.Contains(out, "exported 2 records") {
		t.Fatalf("globex export: %v %s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dest, "*", "*", "*.jsonl"))
	if len(files) == 0 {
		t.Fatal("no file exported")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "acme") || !strings.Contains(string(raw), "globex") {
			t.Errorf("globex's export %s: %s", f, raw)
		}
	}

	t.Setenv("WEIR_TOKEN", reader.token)
	args := []string{"delete", "--server", s.url, "--stream", "app", "--from", from, "--where", "true"}
	if out, err := runWeir(t, args...); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("delete with a query key: %v %s; want permission_denied", err, out)
	}
	t.Setenv("WEIR_TOKEN", acme.token)
	if out, err := runWeir(t, args...); err != nil || !strings.Contains(out, "deleted 2 of 2") {
		t.Fatalf("acme delete: %v %s", err, out)
	}
	t.Setenv("WEIR_TOKEN", "") // keyClient's key, not this one, must go out
	countAs(t, s.url, acme.token, "SELECT count(*) FROM app", 0)
	countAs(t, s.url, globex.token, "SELECT count(*) FROM app", 2)
}
