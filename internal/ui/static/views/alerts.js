// Alerts: the alerting rules (docs/alerts.md) with their state, last
// evaluation, last value and a sparkline of recent values; each rule's
// alerts link to their records in Explore, and "Test" runs a rule once.

import {getJSON, postJSON} from '../api.js';
import {h, clear, fmtNum, fmtTime, errorBox, isAbort, Loads} from '../dom.js';
import {sparkline} from '../chart.js';

const POLL_MS = 5000;
const TEST_ROWS = 50;

let el;
let body;
const loads = new Loads();
let timer = null;
const tests = new Map(); // rule name -> rendered test result, kept across reloads

const STATE_COLORS = {firing: '#c62828', pending: '#a15f00', ok: '#2e7d32', resolved: '#6b7280'};

function mount(root) {
  el = root;
  body = h('div', {id: 'alerts-body'});
  el.append(h('h2', {class: 'sr-title'}, 'Alerts'),
    h('div', {class: 'toolbar'}, h('span', {class: 'muted'},
      'Alerting rules from the configuration (alerts: in the config file, docs/alerts.md), evaluated by the server. The view refreshes every 5 s.')),
    body);
}

function show(_params, {force} = {}) {
  if (!loads.changed('alerts', force)) { schedule(); return; }
  load();
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(() => { if (document.visibilityState === 'visible') load(); else schedule(); }, POLL_MS);
}

async function load() {
  const signal = loads.begin();
  if (!el.dataset.state) el.dataset.state = 'loading';
  try {
    const doc = await getJSON('/v1/alerts', {signal});
    if (signal.aborted) return;
    render(doc.rules || []);
    el.dataset.state = 'ready';
  } catch (err) {
    if (isAbort(err)) return;
    clear(body, errorBox(err));
    el.dataset.state = 'error';
  }
  schedule();
}

function badge(state) {
  return h('span', {class: `badge state-${state}`, 'data-state': state}, state);
}

function render(rules) {
  if (!rules.length) {
    clear(body, h('div', {class: 'card empty'}, 'No alerting rules. Add some under alerts: in the configuration file (docs/alerts.md) and reload it.'));
    return;
  }
  const rows = [];
  for (const r of rules) {
    const test = h('button', {type: 'button', class: 'test', title: 'Run this rule once now; nothing is sent', onclick: () => runTest(r.name, test)}, 'Test');
    const where = r.file ? `${r.file}:${r.line}` : '';
    const history = (r.history || []).map((p) => Number(p.v));
    rows.push(h('tr', {class: 'rule', 'data-rule': r.name, 'data-state': r.state},
      h('td', {}, h('div', {class: 'rule-name'}, r.name),
        h('div', {class: 'muted'}, r.kind === 'pattern' ? `pattern rule on ${r.pattern.stream}` : 'SQL rule', where ? ` · ${where}` : '')),
      h('td', {}, badge(r.state)),
      h('td', {class: 'cond'}, r.condition, h('div', {class: 'muted'}, `every ${r.every}, for ${r.for}, window ${r.window}`)),
      h('td', {class: 'time'}, r.last_eval ? fmtTime(r.last_eval) : 'not yet',
        r.last_eval ? h('div', {class: 'muted'}, `${fmtNum(r.last_duration_ms)} ms`) : null,
        r.last_error ? h('div', {class: 'error-text', role: 'alert'}, r.last_error) : null),
      h('td', {class: 'num last-value'}, r.last_value === null || r.last_value === undefined ? '' : fmtNum(r.last_value)),
      h('td', {}, history.length ? sparkline(history, {color: STATE_COLORS[r.state] || '#3b82c4'}) : ''),
      h('td', {}, test)));
    const active = r.alerts || [];
    if (active.length) {
      rows.push(h('tr', {class: 'alerts', 'data-rule': r.name},
        h('td', {colspan: 7}, h('ul', {class: 'alert-list'}, active.map((a) => alertItem(a))))));
    }
    if (r.kind === 'sql' && r.sql) {
      rows.push(h('tr', {class: 'rule-sql', 'data-rule': r.name}, h('td', {colspan: 7}, h('pre', {class: 'sql'}, r.sql))));
    }
    const t = tests.get(r.name);
    if (t) rows.push(h('tr', {class: 'test-result', 'data-rule': r.name}, h('td', {colspan: 7}, t)));
  }
  clear(body, h('div', {class: 'scroll'}, h('table', {class: 'grid', id: 'alerts-table'},
    h('thead', {}, h('tr', {}, ['Rule', 'State', 'Condition', 'Last evaluation (UTC)', 'Last value', 'Recent values', ''].map((c, i) =>
      h('th', {scope: 'col', class: i === 4 ? 'num' : null}, c)))),
    h('tbody', {}, rows))));
}

function alertItem(a) {
  const labels = Object.entries(a.labels || {}).filter(([k]) => k !== 'alertname').map(([k, v]) => `${k}=${v}`).join(', ');
  const since = a.state === 'firing' ? a.fired_at : a.state === 'resolved' ? a.resolved_at : a.active_at;
  const summary = a.annotations && a.annotations.summary;
  return h('li', {class: 'alert', 'data-state': a.state},
    badge(a.state), ' ',
    h('a', {href: a.link, class: 'records', title: 'Show the records behind this alert in Explore'}, labels || '(no labels)'),
    h('span', {class: 'muted'}, ` since ${fmtTime(since)} UTC · value ${fmtNum(a.value)}`),
    summary ? h('div', {class: 'summary'}, summary) : null);
}

async function runTest(name, button) {
  button.disabled = true;
  button.textContent = 'Testing…';
  let out;
  try {
    const doc = await postJSON('/v1/alerts/test', {name});
    out = testResult(doc.results[0]);
  } catch (err) {
    out = errorBox(err);
  }
  tests.set(name, h('div', {class: 'test-box', 'data-rule': name}, out));
  button.disabled = false;
  button.textContent = 'Test';
  loads.reset();
  load();
}

function testResult(r) {
  if (r.error) return h('div', {}, h('strong', {}, 'Test: '), errorBox(r.error));
  const cols = r.columns || [];
  const head = h('div', {class: 'test-summary'}, h('strong', {}, 'Test: '),
    `${fmtNum((r.rows || []).length)} rows over ${fmtTime(r.from)} – ${fmtTime(r.to)} UTC, value ${fmtNum(r.value)}, `,
    h('span', {class: 'test-alerts', 'data-alerts': String((r.alerts || []).length)}, `${(r.alerts || []).length} alerts would be active`),
    ` (${fmtNum(r.took_ms)} ms).`);
  if (!cols.length) return head;
  const table = h('table', {class: 'grid test-rows'},
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', {scope: 'col'}, c)))),
    h('tbody', {}, (r.rows || []).slice(0, TEST_ROWS).map((row, i) =>
      h('tr', {class: r.alerting && r.alerting[i] ? 'alerting' : null}, row.map((v) => h('td', {}, v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v)))))));
  return h('div', {}, head, table);
}

function hide() {
  clearTimeout(timer);
  timer = null;
  loads.reset();
}

export default {mount, show, hide, refresh: load};
