package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/record"
)

// tenantHeader is the request header ingest once took the tenant from
// (ingest.TenantHeader). The tenant comes from the key only, so the
// handler removes it from every request.
const tenantHeader = "Weir-Tenant"

// Principal is who a request acts as: the key it presented, the tenant
// that key belongs to and the roles it holds.
type Principal struct {
	// Key is the key's name; "" when authentication is off.
	Key string
	// Tenant is the tenant the request acts in; never "".
	Tenant string
	// Roles are the key's roles. The slice is shared: do not modify it.
	Roles []Role
}

// Has reports whether the principal holds role r.
func (p Principal) Has(r Role) bool { return slices.Contains(p.Roles, r) }

type principalKey struct{}

// NewContext returns a copy of ctx that carries p, as
// [Authenticator.Handler] passes it on.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal that [Authenticator.Handler] put in a
// request's context. ok is false outside the handler, and on a public
// route reached without a valid key.
func FromContext(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// TenantOf returns the tenant of the principal in ctx, or
// record.DefaultTenant when ctx carries none (a public route reached
// without a key, or a request that did not pass through
// [Authenticator.Handler]). Its signature fits the stages that take a
// func(context.Context) string to find a request's tenant.
func TenantOf(ctx context.Context) string {
	if p, ok := FromContext(ctx); ok {
		return p.Tenant
	}
	return record.DefaultTenant
}

// Authenticator checks API keys and roles. It is immutable once built and
// safe for concurrent use.
type Authenticator struct {
	keys   map[[sha256.Size]byte]Principal
	rules  []Rule
	single Principal // the principal of every request when keys is empty
	errors *connect.ErrorWriter
}

// New checks cfg and returns its authenticator. Errors wrap
// [ErrInvalidConfig] and name the key or rule at fault by index (and a
// key by name); they never contain a hash.
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{
		keys:   make(map[[sha256.Size]byte]Principal, len(cfg.Keys)),
		rules:  cfg.Rules,
		single: Principal{Tenant: record.DefaultTenant, Roles: Roles()},
		// Weir's handlers require Connect's protocol header, so a plain
		// JSON POST or a browser's GET is not taken for a Connect call.
		errors: connect.NewErrorWriter(connect.WithRequireConnectProtocolHeader()),
	}
	if a.rules == nil {
		a.rules = DefaultRules()
	} else {
		a.rules = slices.Clone(a.rules)
	}
	for i, r := range a.rules {
		if err := checkRule(i, r); err != nil {
			return nil, err
		}
	}
	names := map[string]int{}
	for i, k := range cfg.Keys {
		if !nameRE.MatchString(k.Name) {
			return nil, keyError(i, k.Name, "name must be 1 to 64 characters of [A-Za-z0-9._-]")
		}
		if j, dup := names[k.Name]; dup {
			return nil, keyError(i, k.Name, "name is already used by key %d", j)
		}
		names[k.Name] = i
		if !validHash(k.Hash) {
			return nil, keyError(i, k.Name, "hash must be %q followed by 64 lower-case hex digits (weir key new prints one)", hashPrefix)
		}
		var sum [sha256.Size]byte
		hex.Decode(sum[:], []byte(k.Hash[len(hashPrefix):]))
		if prev, dup := a.keys[sum]; dup {
			return nil, keyError(i, k.Name, "hash is the same as key %q's: every key needs its own token", prev.Key)
		}
		tenant, err := tenantOf(k.Tenant)
		if err != nil {
			return nil, keyError(i, k.Name, "tenant: %w", err)
		}
		if len(k.Roles) == 0 {
			return nil, keyError(i, k.Name, "no roles: give it one or more of %s", roleNames())
		}
		var roles []Role
		for _, r := range k.Roles {
			if _, err := ParseRole(string(r)); err != nil {
				return nil, keyError(i, k.Name, "roles: %w", err)
			}
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
		a.keys[sum] = Principal{Key: k.Name, Tenant: tenant, Roles: roles}
	}
	return a, nil
}

// Enabled reports whether any key is configured. When not, every request
// acts with every role in record.DefaultTenant and Key "".
func (a *Authenticator) Enabled() bool { return len(a.keys) > 0 }

// Handler returns next behind the key and role checks.
//
// It removes any Weir-Tenant header from the request, then takes the
// token from the Authorization header (see the forms credential accepts)
// and finds its key. A request to a path whose [Rule] is public goes on
// with or without a key. Any other request without a known key gets 401
// Unauthenticated with `WWW-Authenticate: Bearer realm="weir"`, and one
// whose key lacks the rule's role gets 403 PermissionDenied naming the
// role. Connect, gRPC and gRPC-Web calls get the error in their own
// protocol, so generated clients see the code; other requests get JSON
// {"code": "unauthenticated", "error": "..."} as /v1/sql's errors are.
// The token is never logged nor written back. A request that passes
// carries its [Principal] in its context ([FromContext]).
//
// When authentication is off ([Authenticator.Enabled] is false) every
// request passes, with the single-user principal.
func (a *Authenticator) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(tenantHeader)
		if !a.Enabled() {
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), a.single)))
			return
		}
		rule, matched := a.rule(r.URL.Path)
		p, known := a.principal(r)
		switch {
		case matched && rule.Public:
			if known {
				r = r.WithContext(NewContext(r.Context(), p))
			}
			next.ServeHTTP(w, r)
			return
		case !known:
			w.Header().Set("WWW-Authenticate", `Bearer realm="weir"`)
			a.deny(w, r, connect.CodeUnauthenticated, http.StatusUnauthorized,
				"a valid API key is required: send it as Authorization: Bearer <token>")
			return
		case matched && rule.Role != "" && !p.Has(rule.Role):
			a.deny(w, r, connect.CodePermissionDenied, http.StatusForbidden,
				fmt.Sprintf("the API key %q lacks the role %q, which this request needs", p.Key, rule.Role))
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// principal returns the principal of the request's key, if it presents
// exactly one Authorization header with a known token.
func (a *Authenticator) principal(r *http.Request) (Principal, bool) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return Principal{}, false
	}
	token, ok := credential(values[0])
	if !ok {
		return Principal{}, false
	}
	// The map is keyed by the token's hash, so what a lookup's timing
	// could reveal is about the hash, which gives nothing on the token.
	p, ok := a.keys[sha256.Sum256([]byte(token))]
	return p, ok
}

// rule returns the first rule that matches the cleaned path.
func (a *Authenticator) rule(p string) (Rule, bool) {
	p = cleanPath(p)
	for _, r := range a.rules {
		var ok bool
		switch r.Match {
		case MatchExact:
			ok = p == r.Path
		case MatchPrefix:
			ok = strings.HasPrefix(p, r.Path)
		case MatchSuffix:
			ok = strings.HasSuffix(p, r.Path)
		}
		if ok {
			return r, true
		}
	}
	return Rule{}, false
}

// cleanPath is p without dot segments or repeated slashes, keeping a
// trailing slash, as http.ServeMux routes it.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// deny writes an authentication or authorization error in the request's
// protocol: Connect, gRPC and gRPC-Web calls get it as their own error,
// anything else as JSON.
func (a *Authenticator) deny(w http.ResponseWriter, r *http.Request, code connect.Code, status int, msg string) {
	if a.errors.IsSupported(r) {
		// A failed write means the client went away; nothing is left to do.
		_ = a.errors.Write(w, r, connect.NewError(code, errors.New(msg)))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code.String(), "error": msg})
}
