package transform

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

func TestFormatPatternID(t *testing.T) {
	for id, want := range map[uint64]string{0: "0000000000000000", 0xab: "00000000000000ab", 1<<64 - 1: "ffffffffffffffff"} {
		if got := FormatPatternID(id); got != want {
			t.Errorf("FormatPatternID(%#x) = %s, want %s", id, got, want)
		}
	}
}

// TestMinerStateSaved checks that the miners' state is saved periodically
// and that a new pipeline over the same directory gives a message the id
// its pattern had, even when the first message it sees is another of the
// pattern's.
func TestMinerStateSaved(t *testing.T) {
	dir := t.TempDir()
	rules := Rules{"app": {Processors: []Processor{{Pattern: &PatternStep{}}}}}
	newP := func() *Pipeline {
		p, err := NewPipeline(PipelineConfig{Rules: rules, Limits: record.Limits{MaxFuture: time.Hour}, StateDir: dir, SaveInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	idOf := func(p *Pipeline, body string) string {
		out, err := p.Process(nil, record.NewBatch(record.DefaultTenant, "app", []record.Record{{Body: body}}))
		if err != nil {
			t.Fatal(err)
		}
		return attrOf(&out[0].Records[0], AttrPatternID)
	}
	p := newP()
	first := idOf(p, "connection from alpha closed after 10 ms with status ok and no error reported")
	if got := idOf(p, "connection from beta closed after 10 ms with status ok and no error reported"); got != first {
		t.Fatalf("one pattern, two ids: %s %s", first, got)
	}
	// The saver, every 10 ms: the state appears on disk while the
	// pipeline runs, before any Shutdown.
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(dir, "tenant=default", "stream=app", "*.json")); len(m) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no saved state")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A crash: the new pipeline starts from the saved state.
	if got := idOf(newP(), "connection from gamma closed after 10 ms with status ok and no error reported"); got != first {
		t.Errorf("after a restart the pattern's id is %s, want %s", got, first)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}
