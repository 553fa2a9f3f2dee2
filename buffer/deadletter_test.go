package buffer_test

import (
	"testing"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/transform"
)

// TestDeadLetterNamesAgree checks that records the buffer salvages from a
// damaged log are dead letters by transform's definition.
func TestDeadLetterNamesAgree(t *testing.T) {
	want := []string{transform.DeadLetterStream, transform.AttrDeadStream, transform.AttrDeadStage,
		transform.AttrDeadError, transform.AttrDeadTime, transform.AttrDeadPrefix}
	for i, got := range buffer.DeadLetterNames {
		if got != want[i] {
			t.Errorf("buffer writes %q where transform has %q", got, want[i])
		}
	}
}
