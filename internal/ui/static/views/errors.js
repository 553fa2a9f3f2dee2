// Top errors: error (or warning) records grouped by log pattern, with a
// sparkline of each pattern over the time range. The counts come from
// countsFrom, so over long ranges they cost minutes of rollups rather
// than rows.

import {sql} from '../api.js';
import {h, clear, fmtNum, fmtTime, errorBox, isAbort, Loads} from '../dom.js';
import {countsFrom, rangeConds, where, str, int, tsLit, MINUTE, ROLLUP_SPAN, filtersToParams, emptyFilters} from '../sqlutil.js';
import {sparkline} from '../chart.js';

const LIMIT = 50;
const SPARK_BUCKETS = 30;

let el;
let ctx;
const loads = new Loads();
let warn;
let body;
let lastParams = new URLSearchParams();

function mount(root, c) {
  el = root;
  ctx = c;
  warn = h('input', {type: 'checkbox', id: 'errors-warn'});
  warn.addEventListener('change', () => {
    const p = new URLSearchParams();
    if (warn.checked) p.set('warn', '1');
    ctx.navigate('errors', p);
  });
  body = h('div', {id: 'errors-body'});
  el.append(h('h2', {class: 'sr-title'}, 'Top errors'),
    h('div', {class: 'toolbar'}, h('label', {class: 'check', for: 'errors-warn'}, warn, 'Include warnings (severity ≥ 13; otherwise ≥ 17)'),
      h('span', {class: 'muted'}, 'Records are grouped by the attribute pattern.id that the pattern processor sets (docs/transforms.md).')),
    body);
}

function show(params, {force} = {}) {
  lastParams = new URLSearchParams(params);
  warn.checked = params.get('warn') === '1';
  const key = params.toString() + '|' + JSON.stringify(ctx.range);
  if (!loads.changed(key, force)) return;
  load();
}

async function load() {
  const signal = loads.begin();
  el.dataset.state = 'loading';
  const minSev = warn.checked ? 13 : 17;
  try {
    const range = await ctx.resolveRange({signal});
    const sev = `severity_number >= ${int(minSev)}`;
    const groups = await sql(`SELECT pattern_id, string_agg(DISTINCT stream, ', ' ORDER BY stream) AS streams,
        sum(n)::BIGINT AS records, max(t) AS last_minute
      FROM ${countsFrom(range, MINUTE)} WHERE ${sev} GROUP BY pattern_id ORDER BY records DESC, pattern_id LIMIT ${LIMIT}`, {signal});
    const trends = new Map();
    if (groups.rows.length) {
      // Each pattern's template (or, without one, a body) and the time of
      // its last record come from its last minute only.
      const last = groups.rows.map((r) => Number(r.last_minute));
      const lastConds = groups.rows.map((r) => `(${r.pattern_id === null ? `attributes['pattern.id'] IS NULL` : `attributes['pattern.id'] = ${str(r.pattern_id)}`}
        AND timestamp >= ${tsLit(r.last_minute)})`);
      const recent = {from: Math.max(range.from, Math.min(...last)), to: range.to};
      const details = sql(`SELECT attributes['pattern.id'] AS pattern_id,
          coalesce(any_value(attributes['pattern.template']), any_value(body)) AS template, max(timestamp) AS last_seen
        FROM logs ${where([...rangeConds(recent), sev, `(${lastConds.join(' OR ')})`])} GROUP BY 1`, {signal});
      const span = range.to - range.from;
      // Whole minutes when the counts come from log_counts.
      const bucket = span >= ROLLUP_SPAN ? Math.ceil(span / SPARK_BUCKETS / MINUTE) * MINUTE : Math.max(1, Math.ceil(span / SPARK_BUCKETS));
      const first = Math.floor(range.from / bucket);
      const buckets = Math.floor((range.to - 1) / bucket) - first + 1;
      const ids = groups.rows.filter((r) => r.pattern_id !== null).map((r) => str(r.pattern_id));
      const match = [];
      if (ids.length) match.push(`pattern_id IN (${ids.join(', ')})`);
      if (groups.rows.some((r) => r.pattern_id === null)) match.push('pattern_id IS NULL');
      const [doc, more] = await Promise.all([
        sql(`SELECT pattern_id, t // ${int(bucket)} AS i, sum(n)::BIGINT AS n
          FROM ${countsFrom(range, bucket)} WHERE ${sev} AND (${match.join(' OR ')}) GROUP BY ALL`, {signal, maxRows: 100000}),
        details,
      ]);
      for (const r of doc.rows) {
        const k = r.pattern_id;
        if (!trends.has(k)) trends.set(k, new Array(buckets).fill(0));
        const i = Number(r.i) - first;
        if (i >= 0 && i < buckets) trends.get(k)[i] += Number(r.n);
      }
      const byId = new Map(more.rows.map((r) => [r.pattern_id, r]));
      for (const r of groups.rows) Object.assign(r, byId.get(r.pattern_id) || {template: '', last_seen: null});
    }
    if (signal.aborted) return;
    render(groups, trends, minSev);
    el.dataset.state = 'ready';
  } catch (err) {
    if (isAbort(err)) return;
    clear(body, errorBox(err));
    el.dataset.state = 'error';
  }
}

function render(groups, trends, minSev) {
  if (!groups.rows.length) {
    clear(body, h('div', {class: 'card empty'}, `No records of severity ${minSev} or more in ${ctx.rangeLabel()}. `,
      ctx.range.kind !== 'all' ? h('button', {type: 'button', onclick: () => ctx.setRange({kind: 'all'})}, 'Show all time') : null,
      minSev > 13 ? h('button', {type: 'button', onclick: () => { warn.checked = true; warn.dispatchEvent(new Event('change')); }}, 'Include warnings') : null));
    return;
  }
  const open = (r) => {
    const f = emptyFilters();
    f.sev = minSev;
    if (r.pattern_id !== null) f.attrs.push(['pattern.id', r.pattern_id]);
    else if (!r.streams.includes(',')) f.stream = r.streams;
    ctx.navigate('explore', filtersToParams(f));
  };
  clear(body, h('div', {class: 'scroll'}, h('table', {class: 'grid', id: 'errors-table'},
    h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Pattern'), h('th', {scope: 'col'}, 'Streams'), h('th', {class: 'num', scope: 'col'}, 'Records'),
      h('th', {scope: 'col'}, `Trend (${ctx.rangeLabel()})`), h('th', {scope: 'col'}, 'Last seen (UTC)'))),
    h('tbody', {}, groups.rows.map((r) => {
      const label = r.pattern_id === null ? `(no pattern id) e.g. ${r.template}` : r.template;
      const link = h('button', {type: 'button', class: 'val', title: 'Show these records in Explore', onclick: () => open(r)}, label);
      const tr = h('tr', {class: 'clickable pattern', 'data-pattern': r.pattern_id === null ? '' : r.pattern_id},
        h('td', {class: 'body'}, link),
        h('td', {}, r.streams),
        h('td', {class: 'num'}, fmtNum(r.records)),
        h('td', {}, sparkline(trends.get(r.pattern_id) || [], {color: minSev >= 17 ? '#c62828' : '#a15f00'})),
        h('td', {class: 'time'}, fmtTime(r.last_seen)));
      tr.addEventListener('click', (e) => { if (e.target !== link) open(r); });
      return tr;
    })))));
}

function hide() {
  loads.reset();
}

export default {mount, show, hide, refresh: load, lastParams: () => new URLSearchParams(lastParams)};
