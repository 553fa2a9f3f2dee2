package auth_test

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/internal/auth"
)

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	good := func(name, token string) auth.Key {
		return auth.Key{Name: name, Hash: auth.HashToken(token), Roles: []auth.Role{auth.RoleIngest}}
	}
	secret := auth.HashToken("weir_secret")
	cases := []struct {
		name string
		cfg  auth.Config
		want []string // substrings of the error
	}{
		{"bad hash prefix", auth.Config{Keys: []auth.Key{good("a", "1"), {Name: "ci", Hash: "md5:" + strings.TrimPrefix(secret, "sha256:"), Roles: []auth.Role{auth.RoleIngest}}}},
			[]string{`key 1 ("ci")`, "hash must be"}},
		{"upper-case hash", auth.Config{Keys: []auth.Key{{Name: "ci", Hash: strings.ToUpper(secret), Roles: []auth.Role{auth.RoleIngest}}}},
			[]string{`key 0 ("ci")`, "hash must be"}},
		{"short hash", auth.Config{Keys: []auth.Key{{Name: "ci", Hash: secret[:40], Roles: []auth.Role{auth.RoleIngest}}}},
			[]string{`key 0 ("ci")`, "hash must be"}},
		{"token instead of hash", auth.Config{Keys: []auth.Key{{Name: "ci", Hash: "weir_secret", Roles: []auth.Role{auth.RoleIngest}}}},
			[]string{`key 0 ("ci")`, "hash must be"}},
		{"duplicate name", auth.Config{Keys: []auth.Key{good("ci", "1"), good("ci", "2")}},
			[]string{`key 1 ("ci")`, "already used by key 0"}},
		{"duplicate hash", auth.Config{Keys: []auth.Key{good("a", "weir_secret"), good("b", "weir_secret")}},
			[]string{`key 1 ("b")`, `same as key "a"`}},
		{"no name", auth.Config{Keys: []auth.Key{good("", "1")}},
			[]string{"key 0: name must be"}},
		{"bad name", auth.Config{Keys: []auth.Key{good("a b", "1")}},
			[]string{"key 0: name must be"}},
		{"unknown role", auth.Config{Keys: []auth.Key{{Name: "ci", Hash: secret, Roles: []auth.Role{"root"}}}},
			[]string{`key 0 ("ci")`, `unknown role "root"`}},
		{"no roles", auth.Config{Keys: []auth.Key{{Name: "ci", Hash: secret}}},
			[]string{`key 0 ("ci")`, "no roles"}},
		{"bad tenant", auth.Config{Keys: []auth.Key{{Name: "ci", Hash: secret, Tenant: "Acme Corp", Roles: []auth.Role{auth.RoleQuery}}}},
			[]string{`key 0 ("ci")`, "tenant", "Acme Corp"}},
		{"rule without slash", auth.Config{Rules: []auth.Rule{auth.Exact("v1/sql", auth.RoleQuery)}},
			[]string{`rule 0 ("v1/sql")`, "must begin with /"}},
		{"empty suffix", auth.Config{Rules: []auth.Rule{auth.Public("/"), auth.Suffix("", auth.RoleIngest)}},
			[]string{"rule 1", "suffix is empty"}},
		{"public with role", auth.Config{Rules: []auth.Rule{{Path: "/x", Role: auth.RoleQuery, Public: true}}},
			[]string{"rule 0", "public rule needs no role"}},
		{"rule with unknown role", auth.Config{Rules: []auth.Rule{auth.Prefix("/x/", "superuser")}},
			[]string{"rule 0", `unknown role "superuser"`}},
		{"unknown match", auth.Config{Rules: []auth.Rule{{Match: 9, Path: "/x"}}},
			[]string{"rule 0", "unknown match"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := auth.New(tc.cfg)
			if !errors.Is(err, auth.ErrInvalidConfig) {
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(secret, "sha256:")[:16]) {
				t.Errorf("error %q echoes a hash", err)
			}
		})
	}
	if _, err := auth.New(auth.Config{Keys: []auth.Key{{Name: "ci", Hash: auth.HashToken("x"), Roles: []auth.Role{"root"}}}}); !errors.Is(err, auth.ErrUnknownRole) {
		t.Errorf("unknown role: %v, want ErrUnknownRole", err)
	}
	if _, err := auth.New(auth.Config{Rules: auth.DefaultRules()}); err != nil {
		t.Errorf("DefaultRules: %v", err)
	}
}

func TestKeysYAML(t *testing.T) {
	t.Parallel()
	hash := auth.HashToken("weir_t")
	var cfg struct {
		Keys []auth.Key `yaml:"keys"`
	}
	src := "keys:\n  - name: shipper\n    hash: " + hash + "\n    tenant: acme\n    roles: [ingest, tail]\n"
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	k := cfg.Keys[0]
	if k.Name != "shipper" || k.Hash != hash || k.Tenant != "acme" || len(k.Roles) != 2 || k.Roles[1] != auth.RoleTail {
		t.Fatalf("decoded %+v", k)
	}
	if _, err := auth.New(auth.Config{Keys: cfg.Keys}); err != nil {
		t.Fatal(err)
	}
	// The key encodes back to what decodes to it.
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var again struct {
		Keys []auth.Key `yaml:"keys"`
	}
	if err := yaml.Unmarshal(out, &again); err != nil || again.Keys[0].Name != k.Name || again.Keys[0].Roles[0] != auth.RoleIngest {
		t.Fatalf("round trip of\n%s: %+v, %v", out, again, err)
	}

	for src, want := range map[string]string{
		"keys:\n  - name: a\n    roles: [ingest, root]\n": `line 3: unknown role "root"`,
		"keys:\n  - name: a\n    roles: [[ingest]]\n":     "line 3: a role must be a string",
	} {
		if err := yaml.Unmarshal([]byte(src), &cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("decoding %q: %v, want an error saying %q", src, err, want)
		}
	}
}
