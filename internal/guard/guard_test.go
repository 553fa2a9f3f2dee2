package guard

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHandler(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := Handler(Config{Hosts: append(LoopbackHosts, "weir.internal"), Origins: []string{"https://grafana.example.com/"}}, ok)
	open := Handler(Config{}, ok)
	cases := []struct {
		name    string
		handler http.Handler
		host    string
		origin  string
		want    int
	}{
		{"loopback name", h, "127.0.0.1:7070", "", http.StatusNoContent},
		{"localhost", h, "LOCALHOST:7070", "", http.StatusNoContent},
		{"ipv6 loopback", h, "[::1]:7070", "", http.StatusNoContent},
		{"configured name", h, "weir.internal", "", http.StatusNoContent},
		{"rebinding name", h, "attacker.example:7070", "", http.StatusMisdirectedRequest},
		{"same origin", h, "127.0.0.1:7070", "http://127.0.0.1:7070", http.StatusNoContent},
		{"other origin", h, "127.0.0.1:7070", "https://attacker.example", http.StatusForbidden},
		{"other port", h, "127.0.0.1:7070", "http://127.0.0.1:8080", http.StatusForbidden},
		{"null origin", h, "127.0.0.1:7070", "null", http.StatusForbidden},
		{"allowed origin", h, "127.0.0.1:7070", "https://grafana.example.com", http.StatusNoContent},
		{"any host when unset", open, "anything.example", "", http.StatusNoContent},
		{"origin checked when hosts unset", open, "weir.example", "https://attacker.example", http.StatusForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/sql", nil)
			r.Host = c.host
			if c.origin != "" {
				r.Header.Set("Origin", c.origin)
			}
			w := httptest.NewRecorder()
			c.handler.ServeHTTP(w, r)
			if w.Code != c.want {
				t.Errorf("status %d, want %d: %s", w.Code, c.want, w.Body)
			}
		})
	}
}
