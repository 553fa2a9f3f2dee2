package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/weirlabs/weir/internal/aside"
	"github.com/weirlabs/weir/internal/durable"
)

// stateFile is the name of the persisted state under Deps.StateDir.
const stateFile = "state.json"

// stateVersion is the format of the state file; a file of another
// version is refused rather than misread.
const stateVersion = 1

// ruleState is what the manager knows of one rule; its exported fields
// are persisted.
type ruleState struct {
	Instances map[string]*Instance `json:"instances"`
	// LastEval is the last evaluation's time, LastError its error ("" on
	// success), LastValue its value (see Manager.evaluate).
	LastEval     time.Time     `json:"last_eval,omitzero"`
	LastDuration time.Duration `json:"last_duration"`
	LastError    string        `json:"last_error,omitempty"`
	LastValue    *float64      `json:"last_value,omitempty"`
	// History is the values of the last evaluations, oldest first, for
	// the dashboard's sparkline.
	History []Point `json:"history,omitempty"`
	// Patterns are the pattern ids seen in a pattern rule's stream, and
	// PatternsTo the end of the window they were last read up to.
	Patterns   map[string]*seenPattern `json:"patterns,omitempty"`
	PatternsTo time.Time               `json:"patterns_to,omitzero"`
}

// Point is one evaluation's value.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// maxHistory bounds the values kept per rule.
const maxHistory = 60

// seenPattern is a pattern id a pattern rule has seen.
type seenPattern struct {
	First    time.Time `json:"first"`
	Template string    `json:"template,omitempty"`
	// Alert says the pattern appeared at or above the rule's severity
	// when it was first seen, making it a new-pattern alert.
	Alert bool  `json:"alert,omitempty"`
	Count int64 `json:"count,omitempty"`
}

// maxPatterns bounds the pattern ids remembered per rule; past it the
// longest known are forgotten (and would count as new if seen again).
const maxPatterns = 100_000

type stateDoc struct {
	Version int                   `json:"version"`
	Rules   map[string]*ruleState `json:"rules"`
}

// damagedStateError is loadState's error for a state file that does not
// parse, which it moved aside (to moved): the rules start without state.
type damagedStateError struct {
	moved string
	err   error
}

func (e *damagedStateError) Error() string {
	return fmt.Sprintf("alert: the state file does not parse (%v); moved to %s", e.err, e.moved)
}

// loadState reads the state file in dir; a missing file is no state. A
// file that does not parse is set aside (aside.Move) with a
// *damagedStateError, and the state returned is empty; one of another
// version is an error, so that a downgrade does not drop its state.
func loadState(dir string) (map[string]*ruleState, error) {
	path := filepath.Join(dir, stateFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]*ruleState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("alert: read state: %w", err)
	}
	var doc stateDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		moved, merr := aside.Move(path, path+".damaged")
		if merr != nil {
			return nil, fmt.Errorf("alert: state file %s is damaged (%v), and: %w", path, err, merr)
		}
		return map[string]*ruleState{}, &damagedStateError{moved: moved, err: err}
	}
	if doc.Version != stateVersion {
		return nil, fmt.Errorf("alert: state file %s has version %d, want %d", path, doc.Version, stateVersion)
	}
	if doc.Rules == nil {
		doc.Rules = map[string]*ruleState{}
	}
	for _, rs := range doc.Rules {
		if rs.Instances == nil {
			rs.Instances = map[string]*Instance{}
		}
	}
	return doc.Rules, nil
}

// saveState writes the state atomically: a temporary file, fsynced,
// renamed over the old one, and the directory fsynced, so a crash leaves
// the old state or the new, never a torn one.
func saveState(dir string, raw []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("alert: state dir: %w", err)
	}
	if err := durable.WriteFile(filepath.Join(dir, stateFile), raw); err != nil {
		return fmt.Errorf("alert: save state: %w", err)
	}
	return nil
}
