package aside

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMove: each damaged copy keeps its own name; none is overwritten.
func TestMove(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	var moved []string
	for i, body := range []string{"one", "two", "three"} {
		if err := os.WriteFile(state, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := Move(state, state+".damaged")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{state + ".damaged", state + ".damaged.1", state + ".damaged.2"}[i]
		if got != want {
			t.Errorf("copy %d moved to %s, want %s", i, got, want)
		}
		moved = append(moved, got)
	}
	for i, p := range moved {
		if b, err := os.ReadFile(p); err != nil || string(b) != []string{"one", "two", "three"}[i] {
			t.Errorf("%s holds %q (%v)", p, b, err)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("the file is still in place: %v", err)
	}
	if _, err := Move(state, state+".damaged"); err == nil {
		t.Error("Move of a missing file passed")
	}
}
