package durable_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/weirlabs/weir/internal/durable"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	// A temporary file a crash left behind is overwritten.
	if err := os.WriteFile(path+".tmp", []byte("torn and much longer than the new content"), 0o666); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first", "second, longer", "3"} {
		if err := durable.WriteFile(path, []byte(want)); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Fatalf("after WriteFile(%q): %q, %v", want, got, err)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", fi.Mode(), err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("directory holds %v (%v), want the file alone", entries, err)
	}

	// A failed write leaves the file as it was.
	if err := os.MkdirAll(filepath.Join(path+".tmp", "in the way"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(path, []byte("never")); err == nil {
		t.Fatal("WriteFile over a directory in the way succeeded")
	}
	if got, _ := os.ReadFile(path); string(got) != "3" {
		t.Fatalf("after a failed WriteFile: %q", got)
	}
	if err := durable.WriteFile(filepath.Join(dir, "missing", "x"), nil); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

func TestSyncDir(t *testing.T) {
	if err := durable.SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := durable.SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}
