package buffer

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/wal"
)

// TestTrimDoesNotHoldTheWorker: while the deletion of log segments is
// stuck (as on a file system that discards freed blocks online, only
// longer), the partition goes on delivering, publishing and confirming
// COMMITTED pushes; once deletion moves again, every segment below the
// watermark goes.
func TestTrimDoesNotHoldTheWorker(t *testing.T) {
	cfg := walConfig(t)
	cfg.WAL.SegmentBytes = 1024
	c := &holdingConsumer{oldest: -1}
	b, err := New(cfg, Deps{NewConsumer: func(Key) Consumer { return c }})
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	b.removeHook = func(l *wal.Log, before uint64) error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return l.Remove(before)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	var unstick sync.Once
	free := func() { unstick.Do(func() { close(release) }) }
	defer free() // before Shutdown, should the test fail while deletion is stuck
	push := func(from, n int, level Level) {
		t.Helper()
		for seq := from; seq < from+n; seq++ {
			if err := b.Push(context.Background(), batchOf("s", rec(strings.Repeat("x", 100), seq)), level); err != nil {
				t.Fatal(err)
			}
		}
	}
	push(0, 30, Durable)
	s, _ := b.stream("acme", "s")
	p := s.parts[0]
	if n := len(p.wal.Segments()); n < 3 {
		t.Fatalf("%d segments; want several for the test", n)
	}
	waitUntil(t, "30 records delivered", func() bool { return len(c.offsets()) == 30 })
	c.publish(30)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no deletion of log segments began after publishing")
	}

	// Deletion is stuck; the stream is not.
	push(30, 30, Durable)
	waitUntil(t, "60 records delivered while deletion is stuck", func() bool { return len(c.offsets()) == 60 })
	done := make(chan error, 1)
	go func() { done <- b.Push(context.Background(), batchOf("s", rec("last", 60)), Committed) }()
	waitUntil(t, "61 records delivered", func() bool { return len(c.offsets()) == 61 })
	c.publish(61)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a COMMITTED push was not confirmed while deletion was stuck")
	}
	if n := len(p.wal.Segments()); n < 3 {
		t.Fatalf("%d segments left while deletion is stuck", n)
	}

	free()
	waitUntil(t, "log segments below the watermark are deleted", func() bool { return len(p.wal.Segments()) == 1 })
}
