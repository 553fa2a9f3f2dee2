package sink_test

import (
	"context"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/sink"
)

// gateObserver holds up Observer.Published until release is closed, and
// reports each call on publishing.
type gateObserver struct {
	recorder
	publishing chan string // the stream of each Published call
	release    chan struct{}
}

func (g *gateObserver) Published(f sink.FileInfo) error {
	g.publishing <- f.Partition.Stream
	<-g.release
	return g.recorder.Published(f)
}

// TestDisplacedPublishedInBackground: after Start, a Write that pushes a
// file out past MaxOpenFiles does not wait for its publish (held up
// here in Observer.Published), and Shutdown waits for it.
func TestDisplacedPublishedInBackground(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxOpenFiles = 1
	obs := &gateObserver{publishing: make(chan string, 4), release: make(chan struct{})}
	l := newLake(t, cfg, obs)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(obs.release)
		}
		shutdown(t, l)
	}()
	a := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 10, BatchRows: 10})
	defer ReleaseAll(a)
	b := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 10, BatchRows: 10, FirstOffset: 100})
	defer ReleaseAll(b)
	write(t, l, part("a", 0), a)

	// b displaces a, whose publish then waits in Published: b's Write
	// returns all the same.
	wrote := make(chan error, 1)
	go func() { wrote <- l.Write(context.Background(), part("b", 0), b[0]) }()
	select {
	case s := <-obs.publishing:
		if s != "a" {
			t.Fatalf("published %q, want the displaced file of a", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the displaced file was not published")
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write waited for the publish of the file it displaced")
	}
	close(obs.release)
	released = true
	shutdown(t, l)
	files := l.Files()
	if len(files) != 2 || files[0].Rows+files[1].Rows != 20 {
		t.Fatalf("after Shutdown: %+v, want the files of a and b with 20 rows", files)
	}
	if _, ok := l.OldestUnpublished("acme", "a", 0); ok {
		t.Error("rows of a still unpublished after Shutdown")
	}
	if got := l.LastOffset("acme", "a", 0); got != 10 {
		t.Errorf("LastOffset(a) = %d, want 10", got)
	}
}
