//go:build !unix

package sink_test

import (
	"testing"
	"time"
)

// processCPU is not measured here; cpu-ns/row reads 0.
func processCPU(*testing.B) time.Duration { return 0 }
