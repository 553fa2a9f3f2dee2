package pattern

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Miner groups log messages into clusters, one template each, online and
// in one pass, after the Drain algorithm (He et al., ICWS 2017).
//
// A message is masked (see Match) and split into tokens. A prefix tree
// keyed by the token count and the first Depth-3 tokens that are not
// masked leads to a leaf with a short list of clusters. The message joins
// the cluster whose template it matches best if at least Similarity of its
// tokens match; template tokens where the two differ become <*>.
// Otherwise it starts a new cluster in that leaf.
//
// Memory and work are bounded: a Miner keeps at most MaxClusters
// clusters, forgetting the least recently matched first; at most 256 of
// them share a leaf (past that the leaf forgets its least recently matched
// one), which bounds the templates one Match compares with; and a template
// is at most 256 tokens and about 12 KiB (see Match).
//
// A Miner is safe for concurrent use. Masking and tokenising run outside
// its lock; only the tree search and update hold it.
type Miner struct {
	cfg  Config
	tk   tokenizer
	pool sync.Pool // of *scratch

	mu sync.Mutex
	st *state
}

// maxLeafClusters bounds the clusters in one tree leaf, and so the
// templates one Match compares with. Past it, the leaf's least recently
// matched cluster is forgotten.
const maxLeafClusters = 256

// state is what a Miner learns; Restore swaps it whole.
type state struct {
	roots map[int]*node       // by token count
	byID  map[uint64]*cluster // every cluster
	lru   cluster             // list sentinel: lru.next was matched last
	seq   uint64              // counts clusters created, orders a leaf
	clock uint64              // counts matches, stamps cluster.used
}

// node is a prefix-tree node. Nodes at the tree's depth, or where a
// message runs out of key tokens, hold clusters, oldest first.
type node struct {
	parent   *node
	key      string // token under parent; the token count for a root
	children map[string]*node
	clusters []*cluster
}

// cluster is one template. tokens are substrings of template, which
// joins them with a space, or with nothing where glue is set.
type cluster struct {
	id       uint64
	seq      uint64
	used     uint64 // state.clock when last matched
	tokens   []string
	glue     []bool // nil when every token follows a space
	template string
	leaf     *node

	prev, next *cluster // LRU list
}

// New returns a Miner configured by cfg, or Validate's error.
func New(cfg Config) (*Miner, error) {
	masks, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Masks = slices.Clone(cfg.Masks)
	m := &Miner{cfg: cfg, st: newState()}
	m.tk.masks = masks
	for i := 0; i < len(cfg.Delimiters); i++ {
		m.tk.delim[cfg.Delimiters[i]] = true
	}
	m.pool.New = func() any { return new(scratch) }
	return m, nil
}

func newState() *state {
	st := &state{
		roots: make(map[int]*node),
		byID:  make(map[uint64]*cluster),
	}
	st.lru.prev, st.lru.next = &st.lru, &st.lru
	return st
}

// Match learns msg and returns the id of the cluster msg joined and that
// cluster's template as it stands after msg.
//
// Before clustering, Config.Masks and then the built-in masks replace
// variables with <*>, token by token and without regular expressions:
//
//   - paths (/a/b, C:\a\b), URLs (scheme://...), host names with a port
//     (db.local:5432) or a top-level domain (ns1.example.com) and UUIDs,
//     each as a whole;
//   - every run of letters and digits that holds a digit: numbers, hex
//     (0x1f, 9f4ef63), IPv4 octets, the numbered parts of identifiers
//     (blk_<*>, node-<*>); a sign goes with its number, and runs joined
//     only by punctuation such as ".:,-_/" become one <*>, so that
//     10.0.0.1:80, -1.5e3 and 2015-10-18 are each a single <*>;
//   - month and weekday abbreviations (Jan, Mon), tokens longer than 512
//     bytes and tokens that are not valid UTF-8.
//
// Consecutive tokens that are all wildcard count as one, and only the
// first 4 KiB and 256 tokens of msg count. The template is the masked
// tokens, with <*> also where the cluster's messages were seen to differ,
// separated by one space, except that a token split off at a delimiter
// is written as it appeared in the cluster's first message.
//
// An id names one cluster for its whole life: it stays the same when the
// template generalises and across Snapshot and Restore. It is a hash of
// the cluster's first template, so Miners that start a cluster from the
// same masked message give it the same id (unless, in one of them, the
// hash collides with another cluster's id and is rehashed).
func (m *Miner) Match(msg string) (id uint64, template string) {
	s := m.pool.Get().(*scratch)
	m.tk.tokenize(msg, s)
	m.mu.Lock()
	c := m.matchLocked(s)
	id, template = c.id, c.template
	m.mu.Unlock()
	m.pool.Put(s)
	return id, template
}

