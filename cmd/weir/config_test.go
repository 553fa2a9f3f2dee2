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

// TestMemory: `memory` sets the settings derived from it unless the file
// sets them, and Go's limit is what DuckDB's share leaves.
func TestMemory(t *testing.T) {
	dir := t.TempDir()
	load := func(s string) (config, error) {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		c := defaultConfig()
		err := loadConfigFile(&c, p)
		return c, err
	}
	d := defaultConfig()
	if d.Query.MemoryLimit != "128MiB" || d.Buffer.MaxBytes != 64<<20 || d.Sink.Compaction.SortRows != 256<<10 || d.goMemoryLimit() != 264<<20 {
		t.Errorf("defaults: query %s, buffer %d, sort rows %d, Go limit %d", d.Query.MemoryLimit, d.Buffer.MaxBytes, d.Sink.Compaction.SortRows, d.goMemoryLimit())
	}
	c, err := load("memory: 2GiB\nquery:\n  memory_limit: 1GB\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Query.MemoryLimit != "1GB" || c.Buffer.MaxBytes != 256<<20 || c.Sink.Compaction.SortRows != 1<<20 || c.goMemoryLimit() != 2<<30-1e9-120<<20 {
		t.Errorf("2GiB with DuckDB's set: query %s, buffer %d, sort rows %d, Go limit %d", c.Query.MemoryLimit, c.Buffer.MaxBytes, c.Sink.Compaction.SortRows, c.goMemoryLimit())
	}
	if err := c.validate(); err != nil {
		t.Error(err)
	}
	if d.Query.MemoryCeiling != "1024MiB" || c.Query.MemoryCeiling != "4096MiB" {
		t.Errorf("DuckDB's ceiling: %s by default, %s with 2GiB", d.Query.MemoryCeiling, c.Query.MemoryCeiling)
	}
	if c, err = load("query:\n  memory_ceiling: 64MiB\n"); err != nil {
		t.Fatal(err)
	} else if err := c.validate(); err == nil || !strings.Contains(err.Error(), "query.memory_ceiling") {
		t.Errorf("a ceiling below memory_limit: %v", err)
	}
	// DuckDB given more than memory: Go still gets a quarter.
	if c, err = load("memory: 512MiB\nquery:\n  memory_limit: 1GB\n"); err != nil {
		t.Fatal(err)
	}
	if c.goMemoryLimit() != 128<<20 {
		t.Errorf("DuckDB above memory: Go limit %d, want a quarter of memory", c.goMemoryLimit())
	}
	if c.Query.MemoryCeiling != "1907MiB" {
		t.Errorf("DuckDB above memory: ceiling %s, want twice its memory_limit", c.Query.MemoryCeiling)
	}
	c, err = load("memory: 0\nbuffer:\n  max_bytes: 1000000\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.goMemoryLimit() != 0 || c.Buffer.MaxBytes != 1000000 {
		t.Errorf("memory 0: Go limit %d, buffer %d", c.goMemoryLimit(), c.Buffer.MaxBytes)
	}
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	// Go's collector runs at limitGCPercent only under the limit serve
	// sets, and never over a GOGC the environment sets.
	for _, tc := range []struct {
		c    config
		env  func(string) string
		want int
	}{
		{d, env(), limitGCPercent},
		{d, env("GOGC", "100"), 0},
		{d, env("GOGC", "off"), 0},
		{d, env("GOMEMLIMIT", "1GiB"), 0},
		{c, env(), 0}, // memory: 0, no limit
	} {
		if got := tc.c.goGCPercent(tc.env); got != tc.want {
			t.Errorf("memory %q, GOGC %q, GOMEMLIMIT %q: GC percent %d, want %d", tc.c.Memory, tc.env("GOGC"), tc.env("GOMEMLIMIT"), got, tc.want)
		}
	}
	// The in-flight budget: an eighth of memory, at least twice the
	// largest request; set below that, or below the minimum, refused.
	if d.Ingest.MaxInflightBytes != 64<<20 {
		t.Errorf("default in-flight budget %d", d.Ingest.MaxInflightBytes)
	}
	if c, err = load("memory: 2GiB\n"); err != nil || c.Ingest.MaxInflightBytes != 256<<20 {
		t.Errorf("2GiB: in-flight budget %d, %v", c.Ingest.MaxInflightBytes, err)
	}
	if c, err = load("memory: 128MiB\ningest:\n  max_message_bytes: 33554432\n"); err != nil || c.Ingest.MaxInflightBytes != 64<<20 {
		t.Errorf("128MiB with 32 MiB requests: in-flight budget %d, %v", c.Ingest.MaxInflightBytes, err)
	} else if err := c.validate(); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"ingest:\n  max_inflight_bytes: 20000000\n", "ingest:\n  max_inflight_bytes: 500000\n  max_message_bytes: 100000\n"} {
		if c, err = load(bad); err != nil {
			t.Fatal(err)
		} else if err := c.validate(); err == nil || !strings.Contains(err.Error(), "ingest.max_inflight_bytes") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for _, bad := range []string{"memory: 64MiB\n", "memory: 12 parsecs\n", "memory: lots\n"} {
		if _, err := load(bad); err == nil || !strings.Contains(err.Error(), "memory") {
			t.Errorf("%q: %v, want an error about memory", bad, err)
		}
	}
}

// TestMaxAnswer: query.max_answer is a size, 1 GiB by default, and a bad
// one fails validation with its key named.
func TestMaxAnswer(t *testing.T) {
	c := defaultConfig()
	c.Data = t.TempDir()
	if n := c.query().MaxAnswerBytes; n != 1<<30 {
		t.Errorf("default: %d bytes", n)
	}
	c.Query.MaxAnswer = "512MiB"
	if n := c.query().MaxAnswerBytes; n != 512<<20 || c.validate() != nil {
		t.Errorf("512MiB: %d bytes, %v", n, c.validate())
	}
	for _, bad := range []string{"lots", "0"} {
		c.Query.MaxAnswer = bad
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), "max_answer") && !strings.Contains(err.Error(), "MaxAnswerBytes") {
			t.Errorf("%q: %v, want an error about max_answer", bad, err)
		}
	}
}
