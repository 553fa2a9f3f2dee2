// Explore: filtered records, newest first, with keyset pagination.

import {sql} from '../api.js';
import {h, clear, fmtNum, fmtTime, errorBox, isAbort, toast} from '../dom.js';
import {rangeConds, filterConds, where, PAGE_ORDER, keysetCond, filtersFromParams, filtersToParams, sevClass, SEVERITIES} from '../sqlutil.js';
import {filterForm} from '../filters.js';

const PAGE = 100;
const MAX_SHOWN = 5000; // rows kept on the page; past this, narrow the filters

let el;
let ctx;
let form;
let abort = null;
let lastKey = null;
let lastParams = new URLSearchParams();
let state = null; // {filters, range, last, done}
let rowsEl;
let summary;
let more;
let resultEl;

function mount(root, c) {
  el = root;
  ctx = c;
  form = filterForm(ctx, {prefix: 'explore', onApply: (f) => ctx.navigate('explore', filtersToParams(f))});
  summary = h('div', {class: 'muted', id: 'explore-summary', role: 'status'});
  rowsEl = h('tbody', {id: 'explore-rows'});
  more = h('button', {type: 'button', id: 'explore-more', hidden: true, onclick: () => page().catch(() => {})}, 'Load more');
  resultEl = h('div', {id: 'explore-result'});
  el.append(h('h2', {class: 'sr-title'}, 'Explore'), h('div', {class: 'card'}, form.el), summary, resultEl,
    h('div', {class: 'scroll', tabindex: 0, 'aria-label': 'Records'}, h('table', {class: 'grid', id: 'explore-table'},
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, h('span', {class: 'sr-title'}, 'Details')), h('th', {scope: 'col'}, 'Time (UTC)'),
        h('th', {scope: 'col'}, 'Stream'), h('th', {scope: 'col'}, 'Severity'), h('th', {scope: 'col'}, 'Service'), h('th', {scope: 'col'}, 'Body'))),
      rowsEl)),
    h('p', {}, more));
}

function show(params, {force} = {}) {
  const key = params.toString() + '|' + JSON.stringify(ctx.range);
  lastParams = new URLSearchParams(params);
  const filters = filtersFromParams(params);
  form.set(filters);
  if (!force && key === lastKey) return;
  lastKey = key;
  run(filters);
}

async function run(filters) {
  if (abort) abort.abort();
  const ac = new AbortController();
  abort = ac;
  el.dataset.state = 'loading';
  clear(rowsEl);
  clear(resultEl);
  more.hidden = true;
  summary.textContent = 'Searching…';
  try {
    const range = await ctx.resolveRange({signal: ac.signal});
    state = {filters, range, last: null, done: false, shown: 0};
    const conds = [...rangeConds(range), ...filterConds(filters)];
    const counting = sql(`SELECT count(*) AS n FROM logs ${where(conds)}`, {signal: ac.signal});
    await page();
    const n = Number((await counting).rows[0].n);
    if (abort !== ac) return;
    state.total = n;
    updateSummary();
  } catch (err) {
    if (isAbort(err)) return;
    clear(resultEl, errorBox(err));
    summary.textContent = '';
    el.dataset.state = 'error';
  }
}

function updateSummary() {
  const total = state.total === undefined ? '…' : fmtNum(state.total);
  summary.textContent = `${total} records match in ${ctx.rangeLabel()}; showing the newest ${fmtNum(state.shown)}.`;
}

// page loads the next page after the last row shown.
async function page() {
  const ac = abort;
  const conds = [...rangeConds(state.range), ...filterConds(state.filters)];
  if (state.last) conds.push(keysetCond(state.last));
  more.disabled = true;
  el.dataset.state = 'loading';
  try {
    const doc = await sql(`SELECT * FROM logs ${where(conds)} ${PAGE_ORDER} LIMIT ${PAGE}`, {signal: ac.signal, maxRows: PAGE});
    if (abort !== ac) return;
    for (const r of doc.rows) rowsEl.append(...row(r, doc.columns));
    state.shown += doc.rows.length;
    if (doc.rows.length) state.last = doc.rows[doc.rows.length - 1];
    state.done = doc.rows.length < PAGE;
    more.hidden = state.done || state.shown >= MAX_SHOWN;
    if (!state.done && state.shown >= MAX_SHOWN) {
      clear(resultEl, h('div', {class: 'notice'}, `Showing the newest ${fmtNum(MAX_SHOWN)} records; narrow the filters or the time range to see older ones.`));
    }
    more.disabled = false;
    if (state.shown === 0) {
      clear(resultEl, h('div', {class: 'card empty'}, `No records match in ${ctx.rangeLabel()}. `,
        ctx.range.kind !== 'all' ? h('button', {type: 'button', onclick: () => ctx.setRange({kind: 'all'})}, 'Search all time') : null));
    }
    updateSummary();
    el.dataset.state = 'ready';
  } catch (err) {
    more.disabled = false;
    if (isAbort(err)) return;
    clear(resultEl, errorBox(err));
    el.dataset.state = 'error';
    throw err;
  }
}