// Len returns the number of clusters held, at most Config.MaxClusters.
func (m *Miner) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.st.byID)
}

func (m *Miner) matchLocked(s *scratch) *cluster {
	st := m.st
	st.clock++
	if leaf := m.searchLocked(s.toks); leaf != nil {
		if c := m.bestLocked(leaf.clusters, s.toks); c != nil {
			c.generalise(s.toks)
			c.used = st.clock
			st.touch(c)
			return c
		}
	}
	c := newCluster(s.toks, s.glue)
	c.id = st.newID(c.template)
	c.seq = st.seq
	c.used = st.clock
	st.seq++
	m.insertLocked(c, m.keys(c.tokens))
	return c
}

// keys returns the tokens that key the tree levels for a message or
// template: its first Depth-3 tokens that are not masked, even in part,
// so that a variable does not decide a message's branch.
func (m *Miner) keys(toks []string) []string {
	var dst []string
	for _, t := range toks {
		if len(dst) == m.cfg.Depth-3 {
			break
		}
		if !strings.Contains(t, Wildcard) {
			dst = append(dst, t)
		}
	}
	return dst
}

// searchLocked returns the leaf where a message with toks looks for its
// cluster, or nil. At each level it follows the key's child, else the
// wildcard child.
func (m *Miner) searchLocked(toks []string) *node {
	nd := m.st.roots[len(toks)]
	for i, k := 0, 0; nd != nil && i < len(toks) && k < m.cfg.Depth-3; i++ {
		t := toks[i]
		if strings.Contains(t, Wildcard) {
			continue
		}
		next := nd.children[t]
		if next == nil {
			next = nd.children[Wildcard]
		}
		nd = next
		k++
	}
	return nd
}

// bestLocked returns the cluster among cs that matches the most of toks,
// preferring among those the one with more wildcards and then the oldest,
// or nil if even that one matches fewer than Similarity of toks.
//
// Tokens match if they are equal, or if one is partly masked and the
// other fits it (so "(<*>)" matches "()" and "(id=<*>)"). As in Drain, a
// wildcard in the template does not count as a match for a token that is
// not masked, so that a template that has generalised much does not
// attract ever more messages.
func (m *Miner) bestLocked(cs []*cluster, toks []string) *cluster {
	n := len(toks)
	need := int(math.Ceil(m.cfg.Similarity*float64(n) - 1e-9))
	var best *cluster
	bestSim, bestPar := -1, -1
	for _, c := range cs {
		sim, par, miss := 0, 0, 0
		for i, t := range c.tokens {
			switch u := toks[i]; {
			case t == u:
				sim++
			case t == Wildcard:
				par++
			case covers(t, u) || covers(u, t):
				sim++
			default:
				miss++
			}
			if n-par-miss < need {
				break // cannot reach the threshold
			}
		}
		if sim < need {
			continue
		}
		if sim > bestSim || sim == bestSim && par > bestPar {
			best, bestSim, bestPar = c, sim, par
		}
	}
	return best
}

// covers reports whether the partly masked token p matches tok, each <*>
// in p standing for any string, possibly empty. A token that is all
// wildcard, or has none, covers nothing.
func covers(p, tok string) bool {
	i := strings.Index(p, Wildcard)
	if i < 0 || p == Wildcard || !strings.HasPrefix(tok, p[:i]) {
		return false
	}
	tok, p = tok[i:], p[i+len(Wildcard):]
	for {
		j := strings.Index(p, Wildcard)
		if j < 0 {
			return strings.HasSuffix(tok, p)
		}
		k := strings.Index(tok, p[:j])
		if k < 0 {
			return false
		}
		tok, p = tok[k+j:], p[j+len(Wildcard):]
	}
}

