package syslog_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/weirlabs/weir/ingest/syslog"
)

// readAll reads every message of stream, recording errors by name.
func readAll(t *testing.T, r io.Reader, max int) []string {
	t.Helper()
	rd := syslog.NewReader(r, max)
	var out []string
	for range 1000 {
		msg, err := rd.Next()
		var tl *syslog.TooLargeError
		switch {
		case err == nil:
			out = append(out, string(msg))
		case errors.As(err, &tl):
			out = append(out, "TOO LARGE:"+string(msg))
		case errors.Is(err, syslog.ErrTruncated):
			out = append(out, "TRUNCATED:"+string(msg))
		case errors.Is(err, syslog.ErrFraming):
			return append(out, "FRAMING")
		case errors.Is(err, io.EOF):
			return out
		default:
			t.Fatalf("Next: %v", err)
		}
	}
	t.Fatal("no end")
	return nil
}

func TestReaderFraming(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 40)
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"lines", "<13>a\r\n\n<14>b\n<15>c", []string{"<13>a", "<14>b", "<15>c"}},
		{"octets", "5 <13>a6 <14>bb\n7 <15>ccc", []string{"<13>a", "<14>bb", "<15>ccc"}},
		{"octets with a space in the message", "9 <13>a b c", []string{"<13>a b c"}},
		{"long line", "<1>ok\n" + long + "\n<2>after\n", []string{"<1>ok", "TOO LARGE:" + long[:16], "<2>after"}},
		{"long line without end", "<1>ok\n" + long, []string{"<1>ok", "TOO LARGE:" + long[:16]}},
		{"long frame", "4 <1>a40 " + long + "4 <2>b", []string{"<1>a", "TOO LARGE:" + long[:16], "<2>b"}},
		{"bad count", "4 <1>a4x<2>b", []string{"<1>a", "FRAMING"}},
		{"count too long", "12345678901 x", []string{"FRAMING"}},
		{"cut frame", "4 <1>a9 <2>b", []string{"<1>a", "TRUNCATED:<2>b"}},
		{"garbage", "\x00\xff\xfe garbage\n<1>ok\n", []string{"\x00\xff\xfe garbage", "<1>ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tc.in), iotest.OneByteReader(strings.NewReader(tc.in)), iotest.DataErrReader(strings.NewReader(tc.in))} {
				got := readAll(t, r, 16)
				if strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Errorf("got %q, want %q", got, tc.want)
				}
			}
		})
	}
}

// TestReaderResumesAfterTimeout checks that an error of the underlying
// reader in the middle of a message loses nothing.
func TestReaderResumesAfterTimeout(t *testing.T) {
	t.Parallel()
	in := "11 <13>hello w12 <14>second 1"
	r := syslog.NewReader(iotest.TimeoutReader(iotest.HalfReader(strings.NewReader(in))), 64)
	var got []string
	timeouts := 0
	for {
		msg, err := r.Next()
		if errors.Is(err, iotest.ErrTimeout) {
			timeouts++
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(msg))
	}
	if timeouts == 0 || strings.Join(got, "|") != "<13>hello w|<14>second 1" {
		t.Errorf("got %q after %d timeouts", got, timeouts)
	}
}

// FuzzReader feeds the framing reader arbitrary streams: it never panics
// nor loops, never returns a message longer than its bound, and reads
// the same messages whether the stream arrives at once or byte by byte.
func FuzzReader(f *testing.F) {
	f.Add([]byte("5 <13>a6 <14>bb\n"))
	f.Add([]byte("<13>a\r\n\n<14>b\n"))
	f.Add([]byte("99999 " + strings.Repeat("y", 70)))
	f.Add([]byte("4 <1>a4x<2>b"))
	f.Add([]byte(strings.Repeat("z", 100) + "\n<1>x"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 32
		read := func(r io.Reader) []string {
			rd := syslog.NewReader(r, max)
			var out []string
			for n := 0; ; n++ {
				if n > len(in)+2 {
					t.Fatalf("%d messages from %d bytes", n, len(in))
				}
				msg, err := rd.Next()
				if len(msg) > max {
					t.Fatalf("message of %d bytes", len(msg))
				}
				var tl *syslog.TooLargeError
				switch {
				case err == nil:
					out = append(out, string(msg))
				case errors.As(err, &tl), errors.Is(err, syslog.ErrTruncated):
					out = append(out, "!"+string(msg))
				case errors.Is(err, syslog.ErrFraming):
					return append(out, "FRAMING")
				case err == io.EOF:
					return out
				default:
					t.Fatalf("Next: %v", err)
				}
			}
		}
		whole := read(bytes.NewReader(in))
		bytewise := read(iotest.OneByteReader(bytes.NewReader(in)))
		if strings.Join(whole, "\x00") != strings.Join(bytewise, "\x00") {
			t.Errorf("at once %q, byte by byte %q", whole, bytewise)
		}
	})
}
