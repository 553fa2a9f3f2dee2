package query

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Schema files. A stream with promoted attribute columns is read by name
// (viewQuery), and its files differ in those columns whenever their
// batchers promoted different attributes: partitions decide on their own,
// and again after every restart. DuckDB 1.5 answers some counts from the
// row groups' statistics, indexing the statistics of the first listed
// file by the columns of all of them; when that file is the only one a
// query's filter on the path (date, hour) keeps and it lacks a column the
// query filters on, DuckDB fails with an internal error ("Attempted to
// access index 3 within vector of size 3"). So the view of such a stream
// lists first a schema file: a Parquet file with no rows and every column
// of the stream's files, with the types DuckDB gives them together.
//
// The logs view reads the files of every stream in one scan, by name as
// soon as one stream has promoted columns, and lists a schema file of all
// of them first (under the name allStreams).
//
// A schema file is made when the set of the files' schemas
// (sink.FileInfo.SchemaID) changes to one of two or more and the columns
// are not those of the view's schema file already, in the tenant's
// results directory (which user SQL may read, and which is emptied when
// the engine starts), under directories that give it the lake's
// partition keys, with a name never used before: one the views no
// longer list is retired like a staging segment (deleted once no query
// can see it), and must not come back.

// A schema file that cannot be made (DuckDB cannot read the files'
// columns together, or the results directory cannot be written) leaves
// the views with the schema file they had, if any, and is tried again
// for the same schemas only after schemaRetry: views change with every
// staged segment, and each try reads every file's footer and logs the
// failure. A change of the schemas tries at once.

// schemaRetry is how long a stream's schemas whose schema file could not
// be made wait before it is tried again.
const schemaRetry = time.Minute

// schemaFailure is a schema file that could not be made: for which
// schemas (schemaKeyLocked) and when.
type schemaFailure struct {
	key string
	at  time.Time
}

// allStreams names the schema file of the logs view in
// catalog.schemaFiles: no stream has an empty name.
const allStreams = ""

// schemaFile is the schema file of a stream's views.
type schemaFile struct {
	// key is the stream's file schemas when it was made (schemaKeyLocked).
	key string
	// path is the schema file, or "" when the files share one schema.
	path string
	// cols hashes its columns' names and types.
	cols uint64
}

// schemaJob is a schema file to make: the union of the columns of paths,
// a stream's files and staging globs as of key.
type schemaJob struct {
	stream, key string
	paths       []string
	cur         schemaFile // the stream's schema file now
	made        schemaFile // the result; path "" if it could not be made
}

// schemaKeyLocked returns the schemas of the published and staged files
// of the streams in names as a comparable key, and whether there are two
// or more of them. A file of unknown schema counts as one of its own. mu
// must be held.
func (c *catalog) schemaKeyLocked(names []string) (key string, mixed bool) {
	var ids []uint64
	var unknown []string
	add := func(id uint64, path string) {
		if id == 0 {
			unknown = append(unknown, path)
		} else if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	in := make(map[string]bool, len(names))
	for _, s := range names {
		in[s] = true
		for _, p := range c.files[s] {
			add(c.schemas[p], p)
		}
	}
	for _, sf := range c.staged {
		if in[sf.stream] {
			add(sf.schema, sf.prefix)
		}
	}
	slices.Sort(ids)
	slices.Sort(unknown)
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(strconv.FormatUint(id, 16))
		b.WriteByte(',')
	}
	for _, p := range unknown {
		b.WriteString(p)
		b.WriteByte(0)
	}
	return b.String(), len(ids)+len(unknown) >= 2
}

// schemaJobsLocked brings the schema files of streams, and of logs, up
// to date as far as it can under mu: views whose files now share one
// schema lose theirs. It returns the schema files to make. mu must be
// held.
func (c *catalog) schemaJobsLocked(streams []string) []schemaJob {
	var jobs []schemaJob
	job := func(s string, names []string) {
		key, mixed := c.schemaKeyLocked(names)
		switch {
		case c.schemaFiles[s].key == key:
		case !mixed:
			delete(c.schemaFailed, s)
			c.setSchemaFileLocked(s, schemaFile{key: key})
		case c.schemaFailed[s].key == key && time.Since(c.schemaFailed[s].at) < c.schemaRetry:
			// Failed for these schemas lately: not yet again.
		default:
			var paths []string
			for _, n := range names {
				paths = append(paths, c.pathsLocked(n)...)
			}
			jobs = append(jobs, schemaJob{stream: s, key: key, paths: paths, cur: c.schemaFiles[s]})
		}
	}
	for _, s := range streams {
		if c.wide[s] { // else read by position: every file has the log schema's columns
			job(s, []string{s})
		}
	}
	// logs changes with every stream.
	if names, wide := c.logsStreamsLocked(streams); wide {
		job(allStreams, names)
	}
	return jobs
}

