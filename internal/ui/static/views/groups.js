// Consumers: the consumer groups of the tenant's streams (docs/consume.md)
// with, per partition, the committed offset, the partition's end and the
// lag between them; refreshed every 5 s.

import {getJSON} from '../api.js';
import {h, clear, fmtNum, errorBox, isAbort, Loads} from '../dom.js';

const POLL_MS = 5000;

let el;
let body;
const loads = new Loads();
let timer = null;

function mount(root) {
  el = root;
  body = h('div', {id: 'groups-body'});
  el.append(h('h2', {class: 'sr-title'}, 'Consumers'),
    h('div', {class: 'toolbar'}, h('span', {class: 'muted'},
      'Consumer groups (weir consume --group, SubscribeService, forwarders) and how far each has committed. Lag is the records pushed to a partition that the group has not committed. The view refreshes every 5 s.')),
    body);
}

function show(_params, {force} = {}) {
  if (!loads.changed('groups', force)) { schedule(); return; }
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
    const doc = await getJSON('/ui/groups', {signal});
    if (signal.aborted) return;
    render(doc.groups || []);
    el.dataset.state = 'ready';
  } catch (err) {
    if (isAbort(err)) return;
    clear(body, errorBox(err));
    el.dataset.state = 'error';
  }
  schedule();
}

function render(groups) {
  if (!groups.length) {
    clear(body, h('div', {class: 'card empty'}, 'No consumer groups yet. A group appears once a subscriber names it (weir consume --group NAME) or commits for it.'));
    return;
  }
  const rows = [];
  for (const g of groups) {
    const parts = g.partitions || [];
    const total = parts.reduce((n, p) => n + Number(p.lag), 0);
    rows.push(h('tr', {class: 'group', 'data-stream': g.stream, 'data-group': g.group},
      h('th', {scope: 'row', colspan: 2}, h('span', {class: 'group-name'}, g.group), h('span', {class: 'muted'}, ` on ${g.stream}`)),
      h('td', {class: 'members'}, g.members === 1 ? '1 member' : `${fmtNum(g.members)} members`),
      h('td', {}, ''),
      h('td', {}, ''),
      h('td', {class: 'num total-lag'}, fmtNum(total))));
    for (const p of parts) {
      rows.push(h('tr', {class: 'partition', 'data-stream': g.stream, 'data-group': g.group, 'data-partition': String(p.partition)},
        h('td', {}, ''),
        h('td', {class: 'num part'}, String(p.partition)),
        h('td', {class: 'owned'}, p.owned ? 'owned' : h('span', {class: 'muted'}, 'unowned')),
        h('td', {class: 'num committed'}, p.committed < 0 ? h('span', {class: 'muted', title: 'The group has not committed this partition'}, 'none') : fmtNum(p.committed)),
        h('td', {class: 'num end'}, fmtNum(p.end)),
        h('td', {class: 'num lag'}, fmtNum(p.lag))));
    }
  }
  clear(body, h('div', {class: 'scroll'}, h('table', {class: 'grid', id: 'groups-table'},
    h('thead', {}, h('tr', {}, ['Group', 'Partition', 'Members / owner', 'Committed offset', 'End offset', 'Lag (records)'].map((c, i) =>
      h('th', {scope: 'col', class: i === 0 || i === 2 ? null : 'num'}, c)))),
    h('tbody', {}, rows))));
}

function hide() {
  clearTimeout(timer);
  timer = null;
  loads.reset();
}

export default {mount, show, hide, refresh: load};
