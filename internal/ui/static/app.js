// weir UI: tabs, the shared time range, and routing through the URL hash
// (#/view?params), so that every view state can be linked and reloaded.

import {sql, getJSON} from './api.js';
import {MINUTE} from './sqlutil.js';
import {toast, fmtTime} from './dom.js';
import overview from './views/overview.js';
import explore from './views/explore.js';
import errors from './views/errors.js';
import tail from './views/tail.js';
import sqlConsole from './views/console.js';
import dashboards from './views/dashboards.js';
import alerts from './views/alerts.js';
import groups from './views/groups.js';

const VIEWS = {overview, explore, errors, tail, console: sqlConsole, dashboards, alerts, groups};
const PRESETS = {'5m': 5 * 60e3, '15m': 15 * 60e3, '1h': 3600e3, '6h': 6 * 3600e3, '24h': 24 * 3600e3, '7d': 7 * 24 * 3600e3};
const RANGE_PARAMS = ['range', 'from', 'to'];
const REFRESH_MS = 10000;

const $ = (id) => document.getElementById(id);

let current = null; // name of the view shown
const mounted = new Set();

let schemaPromise = null;
let servicesPromise = null;

const ctx = {
  // range is {kind: '5m'..'7d' | 'all'} or {kind: 'custom', from, to}.
  range: {kind: localStorage.getItem('weir.range') || '1h'},

  // resolveRange turns the range into epoch milliseconds [from, to).
  async resolveRange({signal} = {}) {
    const r = ctx.range;
    if (r.kind === 'custom') return {from: r.from, to: r.to};
    if (PRESETS[r.kind]) {
      const to = Date.now() + 1;
      return {from: to - PRESETS[r.kind], to};
    }
    // All time is the minutes that hold records, from log_counts: its
    // rollups answer without reading the rows.
    const doc = await sql('SELECT epoch_ms(min(minute)) AS lo, epoch_ms(max(minute)) AS hi FROM log_counts', {signal});
    const row = doc.rows[0] || {};
    if (row.lo === null || row.lo === undefined) {
      const to = Date.now() + 1;
      return {from: to - 3600e3, to};
    }
    return {from: Number(row.lo), to: Number(row.hi) + MINUTE};
  },

  rangeLabel() {
    const r = ctx.range;
    if (r.kind === 'custom') return `${fmtTime(r.from)} – ${fmtTime(r.to)} UTC`;
    if (r.kind === 'all') return 'all time';
    return `the last ${r.kind}`;
  },

  // schema returns /ui/schema, fetched once per page load.
  schema() {
    if (!schemaPromise) {
      schemaPromise = getJSON('/ui/schema');
      schemaPromise.catch(() => { schemaPromise = null; });
    }
    return schemaPromise;
  },

  services() {
    if (!servicesPromise) {
      servicesPromise = sql("SELECT service_name AS s, count(*) AS n FROM logs WHERE service_name <> '' GROUP BY 1 ORDER BY n DESC LIMIT 200")
        .then((doc) => doc.rows.map((r) => r.s));
      servicesPromise.catch(() => { servicesPromise = null; });
    }
    return servicesPromise;
  },

  // navigate shows a view with params; the time range goes along.
  navigate(view, params = new URLSearchParams(), {replace = false} = {}) {
    for (const k of RANGE_PARAMS) params.delete(k);
    rangeToParams(ctx.range, params);
    const hash = `#/${view}` + (params.toString() ? `?${params}` : '');
    if (hash === location.hash) { route({force: true}); return; }
    if (replace) history.replaceState(null, '', hash);
    else history.pushState(null, '', hash);
    route();
  },

  // setRange changes the time range and shows the current view with it.
  setRange(r) {
    ctx.range = r;
    if (r.kind !== 'custom') localStorage.setItem('weir.range', r.kind);
    const {params} = parseHash();
    ctx.navigate(current || 'overview', params);
  },
};

function rangeToParams(r, p) {
  if (r.kind === 'custom') {
    p.set('from', new Date(r.from).toISOString());
    p.set('to', new Date(r.to).toISOString());
  } else {
    p.set('range', r.kind);
  }
}

