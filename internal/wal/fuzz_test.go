package wal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"testing"

	"github.com/weirlabs/weir/internal/wal"
)

// The fuzzers check Open and Replay against refSegment, a deliberately
// naive reading of the format in docs/wal.md, on a log of one segment.

var refTable = crc32.MakeTable(crc32.Castagnoli)

// refFrame reports whether a valid frame starts at off in b, and its end.
func refFrame(b []byte, off int) (int, bool) {
	if len(b)-off < 8 {
		return 0, false
	}
	n := int(binary.LittleEndian.Uint32(b[off:]))
	if n > len(b)-off-8 {
		return 0, false
	}
	crc := crc32.Checksum(b[off:off+4], refTable)
	crc = crc32.Update(crc, refTable, b[off+8:off+8+n])
	return off + 8 + n, crc == binary.LittleEndian.Uint32(b[off+4:])
}

func refValidFrom(b []byte, from int) bool {
	for o := from; o+8 <= len(b); o++ {
		if _, ok := refFrame(b, o); ok {
			return true
		}
	}
	return false
}

// refOutcome is what Open must do with a single segment holding b.
type refOutcome struct {
	corrupt  bool     // Open must fail with a *CorruptionError
	offset   int      // at this offset if corrupt, else the truncated size
	payloads [][]byte // the records Replay must return if not corrupt
}

func refSegment(b []byte) refOutcome {
	if len(b) < 16 || !bytes.Equal(b[:8], []byte("WEIRWAL1")) ||
		binary.LittleEndian.Uint32(b[8:]) != 1 || binary.LittleEndian.Uint32(b[12:]) != 0 {
		fatal := len(b) >= 16 && bytes.Equal(b[:8], []byte("WEIRWAL1")) &&
			(binary.LittleEndian.Uint32(b[8:]) != 0 || binary.LittleEndian.Uint32(b[12:]) != 0)
		if fatal || refValidFrom(b, 0) {
			return refOutcome{corrupt: true, offset: 0}
		}
		return refOutcome{offset: 16} // torn header: rewritten
	}
	var out refOutcome
	off := 16
	for off < len(b) {
		end, ok := refFrame(b, off)
		if !ok {
			if refValidFrom(b, off+1) {
				return refOutcome{corrupt: true, offset: off}
			}
			break
		}
		out.payloads = append(out.payloads, b[off+8:end])
		off = end
	}
	out.offset = off
	return out
}

func refNextValid(b []byte, from int) int {
	for o := from; o+8 <= len(b); o++ {
		if _, ok := refFrame(b, o); ok {
			return o
		}
	}
	return -1
}

// refSkipOutcome is what Open with SkipDamage must do with a single
// segment holding b.
type refSkipOutcome struct {
	fatal    bool     // Open must fail: a header of another version
	size     int      // the size after truncating a torn tail
	payloads [][]byte // the records Replay must return
	damage   [][2]int // offset and length of each damaged span
}

func refSegmentSkip(b []byte) refSkipOutcome {
	var out refSkipOutcome
	off := 16
	if len(b) < 16 || !bytes.Equal(b[:8], []byte("WEIRWAL1")) ||
		binary.LittleEndian.Uint32(b[8:]) != 1 || binary.LittleEndian.Uint32(b[12:]) != 0 {
		if len(b) >= 16 && bytes.Equal(b[:8], []byte("WEIRWAL1")) &&
			(binary.LittleEndian.Uint32(b[8:]) != 0 || binary.LittleEndian.Uint32(b[12:]) != 0) {
			return refSkipOutcome{fatal: true}
		}
		next := refNextValid(b, 16)
		if next < 0 {
			return refSkipOutcome{size: 16} // torn header: rewritten
		}
		out.damage = append(out.damage, [2]int{0, next})
		off = next
	}
	for off < len(b) {
		end, ok := refFrame(b, off)
		if !ok {
			next := refNextValid(b, off+1)
			if next < 0 {
				break // torn tail
			}
			out.damage = append(out.damage, [2]int{off, next - off})
			off = next
			continue
		}
		out.payloads = append(out.payloads, b[off+8:end])
		off = end
	}
	out.size = off
	return out
}

