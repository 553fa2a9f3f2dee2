package auth

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Role is a permission a key can hold. Each route of weir's port needs at
// most one role (see [Rule]).
type Role string

// The roles. A key holds any set of them; none implies another.
const (
	// RoleIngest pushes records (IngestService and the log protocols'
	// push endpoints).
	RoleIngest Role = "ingest"
	// RoleQuery runs SQL (QueryService, /v1/sql), consumes streams and
	// commits consumer groups' offsets (SubscribeService), and reads the
	// UI's schema and dashboards.
	RoleQuery Role = "query"
	// RoleTail follows records live (TailService).
	RoleTail Role = "tail"
	// RoleAdmin reloads the configuration and replays dead letters
	// (AdminService).
	RoleAdmin Role = "admin"
	// RoleMetrics scrapes /metrics.
	RoleMetrics Role = "metrics"
)

// Roles returns every role, in a fixed order. The caller owns the slice.
func Roles() []Role {
	return []Role{RoleIngest, RoleQuery, RoleTail, RoleAdmin, RoleMetrics}
}

// ParseRole returns the role named s (exactly, in lower case). Any other
// name is an error wrapping [ErrUnknownRole].
func ParseRole(s string) (Role, error) {
	r := Role(s)
	switch r {
	case RoleIngest, RoleQuery, RoleTail, RoleAdmin, RoleMetrics:
		return r, nil
	}
	return "", fmt.Errorf("%w %q: want one of %s", ErrUnknownRole, truncate(s, 32), roleNames())
}

// ParseRoles parses a comma-separated list of roles, such as
// "ingest,query". Spaces around names are ignored; an empty list, an
// empty name or an unknown one is an error.
func ParseRoles(list string) ([]Role, error) {
	var out []Role
	for name := range strings.SplitSeq(list, ",") {
		r, err := ParseRole(strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseRole], so
// a role decodes from JSON and other text formats only when it is known.
func (r *Role) UnmarshalText(text []byte) error {
	v, err := ParseRole(string(text))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// UnmarshalYAML decodes a role from a YAML string with [ParseRole]; an
// unknown role is an error naming the line.
func (r *Role) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a role must be a string, one of %s", n.Line, roleNames())
	}
	v, err := ParseRole(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*r = v
	return nil
}

func roleNames() string {
	names := make([]string, 0, 5)
	for _, r := range Roles() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

// truncate bounds text that came from outside before it goes into an
// error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
