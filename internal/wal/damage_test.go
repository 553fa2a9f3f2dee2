package wal_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/weirlabs/weir/internal/wal"
)

// TestSkipDamage damages a log in the middle in several ways and opens it
// with SkipDamage: every record outside the damage must be replayed, in
// order and once, the damage listed, logged and reported by Scan at its
// place among the records, the files left as they were, and appends must
// continue and survive a reopen.
func TestSkipDamage(t *testing.T) {
	t.Parallel()
	// start returns where record i's frame begins.
	start := func(recs []rec, i int) int64 {
		if i == 0 || recs[i-1].pos.Segment != recs[i].pos.Segment {
			return wal.HeaderSize
		}
		return recs[i-1].pos.Offset
	}
	edit := func(t *testing.T, path string, f func(b []byte)) {
		t.Helper()
		b, err := os.ReadFile(path)
		must(t, err)
		f(b)
		must(t, os.WriteFile(path, b, 0o644))
	}
	// inSegment returns the indices of the records of segment seg.
	inSegment := func(recs []rec, seg uint64) []int {
		var out []int
		for i, r := range recs {
			if r.pos.Segment == seg {
				out = append(out, i)
			}
		}
		return out
	}
	type span struct {
		seg            uint64
		offset, length int64
		cause          string
	}
	cases := []struct {
		name string
		// damage damages the log and returns the records it destroys and
		// the spans Open must report.
		damage func(t *testing.T, dir string, recs []rec) (lost []int, spans []span)
	}{
		{"flipped payload bytes in the middle of a segment", func(t *testing.T, dir string, recs []rec) ([]int, []span) {
			idx := inSegment(recs, 2)
			i := idx[len(idx)/2]
			edit(t, segPath(dir, 2), func(b []byte) {
				for k := int64(0); k < 3; k++ {
					b[start(recs, i)+wal.FrameHeaderSize+4+k] ^= 0x5a
				}
			})
			return []int{i}, []span{{2, start(recs, i), recs[i].pos.Offset - start(recs, i), "checksum"}}
		}},
		{"damaged length field", func(t *testing.T, dir string, recs []rec) ([]int, []span) {
			idx := inSegment(recs, 2)
			i := idx[1]
			edit(t, segPath(dir, 2), func(b []byte) { b[start(recs, i)+1] ^= 0x01 })
			return []int{i}, []span{{2, start(recs, i), recs[i].pos.Offset - start(recs, i), ""}}
		}},
		{"zeroed region across records", func(t *testing.T, dir string, recs []rec) ([]int, []span) {
			idx := inSegment(recs, 3)
			a, c := idx[1], idx[3] // zero from inside a to inside c: a, b and c are lost
			from, to := start(recs, a)+3, start(recs, c)+wal.FrameHeaderSize+1
			edit(t, segPath(dir, 3), func(b []byte) { clear(b[from:to]) })
			return []int{a, a + 1, c}, []span{{3, start(recs, a), recs[c].pos.Offset - start(recs, a), ""}}
		}},
		{"last record of an earlier segment", func(t *testing.T, dir string, recs []rec) ([]int, []span) {
			idx := inSegment(recs, 1)
			i := idx[len(idx)-1]
			edit(t, segPath(dir, 1), func(b []byte) { b[len(b)-1] ^= 0x80 })
			return []int{i}, []span{{1, start(recs, i), recs[i].pos.Offset - start(recs, i), "checksum"}}
		}},
		{"header of an earlier segment", func(t *testing.T, dir string, recs []rec) ([]int, []span) {
			edit(t, segPath(dir, 2), func(b []byte) { b[2] ^= 0x10 })
			return nil, []span{{2, 0, wal.HeaderSize, "magic"}}
		}},
		{"a record in the last segment", func(t *testing.T, dir string, recs []rec) ([]int, []span) {
			last := recs[len(recs)-1].pos.Segment
			idx := inSegment(recs, last)
			i := idx[0]
			edit(t, segPath(dir, last), func(b []byte) { b[start(recs, i)+wal.FrameHeaderSize] ^= 0x02 })
			return []int{i}, []span{{last, start(recs, i), recs[i].pos.Offset - start(recs, i), "checksum"}}
		}},
		{"missing segment", func(t *testing.T, dir string, recs []rec) ([]int, []span) {
			must(t, os.Remove(segPath(dir, 2)))
			return inSegment(recs, 2), []span{{3, 0, 0, "missing"}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			o := testOptions()
			l := openLog(t, dir, o, nil)
			recs := appendN(t, l, 0, 60)
			closeLog(t, l)
			if recs[len(recs)-1].pos.Segment < 4 {
				t.Fatal("test needs at least 4 segments")
			}
			lost, spans := tc.damage(t, dir, recs)
			var want []rec
			for i, r := range recs {
				if !containsInt(lost, i) {
					want = append(want, r)
				}
			}
			before := snapshot(t, dir)

			// Without SkipDamage, Open refuses.
			if _, err := wal.OpenWithSyncHook(dir, o, nil, noSync); !errors.As(err, new(*wal.CorruptionError)) {
				t.Fatalf("Open without SkipDamage = %v, want a *CorruptionError", err)
			}
			o.SkipDamage = true
			var lb logBuffer
			l = openLog(t, dir, o, lb.logger())
			if after := snapshot(t, dir); !reflect.DeepEqual(before, after) {
				t.Error("Open modified a damaged log")
			}
			got := l.Damage()
			if len(got) != len(spans) {
				t.Fatalf("Damage() = %v, want %d spans", got, len(spans))
			}
			for i, s := range spans {
				d := got[i]
				if d.Segment != s.seg || d.Path != segPath(dir, s.seg) || d.Offset != s.offset || d.Length != s.length ||
					!strings.Contains(d.Err.Error(), s.cause) {
					t.Errorf("damage %d = %v, want segment %d offset %d length %d (%s)", i, d, s.seg, s.offset, s.length, s.cause)
				}
				for _, w := range []string{"level=ERROR", "segment=" + d.Path, "offset=" + strconv.FormatInt(d.Offset, 10)} {
					if !strings.Contains(lb.String(), w) {
						t.Errorf("log %q does not contain %q", lb.String(), w)
					}
				}
			}
			equalRecs(t, replayAll(t, l, wal.Pos{}), want)

			// Scan reports each span between the records around it, with
			// its bytes.
			var seq []string
			var prev wal.Pos
			err := l.Scan(wal.Pos{}, func(pos wal.Pos, _ []byte) error {
				seq = append(seq, "r")
				prev = pos
				return nil
			}, func(d wal.Damage, raw []byte) error {
				seq = append(seq, "d")
				if prev.Segment == d.Segment && prev.Offset > d.Offset {
					t.Errorf("damage at %d reported after the record ending at %d", d.Offset, prev.Offset)
				}
				if int64(len(raw)) != d.Length {
					t.Errorf("damage of %d bytes reported with %d", d.Length, len(raw))
				}
				b, err := os.ReadFile(d.Path)
				must(t, err)
				if !bytes.Equal(raw, b[d.Offset:d.Offset+d.Length]) {
					t.Error("damage reported with other bytes than the segment's")
				}
				return nil
			})
			must(t, err)
			if n := strings.Count(strings.Join(seq, ""), "d"); n != len(spans) {
				t.Errorf("Scan reported %d spans, want %d", n, len(spans))
			}
			// Replay from a position after the damage does not report it.
			afterAll := want[len(want)-1].pos
			must(t, l.Scan(afterAll, func(wal.Pos, []byte) error { return nil }, func(d wal.Damage, _ []byte) error {
				t.Errorf("damage %v reported by a Scan that starts after it", d)
				return nil
			}))

			more := appendN(t, l, 100, 5)
			want = append(want, more...)
			closeLog(t, l)
			l = openLog(t, dir, o, nil)
			equalRecs(t, replayAll(t, l, wal.Pos{}), want)
			// Removing segments forgets their damage.
			lastSeg := l.Segments()[len(l.Segments())-1].Index
			must(t, l.Remove(lastSeg))
			for _, d := range l.Damage() {
				if d.Segment < lastSeg {
					t.Errorf("Damage() after removing every segment but the last holds %v", d)
				}
			}
			closeLog(t, l)
		})
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
