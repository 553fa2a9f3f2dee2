package auth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// ingestEcho is an IngestService that answers each push with what the
// request's context and headers said about its principal.
type ingestEcho struct {
	weirv1connect.UnimplementedIngestServiceHandler
}

func (ingestEcho) Push(ctx context.Context, req *connect.Request[weirv1.PushRequest]) (*connect.Response[weirv1.PushResponse], error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeInternal, errors.New("no principal in the context"))
	}
	resp := connect.NewResponse(&weirv1.PushResponse{Accepted: uint32(len(req.Msg.GetRecords()))})
	resp.Header().Set("Test-Key", p.Key)
	resp.Header().Set("Test-Tenant", p.Tenant)
	resp.Header().Set("Test-Tenant-Header", req.Header().Get("Weir-Tenant"))
	return resp, nil
}

// echoPrincipal answers 200 with the principal of the request as JSON, or
// {"none": true} without one.
func echoPrincipal(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		json.NewEncoder(w).Encode(map[string]any{"none": true, "tenant_header": r.Header.Get("Weir-Tenant")})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"key": p.Key, "tenant": p.Tenant, "roles": p.Roles, "tenant_header": r.Header.Get("Weir-Tenant")})
}

// testKeys are the keys of the tests, by name, with their tokens.
type testKey struct {
	name, token, tenant string
	roles               []auth.Role
}

var testKeys = []testKey{
	{"ingester", "weir_ingest-token", "acme", []auth.Role{auth.RoleIngest}},
	{"reader", "weir_query-token", "", []auth.Role{auth.RoleQuery}},
	{"scraper", "weir_metrics-token", "", []auth.Role{auth.RoleMetrics}},
}

