package transform

import "testing"

func TestFormatPatternID(t *testing.T) {
	for id, want := range map[uint64]string{0: "0000000000000000", 0xab: "00000000000000ab", 1<<64 - 1: "ffffffffffffffff"} {
		if got := FormatPatternID(id); got != want {
			t.Errorf("FormatPatternID(%#x) = %s, want %s", id, got, want)
		}
	}
}
