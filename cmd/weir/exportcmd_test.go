package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestExportProgress: the progress line shows files and records of the
// plan and is erased at the end; a nil progress (stderr not a terminal)
// draws nothing.
func TestExportProgress(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := &exportProgress{w: &buf, start: time.Now()}
	p.plan(2, 100)
	p.received(4096)
	p.fileDone(60)
	p.draw(time.Now())
	if s := buf.String(); !strings.Contains(s, "\r1/2 files, 60 of 100 records (60%), 4.0 KiB") {
		t.Errorf("progress line %q", s)
	}
	p.clear()
	if !strings.HasSuffix(buf.String(), "\r\x1b[K") {
		t.Errorf("line not erased: %q", buf.String())
	}
	var none *exportProgress
	none.plan(1, 1)
	none.received(1)
	none.fileDone(1)
	none.clear()
}
