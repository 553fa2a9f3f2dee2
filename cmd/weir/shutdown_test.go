package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/parquet-go/parquet-go"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// lakeRow is the part of a lake file's rows these tests read back.
type lakeRow struct {
	Body string `parquet:"body"`
}

// readLakeBodies reads the body column of every file with parquet-go,
// independently of the writer, and counts each body.
func readLakeBodies(t *testing.T, paths []string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, p := range paths {
		rows, err := parquet.ReadFile[lakeRow](p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		for _, r := range rows {
			out[r.Body]++
		}
	}
	return out
}

// readLakeCounts counts the rows of every file by the stream in its path,
// reading the files with parquet-go.
func readLakeCounts(t *testing.T, paths []string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		pf, err := parquet.OpenFile(f, st.Size())
		if err != nil {
			f.Close()
			t.Fatalf("open %s: %v", p, err)
		}
		stream := ""
		for _, part := range strings.Split(filepath.ToSlash(p), "/") {
			if v, ok := strings.CutPrefix(part, "stream="); ok {
				stream = v
			}
		}
		out[stream] += pf.NumRows()
		f.Close()
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSIGTERMDrains runs weir as a separate process, pushes to it from
// several producers, sends SIGTERM mid-push and checks that every record
// the server acknowledged is in a published Parquet file, exactly once.
func TestSIGTERMDrains(t *testing.T) {
	data := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], "serve", "--addr", addr, "--data", data)
	cmd.Env = append(os.Environ(), "WEIR_TEST_AS_WEIR=1")
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	}()
	url := "http://" + addr
	waitHealthy(t, url)

	const producers, batch = 4, 200
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	started := make(chan struct{}, producers)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client, _ := newClients(url)
			for seq := 0; ; seq++ {
				recs := make([]*weirv1.LogRecord, batch)
				bodies := make([]string, batch)
				for i := range recs {
					bodies[i] = fmt.Sprintf("p%d-b%d-r%d", p, seq, i)
					recs[i] = textRecord(bodies[i])
				}
				_, err := client.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "drain", Records: recs}))
				if err != nil {
					return // the server is going away
				}
				mu.Lock()
				acked = append(acked, bodies...)
				mu.Unlock()
				if seq == 5 {
					started <- struct{}{}
				}
			}
		}()
	}
	for range producers {
		<-started
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("weir exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("weir did not exit within 60s of SIGTERM")
	}
	wg.Wait()

	got := readLakeBodies(t, lakeFiles(t, data))
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < producers*6*batch {
		t.Fatalf("only %d records acknowledged", len(acked))
	}
	missing, dup := 0, 0
	for _, b := range acked {
		switch got[b] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		t.Fatalf("of %d acknowledged records, %d are missing from Parquet and %d duplicated", len(acked), missing, dup)
	}
	for b, n := range got {
		if n > 1 {
			t.Errorf("record %q is in Parquet %d times", b, n)
		}
	}
	t.Logf("%d records acknowledged before and during SIGTERM, all in Parquet once; %d rows in Parquet", len(acked), len(got))
	if !strings.Contains(logs.String(), "shut down cleanly") {
		t.Errorf("no clean shutdown in the log")
	}
}
