package sink

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weirlabs/weir/internal/durable"
)

// Lake layout (docs/format.md, "Lake layout"):
//
//	<Dir>/tenant=<tenant>/stream=<stream>/date=YYYY-MM-DD/hour=HH/<ID>.parquet
//
// where HH is 00 to 23 for a file of one hour and 24 (DayHour) for a day
// file, and, while a file is being written, .<ID>.parquet.tmp beside it.
const (
	fileExt   = ".parquet"
	tmpSuffix = ".parquet.tmp"
	// idLayout is the time part of a file ID: UTC creation time to the
	// nanosecond, fixed width, so IDs sort by creation.
	idLayout = "20060102T150405.000000000Z"
	idRandom = 4 // random bytes after the time, hex encoded
)

// DayHour is the hour= value of day files (Partition.Day): their rows
// lie anywhere in the date; readers take a row's hour from its timestamp.
const DayHour = 24

// Keys of the Parquet footer's key-value metadata that the lake writes.
// weir.part is read back at New; the others make a file self-describing
// when copied out of the lake.
const (
	metaTenant = "weir.tenant"
	metaStream = "weir.stream"
	metaPart   = "weir.part"
	metaHour   = "weir.hour"
)

// validName reports whether s can be a tenant or stream directory value:
// 1 to 128 characters of [A-Za-z0-9_.-], not starting with a dot. (Ingest
// enforces the stricter record.ValidateTenant/ValidateStream; this check
// only keeps paths safe and hive-parseable.)
func validName(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// normalize checks p and returns it with Hour in UTC truncated to the
// hour, or to the day for a day file.
func normalize(p Partition) (Partition, error) {
	if !validName(p.Tenant) {
		return p, fmt.Errorf("%w: tenant %q: want 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.'", ErrInvalidPartition, p.Tenant)
	}
	if !validName(p.Stream) {
		return p, fmt.Errorf("%w: stream %q: want 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.'", ErrInvalidPartition, p.Stream)
	}
	p.Hour = p.Hour.UTC().Truncate(time.Hour)
	if p.Day {
		p.Hour = dayOf(p.Hour)
	}
	if y := p.Hour.Year(); y < 0 || y > 9999 {
		return p, fmt.Errorf("%w: hour %s: year out of range", ErrInvalidPartition, p.Hour)
	}
	return p, nil
}

// Dir returns the directory of p's files relative to the lake root:
// tenant=<tenant>/stream=<stream>/date=<YYYY-MM-DD>/hour=<HH>, with the
// date and hour of p.Hour in UTC, and hour=24 (DayHour) for a day file.
func (p Partition) Dir() string {
	h := p.Hour.UTC()
	hour := h.Format("15")
	if p.Day {
		hour = strconv.Itoa(DayHour)
	}
	return filepath.Join(
		"tenant="+p.Tenant,
		"stream="+p.Stream,
		"date="+h.Format("2006-01-02"),
		"hour="+hour)
}

// End returns the end of the span of time p's rows lie in: an hour after
// Hour, or a day after it for a day file.
func (p Partition) End() time.Time {
	if p.Day {
		return p.Hour.Add(24 * time.Hour)
	}
	return p.Hour.Add(time.Hour)
}

// dayOf returns the start (00:00 UTC) of t's UTC date.
func dayOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func tmpName(id string) string { return "." + id + tmpSuffix }

// newID returns a file ID for creation time t.
func newID(t time.Time) string {
	var r [idRandom]byte
	for i := range r {
		r[i] = byte(rand.Uint32())
	}
	return t.UTC().Format(idLayout) + "-" + hex.EncodeToString(r[:])
}

// idTime parses the creation time out of a file ID.
func idTime(id string) (time.Time, bool) {
	ts, _, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(idLayout, ts)
	return t, err == nil
}

// parsePath parses the path of a published file relative to the lake root.
func parsePath(rel string) (Partition, string, error) {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) != 5 {
		return Partition{}, "", errors.New("not at tenant=*/stream=*/date=*/hour=*/<id>.parquet")
	}
	var p Partition
	var date, hour string
	for i, want := range []string{"tenant=", "stream=", "date=", "hour="} {
		v, ok := strings.CutPrefix(parts[i], want)
		if !ok {
			return Partition{}, "", fmt.Errorf("directory %q: want %s<value>", parts[i], want)
		}
		switch i {
		case 0:
			p.Tenant = v
		case 1:
			p.Stream = v
		case 2:
			date = v
		case 3:
			hour = v
		}
	}
	h, err := strconv.Atoi(hour)
	if err != nil || len(hour) != 2 || h > DayHour {
		return Partition{}, "", fmt.Errorf("hour=%s: want 00 to 23, or 24 for a day file", hour)
	}
	d, err := time.Parse("2006-01-02", date)
	if err != nil {
		return Partition{}, "", fmt.Errorf("date=%s: %w", date, err)
	}
	if h == DayHour {
		p.Day, h = true, 0
	}
	p.Hour = d.Add(time.Duration(h) * time.Hour)
	id := strings.TrimSuffix(parts[4], fileExt)
	if _, ok := idTime(id); !ok {
		return Partition{}, "", fmt.Errorf("file name %q: not <time>-<hex>.parquet", parts[4])
	}
	if _, err := normalize(p); err != nil {
		return Partition{}, "", err
	}
	return p, id, nil
}

// writeDurably replaces dir/name with data (durable.WriteFile).
func writeDurably(dir, name string, data []byte) error {
	if err := durable.WriteFile(filepath.Join(dir, name), data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