function sevBadge(n, text) {
  const c = sevClass(n);
  return h('span', {class: `sev sev-${c}`, title: `severity ${n}`}, text || SEVERITIES[c].name);
}

function row(r, columns) {
  const detail = h('tr', {class: 'detail', hidden: true}, h('td', {colspan: 6}));
  const toggle = h('button', {type: 'button', class: 'expander', 'aria-expanded': 'false', 'aria-label': 'Show every field'}, '▸');
  const tr = h('tr', {class: 'clickable record', 'data-stream': r.stream, 'data-offset': r._offset},
    h('td', {}, toggle),
    h('td', {class: 'time'}, fmtTime(r.timestamp)),
    h('td', {}, r.stream),
    h('td', {}, sevBadge(r.severity_number, r.severity_text)),
    h('td', {}, r.service_name),
    h('td', {class: 'body'}, r.body));
  const flip = () => {
    const open = detail.hidden;
    if (open && !detail.firstChild.firstChild) detail.firstChild.append(fields(r, columns));
    detail.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    toggle.textContent = open ? '▾' : '▸';
  };
  tr.addEventListener('click', (e) => {
    if (e.target.closest('button') && e.target !== toggle) return;
    if (window.getSelection().toString()) return; // selecting text, not opening
    flip();
  });
  toggle.addEventListener('click', (e) => { e.stopPropagation(); flip(); });
  return [tr, detail];
}

// fields lists every field of a record; values that can be filters are
// buttons that add them.
function fields(r, columns) {
  const rows = [];
  const add = (name, value, onFilter) => rows.push(h('tr', {}, h('td', {}, name), h('td', {},
    onFilter ? h('button', {type: 'button', class: 'val', title: 'Add as a filter', onclick: onFilter}, value) : value)));
  const filterBy = (mutate) => () => {
    const f = form.get();
    mutate(f);
    ctx.navigate('explore', filtersToParams(f));
    toast('Filter added');
  };
  for (const c of columns) {
    const v = r[c.name];
    if (c.name === 'attributes' || c.name === 'resource') {
      const list = c.name === 'attributes' ? 'attrs' : 'res';
      for (const [k, val] of Object.entries(v || {}).sort(([a], [b]) => a.localeCompare(b))) {
        add(`${c.name}.${k}`, val === null ? 'null' : String(val), val === null ? null : filterBy((f) => {
          if (!f[list].some(([a, b]) => a === k && b === val)) f[list].push([k, String(val)]);
        }));
      }
      if (!v || Object.keys(v).length === 0) add(c.name, '{}');
      continue;
    }
    const text = v === null || v === undefined ? 'null' : c.name.includes('timestamp') ? `${fmtTime(v)} UTC` : String(v);
    let onFilter = null;
    if (v !== null && v !== undefined && v !== '') {
      if (c.name === 'stream') onFilter = filterBy((f) => { f.stream = v; });
      else if (c.name === 'service_name') onFilter = filterBy((f) => { f.service = v; });
      else if (c.name === 'severity_number' || c.name === 'severity_text') onFilter = r.severity_number > 0 ? filterBy((f) => { f.sev = Number(r.severity_number); }) : null;
      else if (c.name === 'trace_id') onFilter = filterBy((f) => { f.trace = v; });
      else if (c.name === 'span_id') onFilter = filterBy((f) => { f.span = v; });
    }
    add(c.name, text, onFilter);
  }
  return h('table', {class: 'kv'}, h('tbody', {}, rows));
}

function hide() {
  if (abort) abort.abort();
  lastKey = null;
}

export default {mount, show, hide, lastParams: () => new URLSearchParams(lastParams)};
