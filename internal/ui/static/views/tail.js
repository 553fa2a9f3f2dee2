// Live tail: records as they arrive, through TailService.Tail over the
// Connect protocol. Stream, service, minimum severity and body text are
// filtered by the server; attribute, resource and id filters here.

import {tail} from '../api.js';
import {h, clear, fmtNum, fmtTime, isAbort} from '../dom.js';
import {filtersFromParams, filtersToParams, sevClass, SEVERITIES} from '../sqlutil.js';
import {filterForm} from '../filters.js';

const MAX_ROWS = 500; // rows kept on screen
const MAX_PENDING = 5000; // records held while paused

const SEV_NAMES = Object.fromEntries(
  ['UNSPECIFIED', 'TRACE', 'TRACE2', 'TRACE3', 'TRACE4', 'DEBUG', 'DEBUG2', 'DEBUG3', 'DEBUG4', 'INFO', 'INFO2', 'INFO3', 'INFO4',
    'WARN', 'WARN2', 'WARN3', 'WARN4', 'ERROR', 'ERROR2', 'ERROR3', 'ERROR4', 'FATAL', 'FATAL2', 'FATAL3', 'FATAL4']
    .map((n, i) => [`SEVERITY_NUMBER_${n}`, i]));

let el;
let ctx;
let form;
let rowsEl;
let statusEl;
let countsEl;
let startBtn;
let pauseBtn;
let abort = null;
let filters = null;
let paused = false;
let pending = [];
let dropped = 0; // records that found the pause buffer full
let received = 0;
let missed = 0;
let lastParams = new URLSearchParams();

function mount(root, c) {
  el = root;
  ctx = c;
  form = filterForm(ctx, {prefix: 'tail', live: true, onApply: (f) => ctx.navigate('tail', filtersToParams(f))});
  statusEl = h('span', {id: 'tail-status', role: 'status'}, 'stopped');
  countsEl = h('span', {id: 'tail-counts', class: 'muted'});
  startBtn = h('button', {type: 'button', id: 'tail-start', onclick: () => (abort ? stop() : start())}, 'Start');
  pauseBtn = h('button', {type: 'button', id: 'tail-pause', 'aria-pressed': 'false', onclick: togglePause}, 'Pause');
  rowsEl = h('tbody', {id: 'tail-rows'});
  el.append(h('h2', {class: 'sr-title'}, 'Live tail'), h('div', {class: 'card'}, form.el),
    h('div', {class: 'toolbar'}, startBtn, pauseBtn,
      h('button', {type: 'button', onclick: () => { clear(rowsEl); received = 0; missed = 0; counts(); }}, 'Clear'),
      statusEl, h('span', {class: 'spacer'}), countsEl),
    h('div', {class: 'scroll', tabindex: 0, 'aria-label': 'Live records, newest first'}, h('table', {class: 'grid', id: 'tail-table'},
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Time (UTC)'), h('th', {scope: 'col'}, 'Stream'), h('th', {scope: 'col'}, 'Severity'),
        h('th', {scope: 'col'}, 'Service'), h('th', {scope: 'col'}, 'Body'))),
      rowsEl)));
}

function show(params) {
  lastParams = new URLSearchParams(params);
  const f = filtersFromParams(params);
  form.set(f);
  if (abort && JSON.stringify(f) === JSON.stringify(filters)) return;
  filters = f;
  start();
}

function status(text, state) {
  statusEl.textContent = text;
  el.dataset.state = state;
}

function counts() {
  countsEl.textContent = `${fmtNum(received)} received` + (missed ? `, ${fmtNum(missed)} missed` : '') +
    (paused ? `, ${fmtNum(pending.length)} waiting` : '');
}

