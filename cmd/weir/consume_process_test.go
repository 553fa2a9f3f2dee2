package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/ui"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// consumeProcess is a `weir consume` child process (the test binary run
// as weir) printing JSON lines.
type consumeProcess struct {
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan struct{} // closed when its output has been read to the end

	mu    sync.Mutex
	lines []consumeLine
}

func startConsume(t *testing.T, url string, args ...string) *consumeProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"consume", "--server", url, "--format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "WEIR_TEST_AS_WEIR=1")
	p := &consumeProcess{cmd: cmd, logs: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l consumeLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				l.Body = "unreadable line: " + sc.Text()
			}
			p.mu.Lock()
			p.lines = append(p.lines, l)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		cmd.Wait()
	})
	return p
}

func (p *consumeProcess) output() []consumeLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

// waitGroups polls /ui/groups until ok accepts the groups of stream app.
func waitGroups(t *testing.T, url, what string, ok func(map[string]ui.ConsumerGroup) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/ui/groups")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ Groups []ui.ConsumerGroup }
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]ui.ConsumerGroup{}
		for _, g := range doc.Groups {
			byName[g.Group] = g
		}
		if ok(byName) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: groups %+v", what, doc.Groups)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsumeProcesses is the test of consumer groups with real
// processes: three `weir consume --group g` processes split a stream's
// three partitions; one is killed with SIGKILL; the other two take its
// partition over from the group's committed offset, so every record is
// delivered, none is skipped, and what comes again is flagged and
// counted; a fourth process in group h receives everything once.
//
// The killed process runs with --commit=false, like a consumer that dies
// before it commits what it printed: every record it printed must come
// again.
func TestConsumeProcesses(t *testing.T) {
	t.Parallel()
	s, ing, _ := consumeServer(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	members := []*consumeProcess{
		startConsume(t, s.url, "--stream", "app", "--group", "g"),
		startConsume(t, s.url, "--stream", "app", "--group", "g"),
		startConsume(t, s.url, "--stream", "app", "--group", "g", "--commit=false"),
	}
	victim := members[2]
	other := startConsume(t, s.url, "--stream", "app", "--group", "h")
	owned := func(members int) func(map[string]ui.ConsumerGroup) bool {
		return func(gs map[string]ui.ConsumerGroup) bool {
			g, h := gs["g"], gs["h"]
			if g.Members != members || h.Members != 1 || len(g.Partitions) != 3 {
				return false
			}
			for _, p := range append(g.Partitions, h.Partitions...) {
				if !p.Owned {
					return false
				}
			}
			return true
		}
	}
	waitGroups(t, s.url, "three members of g and one of h owning every partition", owned(3))

	// positions returns the distinct positions in lines.
	positions := func(lines ...[]consumeLine) map[[2]int64]consumeLine {
		out := map[[2]int64]consumeLine{}
		for _, ls := range lines {
			for _, l := range ls {
				out[[2]int64{int64(l.Partition), l.Offset}] = l
			}
		}
		return out
	}
	waitAll := func(n int, procs ...*consumeProcess) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var outs [][]consumeLine
			for _, p := range procs {
				outs = append(outs, p.output())
			}
			if len(positions(outs...)) >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("received %d distinct records, want %d", len(positions(outs...)), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	const n = 120
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("a", n)...)
	waitAll(n, members...)
	waitAll(n, other)
	printed := victim.output()
	if len(printed) == 0 {
		t.Fatal("the member to kill received no records: the services do not spread over the partitions")
	}
	for _, p := range members {
		parts := map[int32]bool{}
		for _, l := range p.output() {
			parts[l.Partition] = true
		}
		if len(parts) != 1 {
			t.Fatalf("a member received records of partitions %v, want one", parts)
		}
	}

	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	waitGroups(t, s.url, "two members of g sharing every partition", owned(2))
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("b", n)...)
	waitAll(2*n, members...)
	waitAll(2*n, other)

	// Group g: every position of every partition, from 0 without a gap;
	// what the killed member printed came again, flagged.
	survivors := slices.Concat(members[0].output(), members[1].output())
	all := positions(survivors, printed)
	ends := map[int32]int64{}
	for pos := range all {
		ends[int32(pos[0])] = max(ends[int32(pos[0])], pos[1]+1)
	}
	total := int64(0)
	for _, e := range ends {
		total += e
	}
	if len(all) != 2*n || total != 2*n {
		t.Fatalf("group g received %d distinct records ending at %v, want %d without a gap", len(all), ends, 2*n)
	}
	again := positions(survivors)
	redelivered := 0
	seen := map[[2]int64]int{}
	for _, l := range survivors {
		pos := [2]int64{int64(l.Partition), l.Offset}
		seen[pos]++
		if l.Redelivered {
			redelivered++
		}
	}
	for pos, k := range seen {
		if k > 1 {
			t.Errorf("the surviving members printed %v %d times", pos, k)
		}
	}
	for _, l := range printed {
		pos := [2]int64{int64(l.Partition), l.Offset}
		if got, ok := again[pos]; !ok || !got.Redelivered || got.Body != l.Body {
			t.Errorf("%v, printed by the killed member, came again as %+v (present %v), want it flagged redelivered", pos, got, ok)
		}
	}
	if redelivered < len(printed) {
		t.Errorf("%d records flagged redelivered, want at least the %d the killed member printed", redelivered, len(printed))
	}
	if got := metric(t, s.url, "weir_consumer_redelivered_records_total"); got != float64(redelivered) {
		t.Errorf("weir_consumer_redelivered_records_total = %v, want %d (the records flagged)", got, redelivered)
	}
	t.Logf("group g: %d records, %d printed by the killed member, %d redelivered", len(all), len(printed), redelivered)

	// Group h: everything, once, in offset order per partition.
	hl := other.output()
	if len(hl) != 2*n || len(positions(hl)) != 2*n {
		t.Fatalf("group h printed %d lines, %d distinct, want %d", len(hl), len(positions(hl)), 2*n)
	}
	last := map[int32]int64{}
	for _, l := range hl {
		if prev, ok := last[l.Partition]; ok && l.Offset != prev+1 || !ok && l.Offset != 0 || l.Redelivered {
			t.Fatalf("group h: %d:%d after %d (redelivered %v)", l.Partition, l.Offset, prev, l.Redelivered)
		}
		last[l.Partition] = l.Offset
	}
	if t.Failed() {
		for i, p := range members {
			t.Logf("member %d stderr:\n%s", i, p.logs.String())
		}
	}
}
