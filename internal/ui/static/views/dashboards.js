// Dashboards: panels from /ui/dashboards (dashboards-as-code), each one
// query drawn as a time series, bars, a table or a single number.

import {sql, getJSON} from '../api.js';
import {h, clear, fmtNum, resultTable, errorBox, isAbort, isNumericType, cellText, Loads} from '../dom.js';
import {substitute, bucketFor} from '../sqlutil.js';
import {chartFor} from '../resultchart.js';
import {chartWidth} from '../chart.js';

const CONCURRENCY = 2; // panels queried at once, leaving the server room for others

let el;
let ctx;
let list = null;
let picker;
let grid;
const loads = new Loads();
let current = '';
let lastParams = new URLSearchParams();

function mount(root, c) {
  el = root;
  ctx = c;
  picker = h('div', {class: 'toolbar', role: 'group', 'aria-label': 'Dashboards'});
  grid = h('div', {class: 'dash-grid', id: 'dash-grid'});
  el.append(h('h2', {class: 'sr-title'}, 'Dashboards'), picker, h('p', {class: 'muted', id: 'dash-desc'}), grid);
}

function show(params, {force} = {}) {
  lastParams = new URLSearchParams(params);
  const key = params.toString() + '|' + JSON.stringify(ctx.range);
  if (!loads.changed(key, force)) return;
  current = params.get('d') || '';
  load();
}

async function load() {
  const signal = loads.begin();
  el.dataset.state = 'loading';
  try {
    if (!list) list = (await getJSON('/ui/dashboards', {signal})).dashboards;
    const dash = list.find((d) => d.name === current) || list[0];
    clear(picker, list.length > 1 ? list.map((d) => h('button', {type: 'button', 'aria-pressed': String(d === dash),
      class: d === dash ? 'primary' : null, onclick: () => ctx.navigate('dashboards', new URLSearchParams({d: d.name}))}, d.name)) : h('h3', {}, dash.name));
    document.getElementById('dash-desc').textContent = dash.description || '';
    const range = await ctx.resolveRange({signal});
    const bucket = bucketFor(range, 60);
    const cards = dash.panels.map((p) => {
      const body = h('div', {class: 'panel-body'}, h('div', {class: 'muted'}, 'Loading…'));
      const card = h('div', {class: `card panel w${p.width}`, 'data-kind': p.kind, 'data-state': 'loading'},
        h('h3', {}, p.title), p.description ? h('div', {class: 'muted'}, p.description) : null, body);
      return {p, card, body};
    });
    clear(grid, cards.map((c) => c.card));
    let next = 0;
    const worker = async () => {
      while (next < cards.length && !signal.aborted) {
        const c = cards[next++];
        await panel(c, range, bucket, signal);
      }
    };
    await Promise.all(Array.from({length: CONCURRENCY}, worker));
    if (!signal.aborted) el.dataset.state = 'ready';
  } catch (err) {
    if (isAbort(err)) return;
    clear(grid, errorBox(err));
    el.dataset.state = 'error';
  }
}

async function panel({p, card, body}, range, bucket, signal) {
  try {
    const doc = await sql(substitute(p.sql, range, bucket), {signal, maxRows: 5000});
    if (signal.aborted) return;
    clear(body, draw(p, doc, chartWidth(body)));
    card.dataset.state = 'ready';
  } catch (err) {
    if (isAbort(err)) return;
    clear(body, errorBox(err));
    card.dataset.state = 'error';
  }
}

function draw(p, doc, width) {
  if (!doc.rows.length) return h('div', {class: 'empty'}, p.kind === 'stat' ? '–' : 'No data');
  switch (p.kind) {
    case 'stat': {
      const col = doc.columns.find((c) => isNumericType(c.type)) || doc.columns[0];
      const v = doc.rows[0][col.name];
      return h('div', {class: 'panel-stat'}, isNumericType(col.type) ? fmtNum(v) : cellText(v, col.type));
    }
    case 'table':
      return resultTable(doc, 200);
    case 'bar':
    case 'timeseries':
      return chartFor(doc, p.kind === 'bar' ? 'bar' : 'line', width) || resultTable(doc, 200);
  }
  return resultTable(doc, 200);
}

function hide() {
  loads.reset();
}

export default {mount, show, hide, refresh: load, lastParams: () => new URLSearchParams(lastParams)};