// generalise makes c's template match toks: a template token that is
// not matched becomes <*>, or the partly masked token that fits it.
func (c *cluster) generalise(toks []string) {
	changed := false
	for i, t := range c.tokens {
		switch u := toks[i]; {
		case t == u || t == Wildcard || covers(t, u):
		case covers(u, t):
			c.tokens[i] = u
			changed = true
		default:
			c.tokens[i] = Wildcard
			changed = true
		}
	}
	if changed {
		c.render()
	}
}

func newCluster(toks []string, glue []bool) *cluster {
	c := &cluster{tokens: slices.Clone(toks)}
	if slices.Contains(glue, true) {
		c.glue = slices.Clone(glue)
	}
	c.render()
	return c
}

// render rebuilds c.template from c.tokens and points c.tokens into it,
// so that a cluster holds one string.
func (c *cluster) render() {
	n := 0
	for _, t := range c.tokens {
		n += len(t) + 1
	}
	var b strings.Builder
	b.Grow(n)
	for i, t := range c.tokens {
		if i > 0 && (c.glue == nil || !c.glue[i]) {
			b.WriteByte(' ')
		}
		b.WriteString(t)
	}
	c.template = b.String()
	off := 0
	for i, t := range c.tokens {
		if i > 0 && (c.glue == nil || !c.glue[i]) {
			off++
		}
		if t != Wildcard {
			c.tokens[i] = c.template[off : off+len(t)]
		}
		off += len(t)
	}
}

// newID derives a new cluster's id from its first template: the
// template's FNV-1a hash, or if a cluster has that id already, the hash
// of the template, a zero byte and a counter.
func (st *state) newID(template string) uint64 {
	id := templateID(template, 0)
	for n := uint64(1); st.byID[id] != nil; n++ {
		id = templateID(template, n)
	}
	return id
}

// templateID returns the 64-bit FNV-1a hash of template, followed for
// n > 0 by a zero byte and n in decimal.
func templateID(template string, n uint64) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(template); i++ {
		h = (h ^ uint64(template[i])) * prime
	}
	if n > 0 {
		h *= prime // the zero byte
		for _, c := range strconv.FormatUint(n, 10) {
			h = (h ^ uint64(c)) * prime
		}
	}
	return h
}

// insertLocked adds c to the tree under path (keys, one per level) and
// to the front of the LRU list, then forgets clusters past the bounds.
// A level whose node is full takes the key <*>.
func (m *Miner) insertLocked(c *cluster, path []string) {
	st := m.st
	nd := st.roots[len(c.tokens)]
	if nd == nil {
		nd = &node{key: strconv.Itoa(len(c.tokens))}
		st.roots[len(c.tokens)] = nd
	}
	for _, key := range path {
		next := nd.children[key]
		if next == nil && key != Wildcard && len(nd.children) >= m.cfg.MaxChildren-1 {
			key = Wildcard // the last slot is the wildcard's
			next = nd.children[key]
		}
		if next == nil {
			if nd.children == nil {
				nd.children = make(map[string]*node)
			}
			next = &node{parent: nd, key: strings.Clone(key)}
			nd.children[next.key] = next
		}
		nd = next
	}
	if len(nd.clusters) >= maxLeafClusters {
		old := nd.clusters[0]
		for _, x := range nd.clusters[1:] {
			if x.used < old.used {
				old = x
			}
		}
		st.remove(old) // nd keeps a cluster, so it is not pruned
	}
	nd.clusters = append(nd.clusters, c)
	c.leaf = nd
	st.byID[c.id] = c
	st.pushFront(c)
	for len(st.byID) > m.cfg.MaxClusters {
		st.remove(st.lru.prev)
	}
}

// remove forgets c, pruning the tree nodes it leaves empty.
func (st *state) remove(c *cluster) {
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
	delete(st.byID, c.id)
	nd := c.leaf
	if i := slices.Index(nd.clusters, c); i >= 0 {
		nd.clusters = slices.Delete(nd.clusters, i, i+1)
	}
	for len(nd.clusters) == 0 && len(nd.children) == 0 {
		if nd.parent == nil {
			delete(st.roots, len(c.tokens))
			break
		}
		delete(nd.parent.children, nd.key)
		nd = nd.parent
	}
}

func (st *state) touch(c *cluster) {
	if st.lru.next == c {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	st.pushFront(c)
}

func (st *state) pushFront(c *cluster) {
	c.prev, c.next = &st.lru, st.lru.next
	st.lru.next.prev = c
	st.lru.next = c
}