async function start() {
  stop();
  const ac = new AbortController();
  abort = ac;
  startBtn.textContent = 'Stop';
  status('connecting…', 'loading');
  const req = {streams: filters.stream ? [filters.stream] : [], service: filters.service, minSeverityNumber: filters.sev, contains: filters.q};
  try {
    await tail(req, {signal: ac.signal, onMessage: (msg) => {
      if (abort !== ac) return;
      if (el.dataset.state !== 'ready') status('live', 'ready');
      const n = Number(msg.missed || 0);
      if (n > 0) notice(`Missed ${fmtNum(n)} records: this viewer fell behind the stream.`, n);
      for (const tr of msg.records || []) {
        const r = flatten(tr);
        if (!matches(r)) continue;
        received++;
        if (!paused) addRow(r, true);
        else if (pending.length < MAX_PENDING) pending.push(r);
        else dropped++;
      }
      counts();
    }});
    if (abort === ac) status('ended by the server', 'error');
  } catch (err) {
    if (isAbort(err) || abort !== ac) return;
    status(`disconnected: ${err.message}`, 'error');
  }
  if (abort === ac) {
    abort = null;
    startBtn.textContent = 'Start';
  }
}

function stop() {
  if (abort) abort.abort();
  abort = null;
  startBtn.textContent = 'Start';
  status('stopped', 'stopped');
}

function togglePause() {
  paused = !paused;
  pauseBtn.textContent = paused ? 'Resume' : 'Pause';
  pauseBtn.setAttribute('aria-pressed', String(paused));
  if (!paused) {
    for (const r of pending.slice(-MAX_ROWS)) addRow(r, false);
    pending = [];
    if (dropped) notice(`Missed ${fmtNum(dropped)} records while paused: the pause buffer holds ${fmtNum(MAX_PENDING)}.`, dropped);
    dropped = 0;
  }
  counts();
}

function flatten(tr) {
  const rec = tr.record || {};
  const kv = (list) => Object.fromEntries((list || []).map((a) => [a.key, anyValue(a.value)]));
  const sev = typeof rec.severityNumber === 'number' ? rec.severityNumber : SEV_NAMES[rec.severityNumber] || 0;
  const ns = rec.timeUnixNano ? BigInt(rec.timeUnixNano) : 0n;
  const attributes = kv(rec.attributes);
  const resource = kv(rec.resource);
  return {stream: tr.stream, offset: tr.offset, partition: tr.partition || 0, ms: Number(ns / 1000000n), sev, severityText: rec.severityText || '',
    body: rec.body || '', attributes, resource, service: resource['service.name'] || '', traceId: rec.traceId || '', spanId: rec.spanId || ''};
}

function anyValue(v) {
  if (!v) return '';
  if ('stringValue' in v) return v.stringValue;
  for (const k of ['boolValue', 'intValue', 'doubleValue', 'bytesValue']) if (k in v) return String(v[k]);
  return JSON.stringify(v);
}

// matches applies the filters the server does not (trace and span ids
// arrive base64-encoded and are compared as hex).
function matches(r) {
  for (const [k, v] of filters.attrs) if (r.attributes[k] !== v) return false;
  for (const [k, v] of filters.res) if (r.resource[k] !== v) return false;
  if (filters.trace && b64hex(r.traceId) !== filters.trace) return false;
  if (filters.span && b64hex(r.spanId) !== filters.span) return false;
  return true;
}

function b64hex(b64) {
  if (!b64) return '';
  return [...atob(b64)].map((c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
}

function addRow(r, fresh) {
  const c = sevClass(r.sev);
  rowsEl.prepend(h('tr', {class: fresh ? 'new record' : 'record', 'data-stream': r.stream, 'data-offset': r.offset},
    h('td', {class: 'time'}, fmtTime(r.ms)),
    h('td', {}, r.stream),
    h('td', {}, h('span', {class: `sev sev-${c}`}, r.severityText || SEVERITIES[c].name)),
    h('td', {}, r.service),
    h('td', {class: 'body'}, r.body)));
  trim();
}

function notice(text, n) {
  missed += n;
  rowsEl.prepend(h('tr', {class: 'missed'}, h('td', {colspan: 5}, h('div', {class: 'notice', role: 'status'}, text))));
  trim();
}

function trim() {
  while (rowsEl.children.length > MAX_ROWS) rowsEl.lastElementChild.remove();
}

function hide() {
  stop();
}

export default {mount, show, hide, lastParams: () => new URLSearchParams(lastParams)};
