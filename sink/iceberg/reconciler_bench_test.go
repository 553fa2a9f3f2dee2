package iceberg_test

import (
	"context"
	"testing"
)

// BenchmarkSyncAppend measures a pass that commits one new file to a
// table on the local hadoop catalog (load, plan the current files,
// append, commit the metadata), as after each publish.
func BenchmarkSyncAppend(b *testing.B) {
	e := newEnv(b)
	l := e.openLake(b)
	r := e.reconciler(b, l, e.catalog(b))
	off := int64(0)
	for b.Loop() {
		b.StopTimer()
		write(b, l, nil, "app", 0, off, 10, hour0, false)
		off += 10
		b.StartTimer()
		if err := r.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSyncIdle measures a pass that finds a table of 200 files
// (one snapshot per 20) equal to the lake and commits nothing.
func BenchmarkSyncIdle(b *testing.B) {
	e := newEnv(b)
	l := e.openLake(b)
	r := e.reconciler(b, l, e.catalog(b))
	for i := range 200 {
		write(b, l, nil, "app", 0, int64(10*i), 10, hour0, false)
		if i%20 == 19 {
			if err := r.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		if err := r.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
