package transform

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/weirlabs/weir/internal/durable"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/pattern"
)

// Attributes set by the pattern processor.
const (
	AttrPatternID       = "pattern.id"
	AttrPatternTemplate = "pattern.template"
)

// minerSet holds the pattern miners of all pattern steps, keyed by tenant,
// stream and the step's settings, so they outlive reloads that keep a
// step and are saved together.
type minerSet struct {
	dir string
	max int
	log *slog.Logger

	mu     sync.Mutex
	miners map[minerKey]*pattern.Miner
}

type minerKey struct {
	tenant, stream, spec string
}

func newMinerSet(dir string, max int, log *slog.Logger) *minerSet {
	return &minerSet{dir: dir, max: max, log: log, miners: map[minerKey]*pattern.Miner{}}
}

// patternStep assigns records their pattern.
type patternStep struct {
	set   *minerSet
	field string
	spec  string // identity of the settings
	cfg   pattern.Config
}

func (ms *minerSet) step(c *PatternStep) (*patternStep, error) {
	cfg := pattern.Config{Depth: c.Depth, Similarity: c.Similarity, Masks: c.Masks, Delimiters: c.Delimiters}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	spec, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spec)
	s := &patternStep{set: ms, field: c.Field, spec: hex.EncodeToString(sum[:8]), cfg: cfg}
	if s.field == "" {
		s.field = "body"
	}
	return s, nil
}

func (s *patternStep) apply(w *work) error {
	text, ok := w.get(s.field)
	if !ok {
		return fmt.Errorf("no field %q", s.field)
	}
	m := w.miners[s]
	if m == nil {
		var err error
		if m, err = s.set.miner(minerKey{w.tenant, w.stream, s.spec}, s.cfg); err != nil {
			return err
		}
		if w.miners == nil {
			w.miners = map[*patternStep]*pattern.Miner{}
		}
		w.miners[s] = m
	}
	id, tmpl := m.Match(text)
	if !utf8.ValidString(tmpl) {
		tmpl = strings.ToValidUTF8(tmpl, "\uFFFD")
	}
	w.r.Attributes = setKV(w.r.Attributes, AttrPatternID, FormatPatternID(id))
	w.r.Attributes = setKV(w.r.Attributes, AttrPatternTemplate, tmpl)
	return nil
}

// FormatPatternID renders a pattern id as stored: 16 hex digits.
func FormatPatternID(id uint64) string {
	var raw [8]byte
	var text [16]byte
	binary.BigEndian.PutUint64(raw[:], id)
	hex.Encode(text[:], raw[:])
	return string(text[:])
}

var errTooManyMiners = errors.New("too many pattern miners")

// miner returns the miner of k, creating it (from saved state if any).
func (ms *minerSet) miner(k minerKey, cfg pattern.Config) (*pattern.Miner, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.miners[k]; m != nil {
		return m, nil
	}
	if len(ms.miners) >= ms.max {
		return nil, errTooManyMiners
	}
	m, err := pattern.New(cfg)
	if err != nil {
		return nil, err
	}
	if ms.dir != "" {
		data, err := os.ReadFile(ms.path(k))
		switch {
		case err == nil:
			if err := m.Restore(data); err != nil {
				ms.log.Warn("pattern miner state unreadable; starting afresh", "tenant", k.tenant, "stream", k.stream, "err", err)
			}
		case !errors.Is(err, os.ErrNotExist):
			ms.log.Warn("pattern miner state unreadable; starting afresh", "tenant", k.tenant, "stream", k.stream, "err", err)
		}
	}
	ms.miners[k] = m
	return m, nil
}

func (ms *minerSet) path(k minerKey) string {
	return filepath.Join(ms.dir, "tenant="+k.tenant, "stream="+k.stream, k.spec+".json")
}

// save writes every miner's state: to a temporary file, synced, then
// renamed over the old state.
func (ms *minerSet) save() error {
	if ms.dir == "" {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var errs []error
	for k, m := range ms.miners {
		if record.ValidateTenant(k.tenant) != nil {
			continue
		}
		data, err := m.Snapshot()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, writeFileAtomic(ms.path(k), data))
	}
	return errors.Join(errs...)
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(path, data)
}
