// The operator console. Reads the bus's own API every two seconds and redrives through it;
// every value from the bus is put in the page as text, never as markup, since much of it
// (nack reasons, names) was written by members.
'use strict';

const POLL_MS = 2000;
const HISTORY = 150; // points kept for the charts: five minutes at one every two seconds
const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A call to the bus's API: the parsed JSON, or an Error carrying the problem's detail. */
async function api(path, options) {
  const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store', ...options });
  const text = await r.text();
  let body = text;
  try { body = JSON.parse(text); } catch { /* the metrics are text */ }
  if (!r.ok) {
    const detail = body && body.detail ? body.detail : text;
    throw new Error(`${r.status} ${r.statusText}: ${detail}`);
  }
  return body;
}

const member = (id) => encodeURIComponent(id);

/** Prometheus text exposition → [{name, labels, value}]. */
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    const m = line.match(/^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

const sum = (samples, name, pred) =>
  samples.filter((s) => s.name === name && (!pred || pred(s.labels))).reduce((a, s) => a + s.value, 0);

function ago(iso) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

const when = (iso) => (iso ? iso.replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC') : '');

const state = { overview: null, history: [], dead: null, deadKey: '' };

// ---- the glance: cards and charts ----

function record(samples) {
  const point = {
    t: Date.now(),
    accepted: sum(samples, 'simpul_messages_accepted_total'),
    rejected: sum(samples, 'simpul_messages_rejected_total'),
    dead: sum(samples, 'simpul_dead_letters_total'),
  };
  const last = state.history[state.history.length - 1];
  if (last) {
    const dt = Math.max(0.001, (point.t - last.t) / 1000);
    const rate = (k) => Math.max(0, (point[k] - last[k]) / dt);
    point.acceptedRate = rate('accepted');
    point.rejectedRate = rate('rejected');
    point.errorRate = point.rejectedRate + rate('dead');
    $('rate-accepted').textContent = point.acceptedRate.toFixed(1);
    $('rate-rejected').textContent = point.rejectedRate.toFixed(1);
  }
  state.history.push(point);
  if (state.history.length > HISTORY) state.history.shift();
  drawChart($('chart-accepted'), $('max-accepted'), state.history.map((p) => p.acceptedRate));
  drawChart($('chart-errors'), $('max-errors'), state.history.map((p) => p.errorRate));
}

function drawChart(svg, label, values) {
  const v = values.filter((x) => x !== undefined);
  const max = Math.max(1, ...v);
  const pts = v.map((y, i) => `${(300 * (i + HISTORY - v.length)) / (HISTORY - 1)},${78 - (74 * y) / max}`);
  svg.replaceChildren(svgEl('polyline', { points: pts.join(' ') }));
  label.textContent = `(scale ${max.toFixed(1)}/s)`;
}

// ---- members and types ----

function renderMembers(o) {
  const soon = Date.now() + 30 * 86400e3;
  $('members-table').tBodies[0].replaceChildren(...o.members.map((m) => {
    const expires = m.certificate_expires ? Date.parse(m.certificate_expires) : null;
    const days = expires === null ? null : Math.floor((expires - Date.now()) / 86400e3);
    return el('tr', { 'data-member': m.id },
      el('td', {}, el('span', { class: 'id' }, m.id), m.operator ? el('span', { class: 'tag' }, 'operator') : null,
        m.delivery === 'amqp' ? el('span', { class: 'tag' }, 'amqp') : null, el('span', { class: 'sub' }, m.name)),
      el('td', { class: expires !== null && expires < soon ? 'bad' : '' },
        expires === null ? el('span', { class: 'sub' }, 'not seen') : [when(m.certificate_expires).slice(0, 10), el('span', { class: 'sub' }, `in ${days} days`)]),
      el('td', {}, m.last_seen ? ago(m.last_seen) : el('span', { class: 'sub' }, 'never')),
      el('td', { class: 'num' }, m.queue_depth),
      el('td', {}, ago(m.oldest)),
      el('td', { class: 'num' }, m.dead_letters > 0
        ? el('button', { type: 'button', class: 'link bad', onclick: () => showDead(m.id) }, m.dead_letters)
        : '0'));
  }));
  $('total-queued').textContent = o.members.reduce((a, m) => a + m.queue_depth, 0);
  $('total-dead').textContent = o.members.reduce((a, m) => a + m.dead_letters, 0);
}

function receivers(t) {
  if (t.kind === 'query') return t.provider ? [t.provider] : [];
  return [...new Set([...t.subscribers, ...t.consumers])];
}

function renderTypes(o) {
  $('types-table').tBodies[0].replaceChildren(...o.types.map((t) => el('tr', { 'data-type': t.name },
    el('td', {}, el('span', { class: 'id' }, t.name), el('span', { class: 'sub' }, t.kind)),
    el('td', {}, t.producers.join(', ')),
    el('td', {}, t.kind === 'query' ? `${t.provider || '–'} answers ${t.consumers.join(', ')}` : receivers(t).join(', ')),
    el('td', {}, Object.entries(t.grants).map(([who, fields]) => el('span', { class: 'sub' }, `${who}: ${fields.join(', ')}`))))));
}

// ---- the flow: senders → types → receivers ----

function renderFlow(o, samples) {
  const accepted = (type, who) => sum(samples, 'simpul_messages_accepted_total', (l) =>
    l.type === type && (who === undefined || l.sender === who || (who.endsWith('/*') && l.sender.startsWith(who.slice(0, -1)))));
  const senders = [...new Set(o.types.flatMap((t) => t.producers))].sort();
  const types = o.types.map((t) => t.name);
  const targets = [...new Set(o.types.flatMap(receivers))].sort();
  const rows = Math.max(senders.length, types.length, targets.length);
  const h = 28 * rows + 10, cols = [10, 330, 650], w = 230;
  const y = (list, name) => 5 + (h - 10) * (list.indexOf(name) + 0.5) / list.length;
  const svg = $('flow-svg');
  svg.setAttribute('viewBox', `0 0 890 ${h}`);
  const kids = [];
  const edge = (x1, y1, x2, y2, n) => kids.push(svgEl('path', {
    d: `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`,
    'stroke-width': Math.min(8, 1 + Math.log10(1 + n) * 2),
  }));
  for (const t of o.types) {
    for (const s of t.producers) edge(cols[0] + w, y(senders, s), cols[1], y(types, t.name), accepted(t.name, s));
    for (const r of receivers(t)) edge(cols[1] + w, y(types, t.name), cols[2], y(targets, r), accepted(t.name));
  }
  const node = (x, list, name, cls, count) => {
    const cy = y(list, name);
    kids.push(svgEl('rect', { x, y: cy - 11, width: w, height: 22, rx: 4, class: cls }));
    kids.push(svgEl('text', { x: x + 6, y: cy + 4 }, name.length > 30 ? `${name.slice(0, 29)}…` : name));
    if (count !== undefined) kids.push(svgEl('text', { x: x + w - 6, y: cy + 4, 'text-anchor': 'end', class: 'count' }, count));
  };
  senders.forEach((s) => node(cols[0], senders, s, 'member'));
  o.types.forEach((t) => node(cols[1], types, t.name, 'type', accepted(t.name)));
  targets.forEach((r) => node(cols[2], targets, r, 'member'));
  svg.replaceChildren(...kids);
}

// ---- dead letters ----

function renderDeadChoices(o) {
  const select = $('dead-recipient');
  const chosen = select.value;
  const withDead = o.members.filter((m) => m.dead_letters > 0);
  const list = withDead.length ? withDead : o.members;
  select.replaceChildren(...list.map((m) => el('option', { value: m.id }, `${m.id} (${m.dead_letters})`)));
  if (list.some((m) => m.id === chosen)) select.value = chosen;
}

function showDead(id) {
  renderDeadChoices(state.overview);
  $('dead-recipient').value = id;
  loadDead(true);
  $('dead').scrollIntoView();
}

async function loadDead(force) {
  const recipient = $('dead-recipient').value;
  if (!recipient) return;
  const page = await api(`/v1/admin/dead-letters/${member(recipient)}?limit=100`);
  const key = JSON.stringify(page);
  if (!force && key === state.deadKey) return;
  state.dead = page;
  state.deadKey = key;
  $('dead-empty').hidden = page.items.length > 0;
  $('redrive-all').disabled = page.total === 0;
  $('redrive-all').textContent = `Redrive all (${page.total})…`;
  $('dead-table').tBodies[0].replaceChildren(...page.items.map((d) => el('tr', { 'data-id': d.id },
    el('td', {}, el('button', { type: 'button', class: 'link id', onclick: () => trace(d.id) }, d.id)),
    el('td', { class: 'id' }, d.sender),
    el('td', { class: 'id' }, d.type),
    el('td', {}, when(d.accepted_at)),
    el('td', { class: 'num' }, d.attempts),
    el('td', { class: 'why' }, d.why.replace(/_/g, ' '), d.reason ? el('span', { class: 'sub reason' }, d.reason) : null),
    el('td', {}, el('button', { type: 'button', class: 'redrive', onclick: () => redrive(recipient, { id: d.id, sender: d.sender }) }, 'Redrive…')))));
}

/** Asks in a dialog; resolves true only on the explicit confirm button. */
function confirmAction(text, action) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = action;
  return new Promise((resolve) => {
    const done = (ok) => () => { dialog.close(); resolve(ok); };
    $('confirm-ok').onclick = done(true);
    $('confirm-cancel').onclick = done(false);
    dialog.oncancel = () => resolve(false);
    dialog.showModal();
  });
}

async function redrive(recipient, body) {
  const what = body.all
    ? `all ${state.dead.total} dead letters of ${recipient} (1,000 at most in this step)`
    : `message ${body.id} from ${body.sender}`;
  const ok = await confirmAction(
    `Put ${what} back in ${recipient}'s inbox with attempts reset? The audit log records this as yours.`,
    'Redrive');
  if (!ok) return;
  const result = $('dead-result');
  try {
    const done = await api(`/v1/admin/dead-letters/${member(recipient)}/redrive`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    result.className = '';
    result.textContent = `Redriven ${done.redriven.length} to ${recipient}; ${done.remaining} dead letters remain.`;
  } catch (e) {
    result.className = 'bad';
    result.textContent = `Redrive failed: ${e.message}`;
  }
  await refresh();
  await loadDead(true);
}

// ---- trace ----

async function trace(id) {
  $('trace-id').value = id;
  const out = $('trace-out');
  out.replaceChildren(el('p', { class: 'hint' }, 'tracing…'));
  history.replaceState(null, '', `#trace=${encodeURIComponent(id)}`);
  $('trace').scrollIntoView();
  try {
    const t = await api(`/v1/admin/messages/${encodeURIComponent(id)}/trace`);
    out.replaceChildren(
      ...t.messages.map((m) => el('div', { class: 'trace-msg', 'data-source': m.source },
        el('h3', {}, `${m.type} from ${m.source}`),
        el('p', {}, `accepted ${when(m.accepted_at)} · `, el('strong', { class: 'status' }, m.status), m.replied ? ' · replied' : ''),
        m.attributes.traceparent ? el('p', { class: 'sub id' }, `traceparent ${m.attributes.traceparent}`) : null,
        el('div', { class: 'scroll' }, el('table', {},
          el('thead', {}, el('tr', {}, el('th', {}, 'Recipient'), el('th', {}, 'State'), el('th', {}, 'Attempts'), el('th', {}, 'Reason'))),
          el('tbody', {}, m.deliveries.map((d) => el('tr', { class: 'delivery', 'data-recipient': d.recipient },
            el('td', { class: 'id' }, d.recipient), el('td', { class: 'state' }, d.state),
            el('td', { class: 'num' }, d.attempts), el('td', {}, d.reason || '')))))))),
      el('h3', {}, 'Audit records'),
      el('ol', { class: 'audit' }, t.audit.map((a) => el('li', { 'data-action': a.action },
        `${when(a.at)} · ${a.actor} · `, el('strong', {}, a.action),
        a.counterpart ? ` · ${a.counterpart}` : '', a.detail ? ` · ${a.detail}` : ''))));
  } catch (e) {
    out.replaceChildren(el('p', { class: 'bad' }, e.message));
  }
}

// ---- the loop ----

async function refresh() {
  const status = $('status');
  try {
    const [o, text] = await Promise.all([api('/v1/admin/overview'), api('/metrics')]);
    const samples = parseMetrics(text);
    state.overview = o;
    $('instance').textContent = o.instance;
    renderMembers(o);
    renderTypes(o);
    renderFlow(o, samples);
    record(samples);
    if (!$('confirm').open) renderDeadChoices(o);
    status.className = '';
    status.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    status.className = 'down';
    status.textContent = `cannot reach the bus (${e.message}); retrying`;
  }
}

async function tick() {
  await refresh();
  if (!$('confirm').open) await loadDead(false).catch(() => {});
  setTimeout(tick, POLL_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  $('dead-recipient').addEventListener('change', () => loadDead(true));
  $('redrive-all').addEventListener('click', () => redrive($('dead-recipient').value, { all: true }));
  $('trace-form').addEventListener('submit', (e) => { e.preventDefault(); trace($('trace-id').value.trim()); });
  const m = location.hash.match(/^#trace=(.+)$/);
  if (m) trace(decodeURIComponent(m[1]));
  tick();
});