function rangeFromParams(p) {
  const from = Date.parse(p.get('from') || '');
  const to = Date.parse(p.get('to') || '');
  if (Number.isFinite(from) && Number.isFinite(to) && to > from) return {kind: 'custom', from, to};
  const k = p.get('range');
  if (k && (PRESETS[k] || k === 'all')) return {kind: k};
  return null;
}

function parseHash() {
  const m = location.hash.match(/^#\/(\w+)(?:\?(.*))?$/);
  const view = m && VIEWS[m[1]] ? m[1] : 'overview';
  return {view, params: new URLSearchParams(m && m[2] ? m[2] : '')};
}

// toLocalInput renders epoch ms as a datetime-local value in UTC.
function toLocalInput(ms) {
  return new Date(ms).toISOString().slice(0, 19);
}

function showRange() {
  const r = ctx.range;
  $('range-preset').value = r.kind;
  $('range-custom').hidden = r.kind !== 'custom';
  if (r.kind === 'custom') {
    $('range-from').value = toLocalInput(r.from);
    $('range-to').value = toLocalInput(r.to);
  }
}

let routed = null; // the hash last routed

function route({force = false} = {}) {
  if (!force && routed === location.hash) return;
  routed = location.hash;
  const {view, params} = parseHash();
  const r = rangeFromParams(params);
  if (r) ctx.range = r;
  showRange();
  for (const k of RANGE_PARAMS) params.delete(k);
  if (current && current !== view) VIEWS[current].hide?.();
  for (const tab of document.querySelectorAll('[role=tab]')) {
    const on = tab.dataset.view === view;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
  }
  for (const name of Object.keys(VIEWS)) $(name).hidden = name !== view;
  const el = $(view);
  if (!mounted.has(view)) {
    VIEWS[view].mount(el, ctx);
    mounted.add(view);
  }
  const changed = current !== view;
  current = view;
  document.title = `weir · ${document.getElementById('tab-' + view).textContent}`;
  VIEWS[view].show(params, {force, changed});
}

function setupTabs() {
  const tabs = [...document.querySelectorAll('[role=tab]')];
  for (const tab of tabs) {
    tab.addEventListener('click', () => {
      if (tab.dataset.view !== current) ctx.navigate(tab.dataset.view, VIEWS[tab.dataset.view].lastParams?.() || new URLSearchParams());
    });
  }
  $('tabs').addEventListener('keydown', (e) => {
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (e.key === 'ArrowRight') j = (i + 1) % tabs.length;
    else if (e.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = tabs.length - 1;
    if (j === null) return;
    e.preventDefault();
    tabs[j].focus();
    tabs[j].click();
  });
}

function setupRange() {
  $('range-preset').addEventListener('change', (e) => {
    const k = e.target.value;
    if (k !== 'custom') { ctx.setRange({kind: k}); return; }
    // Start the custom range from the range in use.
    ctx.resolveRange().then((r) => {
      $('range-from').value = toLocalInput(r.from);
      $('range-to').value = toLocalInput(r.to);
    }).catch(() => {});
    $('range-custom').hidden = false;
    $('range-from').focus();
  });
  $('range').addEventListener('submit', (e) => {
    e.preventDefault();
    const from = Date.parse($('range-from').value + 'Z');
    const to = Date.parse($('range-to').value + 'Z');
    if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) {
      toast('The custom range needs a start before its end.');
      return;
    }
    ctx.setRange({kind: 'custom', from, to});
  });
  $('refresh').addEventListener('click', () => route({force: true}));
  const auto = $('autorefresh');
  auto.checked = localStorage.getItem('weir.autorefresh') === '1';
  auto.addEventListener('change', () => localStorage.setItem('weir.autorefresh', auto.checked ? '1' : '0'));
  setInterval(() => {
    if (auto.checked && document.visibilityState === 'visible' && current && VIEWS[current].refresh) VIEWS[current].refresh();
  }, REFRESH_MS);
}

setupTabs();
setupRange();
window.addEventListener('popstate', () => route());
window.addEventListener('hashchange', () => route());
route();
