package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/weirlabs/weir/internal/auth"
)

// BenchmarkHandler measures what the check adds to every request: parse
// the header, hash the token, find the rule and wrap the context.
func BenchmarkHandler(b *testing.B) {
	for _, bc := range []struct{ name, path, authorization string }{
		{"push/bearer", "/weir.v1.IngestService/Push", "Bearer weir_ingest-token"},
		{"bulk/basic", "/logs/_bulk", basic("elastic", "weir_ingest-token")},
		{"public", "/app.js", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var keys []auth.Key
			for _, k := range testKeys {
				keys = append(keys, auth.Key{Name: k.name, Hash: auth.HashToken(k.token), Tenant: k.tenant, Roles: k.roles})
			}
			a, err := auth.New(auth.Config{Keys: keys})
			if err != nil {
				b.Fatal(err)
			}
			h := a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			req := httptest.NewRequest("POST", bc.path, nil)
			if bc.authorization != "" {
				req.Header.Set("Authorization", bc.authorization)
			}
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		})
	}
}
