package pattern_test

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/weirlabs/weir/transform/pattern"
)

func newMiner(tb testing.TB, cfg pattern.Config) *pattern.Miner {
	tb.Helper()
	m, err := pattern.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestMatchGeneralises(t *testing.T) {
	t.Parallel()
	m := newMiner(t, pattern.Config{Similarity: 0.7})
	id1, tpl := m.Match("Failed password for root from 10.0.0.1 port 22 ssh2")
	if want := "Failed password for root from <*> port <*>"; tpl != want {
		t.Fatalf("first template %q, want %q", tpl, want)
	}
	id2, tpl := m.Match("Failed password for admin from 10.0.0.2 port 2222 ssh2")
	if want := "Failed password for <*> from <*> port <*>"; tpl != want {
		t.Errorf("generalised template %q, want %q", tpl, want)
	}
	if id1 != id2 {
		t.Errorf("id changed from %d to %d as the template generalised", id1, id2)
	}
	id3, _ := m.Match("Accepted password for root from 10.0.0.1 port 22 ssh2")
	if id3 == id1 {
		t.Errorf("a message with another first word joined the cluster")
	}
	id4, tpl := m.Match("Failed password for guest from 10.0.0.3 port 1 ssh2")
	if id4 != id1 || tpl != "Failed password for <*> from <*> port <*>" {
		t.Errorf("third message: id %d template %q, want id %d", id4, tpl, id1)
	}
	if got := m.Len(); got != 2 {
		t.Errorf("Len() = %d, want 2", got)
	}
}

// A partly masked token matches a token that fits it, and generalises the
// template to itself rather than to <*>.
func TestPartialTokens(t *testing.T) {
	t.Parallel()
	m := newMiner(t, pattern.Config{})
	id1, _ := m.Match("connection from 10.0.0.1 () at noon")
	id2, tpl := m.Match("connection from 10.0.0.1 (host.example.com) at noon")
	if id1 != id2 || tpl != "connection from <*> (<*>) at noon" {
		t.Errorf("got id %d template %q, want id %d and (<*>)", id2, tpl, id1)
	}
	id3, tpl := m.Match("connection from 10.0.0.1 () at noon")
	if id3 != id1 || tpl != "connection from <*> (<*>) at noon" {
		t.Errorf("got id %d template %q, want id %d and (<*>)", id3, tpl, id1)
	}
}

// Independently started Miners give a cluster the same id when they start
// it from the same masked message.
func TestIDsAgreeAcrossMiners(t *testing.T) {
	t.Parallel()
	a, b := newMiner(t, pattern.Config{}), newMiner(t, pattern.Config{})
	a.Match("unrelated message first")
	idA, _ := a.Match("disk sda1 is 91% full")
	idB, _ := b.Match("disk sdb7 is 12% full")
	if idA != idB {
		t.Errorf("ids %d and %d for clusters started by the same masked message", idA, idB)
	}
}

func TestSnapshotRestore(t *testing.T) {
	t.Parallel()
	for _, system := range []string{"HDFS", "Android", "Mac"} {
		s := loadLoghub(t, system)
		cfg := loghubConfigs[system]
		cfg.Delimiters = ",="
		orig := newMiner(t, cfg)
		half := len(s.content) / 2
		for _, msg := range s.content[:half] {
			orig.Match(msg)
		}
		snap, err := orig.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		restored := newMiner(t, cfg)
		restored.Match("something to be replaced")
		if err := restored.Restore(snap); err != nil {
			t.Fatalf("%s: Restore: %v", system, err)
		}
		if a, b := orig.Len(), restored.Len(); a != b {
			t.Fatalf("%s: Len %d after Restore, want %d", system, b, a)
		}
		again, err := restored.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(snap) {
			t.Errorf("%s: a restored Miner's snapshot differs from the original", system)
		}
		for i, msg := range s.content[half:] {
			id1, tpl1 := orig.Match(msg)
			id2, tpl2 := restored.Match(msg)
			if id1 != id2 || tpl1 != tpl2 {
				t.Fatalf("%s line %d: original (%d, %q), restored (%d, %q)", system, half+i, id1, tpl1, id2, tpl2)
			}
		}
	}
}

func TestRestoreKeepsMostRecent(t *testing.T) {
	t.Parallel()
	big := newMiner(t, pattern.Config{})
	var ids []uint64
	for i := range 100 {
		id, _ := big.Match(fmt.Sprintf("event %s happened", word(i)))
		ids = append(ids, id)
	}
	snap, err := big.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	small := newMiner(t, pattern.Config{MaxClusters: 10})
	if err := small.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got := small.Len(); got != 10 {
		t.Fatalf("Len() = %d after restoring 100 clusters into 10, want 10", got)
	}
	for i := 90; i < 100; i++ {
		if id, _ := small.Match(fmt.Sprintf("event %s happened", word(i))); id != ids[i] {
			t.Errorf("recent cluster %d: id %d after Restore, want %d", i, id, ids[i])
		}
	}
	if got := small.Len(); got != 10 {
		t.Errorf("Len() = %d after matching the kept clusters, want 10", got)
	}
}

func TestRestoreErrors(t *testing.T) {
	t.Parallel()
	f := func(name, data string) {
		t.Helper()
		m := newMiner(t, pattern.Config{})
		id, _ := m.Match("kept message 1")
		err := m.Restore([]byte(data))
		if !errors.Is(err, pattern.ErrSnapshot) {
			t.Errorf("%s: Restore error %v, want ErrSnapshot", name, err)
		}
		if got, _ := m.Match("kept message 2"); got != id || m.Len() != 1 {
			t.Errorf("%s: a failed Restore changed the Miner", name)
		}
	}
	f("not JSON", `{"version":`)
	f("wrong version", `{"version": 2, "depth": 4, "clusters": []}`)
	f("duplicate id", `{"version": 1, "depth": 4, "clusters": [
		{"id": "1", "seq": 0, "path": ["a"], "tokens": ["a"]},
		{"id": "1", "seq": 1, "path": ["b"], "tokens": ["b"]}]}`)
	f("numeric id", `{"version": 1, "depth": 4, "clusters": [{"id": 1, "tokens": ["a"]}]}`)
	f("space in token", `{"version": 1, "depth": 4, "clusters": [{"id": "1", "tokens": ["a b"]}]}`)
	f("bad glue", `{"version": 1, "depth": 4, "clusters": [{"id": "1", "tokens": ["a", "b"], "glue": [2]}]}`)
	f("long path", `{"version": 1, "depth": 4, "clusters": [{"id": "1", "path": ["a", "b"], "tokens": ["a", "b"]}]}`)
	f("too many tokens", `{"version": 1, "depth": 4, "clusters": [{"id": "1", "tokens": [`+
		strings.TrimSuffix(strings.Repeat(`"t",`, 257), ",")+`]}]}`)
}

func TestMaxClusters(t *testing.T) {
	t.Parallel()
	m := newMiner(t, pattern.Config{MaxClusters: 50})
	first, _ := m.Match("start " + word(0))
	var last uint64
	for i := range 1000 {
		last, _ = m.Match(fmt.Sprintf("%s %s %s", word(i), word(i+1), word(i+2)))
		if n := m.Len(); n > 50 {
			t.Fatalf("Len() = %d after %d messages, want at most 50", n, i+1)
		}
	}
	if id, _ := m.Match(fmt.Sprintf("%s %s %s", word(999), word(1000), word(1001))); id != last {
		t.Errorf("most recent cluster was forgotten")
	}
	// The first cluster was forgotten long ago; it comes back with its id.
	if id, _ := m.Match("start " + word(0)); id != first {
		t.Errorf("re-created cluster has id %d, want %d", id, first)
	}
}

// A full tree node sends new keys to its wildcard child.
func TestMaxChildren(t *testing.T) {
	t.Parallel()
	m := newMiner(t, pattern.Config{MaxChildren: 3, Similarity: 0.5})
	a, _ := m.Match("alpha x")
	b, _ := m.Match("beta x")
	c, _ := m.Match("gamma x")
	if a == b || b == c || a == c {
		t.Fatalf("ids %d, %d, %d: want three clusters", a, b, c)
	}
	if id, tpl := m.Match("delta x"); id != c || tpl != "<*> x" {
		t.Errorf("message past MaxChildren: (%d, %q), want (%d, \"<*> x\")", id, tpl, c)
	}
	if id, tpl := m.Match("alpha x"); id != a || tpl != "alpha x" {
		t.Errorf("keyed message: (%d, %q), want (%d, \"alpha x\")", id, tpl, a)
	}
}

// One leaf holds a bounded number of clusters however many messages reach it.
func TestLeafBound(t *testing.T) {
	t.Parallel()
	m := newMiner(t, pattern.Config{})
	for i := range 2000 {
		m.Match("op " + word(i))
	}
	if n := m.Len(); n > 256 {
		t.Errorf("Len() = %d after 2000 distinct messages in one leaf, want at most 256", n)
	}
	if n := m.Len(); n < 200 {
		t.Errorf("Len() = %d: the leaf bound should keep the recent clusters", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := loadLoghub(t, "Zookeeper")
	m := newMiner(t, pattern.Config{MaxClusters: 20})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(s.content); i += 4 {
				m.Match(s.content[i])
				if i%200 == 0 {
					if _, err := m.Snapshot(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if m.Len() > 20 {
				t.Error("Len() above MaxClusters")
			}
		}
	})
	wg.Wait()
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := newMiner(t, pattern.Config{MaxClusters: 20}).Restore(snap); err != nil {
		t.Errorf("Restore of a snapshot taken after concurrent use: %v", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	f := func(cfg pattern.Config, wantErr string) {
		t.Helper()
		err := cfg.Validate()
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("Validate(%+v) = %v, want nil", cfg, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("Validate(%+v) = %v, want an error containing %q", cfg, err, wantErr)
		}
		if _, newErr := pattern.New(cfg); (newErr == nil) != (err == nil) {
			t.Errorf("New and Validate disagree: %v, %v", newErr, err)
		}
	}
	f(pattern.Config{}, "")
	f(pattern.DefaultConfig(), "")
	f(pattern.Config{Depth: 3, Similarity: 1, MaxChildren: 2, MaxClusters: 1, Delimiters: ",;=:|"}, "")
	f(pattern.Config{Masks: []string{`\d+`, `user (\w+`}}, `Masks[1] "user (\\w+"`)
	f(pattern.Config{Masks: []string{`x*`}}, `Masks[0] "x*": matches the empty string`)
	f(pattern.Config{Masks: []string{""}}, `Masks[0] "": matches the empty string`)
	f(pattern.Config{Depth: 2}, "Depth")
	f(pattern.Config{Depth: 17}, "Depth")
	f(pattern.Config{Similarity: 1.5}, "Similarity")
	f(pattern.Config{Similarity: -0.1}, "Similarity")
	f(pattern.Config{Similarity: math.NaN()}, "Similarity")
	f(pattern.Config{MaxChildren: 1}, "MaxChildren")
	f(pattern.Config{MaxClusters: -1}, "MaxClusters")
	f(pattern.Config{Delimiters: "a"}, "Delimiters")
	f(pattern.Config{Delimiters: "*"}, "Delimiters")
	f(pattern.Config{Delimiters: " "}, "Delimiters")
}

// word returns a distinct digit-free word for i, so that it is not masked.
func word(i int) string {
	b := []byte{'w'}
	for {
		b = append(b, byte('a'+i%26))
		i /= 26
		if i == 0 {
			return string(b)
		}
	}
}

// A new cluster whose template hashes to an id in use gets another id.
func TestIDCollision(t *testing.T) {
	t.Parallel()
	h := fnv.New64a()
	h.Write([]byte("disk <*> full"))
	taken := h.Sum64()
	m := newMiner(t, pattern.Config{})
	snap := fmt.Sprintf(`{"version": 1, "depth": 4, "clusters": [{"id": "%d", "seq": 0, "path": ["other"], "tokens": ["other"]}]}`, taken)
	if err := m.Restore([]byte(snap)); err != nil {
		t.Fatal(err)
	}
	id, _ := m.Match("disk sda1 full")
	if id == taken {
		t.Fatalf("new cluster took id %d, which another cluster has", id)
	}
	if again, _ := m.Match("disk sdb2 full"); again != id {
		t.Errorf("second message got id %d, want %d", again, id)
	}
	if other, tpl := m.Match("other"); other != taken || tpl != "other" {
		t.Errorf("restored cluster: (%d, %q), want (%d, other)", other, tpl, taken)
	}
	// Without the collision the id is the template's FNV-1a hash.
	if id, _ := newMiner(t, pattern.Config{}).Match("disk sdc3 full"); id != taken {
		t.Errorf("id %d, want FNV-1a of the template %d", id, taken)
	}
}
