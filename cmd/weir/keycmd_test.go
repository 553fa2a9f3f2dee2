package main

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/internal/auth"
)

// runKey runs weir with stdin, as a user would.
func runKey(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return stdout.String(), err
}

func TestKeyNew(t *testing.T) {
	t.Parallel()
	out, err := runWeir(t, "key", "new", "--name", "shipper", "--tenant", "acme", "--roles", "ingest,tail")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	token, snippet, ok := strings.Cut(out, "Add the key to the configuration file:\n")
	if !ok || !strings.Contains(token, "shown only once") {
		t.Fatalf("output:\n%s", out)
	}
	var tokens []string
	for _, line := range strings.Split(token, "\n") {
		if strings.HasPrefix(line, "weir_") {
			tokens = append(tokens, line)
		}
	}
	if len(tokens) != 1 {
		t.Fatalf("want the token printed once on its own line, got %d in:\n%s", len(tokens), out)
	}
	var cfg struct {
		Auth struct {
			Keys []auth.Key `yaml:"keys"`
		} `yaml:"auth"`
	}
	dec := yaml.NewDecoder(strings.NewReader(snippet))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("config entry:\n%s\n%v", snippet, err)
	}
	if len(cfg.Auth.Keys) != 1 {
		t.Fatalf("config entry:\n%s", snippet)
	}
	k := cfg.Auth.Keys[0]
	if k.Hash != auth.HashToken(tokens[0]) {
		t.Fatalf("hash %s is not the token's %s", k.Hash, auth.HashToken(tokens[0]))
	}
	if k.Name != "shipper" || k.Tenant != "acme" || !slices.Equal(k.Roles, []auth.Role{auth.RoleIngest, auth.RoleTail}) {
		t.Fatalf("key %+v", k)
	}
	if strings.Contains(snippet, tokens[0]) {
		t.Fatal("the config entry holds the token")
	}

	// weir key hash gives the same hash for the token.
	hashed, err := runKey(t, tokens[0]+"\n", "key", "hash")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(hashed) != k.Hash {
		t.Fatalf("weir key hash printed %q, want %q", hashed, k.Hash)
	}

	// Defaults: a name from the hash, the ingest role, the default tenant.
	out, err = runWeir(t, "key", "new")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(out, "name: key-") || !strings.Contains(out, "roles: [ingest]") || strings.Contains(out, "tenant:") {
		t.Fatalf("defaults:\n%s", out)
	}
}

func TestKeyErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		stdin string
		args  []string
		says  string
	}{
		{"", []string{"key"}, "no subcommand"},
		{"", []string{"key", "rotate"}, "unknown subcommand"},
		{"", []string{"key", "new", "--roles", "ingest,root"}, `unknown role "root"`},
		{"", []string{"key", "new", "--roles", ""}, "unknown role"},
		{"", []string{"key", "new", "--tenant", "Acme"}, "tenant"},
		{"", []string{"key", "new", "--name", "two words"}, "name must be"},
		{"", []string{"key", "new", "extra"}, "unexpected arguments"},
		{"weir_x", []string{"key", "hash", "weir_x"}, "not as an argument"},
		{"\n", []string{"key", "hash"}, "no token"},
		{strings.Repeat("a", 5000), []string{"key", "hash"}, "more than"},
	} {
		_, err := runKey(t, tc.stdin, tc.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("weir %s: %v; want a usage error saying %q", strings.Join(tc.args, " "), err, tc.says)
		}
	}
	if _, err := runKey(t, "weir x\n", "key", "hash"); err == nil || !strings.Contains(err.Error(), "spaces") {
		t.Errorf("a token with a space: %v", err)
	}
}
