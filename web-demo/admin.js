/*
 * admin.js: the dashboard. Live stats (pushed once a second to admin sockets),
 * the live admin_event stream (neither needs a subscription), and the arcades
 * over REST.
 */
import { connect } from '/retronova.js';
import {
  $, tokenApi, el, fill, pill, credential, saveCredential, jwtClaims, api, listOf, showError, wsUrl,
  connectionPill, logLine,
} from '/common.js';

const state = { token: '', rn: null, refused: false, lastStatsAt: 0, prev: null };

/* api() with this page's token (common.js: a refused token stops the socket). */
const call = tokenApi(state);

/* ---- sign in ------------------------------------------------------------------- */

function start(token) {
  state.token = token;
  saveCredential('admin-token', token);
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#signout').hidden = false;
  $('#who').textContent = jwtClaims(token).sub || '';
  openSocket();
  loadArcades();
  $('#arcades-refresh').addEventListener('click', loadArcades);
  setInterval(freshness, 1000);
}

$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('#token').value.trim();
  if (token) start(token);
});

$('#signout').addEventListener('click', () => {
  state.rn?.close();
  saveCredential('admin-token', '');
  location.reload();
});

function openSocket() {
  const setConn = connectionPill($('#conn'));
  setConn('connecting');
  const rn = connect(wsUrl(), { token: state.token });
  state.rn = rn;
  rn.on('connect', (who) => {
    setConn('online');
    $('#who').textContent = who.uid || '';
    if (who.role !== 'admin') {
      showError($('#error'), { code: 'forbidden', message: `${who.uid} is a ${who.role}, not an admin: stats and events will not come` }, 'Role');
    } else {
      showError($('#error'), null);
    }
  });
  rn.on('disconnect', ({ code, willRetry }) => {
    setConn(willRetry ? 'reconnecting' : 'offline', String(code));
    if (!willRetry && !state.refused) {
      const why = code === 4001 ? 'the hub refused this token (close 4001): sign out and use a fresh one'
        : `the hub closed the connection (${code})`;
      showError($('#error'), { code: 'disconnected', message: why }, 'Live connection');
    }
  });
  rn.on('stats', renderStats);
  rn.on('admin_event', onAdminEvent);
}

/* ---- stats ----------------------------------------------------------------------- */

function freshness() {
  const node = $('#freshness');
  if (!state.lastStatsAt) return;
  const age = (performance.now() - state.lastStatsAt) / 1000;
  node.className = `pill pill-${age < 3 ? 'online' : 'maintenance'}`;
  node.textContent = age < 3 ? 'live' : `stale · ${Math.round(age)} s`;
}

const num = (n) => (typeof n === 'number' ? n.toLocaleString(undefined, { maximumFractionDigits: 1 }) : '–');

/*
 * A per-second rate: the field itself when the hub sends one (x_per_s), else
 * the difference of its counter (x) since the previous push.
 */
function rate(s, perSecond, counter, now) {
  if (typeof s[perSecond] === 'number') return s[perSecond];
  const prev = state.prev;
  if (!prev || typeof s[counter] !== 'number' || typeof prev.s[counter] !== 'number') return undefined;
  const dt = (now - prev.at) / 1000;
  return dt > 0 ? Math.max(0, s[counter] - prev.s[counter]) / dt : undefined;
}