// checkOpenSkip writes b as the only segment of a log, opens it with
// SkipDamage and checks the outcome against refSegmentSkip; then it
// appends a record and checks that it survives a reopen after the
// recovered ones.
func checkOpenSkip(t *testing.T, b []byte) refSkipOutcome {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(segPath(dir, 1), b, 0o644))
	want := refSegmentSkip(b)
	o := wal.DefaultOptions()
	o.SkipDamage = true
	l, err := wal.OpenWithSyncHook(dir, o, nil, noSync)
	if want.fatal {
		if !errors.As(err, new(*wal.CorruptionError)) {
			t.Fatalf("Open with SkipDamage = %v, want a *CorruptionError for another version", err)
		}
		return want
	}
	if err != nil {
		t.Fatalf("Open with SkipDamage = %v, want success with %d records", err, len(want.payloads))
	}
	if size := l.Segments()[0].Size; size != int64(want.size) {
		t.Errorf("segment truncated to %d bytes, want %d", size, want.size)
	}
	dmg := l.Damage()
	if len(dmg) != len(want.damage) {
		t.Fatalf("Damage() = %v, want spans %v", dmg, want.damage)
	}
	for i, d := range dmg {
		if d.Offset != int64(want.damage[i][0]) || d.Length != int64(want.damage[i][1]) {
			t.Fatalf("Damage() = %v, want spans %v", dmg, want.damage)
		}
	}
	var got [][]byte
	spans := 0
	scan := func() {
		got, spans = got[:0], 0
		must(t, l.Scan(wal.Pos{}, func(_ wal.Pos, p []byte) error {
			got = append(got, bytes.Clone(p))
			return nil
		}, func(d wal.Damage, raw []byte) error {
			spans++
			if int64(len(raw)) > d.Length || !bytes.Equal(raw, b[d.Offset:d.Offset+int64(len(raw))]) {
				t.Fatalf("damage %v reported with other bytes", d)
			}
			return nil
		}))
	}
	scan()
	if len(got) != len(want.payloads) || spans != len(want.damage) {
		t.Fatalf("scanned %d records and %d spans, want %d and %d", len(got), spans, len(want.payloads), len(want.damage))
	}
	for i := range got {
		if !bytes.Equal(got[i], want.payloads[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
	_, err = l.Append([]byte("after recovery"))
	must(t, err)
	must(t, l.Close())
	l, err = wal.OpenWithSyncHook(dir, o, nil, noSync)
	must(t, err)
	defer closeLog(t, l)
	scan()
	if len(got) != len(want.payloads)+1 || string(got[len(got)-1]) != "after recovery" {
		t.Fatalf("after an append and a reopen: %d records, want %d", len(got), len(want.payloads)+1)
	}
	return want
}

// checkOpen writes b as the only segment of a log, opens it and checks the
// outcome against refSegment; then it appends a record and checks that it
// survives a reopen after the recovered ones.
func checkOpen(t *testing.T, b []byte) refOutcome {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(segPath(dir, 1), b, 0o644))
	want := refSegment(b)
	o := wal.DefaultOptions()
	l, err := wal.OpenWithSyncHook(dir, o, nil, noSync)
	if want.corrupt {
		var ce *wal.CorruptionError
		if !errors.As(err, &ce) || ce.Offset != int64(want.offset) || ce.Segment != segPath(dir, 1) {
			t.Fatalf("Open = %v, want a *CorruptionError at offset %d", err, want.offset)
		}
		after, rerr := os.ReadFile(segPath(dir, 1))
		must(t, rerr)
		if !bytes.Equal(after, b) {
			t.Fatal("Open modified a corrupt segment")
		}
		return want
	}
	if err != nil {
		t.Fatalf("Open = %v, want success with %d records", err, len(want.payloads))
	}
	if size := l.Segments()[0].Size; size != int64(want.offset) {
		t.Errorf("segment truncated to %d bytes, want %d", size, want.offset)
	}
	var got [][]byte
	replay := func() {
		got = got[:0]
		must(t, l.Replay(wal.Pos{}, func(_ wal.Pos, p []byte) error {
			got = append(got, bytes.Clone(p))
			return nil
		}))
	}
	replay()
	if len(got) != len(want.payloads) {
		t.Fatalf("replayed %d records, want %d", len(got), len(want.payloads))
	}
	for i := range got {
		if !bytes.Equal(got[i], want.payloads[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
	_, err = l.Append([]byte("after recovery"))
	must(t, err)
	must(t, l.Close())
	l, err = wal.OpenWithSyncHook(dir, o, nil, noSync)
	must(t, err)
	defer closeLog(t, l)
	replay()
	if len(got) != len(want.payloads)+1 || string(got[len(got)-1]) != "after recovery" {
		t.Fatalf("after an append and a reopen: %d records, want %d", len(got), len(want.payloads)+1)
	}
	return want
}

// realSegment writes payloads with the wal package and returns the bytes
// of its only segment and the end of each record.
func realSegment(t testing.TB, payloads [][]byte) ([]byte, []int64) {
	dir := t.TempDir()
	o := wal.DefaultOptions()
	l, err := wal.OpenWithSyncHook(dir, o, nil, noSync)
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64
	for _, p := range payloads {
		pos, err := l.Append(p)
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, pos.Offset)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(segPath(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	return b, ends
}

// splitPayloads cuts data into records at every 0xff byte.
func splitPayloads(data []byte) [][]byte {
	if len(data) == 0 {
		return nil
	}
	return bytes.Split(data, []byte{0xff})
}

var seedPayloads = [][]byte{
	nil,
	[]byte("a"),
	[]byte("hello\xffworld\xff\xff!"),
	bytes.Repeat([]byte("0123456789\xff"), 20),
	{0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0},
}

func FuzzOpen(f *testing.F) {
	for _, p := range seedPayloads {
		b, ends := realSegment(f, splitPayloads(p))
		f.Add(b)
		if len(ends) > 0 {
			f.Add(b[:ends[len(ends)-1]-1])                     // torn last record
			f.Add(append(bytes.Clone(b), make([]byte, 64)...)) // zeros
		}
		if len(ends) > 2 {
			c := bytes.Clone(b)
			c[ends[0]+2] ^= 1 // mid-log damage
			f.Add(c)
		}
	}
	f.Add([]byte{})
	f.Add([]byte("WEIRWAL1"))
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkOpen(t, b)
		checkOpenSkip(t, b)
	})
}

// FuzzDamage takes a real log of the fuzzer's records (of letters, so
// that no payload holds something that looks like a frame), damages it in
// the middle (flips bits, or zeroes or overwrites a range) and opens it
// with SkipDamage: exactly the records whose frames the damage did not
// touch must be replayed, in order, and the damage reported.
func FuzzDamage(f *testing.F) {
	for i, p := range seedPayloads {
		f.Add(p, uint16(i*31+20), uint16(3), uint8(0), []byte{})
		f.Add(p, uint16(i*17+40), uint16(40), uint8(1), []byte{})
		f.Add(p, uint16(i*7+16), uint16(0), uint8(2), []byte("garbage \x00\x01 that is not a record"))
	}
	f.Fuzz(func(t *testing.T, data []byte, at, n uint16, kind uint8, garbage []byte) {
		payloads := splitPayloads(data)
		for _, p := range payloads {
			for i := range p {
				p[i] = 'a' + p[i]%26
			}
		}
		b, ends := realSegment(t, payloads)
		if len(b) <= wal.HeaderSize {
			return
		}
		from := wal.HeaderSize + int(at)%(len(b)-wal.HeaderSize)
		to := from
		switch kind % 3 {
		case 0: // flip bits in up to 4 bytes
			to = min(len(b), from+1+int(n)%4)
			for i := from; i < to; i++ {
				b[i] ^= byte(n>>8) | 1
			}
		case 1: // zero a range
			to = min(len(b), from+1+int(n))
			clear(b[from:to])
		case 2: // overwrite with garbage
			to = min(len(b), from+len(garbage))
			copy(b[from:to], garbage)
		}
		var want [][]byte
		touched := false
		for i, end := range ends {
			start := int64(wal.HeaderSize)
			if i > 0 {
				start = ends[i-1]
			}
			orig := b[start:end]
			hit := int(end) > from && int(start) < to
			if hit {
				// A write may leave a frame as it was (zeros over zeros).
				if _, ok := refFrame(b, int(start)); ok && int(start)+8+len(payloads[i]) == int(end) &&
					bytes.Equal(orig[8:], payloads[i]) {
					hit = false
				}
			}
			if hit {
				touched = true
				continue
			}
			want = append(want, payloads[i])
		}
		got := checkOpenSkip(t, b)
		if len(got.payloads) != len(want) {
			t.Fatalf("recovered %d records, want the %d the damage did not touch", len(got.payloads), len(want))
		}
		for i := range want {
			if !bytes.Equal(got.payloads[i], want[i]) {
				t.Fatalf("record %d differs", i)
			}
		}
		// Damage before an intact record is a span; at the end it is a
		// torn tail.
		if touched && len(got.damage) == 0 && got.size == len(b) {
			t.Fatal("records lost without a damaged span or a truncated tail")
		}
	})
}

// FuzzReplay takes a real log of the fuzzer's records, cuts it anywhere and
// appends garbage: every record that was complete before the cut must be
// recovered, unless the garbage itself holds a valid record, which Open
// must then report as corruption after them.
func FuzzReplay(f *testing.F) {
	for i, p := range seedPayloads {
		f.Add(p, uint16(i*13), []byte{})
		f.Add(p, uint16(1000), []byte("garbage that is not a record"))
		f.Add(p, uint16(i*29+17), make([]byte, 32))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16, garbage []byte) {
		payloads := splitPayloads(data)
		b, ends := realSegment(t, payloads)
		n := int(cut) % (len(b) + 1)
		torn := append(b[:n:n], garbage...)
		complete := 0
		for complete < len(ends) && ends[complete] <= int64(n) {
			complete++
		}
		got := checkOpen(t, torn)
		if got.corrupt {
			prefix := int64(wal.HeaderSize)
			if complete > 0 {
				prefix = ends[complete-1]
			}
			if int64(got.offset) < prefix && n >= wal.HeaderSize {
				t.Fatalf("corruption reported at %d, inside the valid prefix ending at %d", got.offset, prefix)
			}
			return
		}
		if len(got.payloads) < complete {
			t.Fatalf("recovered %d records, want at least the %d complete before the cut", len(got.payloads), complete)
		}
		for i := range complete {
			if !bytes.Equal(got.payloads[i], payloads[i]) {
				t.Fatalf("record %d differs", i)
			}
		}
	})
}
