package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// crashConfig makes files publish and compact often, so that kills land
// during publishes, compactions and day merges (the records of a long
// past date) as well as during appends and fsyncs.
const crashConfig = `
sink:
  max_file_age: 150ms
  target_file_bytes: 262144
  compaction:
    age: 1s
transform:
  max_age: 50ms
`

// weirProcess is weir serve running as a child process.
type weirProcess struct {
	cmd    *exec.Cmd
	url    string
	logs   *lockedBuffer
	exited chan error
}

// lockedBuffer collects a child's output; it may be read while the child
// still writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startWeir(t *testing.T, data, config string) *weirProcess {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], "serve", "--addr", addr, "--data", data, "--config", config)
	cmd.Env = append(os.Environ(), "WEIR_TEST_AS_WEIR=1")
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &weirProcess{cmd: cmd, url: "http://" + addr, logs: logs, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitHealthy(t, p.url)
	return p
}

// crashCycles is how many kill -9 cycles TestCrashRecovery runs:
// WEIR_CRASH_CYCLES, or 4.
func crashCycles(t *testing.T) int {
	if v := os.Getenv("WEIR_CRASH_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("WEIR_CRASH_CYCLES=%q: want a positive number", v)
		}
		return n
	}
	return 4
}

// crashProducer is an idempotent producer that outlives server crashes:
// a batch that was not acknowledged is sent again, with its sequence, to
// the next server.
type crashProducer struct {
	id string
	// arrow sends batches as Arrow IPC streams (arrow_ipc): those with a
	// priority record are split into two lanes, the others cross the
	// buffer and the log whole, as they came.
	arrow   bool
	nextSeq uint64
	pending *weirv1.PushRequest // sent, not acknowledged
	batchID string              // batch id of pending
}

// push sends the pending batch, or a new one, until the server fails.
// acked is called with the batch id of every acknowledged batch.
func (cp *crashProducer) push(ctx context.Context, url string, cycle, size int, sent, acked func(string)) {
	client, _ := newClients(url)
	for ctx.Err() == nil {
		if cp.pending == nil {
			cp.nextSeq++
			cp.batchID = fmt.Sprintf("%s-s%d-c%d", cp.id, cp.nextSeq, cycle)
			recs := make([]*weirv1.LogRecord, size)
			for i := range recs {
				recs[i] = textRecord(cp.batchID + "-r" + strconv.Itoa(i))
				if i%7 == 0 {
					recs[i].SeverityText = "ERROR" // a priority record: the batch spans two lanes
				}
				if i%5 == 0 {
					// A record of a long past date: it goes to that
					// date's day file (sink.Config.DayFilesAfter), so
					// the batch spans an hour file and a day file.
					recs[i].TimeUnixNano = uint64(time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC).Add(time.Duration(cycle%48) * time.Hour).UnixNano())
				}
			}
			cp.pending = &weirv1.PushRequest{
				Stream: "crash", Records: recs, AckLevel: weirv1.AckLevel_ACK_LEVEL_DURABLE,
				ProducerId: cp.id, Sequence: cp.nextSeq,
			}
			if cp.arrow {
				cp.pending.ArrowIpc = crashArrow(recs, cp.nextSeq%2 == 0)
				cp.pending.Records = nil
			}
			sent(cp.batchID)
		}
		if _, err := client.Push(ctx, connect.NewRequest(cp.pending)); err != nil {
			return
		}
		acked(cp.batchID)
		cp.pending = nil
	}
}