function renderStats(s) {
  const now = performance.now();
  state.lastStatsAt = now;
  freshness();
  showError($('#stats-error'), null);
  const conns = s.sockets || s.connections || {};
  const upDown = (v) => (v === undefined ? null : pill(v === true || v === 'up' || v > 0 ? 'up' : 'down'));
  const redis = s.redis ?? (s.bus_up === undefined ? undefined : Boolean(s.bus_up));
  const postgres = s.postgres ?? s.pg_connections;
  const view = $('#stats-view');
  view.dataset.v = String(s.v ?? Date.now());
  fill(view,
    el('table', {},
      el('thead', {}, el('tr', {}, el('th', {}, 'Connections'), el('th', { class: 'num' }, 'now'))),
      el('tbody', {}, Object.entries(conns).map(([kind, n]) =>
        el('tr', { 'data-kind': kind }, el('td', {}, kind), el('td', { class: 'num' }, num(n)))))),
    el('dl', { class: 'facts' },
      el('dt', {}, 'Messages in'), el('dd', {}, `${num(rate(s, 'messages_in_per_s', 'messages_in', now))} /s`,
        typeof s.messages_in === 'number' ? el('span', { class: 'hint' }, ` (${num(s.messages_in)} in all)`) : null),
      el('dt', {}, 'Messages out'), el('dd', {}, `${num(rate(s, 'pushes_out_per_s', 'messages_out', now))} /s`,
        typeof s.messages_out === 'number' ? el('span', { class: 'hint' }, ` (${num(s.messages_out)} in all)`) : null),
      s.arcades ? [el('dt', {}, 'Arcades'), el('dd', {}, Object.entries(s.arcades).map(([k, n]) => [pill(`${k} ${n}`, k), ' ']))] : null,
      redis !== undefined ? [el('dt', {}, 'Redis'), el('dd', {}, upDown(redis))] : null,
      postgres !== undefined ? [el('dt', {}, 'PostgreSQL'), el('dd', {}, upDown(postgres),
        typeof s.pg_connections === 'number' ? el('span', { class: 'hint' }, ` ${s.pg_connections} connection(s)`) : null)] : null,
      el('dt', {}, 'Updated'), el('dd', {}, s.at ? new Date(s.at).toLocaleTimeString([], { hour12: false }) : new Date().toLocaleTimeString([], { hour12: false }))));
  state.prev = { s, at: now };
  renderLatency(s.ack_latency_ms || s.delivery || {});
}

/* {kind: {p50, p99}} or {kind: {count, mean_ms, p99_ms}}, in milliseconds. */
function renderLatency(byKind) {
  const kinds = Object.entries(byKind);
  if (!kinds.length) return;
  const ms = (n) => (typeof n === 'number' ? `${n.toFixed(n < 10 ? 1 : 0)} ms` : '–');
  fill($('#latency-view'), el('table', {},
    el('thead', {}, el('tr', {}, el('th', {}, 'Event'), el('th', { class: 'num' }, 'count'),
      el('th', { class: 'num' }, 'p50 / mean'), el('th', { class: 'num' }, 'p99'))),
    el('tbody', {}, kinds.map(([kind, d]) => el('tr', {},
      el('td', {}, kind), el('td', { class: 'num' }, num(d.count)),
      el('td', { class: 'num' }, ms(d.p50 ?? d.mean_ms)), el('td', { class: 'num' }, ms(d.p99 ?? d.p99_ms)))))));
}

/* ---- event stream ------------------------------------------------------------------- */

/* {"type":"admin_event","kind":..., fields...}, or the fields nested under "event". */
function onAdminEvent(msg) {
  const ev = msg.event && typeof msg.event === 'object' ? { ...msg.event, ...msg, event: undefined } : msg;
  const kind = ev.kind || ev.type || 'event';
  const skip = new Set(['type', 'kind', 'event', 'at', 'at_ms', 'created_at', 'updated_at']);
  const parts = Object.entries(ev)
    .filter(([k, v]) => !skip.has(k) && v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`);
  logLine($('#log'), kind, parts.join('  '));
}

/* ---- arcades -------------------------------------------------------------------------- */

async function loadArcades() {
  const view = $('#arcades-view');
  try {
    const arcades = listOf(await call('GET', '/api/v1/arcades'), 'arcades');
    fill(view, arcades.length ? el('table', {},
      el('thead', {}, el('tr', {}, el('th', {}, '#'), el('th', {}, 'Name'), el('th', {}, 'Status'))),
      el('tbody', {}, arcades.map((a) => el('tr', { 'data-arcade-id': a.id },
        el('td', {}, String(a.id)),
        el('td', {}, a.name || '', el('div', { class: 'hint' }, a.location || '')),
        el('td', {}, a.status ? pill(a.status) : '–')))))
      : el('p', { class: 'empty' }, 'No arcades yet.'));
    showError($('#arcades-error'), null);
  } catch (err) {
    fill(view, el('p', { class: 'empty' }, 'The arcades cannot be listed right now.'));
    showError($('#arcades-error'), err, 'GET /api/v1/arcades');
  }
}

/* ---- go ----------------------------------------------------------------------------------- */

const saved = credential('token', 'admin-token');
if (saved) start(saved);
