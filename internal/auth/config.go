package auth

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/weirlabs/weir/internal/record"
)

var (
	// ErrUnknownRole is wrapped by the errors for a role name that is not
	// one of [Roles].
	ErrUnknownRole = errors.New("unknown role")
	// ErrInvalidConfig is wrapped by every error [New] returns.
	ErrInvalidConfig = errors.New("invalid auth configuration")
)

// Key is one API key as the configuration file lists it (under
// auth.keys). The token itself is never stored, only its hash.
//
// Tokens are random 256-bit values ([GenerateKey]), not passwords a person
// chose: nobody can search that space, so a single fast SHA-256 is as
// safe as a slow password hash (bcrypt, argon2) and costs nothing per
// request.
type Key struct {
	// Name identifies the key in logs and errors: 1 to 64 characters of
	// [A-Za-z0-9._-], unique among the keys.
	Name string `yaml:"name"`
	// Hash is "sha256:" followed by the 64 lower-case hex digits of the
	// token's SHA-256 ([HashToken]). Unique among the keys.
	Hash string `yaml:"hash"`
	// Tenant is the tenant every request made with the key acts in;
	// "" means record.DefaultTenant.
	Tenant string `yaml:"tenant,omitempty"`
	// Roles are what the key may do; at least one.
	Roles []Role `yaml:"roles,flow"`
}

// Match says how a [Rule] compares its Path with a request's path.
type Match uint8

// The ways a rule matches.
const (
	// MatchExact matches the path itself only.
	MatchExact Match = iota
	// MatchPrefix matches every path that begins with Path.
	MatchPrefix
	// MatchSuffix matches every path that ends with Path, such as
	// Elasticsearch's /<index>/_bulk.
	MatchSuffix
)

// Rule says what a request needs to reach the paths it matches. Rules are
// tried in order and the first that matches decides; a path that no rule
// matches needs a valid key, with any role.
type Rule struct {
	Match Match
	// Path is compared with the request's URL path after it is cleaned
	// (dot segments and repeated slashes removed, as http.ServeMux
	// does), so "/ui/../v1/sql" meets the rule of "/v1/sql".
	Path string
	// Role is the role a key needs. "" means any valid key.
	Role Role
	// Public lets requests through without a key; a valid key still
	// puts its principal in the context. Public rules have no Role.
	Public bool
}

// Exact is a rule for one path, needing role ("" for any valid key).
func Exact(path string, role Role) Rule { return Rule{Match: MatchExact, Path: path, Role: role} }

// Prefix is a rule for every path under prefix, needing role ("" for any
// valid key).
func Prefix(prefix string, role Role) Rule { return Rule{Match: MatchPrefix, Path: prefix, Role: role} }

// Suffix is a rule for every path ending in suffix, needing role ("" for
// any valid key).
func Suffix(suffix string, role Role) Rule { return Rule{Match: MatchSuffix, Path: suffix, Role: role} }

// Public is a rule that lets every request for exactly path through
// without a key.
func Public(path string) Rule { return Rule{Match: MatchExact, Path: path, Public: true} }

// uiAssets are the files internal/ui embeds and serves at these paths.
// They hold the application's code and no data, so anyone may load them:
// the browser then asks for a key before it reads anything.
var uiAssets = []string{
	"/", "/index.html", "/favicon.svg", "/style.css",
	"/app.js", "/api.js", "/chart.js", "/dom.js", "/filters.js", "/resultchart.js", "/sqlutil.js",
	"/views/alerts.js", "/views/console.js", "/views/dashboards.js", "/views/errors.js", "/views/explore.js", "/views/groups.js", "/views/overview.js", "/views/tail.js",
}