// setSchemaFileLocked records f as stream's schema file and retires the
// one it replaces once the views stop listing it. mu must be held.
func (c *catalog) setSchemaFileLocked(stream string, f schemaFile) {
	if old := c.schemaFiles[stream].path; old != "" && old != f.path {
		c.retiring = append(c.retiring, &stagedFile{stream: stream, segments: []string{old}})
	}
	if f == (schemaFile{}) {
		delete(c.schemaFiles, stream)
		return
	}
	c.schemaFiles[stream] = f
}

// makeSchemaFiles makes the schema files of jobs on conn, setting each
// job's path; one that fails is logged and left without (its stream's
// views read its files as before; see schemaRetry). It does not take mu;
// ddl must be held.
func (c *catalog) makeSchemaFiles(ctx context.Context, conn *sql.Conn, jobs []schemaJob) {
	for i := range jobs {
		j := &jobs[i]
		path, cols, err := c.makeSchemaFile(ctx, conn, j.paths, j.cur)
		if err != nil {
			c.log.Warn("query: schema file not made; views keep the one they had, if any", "stream", j.stream, "retry_after", schemaRetry, "err", err)
			continue
		}
		j.made = schemaFile{key: j.key, path: path, cols: cols}
	}
}

// makeSchemaFile returns the schema file of paths and the hash of its
// columns: cur's file if it has those columns, else a new one.
func (c *catalog) makeSchemaFile(ctx context.Context, conn *sql.Conn, paths []string, cur schemaFile) (string, uint64, error) {
	rows, err := conn.QueryContext(ctx, "DESCRIBE SELECT * FROM system.main.read_parquet(["+quoteList(paths)+"], union_by_name = true)")
	if err != nil {
		return "", 0, err
	}
	var cols []string
	h := fnv.New64a()
	for rows.Next() {
		var name, typ string
		var null, key, def, extra sql.NullString
		if err := rows.Scan(&name, &typ, &null, &key, &def, &extra); err != nil {
			rows.Close()
			return "", 0, err
		}
		cols = append(cols, "CAST(NULL AS "+typ+") AS "+quoteIdent(name))
		fmt.Fprintf(h, "%s\x00%s\x00", name, typ)
	}
	if err := rows.Close(); err != nil {
		return "", 0, err
	}
	if err := rows.Err(); err != nil {
		return "", 0, err
	}
	sum := h.Sum64()
	if cur.path != "" && cur.cols == sum {
		return cur.path, sum, nil
	}
	dir := filepath.Join(c.results, schemaDir, "tenant="+c.tenant, "stream=_", "date=1970-01-01", "hour=0")
	path := filepath.Join(dir, fmt.Sprintf("%016x-%d.parquet", sum, c.seq.Add(1)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	// Written beside its name and renamed into place, so a query never
	// reads a part-written file.
	tmp := path + ".tmp"
	copyStmt := "COPY (SELECT " + strings.Join(cols, ", ") + " LIMIT 0) TO " + quoteString(tmp) + " (FORMAT parquet)"
	if _, err := conn.ExecContext(ctx, copyStmt); err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	return path, sum, nil
}

// schemaDir holds the schema files, in the results directory.
const schemaDir = "columns"

// setSchemaFilesLocked records the schema files jobs made, and the
// failures of those they could not. mu must be held.
func (c *catalog) setSchemaFilesLocked(jobs []schemaJob, at time.Time) {
	for _, j := range jobs {
		if j.made.path == "" {
			c.schemaFailed[j.stream] = schemaFailure{key: j.key, at: at}
			continue
		}
		delete(c.schemaFailed, j.stream)
		c.setSchemaFileLocked(j.stream, j.made)
	}
}

// logsStreamsLocked returns the streams logs reads once streams have
// views, sorted, and whether one of them has promoted columns. mu must be
// held.
func (c *catalog) logsStreamsLocked(streams []string) (names []string, wide bool) {
	for s := range c.streams {
		names = append(names, s)
	}
	for _, s := range streams {
		if !c.streams[s] {
			names = append(names, s)
		}
	}
	slices.Sort(names)
	for _, s := range names {
		wide = wide || c.wide[s]
	}
	return names, wide
}

// scanLocked is viewQuery of paths, files of stream, with stream's schema
// file first when it has one. mu must be held.
func (c *catalog) scanLocked(stream string, paths []string) string {
	return viewQuery(paths, c.wide[stream], c.schemaFiles[stream].path)
}
