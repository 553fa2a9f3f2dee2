package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/weirlabs/weir/internal/objstore"
	"github.com/weirlabs/weir/internal/objstore/miniotest"
)

func writeRandom(t *testing.T, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestS3PutGetListDelete(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := srv.Config()
	cfg.PartBytes = 5 << 20
	st, err := objstore.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	small := writeRandom(t, filepath.Join(dir, "small"), 1000)
	large := writeRandom(t, filepath.Join(dir, "large"), 12<<20+17) // 3 parts
	for name, want := range map[string][]byte{"small": small, "large": large} {
		key := "p/x/" + name
		obj, err := st.Put(ctx, key, filepath.Join(dir, name), map[string]string{"owner": "t"})
		if err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
		if obj.Size != int64(len(want)) {
			t.Fatalf("put %s: size %d, want %d", name, obj.Size, len(want))
		}
		if h, err := st.Head(ctx, key); err != nil || h.Meta["owner"] != "t" {
			t.Fatalf("head %s: metadata %v (err %v), want owner=t", name, h.Meta, err)
		}
		got := filepath.Join(dir, name+".got")
		if err := st.Get(ctx, key, got); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
			t.Fatalf("get %s: content differs", name)
		}
	}
	var keys []string
	if err := st.List(ctx, "p/", func(o objstore.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != "p/x/large" || keys[1] != "p/x/small" {
		t.Fatalf("list: %v", keys)
	}
	if err := st.Delete(ctx, "p/x/small"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "p/x/small"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := st.Head(ctx, "p/x/small"); !errors.Is(err, objstore.ErrNotFound) || objstore.IsPermanent(err) {
		t.Fatalf("head of a deleted object: %v", err)
	}
	if got := st.URI("p/x/large"); got != "s3://weir/p/x/large" {
		t.Fatalf("URI: %s", got)
	}
}

func TestS3ErrorsClassified(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "f")
	writeRandom(t, path, 100)

	bad := srv.Config()
	bad.SecretAccessKey = "wrong-secret"
	st, err := objstore.NewS3(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Put(ctx, "k", path, nil)
	if !objstore.IsPermanent(err) {
		t.Fatalf("wrong credentials: want a permanent error, got %v", err)
	}
	t.Logf("wrong credentials: %v", err)
	if err := st.Check(ctx); !objstore.IsPermanent(err) {
		t.Fatalf("check with wrong credentials: %v", err)
	}

	nob := srv.Config()
	nob.Bucket = "no-such-bucket"
	st, _ = objstore.NewS3(ctx, nob)
	if _, err := st.Put(ctx, "k", path, nil); !objstore.IsPermanent(err) {
		t.Fatalf("missing bucket: want a permanent error, got %v", err)
	}
	if err := st.Check(ctx); !objstore.IsPermanent(err) {
		t.Fatalf("check of a missing bucket: %v", err)
	} else {
		t.Logf("missing bucket: %v", err)
	}

	srv.Stop()
	st = srv.Store(t)
	if _, err := st.Put(ctx, "k", path, nil); err == nil || objstore.IsPermanent(err) {
		t.Fatalf("server down: want a transient error, got %v", err)
	}
	srv.Restart()
	if _, err := st.Put(ctx, "k", path, nil); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
