// Overview: volume over time by severity, totals per stream and service,
// and the ingest rate. The counts come from countsFrom, so over long
// ranges they cost minutes of rollups rather than rows.

import {sql, getJSON} from '../api.js';
import {h, clear, fmtNum, fmtTime, fmtDuration, errorBox, isAbort, Loads} from '../dom.js';
import {countsFrom, bucketFor, SEVERITIES, SEV_CLASS_SQL, filtersToParams, emptyFilters} from '../sqlutil.js';
import {stackedHistogram, swatch, chartWidth} from '../chart.js';

let el;
let ctx;
const loads = new Loads();

function mount(root, c) {
  el = root;
  ctx = c;
  el.append(h('h2', {class: 'sr-title'}, 'Overview'), h('div', {id: 'ov-body'}, h('div', {class: 'empty'}, 'Loading…')));
}

function show(params, {force} = {}) {
  const key = JSON.stringify(ctx.range);
  if (!loads.changed(key, force)) return;
  load();
}

async function load() {
  const signal = loads.begin();
  el.dataset.state = 'loading';
  const body = document.getElementById('ov-body');
  try {
    const range = await ctx.resolveRange({signal});
    const bucket = bucketFor(range, 80);
    const counts = countsFrom(range, bucket);
    const totals = (key) => `SELECT ${key}, sum(n)::BIGINT AS records,
        coalesce(sum(n) FILTER (WHERE severity_number BETWEEN 13 AND 16), 0)::BIGINT AS warnings,
        coalesce(sum(n) FILTER (WHERE severity_number >= 17), 0)::BIGINT AS errors
        FROM ${counts} GROUP BY ALL ORDER BY records DESC, 1 LIMIT 100`;
    const [hist, streams, services, rate, ingest] = await Promise.all([
      sql(`SELECT t, ${SEV_CLASS_SQL} AS c, sum(n)::BIGINT AS n FROM ${counts} GROUP BY ALL`, {signal, maxRows: 100000}),
      sql(totals('stream'), {signal}),
      sql(totals('service_name AS service'), {signal}),
      sql(`SELECT count(*) AS n FROM logs WHERE observed_timestamp >= now() - INTERVAL 1 MINUTE`, {signal}),
      getJSON('/ui/ingest', {signal}),
    ]);
    if (signal.aborted) return;
    render(body, range, bucket, hist, streams, services, rate, ingest.endpoints || []);
    el.dataset.state = 'ready';
  } catch (err) {
    if (isAbort(err)) return;
    clear(body, errorBox(err));
    el.dataset.state = 'error';
  }
}

