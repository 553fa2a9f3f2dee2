// Building SQL. Every value that goes into a statement passes through str
// (a string literal, quotes doubled), int (a checked integer) or tsLit
// (a timestamp literal from a number); identifiers come only from fixed
// lists. Only SELECT statements are built.

export function str(v) {
  return "'" + String(v).replaceAll("'", "''") + "'";
}

export function int(v) {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${v}`);
  return String(n);
}

export function tsLit(ms) {
  return `${str(new Date(Number(int(ms))).toISOString())}::TIMESTAMPTZ`;
}

// likeContains is an ILIKE condition matching text anywhere in col.
export function likeContains(col, text) {
  const pat = '%' + String(text).replace(/[\\%_]/g, (m) => '\\' + m) + '%';
  return `${col} ILIKE ${str(pat)} ESCAPE '\\'`;
}

// Severity classes: 0 unspecified, then TRACE..FATAL for numbers 1-24,
// four numbers each.
export const SEVERITIES = [
  {c: 0, name: 'UNSET', min: 0, color: '#6b7280'},
  {c: 1, name: 'TRACE', min: 1, color: '#8fa3b3'},
  {c: 2, name: 'DEBUG', min: 5, color: '#3b82c4'},
  {c: 3, name: 'INFO', min: 9, color: '#2e7d32'},
  {c: 4, name: 'WARN', min: 13, color: '#e09000'},
  {c: 5, name: 'ERROR', min: 17, color: '#c62828'},
  {c: 6, name: 'FATAL', min: 21, color: '#6a1b9a'},
];

export function sevClass(n) {
  n = Number(n) || 0;
  return n <= 0 ? 0 : Math.min(6, Math.floor((n + 3) / 4));
}

// SEV_CLASS_SQL is the severity class of a row, as sevClass computes it.
export const SEV_CLASS_SQL = 'least(6, (severity_number + 3) // 4)';

// Nice bucket widths for time histograms, in milliseconds.
const BUCKETS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 172800, 604800, 1209600, 2592000, 7776000, 15552000, 31536000].map((s) => s * 1000);

// bucketFor picks a bucket width giving at most about n buckets.
export function bucketFor(range, n = 80) {
  const span = Math.max(1, range.to - range.from);
  return BUCKETS.find((b) => span / b <= n) || BUCKETS[BUCKETS.length - 1];
}

// rangeConds restricts rows to [from, to); the date condition lets DuckDB
// skip whole date= directories of the lake.
export function rangeConds(range, col = 'timestamp') {
  if (!range) return [];
  const d = (ms) => str(new Date(ms).toISOString().slice(0, 10));
  return [
    `${col} >= ${tsLit(range.from)}`,
    `${col} < ${tsLit(range.to)}`,
    `date BETWEEN ${d(range.from)}::DATE AND ${d(range.to)}::DATE`,
  ];
}

export const MINUTE = 60000;

// ROLLUP_SPAN is the shortest range whose counts come from log_counts:
// shorter ranges hold few enough rows that counting them in logs costs
// less than the view's part that counts the files compaction has not yet
// rolled up, which covers every hot minute whatever the range.
export const ROLLUP_SPAN = 30 * MINUTE;

// countsFrom returns a subquery counting the rows of [range.from,
// range.to) by stream, service_name, severity_number and pattern_id
// (attributes['pattern.id']) in buckets of bucketMs: t is the start of a
// row's bucket in epoch milliseconds, a multiple of bucketMs, and n the
// rows. When the bucket is a whole number of minutes and the range is
// long, its whole minutes come from the log_counts view, which answers
// from the rollups compaction writes rather than from the rows
// (docs/format.md, "SQL views"), and only the part minutes at either end
// are counted in logs; the counts are the same either way.
export function countsFrom(range, bucketMs) {
  const b = int(bucketMs);
  const rows = (r) => `SELECT stream, service_name, severity_number, attributes['pattern.id'] AS pattern_id,
    (epoch_ms(timestamp) // ${b}) * ${b} AS t, count(*) AS n FROM logs ${where(rangeConds(r))} GROUP BY ALL`;
  const first = Math.ceil(range.from / MINUTE) * MINUTE;
  const end = Math.floor(range.to / MINUTE) * MINUTE;
  if (bucketMs % MINUTE !== 0 || range.to - range.from < ROLLUP_SPAN || first >= end) return `(${rows(range)})`;
  const parts = [`SELECT stream, service_name, severity_number, pattern_id, (epoch_ms(minute) // ${b}) * ${b} AS t, sum(n)::BIGINT AS n
    FROM log_counts ${where(rangeConds({from: first, to: end}, 'minute'))} GROUP BY ALL`];
  if (range.from < first) parts.push(rows({from: range.from, to: first}));
  if (end < range.to) parts.push(rows({from: end, to: range.to}));
  return `(${parts.join(' UNION ALL ')})`;
}

// Filters, as Explore and Live tail share them:
//   {stream, service, sev, q, attrs: [[k, v]], res: [[k, v]], trace, span}
export function emptyFilters() {
  return {stream: '', service: '', sev: 0, q: '', attrs: [], res: [], trace: '', span: ''};
}

export function filterConds(f) {
  const c = [];
  if (f.stream) c.push(`stream = ${str(f.stream)}`);
  if (f.service) c.push(`service_name = ${str(f.service)}`);
  if (f.sev > 0) c.push(`severity_number >= ${int(f.sev)}`);
  if (f.q) c.push(likeContains('body', f.q));
  for (const [k, v] of f.attrs) c.push(`attributes[${str(k)}] = ${str(v)}`);
  for (const [k, v] of f.res) c.push(`resource[${str(k)}] = ${str(v)}`);
  if (f.trace) c.push(`trace_id = ${str(f.trace)}`);
  if (f.span) c.push(`span_id = ${str(f.span)}`);
  return c;
}

export function where(conds) {
  return conds.length ? 'WHERE ' + conds.join(' AND ') : '';
}

// Explore's order and the keyset that continues it. (timestamp, _offset)
// comes first as the page key; stream and _partition break the ties
// between streams and partitions, whose offsets are counted separately.
export const PAGE_ORDER = 'ORDER BY timestamp DESC, _offset DESC, stream DESC, _partition DESC';

export function keysetCond(last) {
  const t = `${str(last.timestamp)}::TIMESTAMPTZ`;
  return `timestamp <= ${t} AND (timestamp, _offset, stream, _partition) < (${t}, ${int(last._offset)}, ${str(last.stream)}, ${int(last._partition)})`;
}

// filtersToParams and filtersFromParams map filters to URL parameters.
export function filtersToParams(f, p = new URLSearchParams()) {
  if (f.stream) p.set('stream', f.stream);
  if (f.service) p.set('service', f.service);
  if (f.sev > 0) p.set('sev', String(f.sev));
  if (f.q) p.set('q', f.q);
  for (const [k, v] of f.attrs) p.append('attr', `${k}=${v}`);
  for (const [k, v] of f.res) p.append('res', `${k}=${v}`);
  if (f.trace) p.set('trace', f.trace);
  if (f.span) p.set('span', f.span);
  return p;
}

export function filtersFromParams(p) {
  const kv = (s) => {
    const i = s.indexOf('=');
    return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
  };
  const sev = Number(p.get('sev'));
  return {
    stream: p.get('stream') || '',
    service: p.get('service') || '',
    sev: Number.isInteger(sev) && sev > 0 && sev <= 24 ? sev : 0,
    q: p.get('q') || '',
    attrs: p.getAll('attr').map(kv),
    res: p.getAll('res').map(kv),
    trace: p.get('trace') || '',
    span: p.get('span') || '',
  };
}

// substitute replaces a dashboard panel's time placeholders.
export function substitute(sqlText, range, bucketMs) {
  const secs = Math.max(1, Math.round(bucketMs / 1000));
  const vars = {
    '$__timeFilter': `(${rangeConds(range).join(' AND ')})`,
    '$__from': tsLit(range.from),
    '$__to': tsLit(range.to),
    '$__interval_ms': int(bucketMs),
    '$__interval': `INTERVAL ${str(secs + ' seconds')}`,
  };
  return sqlText.replace(/\$__(timeFilter|from|to|interval_ms|interval)\b/g, (m) => vars[m]);
}
