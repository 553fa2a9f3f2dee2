// Package guard holds the HTTP checks that stand in front of every route
// of weir's port: which Host names it answers, and which cross-origin
// requests it refuses.
//
// A browser lets any page send requests to any address, including
// 127.0.0.1; what it protects is the answer, by the page's origin. DNS
// rebinding defeats that: a page on attacker.example resolves its own name
// to 127.0.0.1 and then reads weir's answers as same-origin. Checking the
// Host header stops it, since the browser still sends the attacker's
// name. A request whose Origin names another site is refused as well, so
// that forms and other simple requests cannot act on a visitor's behalf.
package guard

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Config says which names the server answers to.
type Config struct {
	// Hosts are the host names (without port) requests may name in their
	// Host header, case-insensitive. Empty means any name, which is only
	// safe where every request is authenticated.
	Hosts []string
	// Origins are web origins ("https://grafana.example.com") besides
	// the server's own that may send requests from a browser.
	Origins []string
}

// LoopbackHosts are the names of the local machine, which a server bound
// to a loopback address answers by default.
var LoopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// Handler returns next behind the checks: a request naming a Host not in
// cfg.Hosts gets 421 Misdirected Request, and one whose Origin is neither
// the Host it names nor in cfg.Origins gets 403 Forbidden. Both answers
// are plain text and say why.
func Handler(cfg Config, next http.Handler) http.Handler {
	hosts := map[string]bool{}
	for _, h := range cfg.Hosts {
		hosts[strings.ToLower(strings.Trim(h, "[]"))] = true
	}
	origins := map[string]bool{}
	for _, o := range cfg.Origins {
		origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(hosts) > 0 && !hosts[hostName(r.Host)] {
			http.Error(w, "this server does not answer to the host name "+quote(r.Host)+"; add it to server.hosts", http.StatusMisdirectedRequest)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) && !origins[strings.ToLower(o)] {
			http.Error(w, "cross-origin requests from "+quote(o)+" are refused; add the origin to server.origins", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostName is the lower-case host of a Host header, without port or
// brackets.
func hostName(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.Trim(h, "[]"))
}

// sameOrigin reports whether the Origin header names the Host the request
// was sent to (any scheme: TLS may end in front of weir).
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

// quote bounds and quotes a client-sent value for an error message.
func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}