// DefaultRules returns the rules for weir's routes, in the order they are
// tried. The caller owns the slice and may add rules in front of it.
//
// The push endpoints of the log protocols (OTLP/HTTP, Loki, Elasticsearch
// bulk, Splunk HEC and weir's own JSON) are listed whether or not the
// server serves them yet, so each is covered the day it lands.
func DefaultRules() []Rule {
	rules := []Rule{
		Prefix("/weir.v1.IngestService/", RoleIngest),
		Prefix("/weir.v1.QueryService/", RoleQuery),
		Prefix("/weir.v1.TailService/", RoleTail),
		// Consuming reads the stored records, like SQL does.
		Prefix("/weir.v1.SubscribeService/", RoleQuery),
		Prefix("/weir.v1.AdminService/", RoleAdmin),
		// Reflection lists services and schemas, no records.
		Prefix("/grpc.reflection.", ""),
		Exact("/v1/sql", RoleQuery),
		Exact("/ui/schema", RoleQuery),
		Exact("/ui/ingest", RoleQuery),
		Exact("/ui/groups", RoleQuery),
		Exact("/ui/dashboards", RoleQuery),
		Exact("/v1/alerts", RoleQuery),
		Exact("/v1/alerts/test", RoleQuery),
		Exact("/metrics", RoleMetrics),

		Exact("/v1/logs", RoleIngest),
		Prefix("/opentelemetry.proto.collector.logs.v1.LogsService/", RoleIngest),
		Exact("/loki/api/v1/push", RoleIngest),
		Suffix("/_bulk", RoleIngest),
		Prefix("/insert/", RoleIngest),
		Exact("/services/collector", RoleIngest),
		Prefix("/services/collector/", RoleIngest),
		Prefix("/v1/ingest/", RoleIngest),

		Public("/healthz"),
		Public("/readyz"),
	}
	for _, p := range uiAssets {
		rules = append(rules, Public(p))
	}
	return rules
}

// Config is the keys and the rules of an [Authenticator].
type Config struct {
	// Keys are the accepted API keys. None turns authentication off:
	// every request acts with every role in record.DefaultTenant.
	Keys []Key `yaml:"keys"`
	// Rules map paths to the role they need, first match first. Nil
	// means [DefaultRules]; an empty, non-nil slice means every path
	// needs a valid key with any role.
	Rules []Rule `yaml:"-"`
}

// nameRE is what a key's name may look like: safe to print in any log.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// hashPrefix begins every key hash.
const hashPrefix = "sha256:"

// validHash reports whether h is "sha256:" and 64 lower-case hex digits.
func validHash(h string) bool {
	hex, ok := strings.CutPrefix(h, hashPrefix)
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// keyError is an error about keys[i]. It names the key by index and, when
// the name is valid, by name; it never holds the hash.
func keyError(i int, name string, format string, args ...any) error {
	who := fmt.Sprintf("key %d", i)
	if nameRE.MatchString(name) {
		who = fmt.Sprintf("key %d (%q)", i, name)
	}
	return fmt.Errorf("%w: auth.keys: %s: %w", ErrInvalidConfig, who, fmt.Errorf(format, args...))
}

// checkRule reports what is wrong with rules[i], if anything.
func checkRule(i int, r Rule) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: rule %d (%q): %w", ErrInvalidConfig, i, truncate(r.Path, 64), fmt.Errorf(format, args...))
	}
	switch r.Match {
	case MatchExact, MatchPrefix:
		if !strings.HasPrefix(r.Path, "/") {
			return fail("path must begin with /")
		}
	case MatchSuffix:
		if r.Path == "" {
			return fail("suffix is empty")
		}
	default:
		return fail("unknown match %d", r.Match)
	}
	if r.Public && r.Role != "" {
		return fail("a public rule needs no role, yet names %q", r.Role)
	}
	if r.Role != "" {
		if _, err := ParseRole(string(r.Role)); err != nil {
			return fail("%w", err)
		}
	}
	return nil
}

// tenantOf is the tenant a key acts in, after checking it.
func tenantOf(t string) (string, error) {
	if t == "" {
		return record.DefaultTenant, nil
	}
	if err := record.ValidateTenant(t); err != nil {
		return "", err
	}
	return t, nil
}