function render(body, range, bucket, hist, streams, services, rate, endpoints) {
  const total = streams.rows.reduce((a, r) => a + Number(r.records), 0);
  const warnings = streams.rows.reduce((a, r) => a + Number(r.warnings), 0);
  const errs = streams.rows.reduce((a, r) => a + Number(r.errors), 0);
  const lastMinute = Number(rate.rows[0].n);
  const stats = h('div', {class: 'stats'},
    stat('Records', fmtNum(total), `in ${ctx.rangeLabel()}`, 'ov-total'),
    stat('Warnings', fmtNum(warnings), 'severity 13–16', 'ov-warnings'),
    stat('Errors and worse', fmtNum(errs), 'severity ≥ 17', 'ov-errors'),
    stat('Ingest rate now', `${fmtNum(lastMinute / 60)}/s`, `${fmtNum(lastMinute)} records received in the last minute`, 'ov-rate'));

  if (total === 0) {
    clear(body, stats, h('div', {class: 'card empty', id: 'ov-empty'}, `No records in ${ctx.rangeLabel()}. `,
      ctx.range.kind !== 'all' ? h('button', {type: 'button', onclick: () => ctx.setRange({kind: 'all'})}, 'Show all time') : null),
    ingestCard(endpoints));
    return;
  }
  const series = SEVERITIES.map((sv) => ({key: sv.c, label: sv.name, color: sv.color, counts: new Map()}));
  for (const r of hist.rows) series[Number(r.c)].counts.set(Number(r.t), Number(r.n));
  const present = series.filter((se) => se.counts.size > 0);
  const chart = stackedHistogram({from: range.from, to: range.to, bucketMs: bucket, series: present, width: chartWidth(body) - 26,
    onPick: (from, to) => ctx.setRange({kind: 'custom', from, to})});
  const histCard = h('div', {class: 'card', id: 'ov-hist'},
    h('h3', {}, `Log volume by severity, per ${fmtDuration(bucket)}`),
    h('div', {class: 'muted'}, `${fmtTime(range.from)} – ${fmtTime(range.to)} UTC. Click a bar to zoom in.`),
    chart,
    h('div', {class: 'legend'}, present.map((se) => h('span', {}, swatch(se.color), `${se.label} (${fmtNum([...se.counts.values()].reduce((a, b) => a + b, 0))})`))));

  const filterLink = (field, value) => h('button', {type: 'button', class: 'val', title: `Explore ${field} ${value}`, onclick: () => {
    const f = emptyFilters();
    f[field] = value;
    ctx.navigate('explore', filtersToParams(f));
  }}, value || '(none)');
  const totalsTable = (id, title, keyCol, field, doc) => h('div', {class: 'card', id},
    h('h3', {}, title),
    h('div', {class: 'scroll'}, h('table', {class: 'grid'},
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, keyCol), h('th', {class: 'num', scope: 'col'}, 'Records'),
        h('th', {class: 'num', scope: 'col'}, 'Warnings'), h('th', {class: 'num', scope: 'col'}, 'Errors+'),
        h('th', {class: 'num', scope: 'col'}, 'Share'))),
      h('tbody', {}, doc.rows.map((r) => h('tr', {},
        h('td', {}, filterLink(field, r[keyCol.toLowerCase()])),
        h('td', {class: 'num'}, fmtNum(r.records)),
        h('td', {class: 'num'}, fmtNum(r.warnings)),
        h('td', {class: 'num'}, fmtNum(r.errors)),
        h('td', {class: 'num'}, `${(100 * Number(r.records) / total).toFixed(1)}%`)))))));
  clear(body, stats, histCard, h('div', {class: 'row'},
    totalsTable('ov-streams', 'Records per stream', 'Stream', 'stream', streams),
    totalsTable('ov-services', 'Records per service', 'Service', 'service', services)),
  ingestCard(endpoints));
}

// ingestCard shows what each ingest endpoint (protocol) took since the
// server started: records, bytes, dead letters and refused pushes.
function ingestCard(endpoints) {
  if (endpoints.length === 0) return null;
  const refused = (e) => Object.values(e.errors || {}).reduce((a, n) => a + Number(n), 0);
  const reasons = (e) => Object.entries(e.errors || {}).map(([code, n]) => `${code} ${fmtNum(n)}`).join(', ');
  return h('div', {class: 'card', id: 'ov-ingest'},
    h('h3', {}, 'Ingest by endpoint, since the server started'),
    h('div', {class: 'scroll'}, h('table', {class: 'grid'},
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Endpoint'), h('th', {class: 'num', scope: 'col'}, 'Records'),
        h('th', {class: 'num', scope: 'col'}, 'Bytes'), h('th', {class: 'num', scope: 'col'}, 'Dead letters'),
        h('th', {class: 'num', scope: 'col'}, 'Refused'), h('th', {scope: 'col'}, 'Why refused'))),
      h('tbody', {}, endpoints.map((e) => h('tr', {'data-endpoint': e.endpoint},
        h('td', {}, e.endpoint),
        h('td', {class: 'num'}, fmtNum(e.records)),
        h('td', {class: 'num'}, fmtNum(e.bytes)),
        h('td', {class: 'num'}, fmtNum(e.dead_lettered)),
        h('td', {class: 'num'}, fmtNum(refused(e))),
        h('td', {}, reasons(e))))))));
}

function stat(label, value, note, id) {
  return h('div', {class: 'stat', id}, h('div', {class: 'k'}, label), h('div', {class: 'v'}, value), h('div', {class: 'k'}, note));
}

function hide() {
  loads.reset();
}

export default {mount, show, hide, refresh: load};
