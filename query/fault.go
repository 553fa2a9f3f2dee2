package query

import (
	"errors"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// ownDir is one of a tenant's folders that views read (its lake or its
// staged rows), as an absolute path ending in a separator, and the name
// errors sent to clients call it by.
type ownDir struct {
	path string
	name string
}

// fileError is the server's failure to read one of its own files for a
// query: a lake file or staged segment the views name that is missing or
// damaged (removed or cut short behind weir's back, or damaged at rest).
// Its message names the files relative to the tenant's folders ("lake/…",
// "staging/…"); the server's log has the full paths.
type fileError struct {
	msg string
	err error
	// lake are the absolute paths of the lake files the message names.
	lake []string
}

func (e *fileError) Error() string {
	return "query: the server could not read its own files (see its log): " + e.msg
}

func (e *fileError) Unwrap() error { return e.err }

// serverFault tells the engine's failures from the query's where DuckDB
// cannot: an error whose message names a file of the tenant's folders
// that the query does not name itself came from a file weir's views read,
// so it is the server's (a fileError, 500) even where DuckDB reports it as
// the input's ("No magic bytes found at end of file …" while binding a
// view). Such errors and DuckDB's own failures are logged with the full
// message. A file the query names itself stays the query's.
func (c *catalog) serverFault(query string, err error) error {
	if errors.Is(err, ErrBusy) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrCanceled) || errors.Is(err, ErrResources) {
		return err
	}
	var de *duckdb.Error
	if !errors.As(err, &de) {
		return err
	}
	msg := de.Error()
	if !c.namesOwnFile(msg, query) {
		if !errors.Is(err, ErrInvalid) {
			c.log.Warn("query failed in DuckDB", "err", msg)
		}
		return err
	}
	c.log.Warn("query failed reading the server's files", "err", msg)
	fe := &fileError{err: de, lake: c.lakeFilesIn(msg)}
	for _, d := range c.ownDirs {
		msg = strings.ReplaceAll(msg, d.path, d.name)
	}
	fe.msg = msg
	return fe
}

// pathsIn returns the paths under dir (absolute, ending in a separator)
// that msg names: each runs from dir to the next quote or blank.
func pathsIn(msg, dir string) []string {
	var out []string
	for rest := msg; ; {
		i := strings.Index(rest, dir)
		if i < 0 {
			return out
		}
		rest = rest[i:]
		end := strings.IndexAny(rest, "'\"\n\t ")
		if end < 0 {
			end = len(rest)
		}
		out = append(out, rest[:end])
		rest = rest[end:]
	}
}

// lakeFilesIn returns the paths of the tenant's lake files that msg
// names.
func (c *catalog) lakeFilesIn(msg string) []string {
	var out []string
	for _, p := range pathsIn(msg, c.ownDirs[0].path) {
		if strings.HasSuffix(p, ".parquet") {
			out = append(out, p)
		}
	}
	return out
}

// namesOwnFile reports whether msg names a path in one of the tenant's
// folders that query does not contain. The context DuckDB appends to a
// message ("LINE 2: SELECT … read_parquet('/…/nonexist..." under it) quotes
// the query, cut short, so it is not looked at.
func (c *catalog) namesOwnFile(msg, query string) bool {
	if i := strings.Index(msg, "\nLINE "); i >= 0 {
		msg = msg[:i]
	}
	for _, d := range c.ownDirs {
		for _, p := range pathsIn(msg, d.path) {
			if !strings.Contains(query, p) {
				return true
			}
		}
	}
	return false
}
