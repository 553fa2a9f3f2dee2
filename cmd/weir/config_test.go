package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestREADMEConfigIsTheDefault keeps the README honest: its configuration
// file example must parse and equal the built-in defaults.
func TestREADMEConfigIsTheDefault(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "```yaml\n")
	if !ok {
		t.Fatal("README.md has no yaml block")
	}
	block, _, _ := strings.Cut(rest, "```")
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	var got config
	if err := loadConfigFile(&got, path); err != nil {
		t.Fatal(err)
	}
	got.path = ""
	if want := defaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("README config:\n%+v\ndefaults:\n%+v", got, want)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := defaultConfig()
	if err := loadConfigFile(&c, write("data: /srv/weir\ntransform:\n  max_age: 2s\n")); err != nil {
		t.Fatal(err)
	}
	if c.Data != "/srv/weir" || c.Transform.MaxAge != 2*time.Second || c.Addr != defaultConfig().Addr {
		t.Errorf("partial file: %+v", c)
	}
	c = defaultConfig()
	err := loadConfigFile(&c, write("transform:\n  max_agee: 2s\n"))
	if err == nil || !strings.Contains(err.Error(), "max_agee") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("unknown key: %v", err)
	}
	c = defaultConfig()
	c.Transform.MaxAge = 0
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "MaxAge") {
		t.Errorf("invalid value: %v", err)
	}
}
