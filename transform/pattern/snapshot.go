package pattern

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrSnapshot means Restore was given data that is not a valid snapshot.
var ErrSnapshot = errors.New("pattern: invalid snapshot")

// snapshotVersion is the version of the snapshot format written.
const snapshotVersion = 1

// snapshotJSON is the snapshot format:
//
//	{"version": 1, "depth": 4, "clusters": [
//	  {"id": "5247390512811204617", "seq": 7, "path": ["acquire"],
//	   "tokens": ["acquire", "lock", "=", "<*>", ","], "glue": [2, 3, 4]},
//	  …]}
//
// Clusters are listed from the most to the least recently matched. id is
// a decimal string (a uint64 does not fit a JSON number's exact range in
// every decoder); seq orders clusters by creation; path is the tree keys
// the cluster was filed under, one per level of a tree of the given
// depth; glue lists the indexes of tokens that follow the previous one
// without a space, and is omitted when empty.
type snapshotJSON struct {
	Version  int           `json:"version"`
	Depth    int           `json:"depth"`
	Clusters []clusterJSON `json:"clusters"`
}

type clusterJSON struct {
	ID     uint64   `json:"id,string"`
	Seq    uint64   `json:"seq"`
	Path   []string `json:"path"`
	Tokens []string `json:"tokens"`
	Glue   []int    `json:"glue,omitempty"`
}

// Snapshot returns the Miner's clusters as JSON (at most MaxClusters of
// them, each bounded as described at Match), for Restore to load into a
// Miner after a restart so that cluster ids stay the same. The Miner
// restored into should have the same Config: templates made with other
// Masks or Delimiters do not match new messages alike. Snapshot holds the
// Miner's lock while it copies the clusters, not while it encodes them.
func (m *Miner) Snapshot() ([]byte, error) {
	m.mu.Lock()
	snap := snapshotJSON{Version: snapshotVersion, Depth: m.cfg.Depth}
	snap.Clusters = make([]clusterJSON, 0, len(m.st.byID))
	for c := m.st.lru.next; c != &m.st.lru; c = c.next {
		cj := clusterJSON{
			ID:     c.id,
			Seq:    c.seq,
			Tokens: slices.Clone(c.tokens),
		}
		for nd := c.leaf; nd.parent != nil; nd = nd.parent {
			cj.Path = append(cj.Path, nd.key)
		}
		slices.Reverse(cj.Path)
		for i, g := range c.glue {
			if g {
				cj.Glue = append(cj.Glue, i)
			}
		}
		snap.Clusters = append(snap.Clusters, cj)
	}
	m.mu.Unlock()
	return json.Marshal(snap)
}

// Restore replaces the Miner's clusters with those of a snapshot taken
// by Snapshot, keeping their ids, templates and recency. If the snapshot
// holds more than MaxClusters clusters, the most recently matched are
// kept. If it was taken with another Depth, clusters are filed under
// their templates' keys instead of their recorded paths. On error, which
// wraps ErrSnapshot, the Miner is unchanged.
func (m *Miner) Restore(data []byte) error {
	var snap snapshotJSON
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if snap.Version != snapshotVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrSnapshot, snap.Version, snapshotVersion)
	}
	cs := snap.Clusters
	if len(cs) > m.cfg.MaxClusters {
		cs = cs[:m.cfg.MaxClusters]
	}
	clusters := make([]*cluster, len(cs))
	paths := make([][]string, len(cs))
	ids := make(map[uint64]bool, len(cs))
	for i, cj := range cs {
		c, err := m.restoreCluster(cj, snap.Depth)
		if err != nil {
			return fmt.Errorf("%w: cluster %d: %w", ErrSnapshot, i, err)
		}
		if ids[c.id] {
			return fmt.Errorf("%w: cluster %d: duplicate id %d", ErrSnapshot, i, c.id)
		}
		ids[c.id] = true
		clusters[i] = c
		paths[i] = cj.Path
		if snap.Depth != m.cfg.Depth {
			paths[i] = m.keys(c.tokens)
		}
	}

	// File clusters in creation order, so that each leaf lists them oldest
	// first, then order the LRU list as the snapshot does.
	order := make([]int, len(clusters))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(clusters[a].seq, clusters[b].seq)
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.st
	m.st = newState()
	for _, i := range order {
		c := clusters[i]
		c.used = uint64(len(clusters) - i) // recency: the first listed is the newest
		m.insertLocked(c, paths[i])
		m.st.seq = max(m.st.seq, c.seq+1)
	}
	if len(m.st.byID) != len(clusters) {
		m.st = old // a leaf overflowed: not a snapshot this Miner wrote
		return fmt.Errorf("%w: more than %d clusters in one leaf", ErrSnapshot, maxLeafClusters)
	}
	for i := len(clusters) - 1; i >= 0; i-- {
		m.st.touch(clusters[i])
	}
	m.st.clock = uint64(len(clusters))
	return nil
}

// restoreCluster checks and builds one cluster of a snapshot.
func (m *Miner) restoreCluster(cj clusterJSON, depth int) (*cluster, error) {
	if len(cj.Tokens) > maxTokens {
		return nil, fmt.Errorf("%d tokens, more than %d", len(cj.Tokens), maxTokens)
	}
	size := 0
	for _, t := range cj.Tokens {
		size += len(t)
		if t == "" || strings.ContainsAny(t, " \t\n\v\f\r") {
			return nil, fmt.Errorf("token %q is empty or holds whitespace", t)
		}
	}
	if size > 3*maxMessageBytes {
		return nil, fmt.Errorf("template of %d bytes, more than %d", size, 3*maxMessageBytes)
	}
	if depth == m.cfg.Depth && len(cj.Path) > m.cfg.Depth-3 {
		return nil, fmt.Errorf("path of %d keys in a tree of depth %d", len(cj.Path), depth)
	}
	c := &cluster{id: cj.ID, seq: cj.Seq, tokens: slices.Clone(cj.Tokens)}
	if len(cj.Glue) > 0 {
		c.glue = make([]bool, len(c.tokens))
		prev := 0
		for _, g := range cj.Glue {
			if g <= prev || g >= len(c.tokens) {
				return nil, fmt.Errorf("glue index %d out of order or range", g)
			}
			c.glue[g] = true
			prev = g
		}
	}
	c.render()
	return c, nil
}