func newAuthenticator(t *testing.T) *auth.Authenticator {
	t.Helper()
	var keys []auth.Key
	for _, k := range testKeys {
		keys = append(keys, auth.Key{Name: k.name, Hash: auth.HashToken(k.token), Tenant: k.tenant, Roles: k.roles})
	}
	a, err := auth.New(auth.Config{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newServer serves weir's kinds of routes behind a: a Connect
// IngestService, /v1/sql, /metrics, /healthz and a UI fallback at "/".
func newServer(t *testing.T, a *auth.Authenticator) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(weirv1connect.NewIngestServiceHandler(ingestEcho{}, connect.WithRequireConnectProtocolHeader()))
	mux.HandleFunc("/v1/sql", echoPrincipal)
	mux.HandleFunc("/metrics", echoPrincipal)
	mux.HandleFunc("/healthz", echoPrincipal)
	mux.HandleFunc("/", echoPrincipal)
	srv := httptest.NewUnstartedServer(a.Handler(mux))
	srv.EnableHTTP2 = true // gRPC needs HTTP/2
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestConnectProtocols(t *testing.T) {
	t.Parallel()
	srv := newServer(t, newAuthenticator(t))
	protocols := map[string][]connect.ClientOption{
		"connect":      nil,
		"connect-json": {connect.WithProtoJSON()},
		"grpc":         {connect.WithGRPC()},
		"grpc-web":     {connect.WithGRPCWeb()},
	}
	cases := []struct {
		name          string
		authorization []string
		code          connect.Code // 0: success
		key, tenant   string
	}{
		{name: "no key", code: connect.CodeUnauthenticated},
		{name: "unknown token", authorization: []string{"Bearer weir_nobody"}, code: connect.CodeUnauthenticated},
		{name: "unknown scheme", authorization: []string{"Token weir_ingest-token"}, code: connect.CodeUnauthenticated},
		{name: "basic without colon", authorization: []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("weir_ingest-token"))}, code: connect.CodeUnauthenticated},
		{name: "two headers", authorization: []string{"Bearer weir_ingest-token", "Bearer weir_ingest-token"}, code: connect.CodeUnauthenticated},
		{name: "oversized header", authorization: []string{"Bearer weir_ingest-token" + strings.Repeat(" ", 5000)}, code: connect.CodeUnauthenticated},
		{name: "query key", authorization: []string{"Bearer weir_query-token"}, code: connect.CodePermissionDenied},
		{name: "metrics key as basic", authorization: []string{basic("x", "weir_metrics-token")}, code: connect.CodePermissionDenied},
		{name: "bearer", authorization: []string{"Bearer weir_ingest-token"}, key: "ingester", tenant: "acme"},
		{name: "bearer lower case", authorization: []string{"bearer weir_ingest-token"}, key: "ingester", tenant: "acme"},
		{name: "basic", authorization: []string{basic("loki", "weir_ingest-token")}, key: "ingester", tenant: "acme"},
		{name: "basic empty user", authorization: []string{basic("", "weir_ingest-token")}, key: "ingester", tenant: "acme"},
		{name: "splunk", authorization: []string{"Splunk weir_ingest-token"}, key: "ingester", tenant: "acme"},
		{name: "apikey", authorization: []string{"ApiKey weir_ingest-token"}, key: "ingester", tenant: "acme"},
	}
	for pname, opts := range protocols {
		client := weirv1connect.NewIngestServiceClient(srv.Client(), srv.URL, opts...)
		for _, tc := range cases {
			t.Run(pname+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				req := connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{{Body: "hello"}}})
				for _, v := range tc.authorization {
					req.Header().Add("Authorization", v)
				}
				req.Header().Set("Weir-Tenant", "intruder")
				resp, err := client.Push(context.Background(), req)
				if tc.code != 0 {
					if got := connect.CodeOf(err); got != tc.code {
						t.Fatalf("code %v (%v), want %v", got, err, tc.code)
					}
					for _, v := range tc.authorization {
						if _, token, ok := strings.Cut(v, " "); ok && strings.Contains(err.Error(), strings.TrimSpace(token)) {
							t.Fatalf("the error %q echoes the credential", err)
						}
					}
					if tc.code == connect.CodePermissionDenied && !strings.Contains(err.Error(), `"ingest"`) {
						t.Fatalf("the error %q does not name the role needed", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				h := resp.Header()
				if h.Get("Test-Key") != tc.key || h.Get("Test-Tenant") != tc.tenant {
					t.Fatalf("principal key %q tenant %q, want %q %q", h.Get("Test-Key"), h.Get("Test-Tenant"), tc.key, tc.tenant)
				}
				if got := h.Get("Test-Tenant-Header"); got != "" {
					t.Fatalf("the handler saw Weir-Tenant %q; the client's header must be removed", got)
				}
			})
		}
	}
}

// do sends a request through the server's client and decodes the JSON
// answer.
func do(t *testing.T, srv *httptest.Server, method, path, authorization string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(`{"sql": "SELECT 1"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Weir-Tenant", "intruder")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
	}
	return resp, body
}

func TestHTTPRoutes(t *testing.T) {
	t.Parallel()
	srv := newServer(t, newAuthenticator(t))
	cases := []struct {
		method, path, authorization string
		status                      int
		code                        string // for errors
		key                         string // for successes; "" = no principal
	}{
		{"POST", "/v1/sql", "", 401, "unauthenticated", ""},
		{"POST", "/v1/sql", "Bearer weir_wrong", 401, "unauthenticated", ""},
		{"POST", "/v1/sql", "Bearer weir_ingest-token", 403, "permission_denied", ""},
		{"POST", "/v1/sql", "Bearer weir_query-token", 200, "", "reader"},
		{"POST", "/v1/sql", basic("u", "weir_query-token"), 200, "", "reader"},
		{"GET", "/ui/schema", "", 401, "unauthenticated", ""},
		{"GET", "/ui/dashboards", "Bearer weir_metrics-token", 403, "permission_denied", ""},
		{"GET", "/ui/schema", "Bearer weir_query-token", 200, "", "reader"},
		{"GET", "/metrics", "Bearer weir_query-token", 403, "permission_denied", ""},
		{"GET", "/metrics", "Bearer weir_metrics-token", 200, "", "scraper"},
		{"GET", "/healthz", "", 200, "", ""},
		{"GET", "/healthz", "Bearer weir_wrong", 200, "", ""},
		{"GET", "/healthz", "Bearer weir_metrics-token", 200, "", "scraper"},
		{"GET", "/", "", 200, "", ""},
		{"GET", "/index.html", "", 200, "", ""},
		{"GET", "/app.js", "", 200, "", ""},
		{"GET", "/views/tail.js", "", 200, "", ""},
		{"GET", "/not-a-route", "", 401, "unauthenticated", ""},
		{"GET", "/not-a-route", "Bearer weir_metrics-token", 200, "", "scraper"},
		{"POST", "/logs-2026/_bulk", "Bearer weir_query-token", 403, "permission_denied", ""},
		{"POST", "/_bulk", "Splunk weir_query-token", 403, "permission_denied", ""},
		{"POST", "/logs-2026/_bulk", basic("elastic", "weir_ingest-token"), 200, "", "ingester"},
		{"POST", "/loki/api/v1/push", "Bearer weir_query-token", 403, "permission_denied", ""},
		{"POST", "/services/collector/event", "Splunk weir_ingest-token", 200, "", "ingester"},
		{"POST", "/v1/logs", "", 401, "unauthenticated", ""},
		{"POST", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "", 401, "unauthenticated", ""},
		{"POST", "/weir.v1.AdminService/ReloadConfig", "Bearer weir_ingest-token", 403, "permission_denied", ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+tc.path+"/"+tc.authorization, func(t *testing.T) {
			t.Parallel()
			resp, body := do(t, srv, tc.method, tc.path, tc.authorization)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %v, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status != 200 {
				if body["code"] != tc.code {
					t.Fatalf("code %v, want %q", body["code"], tc.code)
				}
				msg, _ := body["error"].(string)
				if msg == "" || strings.Contains(msg, "weir_") {
					t.Fatalf("error %q: want a message that does not echo the token", msg)
				}
				if got := resp.Header.Get("Content-Type"); got != "application/json" {
					t.Fatalf("Content-Type %q", got)
				}
				if want := `Bearer realm="weir"`; tc.status == 401 && resp.Header.Get("WWW-Authenticate") != want {
					t.Fatalf("WWW-Authenticate %q, want %q", resp.Header.Get("WWW-Authenticate"), want)
				}
				return
			}
			if body["tenant_header"] != "" {
				t.Fatalf("the handler saw Weir-Tenant %v", body["tenant_header"])
			}
			if tc.key == "" {
				if body["none"] != true {
					t.Fatalf("principal %v on a public route reached without a valid key", body)
				}
				return
			}
			if body["key"] != tc.key {
				t.Fatalf("principal %v, want key %q", body, tc.key)
			}
		})
	}
}

// TestPathsAreCleaned checks that a path climbing out of a public prefix
// meets the rules of where it lands, as http.ServeMux would route it.
func TestPathsAreCleaned(t *testing.T) {
	t.Parallel()
	a, err := auth.New(auth.Config{
		Keys: []auth.Key{{Name: "k", Hash: auth.HashToken("weir_t"), Roles: []auth.Role{auth.RoleIngest}}},
		Rules: []auth.Rule{
			{Match: auth.MatchPrefix, Path: "/pub/", Public: true},
			auth.Exact("/v1/sql", auth.RoleQuery),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := a.Handler(http.HandlerFunc(echoPrincipal))
	for path, want := range map[string]int{
		"/pub/a.js":          200,
		"/pub/../v1/sql":     401,
		"/pub/..//v1/sql":    401,
		"//pub/../secret":    401,
		"/pub/./x/../../x":   401,
		"/pub/x/../y":        200,
		"/v1/./sql":          401,
		"/pub/%2e%2e/v1/sql": 401,
	} {
		req := httptest.NewRequest("GET", path, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("GET %s: status %d, want %d", path, rec.Code, want)
		}
	}
	req := httptest.NewRequest("GET", "/pub/../v1/sql", nil)
	req.Header.Set("Authorization", "Bearer weir_t")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 403 {
		t.Errorf("GET /pub/../v1/sql with an ingest key: status %d, want 403", rec.Code)
	}
}

func TestDisabled(t *testing.T) {
	t.Parallel()
	a, err := auth.New(auth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Enabled() {
		t.Fatal("Enabled with no keys")
	}
	srv := newServer(t, a)
	for _, path := range []string{"/v1/sql", "/metrics", "/weir.v1.AdminService/ReloadConfig", "/"} {
		for _, authorization := range []string{"", "Bearer weir_anything"} {
			resp, body := do(t, srv, "POST", path, authorization)
			if resp.StatusCode != 200 || body["key"] != "" || body["tenant"] != record.DefaultTenant || body["tenant_header"] != "" {
				t.Fatalf("POST %s (%q): %d %v, want 200 with the single-user principal", path, authorization, resp.StatusCode, body)
			}
			roles, _ := body["roles"].([]any)
			if len(roles) != len(auth.Roles()) {
				t.Fatalf("single-user roles %v, want all of %v", roles, auth.Roles())
			}
		}
	}
	client := weirv1connect.NewIngestServiceClient(srv.Client(), srv.URL, connect.WithGRPC())
	req := connect.NewRequest(&weirv1.PushRequest{Stream: "app"})
	req.Header().Set("Weir-Tenant", "intruder")
	resp, err := client.Push(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header().Get("Test-Tenant"); got != record.DefaultTenant {
		t.Fatalf("tenant %q, want %q", got, record.DefaultTenant)
	}
}

func TestPrincipal(t *testing.T) {
	t.Parallel()
	if _, ok := auth.FromContext(context.Background()); ok {
		t.Fatal("a principal in an empty context")
	}
	if got := auth.TenantOf(context.Background()); got != record.DefaultTenant {
		t.Fatalf("TenantOf an empty context = %q, want %q", got, record.DefaultTenant)
	}
	p := auth.Principal{Key: "k", Tenant: "t", Roles: []auth.Role{auth.RoleTail}}
	ctx := auth.NewContext(context.Background(), p)
	got, ok := auth.FromContext(ctx)
	if !ok || got.Key != "k" || got.Tenant != "t" || !got.Has(auth.RoleTail) || got.Has(auth.RoleAdmin) {
		t.Fatalf("FromContext(NewContext(%v)) = %v, %v", p, got, ok)
	}
	if got := auth.TenantOf(ctx); got != "t" {
		t.Fatalf("TenantOf = %q, want t", got)
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	token, hash, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "weir_") || len(token) != len("weir_")+43 {
		t.Fatalf("token of %d bytes %q..., want weir_ and 43 base64url characters", len(token), token[:5])
	}
	if _, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, "weir_")); err != nil {
		t.Fatalf("token is not base64url: %v", err)
	}
	if hash != auth.HashToken(token) {
		t.Fatal("hash is not HashToken(token)")
	}
	other, _, err := auth.GenerateKey()
	if err != nil || other == token {
		t.Fatalf("a second key: %v, same token: %v", err, other == token)
	}
	// The pair works: a request with the token passes.
	a, err := auth.New(auth.Config{Keys: []auth.Key{{Name: "new", Hash: hash, Roles: []auth.Role{auth.RoleQuery}}}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/sql", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	a.Handler(http.HandlerFunc(echoPrincipal)).ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d with a generated key", rec.Code)
	}
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	// sha256("abc"), FIPS 180-2 appendix B.1.
	if got, want := auth.HashToken("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Fatalf("HashToken(abc) = %s, want %s", got, want)
	}
}

func TestRoles(t *testing.T) {
	t.Parallel()
	for _, r := range auth.Roles() {
		got, err := auth.ParseRole(string(r))
		if err != nil || got != r {
			t.Fatalf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, bad := range []string{"", "Ingest", "root", "ingest "} {
		if _, err := auth.ParseRole(bad); !errors.Is(err, auth.ErrUnknownRole) {
			t.Fatalf("ParseRole(%q): %v, want ErrUnknownRole", bad, err)
		}
	}
	got, err := auth.ParseRoles("ingest, query")
	if err != nil || !slices.Equal(got, []auth.Role{auth.RoleIngest, auth.RoleQuery}) {
		t.Fatalf("ParseRoles = %v, %v", got, err)
	}
	for _, bad := range []string{"", "ingest,", "ingest,,query", "ingest,nope"} {
		if _, err := auth.ParseRoles(bad); err == nil {
			t.Fatalf("ParseRoles(%q) accepted", bad)
		}
	}
}