// TestCrashRecovery runs weir as a child process, streams DURABLE batches
// from several idempotent producers (half of them sending records, half
// Arrow IPC streams, which cross the log and buffer as columns), kills it with SIGKILL at random
// moments, restarts it on the same data directory, and has the producers
// resend what was not acknowledged. At the end, every batch ever sent must
// be present exactly once, whole: nothing acknowledged is lost, nothing is
// written twice, nothing is half-present. The long variant is
//
//	WEIR_CRASH_CYCLES=300 go test -run TestCrashRecovery -timeout 2h ./cmd/weir/
func TestCrashRecovery(t *testing.T) {
	data := t.TempDir()
	config := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(config, []byte(crashConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	const producers, batch = 4, 50
	var (
		mu      sync.Mutex
		sentIDs = map[string]bool{}
		ackedN  int
		// compactions the killed servers finished, dayFiles of them
		// into a day file
		compactions, dayFiles int
	)
	sent := func(id string) { mu.Lock(); sentIDs[id] = true; mu.Unlock() }
	acked := func(string) { mu.Lock(); ackedN++; mu.Unlock() }
	prods := make([]*crashProducer, producers)
	for i := range prods {
		prods[i] = &crashProducer{id: "producer-" + strconv.Itoa(i), arrow: i%2 == 1}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	cycles := crashCycles(t)
	for cycle := 0; cycle < cycles; cycle++ {
		p := startWeir(t, data, config)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, cp := range prods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cp.push(ctx, p.url, cycle, batch, sent, acked)
			}()
		}
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		cancel()
		wg.Wait()
		c, d := countCompactions(p.logs.String())
		compactions, dayFiles = compactions+c, dayFiles+d
	}

	// A last start recovers; the producers resend what is still
	// unacknowledged, once each.
	p := startWeir(t, data, config)
	for _, cp := range prods {
		if cp.pending == nil {
			continue
		}
		client, _ := newClients(p.url)
		if _, err := client.Push(context.Background(), connect.NewRequest(cp.pending)); err != nil {
			t.Fatalf("resending %s: %v", cp.batchID, err)
		}
		cp.pending = nil
	}
	mu.Lock()
	defer mu.Unlock()
	if ackedN < cycles {
		t.Fatalf("only %d batches acknowledged over %d cycles", ackedN, cycles)
	}
	// Replayed and resent records flow through the pipeline, priority
	// records first; wait until every batch is visible whole.
	deadline := time.Now().Add(30 * time.Second)
	var counts map[string]int64
	for {
		counts = crashCounts(t, p.url)
		incomplete := 0
		for id := range sentIDs {
			if counts[id] != batch {
				incomplete++
			}
		}
		if incomplete == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var lost, dup, partial, unknown []string
	for id, n := range counts {
		switch {
		case !sentIDs[id]:
			unknown = append(unknown, id)
		case n > batch:
			dup = append(dup, fmt.Sprintf("%s×%d", id, n))
		case n < batch:
			partial = append(partial, fmt.Sprintf("%s:%d", id, n))
		}
	}
	for id := range sentIDs {
		if counts[id] == 0 {
			lost = append(lost, id)
		}
	}
	res := mustSQL(t, p.url, "SELECT count(*) - count(DISTINCT body) AS dup_bodies, count(*) - count(DISTINCT _offset) AS dup_offsets FROM crash")
	if res.Rows[0]["dup_bodies"] != json.Number("0") || res.Rows[0]["dup_offsets"] != json.Number("0") {
		t.Errorf("duplicate records: %v", res.Rows[0])
	}
	t.Logf("%d cycles: %d batches sent, %d acknowledged (retries included), %d present; %d compactions finished between kills, %d of them into day files",
		cycles, len(sentIDs), ackedN, len(counts), compactions, dayFiles)
	if len(lost) > 0 || len(dup) > 0 || len(partial) > 0 || len(unknown) > 0 {
		t.Fatalf("lost batches %v; duplicated %v; half-present %v; unknown %v\nserver log:\n%s", head(lost), head(dup), head(partial), head(unknown), p.logs.String())
	}
}

// countCompactions returns how many compactions a server's log reports
// finished, and how many of them wrote a day file.
func countCompactions(log string) (all, day int) {
	for line := range strings.Lines(log) {
		if strings.Contains(line, "sink: compacted") {
			all++
			if strings.Contains(line, "/hour=24\"") || strings.Contains(line, "/hour=24 ") {
				day++
			}
		}
	}
	return all, day
}

// crashArrow returns recs as an Arrow IPC stream of one record batch,
// with their priority records when withPriority is set and all of
// severity INFO otherwise.
func crashArrow(recs []*weirv1.LogRecord, withPriority bool) []byte {
	rows := make([]record.Record, len(recs))
	for i, r := range recs {
		rows[i] = record.Record{Body: r.GetBody(), SeverityText: "INFO", Resource: []record.KV{{Key: "service.name", Value: "test"}}}
		if withPriority && r.GetSeverityText() != "" {
			rows[i].SeverityText = r.GetSeverityText()
		}
	}
	cols := record.Columns(rows, memory.DefaultAllocator)
	defer cols.Release()
	var out bytes.Buffer
	w := ipc.NewWriter(&out, ipc.WithSchema(cols.Schema()))
	if err := w.Write(cols); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return out.Bytes()
}

// crashCounts returns the record count of every batch in the crash stream.
func crashCounts(t *testing.T, url string) map[string]int64 {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"sql":      "SELECT regexp_extract(body, '^(.*)-r[0-9]+$', 1) AS id, count(*) AS n FROM logs WHERE stream = 'crash' GROUP BY 1",
		"max_rows": 1_000_000,
	})
	status, raw := postJSON(t, url+"/v1/sql", body)
	if status != 200 {
		t.Fatalf("count batches: %d %s", status, raw)
	}
	var res sqlResult
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, r := range res.Rows {
		n, _ := r["n"].(json.Number).Int64()
		out[fmt.Sprint(r["id"])] = n
	}
	return out
}

func head(s []string) string {
	if len(s) > 10 {
		return strings.Join(s[:10], " ") + fmt.Sprintf(" … (%d in all)", len(s))
	}
	return strings.Join(s, " ")
}
