package sink_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/sink"
)

// FuzzReadFooter feeds New's footer reader damaged copies of a published
// file: it must neither crash nor allocate what a damaged footer asks for
// (arrow-go does both on some inputs), and every failure must count as
// damage, so that the file is set aside rather than stop the start.
func FuzzReadFooter(f *testing.F) {
	cfg := sink.DefaultConfig()
	cfg.Dir = filepath.Join(f.TempDir(), "lake")
	l, err := sink.New(cfg, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 100, BatchRows: 100})
	defer ReleaseAll(recs)
	for _, r := range recs {
		if err := l.Write(f.Context(), part("app", 0), r); err != nil {
			f.Fatal(err)
		}
	}
	if err := l.Shutdown(f.Context()); err != nil {
		f.Fatal(err)
	}
	sound, err := os.ReadFile(l.Files()[0].Path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sound)
	f.Add(sound[len(sound)/2:])
	f.Add([]byte("PAR1PAR1"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "f.parquet")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		info, damaged, err := sink.ReadFooter(path)
		switch {
		case err != nil && !damaged:
			t.Fatalf("an error that is not damage: %v", err)
		case err == nil && (info.Rows < 0 || info.Bytes != int64(len(data))):
			t.Fatalf("footer read as %+v of %d bytes", info, len(data))
		}
	})
}
