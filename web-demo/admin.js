/*
 * admin.js: the operations console. A live board per arcade (its queue
 * snapshots: status, now playing, called with its countdown, queue length and
 * ETA, online/offline since, maintenance) with its actions (void a booking,
 * end a stuck game, maintenance on/off), the deployment's hub processes, live
 * charts (uPlot, vendored) of the `stats` pushes and of the admin_event
 * stream, that stream in plain sentences with filters, and the operator
 * actions the admin REST API offers (void, maintenance, opening hours,
 * catalogue edits, tickets, keys), each after a confirmation in a <dialog>,
 * with what went wrong said in plain words next to the form.
 */
import { connect } from '/retronova.js';
import {
  $, tokenApi, el, fill, pill, credential, saveCredential, jwtClaims, listOf, showError, wsUrl,
  connectionPill, logLine, banner, clock, roughly, secondsLeft, confirmDialog, uuid, describeError,
} from '/common.js';

const WINDOW = 300; // seconds of history in the charts
const MINUTES = 15; // minutes in the reservations / revenue chart

const state = {
  token: '', rn: null, refused: false, lastStatsAt: 0, prev: null,
  arcades: new Map(), // id -> {arcade, q, since: {status, at}}
  games: new Map(),
  edit: new Map(), // the catalogue entries the edit form lists: id -> entry
  series: { t: [], player: [], cabinet: [], admin: [], in: [], out: [] },
  ack: { t: [], kinds: new Map() }, // kind -> [p99...]
  perMinute: new Map(), // minute (epoch/60) -> {reservations, cents}
  totals: { reservations: 0, cents: 0, currency: 'EUR' },
  charts: {},
};

const call = tokenApi(state);
const arcadeName = (id) => state.arcades.get(Number(id))?.arcade?.name || `arcade ${id}`;
const gameName = (id) => state.games.get(Number(id))?.name || `game ${id}`;
const names = (players) => (players || []).map((p) => (typeof p === 'string' ? p : p.pseudo || p.uid)).join(' & ');
const money = (cents, currency = 'EUR') => new Intl.NumberFormat('en', { style: 'currency', currency }).format(cents / 100);

/* ---- sign in ---------------------------------------------------------------------------- */

function start(token) {
  state.token = token;
  saveCredential('admin-token', token);
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#signout').hidden = false;
  $('#who').textContent = jwtClaims(token).sub || '';
  makeCharts();
  openSocket();
  loadCatalogue().then(loadArcades);
  setInterval(tick, 1000);
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
    banner($('#banner'), null);
    $('#who').textContent = who.uid || '';
    if (who.role !== 'admin') {
      showError($('#error'), { code: 'forbidden', message: `${who.uid} is a ${who.role}, not an admin: no live data will come` }, 'Role');
    } else showError($('#error'), null);
  });
  rn.on('disconnect', ({ code, willRetry }) => {
    setConn(willRetry ? 'reconnecting' : 'offline', String(code));
    if (willRetry) banner($('#banner'), 'Connection to the hub lost: reconnecting…', 'warn');
    else if (!state.refused) banner($('#banner'), code === 4001 ? 'This token is refused: sign out and open a fresh admin link.' : `Disconnected (${code}).`, 'bad');
  });
  rn.on('stats', onStats);
  rn.on('admin_event', onAdminEvent);
  rn.on('queue', onQueue);
}

/* ---- catalogue and arcades ------------------------------------------------------------------- */

async function loadCatalogue() {
  try {
    for (const g of listOf(await call('GET', '/api/v1/games'), 'items')) state.games.set(Number(g.id), g);
  } catch { /* names fall back to ids */ }
  fill($('#slot-game'), [...state.games.values()].map((g) => el('option', { value: String(g.id) }, g.name)));
}

async function loadArcades() {
  try {
    const list = listOf(await call('GET', '/api/v1/arcades'), 'items');
    for (const a of list) {
      const id = Number(a.id);
      const known = state.arcades.get(id);
      state.arcades.set(id, { arcade: a, q: known?.q || null, since: known?.since || { status: a.status, at: 0 } });
      if (!known) state.rn.subscribe(`arcade:${id}`).catch(() => {});
    }
    const options = () => list.map((a) => el('option', { value: String(a.id) }, `${a.id} · ${a.name}`));
    for (const id of ['#rot-arcade', '#slot-arcade', '#maint-arcade', '#hours-arcade']) {
      const select = $(id);
      const was = select.value;
      fill(select, options());
      if (was) select.value = was;
    }
    fillMaintSlots();
    if ($('#edit-kind').value === 'arcades') loadEditList();
    showError($('#board-error'), null);
    renderBoard();
  } catch (err) {
    sayError($('#board-error'), err, 'The arcades cannot be loaded (reload the page to try again)');
  }
}

function onQueue(q) {
  const id = Number(q.arcade_id);
  const entry = state.arcades.get(id) || { arcade: { id, name: q.name }, since: { status: q.status, at: 0 } };
  const wasOnline = entry.since.status !== 'offline';
  const isOnline = q.status !== 'offline';
  if (entry.q && wasOnline !== isOnline) entry.since = { status: q.status, at: Date.now() };
  else if (!entry.q) entry.since = { status: q.status, at: 0 };
  entry.q = q;
  state.arcades.set(id, entry);
  renderBoard();
}

function renderBoard() {
  const cards = [...state.arcades.entries()].sort((a, b) => a[0] - b[0]).map(([id, { arcade, q, since }]) => {
    const status = q?.status || arcade.status || 'unknown';
    const waiting = q?.waiting || [];
    const online = status !== 'offline';
    const maint = q ? Boolean(q.maintenance) : Boolean(arcade.maintenance);
    const maintMessage = q ? q.maintenance_message : arcade.maintenance_message;
    const sinceText = since.at ? ` since ${new Date(since.at).toLocaleTimeString('en-GB')}` : '';
    const playing = q?.playing;
    const called = q?.called;
    const name = arcade.name || q?.name;
    const voidButton = (r, what, label) => el('button', {
      type: 'button', class: 'small danger', 'data-void': r.reservation_id,
      'aria-label': `${label} #${r.reservation_id} (${names(r.players)})`,
      onclick: () => voidFromBoard(id, r, what),
    }, `${label}…`);
    return el('article', {
      class: 'card arcade-card', 'data-arcade-id': id, 'data-status': status, 'data-maintenance': String(maint),
    },
    el('h3', {}, el('span', {}, name), maint ? pill('maintenance') : pill(status)),
    el('dl', {},
      el('dt', {}, 'Cabinet'), el('dd', {}, online ? `online${sinceText}` : `offline${sinceText}`),
      el('dt', {}, 'Now playing'), el('dd', { class: 'now-playing' }, playing
        ? [names(playing.players), ' · ', playing.game || gameName(playing.game_id), ' · ',
          el('span', { class: 'elapsed', 'data-started': playing.started_ms || '' }, typeof playing.started_ms === 'number' ? clock((Date.now() - playing.started_ms) / 1000) : 'just started'),
          ' ', voidButton(playing, 'playing', 'End game')]
        : 'nobody'),
      el('dt', {}, 'Called'), el('dd', { class: 'called' }, called
        ? [names(called.players), ' · ', el('span', { class: 'countdown', 'data-deadline': called.deadline_ms || '' }, clock(secondsLeft(called))),
          ' ', voidButton(called, 'called', 'Void')]
        : 'nobody'),
      el('dt', {}, 'Queue'), el('dd', { class: 'queue-length' }, waiting.length
        ? `${waiting.length} waiting · last in ${roughly(waiting[waiting.length - 1].eta_s)}` : 'empty'),
      el('dt', {}, 'Maintenance'), el('dd', { class: 'maintenance' }, maint ? `on${maintMessage ? `: “${maintMessage}”` : ''}` : 'off', ' ',
        el('button', {
          type: 'button', class: `small ${maint ? '' : 'danger'}`, 'data-maintenance-switch': maint ? 'off' : 'on',
          onclick: () => maintenanceFromBoard(id, !maint),
        }, maint ? 'Back in service…' : 'Out of order…'))),
    waiting.length ? el('ol', { class: 'waiting', 'aria-label': `queue of ${name}` }, waiting.map((w) => el('li', { 'data-reservation-id': w.reservation_id },
      el('span', {}, `#${w.position} ${names(w.players)} · ${w.game || gameName(w.game_id)}`), voidButton(w, 'waiting', 'Void')))) : null);
  });
  fill($('#board'), cards.length ? cards : el('p', { class: 'empty' }, 'No arcades yet.'));
}

/* The fields of a void: a reason (kept in the audit log, told to the players) and the refund. */
function voidFields() {
  const reason = el('input', { id: 'dlg-reason', required: true, maxLength: 500, autocomplete: 'off' });
  const refund = el('input', { id: 'dlg-refund', type: 'checkbox', checked: true });
  return {
    reason, refund,
    body: [el('label', {}, 'Reason (the players see it)', reason), el('label', { class: 'check' }, refund, ' Refund their tickets')],
    check: () => (reason.value.trim() ? '' : 'Give a reason: the players see it, and it is kept in the audit log.'),
  };
}

/* POST .../void; resolves the answer, or says in plain words why not. */
async function voidReservation(id, reason, refund, errorNode, okNode) {
  try {
    const res = await call('POST', `/api/v1/admin/reservations/${encodeURIComponent(id)}/void`, { body: { reason, refund } });
    sayError(errorNode, null);
    fill(okNode, `Reservation #${res.reservation_id} voided (it was ${res.previous_status})${res.refunded ? ', tickets refunded' : ', no refund'}.`).hidden = false;
  } catch (err) {
    okNode.hidden = true;
    sayError(errorNode, err, `Void #${id}`);
  }
}

async function voidFromBoard(arcadeId, r, what) {
  const f = voidFields();
  const who = names(r.players);
  const text = what === 'playing'
    ? `End the game of ${who} (${r.game || gameName(r.game_id)}) at ${arcadeName(arcadeId)} now? Their reservation #${r.reservation_id} is voided and the next players are called.`
    : `Void reservation #${r.reservation_id} of ${who} (${r.game || gameName(r.game_id)}) at ${arcadeName(arcadeId)}?`;
  if (!(await confirmDialog(text, what === 'playing' ? 'End the game' : 'Void it', f))) return;
  await voidReservation(r.reservation_id, f.reason.value.trim(), f.refund.checked, $('#board-action-error'), $('#board-action-ok'));
}

/* PUT .../maintenance {on, message, refund_waiting}. */
async function switchMaintenance(arcadeId, slot, on, message, refundWaiting, errorNode, okNode) {
  const path = slot ? `/api/v1/admin/arcades/${arcadeId}/slots/${slot}/maintenance` : `/api/v1/admin/arcades/${arcadeId}/maintenance`;
  const body = slot ? { on, refund_waiting: refundWaiting } : { on, message: message || null, refund_waiting: refundWaiting };
  try {
    const res = await call('PUT', path, { body });
    sayError(errorNode, null);
    const refunded = (res.refunded_reservations || []).length;
    fill(okNode, `${arcadeName(arcadeId)}${slot ? `, slot ${slot},` : ''} is ${on ? 'out of order' : 'back in service'}${refunded ? ` (${refunded} booking(s) voided and refunded)` : ''}.`).hidden = false;
  } catch (err) {
    okNode.hidden = true;
    sayError(errorNode, err, `Maintenance of ${arcadeName(arcadeId)}`);
  }
}

async function maintenanceFromBoard(arcadeId, on) {
  const message = el('input', { id: 'dlg-message', maxLength: 500, autocomplete: 'off', placeholder: 'back at 3 pm' });
  const refund = el('input', { id: 'dlg-refund-waiting', type: 'checkbox' });
  const text = on
    ? `Put ${arcadeName(arcadeId)} out of order? Nobody is called and new bookings are refused until it is back; a called player goes back to the head of the queue.`
    : `Put ${arcadeName(arcadeId)} back in service? The next players are called.`;
  const body = on ? [el('label', {}, 'Message to players (optional)', message),
    el('label', { class: 'check' }, refund, ' Also void and refund everyone waiting')] : null;
  if (!(await confirmDialog(text, on ? 'Out of order' : 'Back in service', { body }))) return;
  await switchMaintenance(arcadeId, 0, on, message.value.trim(), refund.checked, $('#board-action-error'), $('#board-action-ok'));
}

/* Once a second: elapsed times and countdowns on the board, stats freshness. */
function tick() {
  for (const node of document.querySelectorAll('#board .elapsed[data-started]')) {
    const t = Number(node.dataset.started);
    if (t) node.textContent = clock((Date.now() - t) / 1000);
  }
  for (const node of document.querySelectorAll('#board .countdown[data-deadline]')) {
    const t = Number(node.dataset.deadline);
    if (t) node.textContent = clock((t - Date.now()) / 1000);
  }
  const node = $('#freshness');
  if (!state.lastStatsAt) return;
  const age = (performance.now() - state.lastStatsAt) / 1000;
  node.className = `pill pill-${age < 3 ? 'online' : 'maintenance'}`;
  node.textContent = age < 3 ? 'live' : `stale · ${Math.round(age)} s`;
}

/* ---- stats and charts --------------------------------------------------------------------------- */

const COLORS = ['#ff4fa3', '#40e0d0', '#fbbf24', '#a78bfa', '#4ade80', '#f87171', '#60a5fa'];

function chartOpts(el0, series, { bars = false } = {}) {
  const width = Math.max(280, el0.clientWidth - 8);
  return {
    width,
    height: 190,
    legend: { live: false },
    cursor: { show: false },
    scales: { x: { time: !bars } },
    axes: [
      { stroke: '#9a9dc0', grid: { stroke: '#2e3257' }, ticks: { stroke: '#2e3257' },
        values: bars ? (u, vals) => vals.map((v) => new Date(v * 60000).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' })) : undefined },
      { stroke: '#9a9dc0', grid: { stroke: '#2e3257' }, ticks: { stroke: '#2e3257' } },
    ],
    series: [{}, ...series.map((label, i) => ({
      label, stroke: COLORS[i % COLORS.length], width: 2,
      ...(bars ? { paths: window.uPlot.paths.bars({ size: [0.35, 40], align: i ? 1 : -1 }), fill: `${COLORS[i % COLORS.length]}99` } : {}),
    }))],
  };
}

function makeChart(id, labels, data, opts) {
  const box = $(`#${id}`);
  state.charts[id]?.destroy();
  if (!window.uPlot) return;
  state.charts[id] = new window.uPlot(chartOpts(box, labels, opts), data, box);
}

function makeCharts() {
  const s = state.series;
  makeChart('chart-conns', ['players', 'cabinets', 'admins'], [s.t, s.player, s.cabinet, s.admin]);
  makeChart('chart-msgs', ['in /s', 'out /s'], [s.t, s.in, s.out]);
  makeAckChart();
  makeMoneyChart();
}

function makeAckChart() {
  const kinds = [...state.ack.kinds.keys()];
  makeChart('chart-ack', kinds.length ? kinds : ['(no acks yet)'],
    [state.ack.t, ...(kinds.length ? kinds.map((k) => state.ack.kinds.get(k)) : [state.ack.t.map(() => null)])]);
}

function moneyData() {
  const now = Math.floor(Date.now() / 60000);
  const mins = Array.from({ length: MINUTES }, (_, i) => now - MINUTES + 1 + i);
  return [mins, mins.map((m) => state.perMinute.get(m)?.reservations || 0), mins.map((m) => (state.perMinute.get(m)?.cents || 0) / 100)];
}

function makeMoneyChart() {
  makeChart('chart-money', ['reservations', 'revenue €'], moneyData(), { bars: true });
}

const push = (arr, v) => { arr.push(v); if (arr.length > WINDOW) arr.shift(); };

function onStats(s) {
  const now = performance.now();
  state.lastStatsAt = now;
  const conns = s.connections || {};
  const prev = state.prev;
  const dt = prev ? (now - prev.at) / 1000 : 0;
  const rate = (k) => (prev && dt > 0 && typeof s[k] === 'number' ? Math.max(0, s[k] - prev.s[k]) / dt : 0);
  const t = Date.now() / 1000;
  const ser = state.series;
  push(ser.t, t);
  push(ser.player, conns.player ?? 0);
  push(ser.cabinet, conns.cabinet ?? 0);
  push(ser.admin, conns.admin ?? 0);
  push(ser.in, rate('messages_in'));
  push(ser.out, rate('messages_out'));
  state.prev = { s, at: now };
  $('#kpi-players').textContent = String(conns.player ?? 0);
  $('#kpi-cabinets').textContent = String(conns.cabinet ?? 0);
  $('#kpi-rate').textContent = (rate('messages_in') + rate('messages_out')).toFixed(1);
  $('#kpi-process').textContent = `pid ${s.pid ?? '?'}`;
  $('#kpi-process').title = `PostgreSQL connections ${s.pg_connections ?? '?'} · Redis ${s.bus_up ? 'up' : 'down'}`;
  $('#kpi-process').dataset.redis = s.bus_up ? 'up' : 'down';
  // commit -> ack p99 per kind: a new kind rebuilds the chart with one more series
  const delivery = s.delivery || {};
  let fresh = false;
  push(state.ack.t, t);
  for (const kind of Object.keys(delivery)) {
    if (!state.ack.kinds.has(kind)) {
      state.ack.kinds.set(kind, state.ack.t.slice(0, -1).map(() => null));
      fresh = true;
    }
  }
  for (const [kind, arr] of state.ack.kinds) {
    arr.push(delivery[kind]?.p99_ms ?? null);
    if (arr.length > WINDOW) arr.shift();
  }
  if (fresh) makeAckChart();
  renderDeployment(s.deployment, s.pid);
  const ch = state.charts;
  ch['chart-conns']?.setData([ser.t, ser.player, ser.cabinet, ser.admin]);
  ch['chart-msgs']?.setData([ser.t, ser.in, ser.out]);
  if (!fresh && state.ack.kinds.size) ch['chart-ack']?.setData([state.ack.t, ...state.ack.kinds.values()]);
  ch['chart-money']?.setData(moneyData());
}

/* The deployment's processes (stats.deployment, hub/engine/deploy.c): one row each, newest first. */
function renderDeployment(dep, ownPid) {
  if (!dep || !Array.isArray(dep.processes)) return;
  const now = Date.now();
  const procs = [...dep.processes].sort((a, b) => String(a.id).localeCompare(String(b.id)));
  $('#deploy-count').textContent = `${procs.length} process${procs.length === 1 ? '' : 'es'}`;
  $('#deploy-count').className = `pill pill-${procs.length ? 'online' : 'offline'}`;
  const ago = (ms) => (ms < 1500 ? 'now' : `${Math.round(ms / 1000)} s ago`);
  fill($('#deploy-rows'), procs.map((p) => {
    const c = p.connections || {};
    return el('tr', { 'data-process': p.id, 'data-pid': p.pid },
      el('th', { scope: 'row' }, p.id, p.pid === ownPid ? el('span', { class: 'hint' }, ' (this console)') : null),
      el('td', {}, p.worker ? String(p.worker) : '–'),
      el('td', {}, p.started_at_ms ? uptime((now - p.started_at_ms) / 1000) : '?'),
      el('td', { class: 'num' }, String(c.player ?? 0)),
      el('td', { class: 'num' }, String(c.cabinet ?? 0)),
      el('td', { class: 'num' }, String(c.admin ?? 0)),
      el('td', { class: 'num' }, Number(p.messages_per_s || 0).toFixed(1)),
      el('td', { class: 'num' }, p.commit_ack_p99_ms ? `${p.commit_ack_p99_ms} ms` : '–'),
      el('td', {}, p.at_ms ? ago(Math.max(0, now - p.at_ms)) : '?'));
  }));
}

/* 3725 -> "1 h 2 min"; 42 -> "42 s". */
function uptime(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

window.addEventListener('resize', () => {
  for (const [id, chart] of Object.entries(state.charts)) chart.setSize({ width: Math.max(280, $(`#${id}`).clientWidth - 8), height: 190 });
});

/* ---- the event stream ------------------------------------------------------------------------------- */

const GROUP = { purchase: 'money', promo: 'money', reservation: 'queue', score: 'score' };

/* One admin_event in plain words. */
function sentence(ev) {
  const who = ev.uid || 'someone';
  const where = ev.arcade_id ? ` at ${arcadeName(ev.arcade_id)}` : '';
  switch (ev.kind) {
    case 'purchase':
      return ev.status === 'succeeded'
        ? `${who} bought ${ev.tickets} tickets for ${money(ev.price_cents, ev.currency)}`
        : `${who}'s purchase of ${ev.tickets} tickets is ${ev.status}${ev.failure ? ` (${ev.failure})` : ''}`;
    case 'promo': return `${who} used a promo code: +${ev.delta} tickets (balance ${ev.balance})`;
    case 'reservation': {
      const words = {
        waiting: ev.reason === 'cabinet_unavailable' ? 'is back at the head of the queue (cabinet away)' : 'booked',
        called: 'is called', playing: 'unlocked and is playing', completed: 'finished', cancelled: 'cancelled (refunded)',
        expired: `expired (no-show${ev.refunded ? ', refunded' : ''})`, voided: 'was voided',
      };
      return `#${ev.reservation_id} ${gameName(ev.game_id)}${where}: ${who} ${words[ev.status] || ev.status}${ev.position ? `, position ${ev.position}` : ''}`;
    }
    case 'score': {
      const scores = (ev.scores || []).map((x) => `${x.pseudo} ${Number(x.score).toLocaleString('en')}`).join(' · ');
      const result = ev.tie ? 'a tie' : ev.winner ? `${ev.winner} wins` : 'solo';
      return `Game over, ${gameName(ev.game_id)}${where}: ${scores} (${result})`;
    }
    case 'adjustment': return `${ev.by} adjusted ${who}'s tickets by ${ev.delta > 0 ? '+' : ''}${ev.delta} (“${ev.reason}”), balance ${ev.balance}`;
    case 'arcade_created': return `Arcade ${ev.arcade_id} created`;
    case 'arcade_key_rotated': return `The API key of ${arcadeName(ev.arcade_id)} was rotated`;
    case 'user_deleted': return `${ev.by} deleted ${who}`;
    case 'user_restored': return `${ev.by} restored ${who}`;
    case 'arcade_retired': return `${ev.by} retired ${arcadeName(ev.arcade_id)}`;
    case 'reservation_voided':
      return `${ev.by} voided #${ev.reservation_id}${where} (it was ${ev.previous_status}): “${ev.reason}”, ${ev.refunded ? 'tickets refunded' : 'no refund'}`;
    case 'arcade_maintenance': {
      const refunded = (ev.refunded_reservations || []).length;
      return `${ev.by} put ${arcadeName(ev.arcade_id)} ${ev.after ? 'out of order' : 'back in service'}${ev.after && ev.message ? ` (“${ev.message}”)` : ''}${refunded ? `, ${refunded} booking(s) refunded` : ''}`;
    }
    case 'slot_maintenance':
      return `${ev.by} put slot ${ev.slot} (${gameName(ev.game_id)})${where} ${ev.after ? 'out of order' : 'back in service'}`;
    case 'arcade_hours': {
      const h = ev.after;
      return `${ev.by} set the opening hours of ${arcadeName(ev.arcade_id)}: ${h ? `${h.opens_at}–${h.closes_at} (${h.time_zone})` : 'open at all hours'}`;
    }
    case 'audit': return auditSentence(ev.entry || {});
    default: return `${ev.kind}: ${JSON.stringify(ev)}`;
  }
}

/* The actions that have their own admin_event kind: their audit entry would say it twice. */
const SAID = new Set(['arcade.create', 'arcade.hours', 'arcade.maintenance', 'arcade.retire', 'arcade.rotate_key',
  'reservation.void', 'slot.maintenance', 'user.delete', 'user.restore', 'tickets.adjust']);
const said = (action) => SAID.has(action) || /^(purchase|payment)\./.test(action || '');

/* An audit entry: who did what to what, and the fields it changed. */
function auditSentence(e) {
  const before = e.before && typeof e.before === 'object' ? e.before : {};
  const after = e.after && typeof e.after === 'object' ? e.after : {};
  const show = (v) => (v === null || v === undefined ? '–' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const changes = Object.keys(after).filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]))
    .map((k) => `${k} ${show(before[k])} → ${show(after[k])}`);
  return `${e.actor || 'someone'}: ${e.action || 'change'} ${e.target_type || ''} ${e.target_id ?? ''}${changes.length ? ` (${changes.join(', ')})` : ''}`;
}

function onAdminEvent(msg) {
  const ev = msg.event && typeof msg.event === 'object' ? msg.event : msg;
  const kind = ev.kind || 'event';
  if (kind === 'audit' && said(ev.entry?.action)) return;
  const minute = Math.floor((ev.at_ms || Date.now()) / 60000);
  const bucket = state.perMinute.get(minute) || { reservations: 0, cents: 0 };
  if (kind === 'reservation' && ev.status === 'waiting' && !ev.reason) {
    bucket.reservations += 1;
    state.totals.reservations += 1;
  }
  if (kind === 'purchase' && ev.status === 'succeeded') {
    bucket.cents += ev.price_cents || 0;
    state.totals.cents += ev.price_cents || 0;
    state.totals.currency = ev.currency || 'EUR';
  }
  state.perMinute.set(minute, bucket);
  $('#kpi-reservations').textContent = String(state.totals.reservations);
  $('#kpi-revenue').textContent = money(state.totals.cents, state.totals.currency);
  state.charts['chart-money']?.setData(moneyData());
  logLine($('#log'), kind, sentence(ev));
  const line = $('#log').firstElementChild;
  line.dataset.group = GROUP[kind] || 'ops';
  line.dataset.kind = kind;
  applyFilter(line);
}

function applyFilter(line) {
  const on = new Set([...document.querySelectorAll('#filters input[type="checkbox"]:checked')].map((c) => c.value));
  const text = $('#filter-text').value.trim().toLowerCase();
  line.hidden = !on.has(line.dataset.group) || (text && !line.textContent.toLowerCase().includes(text));
}
$('#filters').addEventListener('input', () => {
  for (const line of document.querySelectorAll('#log > li[data-kind]')) applyFilter(line);
});

/* ---- operator actions ------------------------------------------------------------------------------- */

/* What went wrong, in plain words, with the next step; the API's code stays in the title. */
const PLAIN = {
  network: () => 'The hub cannot be reached. Check that it runs, then try again.',
  timeout: () => 'The hub did not answer in time. Try again in a moment.',
  forbidden: () => 'This token is not an admin\'s: open the admin link printed by make run.',
  reservation_not_found: () => 'No reservation has this number. Check it on the live board.',
  not_voidable: (e) => `Nothing to void: ${e.message}. The board shows what is still open.`,
  bad_reason: () => 'Give a reason (1 to 500 characters): the players see it, and it is kept in the audit log.',
  arcade_not_found: () => 'This arcade does not exist (any more). Reload the page.',
  slot_not_found: () => 'This arcade has no such slot. Pick one of its games.',
  bad_message: () => 'The message is too long: 500 characters at most.',
  bad_hours: (e) => `These hours are not valid: ${e.message}.`,
  arcade_has_reservations: () => 'Players are still in this arcade\'s queue: void their bookings (or wait), then retire it.',
  game_in_progress: () => 'A game is being played there: end it first.',
  game_name_taken: () => 'Another game already has this name.',
  promo_code_taken: () => 'Another promo code already has this name.',
  slot_taken: () => 'This slot already holds a game: pick another slot.',
  game_already_on_arcade: () => 'This game is already on that arcade.',
  user_not_found: () => 'No player has this uid. Check the spelling (e.g. demo-alice).',
  empty_patch: () => 'Nothing to change: type a new value.',
  unknown_field: (e) => `The hub does not know this field: ${e.message}.`,
  slot_in_use: () => 'A booking for this slot\'s game is still open: void it (or wait), then change the slot.',
  already_deleted: () => 'This account is deleted already: “Restore…” brings it back.',
  not_deleted: () => 'This account is not deleted: nothing to restore.',
  cannot_delete_self: () => 'You cannot delete your own account.',
  has_active_reservations: (e) => `Not now: ${e.message}.`,
};

/* Says err in node in plain words (what failed first); sayError(node, null) hides it. */
function sayError(node, err, what = '') {
  node.removeAttribute('title');
  if (!err) return showError(node, null);
  const plain = PLAIN[err.code] || (/^invalid_/.test(err.code) ? (e) => `Not a valid value: ${e.message}.` : null);
  if (!plain) return showError(node, err, what);
  fill(node, what ? el('strong', {}, `${what}: `) : null, plain(err));
  node.title = describeError(err);
  node.hidden = false;
  return undefined;
}

/*
 * Runs a confirmed action: errors next to the form, success in its notice.
 * confirmText() returns the question ('' to stop: check() said why), or
 * {text, ok, body, check} for a dialog with fields of its own.
 */
function action(formId, errorId, okId, { confirmText, run, done, submitter = () => $(formId).querySelector('button') }) {
  $(formId).addEventListener('submit', (e) => {
    e.preventDefault();
    confirmed(formId, errorId, okId, { confirmText, run, done, button: submitter() });
  });
}

async function confirmed(formId, errorId, okId, { confirmText, run, done, button }) {
  const ask = confirmText();
  if (!ask) return;
  const q = typeof ask === 'string' ? { text: ask } : ask;
  if (!(await confirmDialog(q.text, q.ok, q))) return;
  button.disabled = true;
  $(okId).hidden = true;
  try {
    const res = await run();
    sayError($(errorId), null);
    fill($(okId), done(res));
    $(okId).hidden = false;
  } catch (err) {
    sayError($(errorId), err);
  } finally {
    button.disabled = false;
  }
}

/* A form's own check before any dialog: says what is missing next to it. */
function needs(errorId, problem) {
  if (problem) fill($(errorId), problem).hidden = false;
  else showError($(errorId), null);
  return !problem;
}

action('#adjust-form', '#adjust-error', '#adjust-ok', {
  confirmText: () => {
    const d = Number($('#adj-delta').value);
    return `${d > 0 ? 'Give' : 'Take'} ${Math.abs(d)} ticket(s) ${d > 0 ? 'to' : 'from'} ${$('#adj-uid').value.trim()}?`;
  },
  run: () => call('PUT', `/api/v1/admin/users/${encodeURIComponent($('#adj-uid').value.trim())}/tickets`, {
    body: { delta: Number($('#adj-delta').value), reason: $('#adj-reason').value.trim() }, idempotencyKey: uuid(),
  }),
  done: (res) => `Done: ${res.uid} now has ${res.balance} tickets.`,
});

action('#rotate-form', '#rotate-error', '#rotate-ok', {
  confirmText: () => `Rotate the API key of ${arcadeName($('#rot-arcade').value)}? Its cabinet is disconnected until it uses the new key.`,
  run: () => call('POST', `/api/v1/admin/arcades/${encodeURIComponent($('#rot-arcade').value)}/rotate-key`),
  done: (res) => [el('p', {}, 'New key (shown once):'), el('p', { class: 'secret' }, res.api_key),
    el('a', { href: `/cabinet.html#key=${res.api_key}`, target: '_blank', rel: 'noopener' }, 'Open the cabinet screen with it')],
});

action('#game-form', '#game-error', '#game-ok', {
  confirmText: () => `Add “${$('#game-name').value.trim()}” to the catalogue at ${$('#game-cost').value} ticket(s)?`,
  run: () => {
    const [min, max] = $('#game-players').value.split('-').map(Number);
    return call('POST', '/api/v1/admin/games', {
      body: { name: $('#game-name').value.trim(), ticket_cost: Number($('#game-cost').value), min_players: min, max_players: max },
    });
  },
  done: (res) => {
    state.games.set(Number(res.game.id), res.game);
    $('#slot-game').append(el('option', { value: String(res.game.id) }, res.game.name));
    return `Created game ${res.game.id}: ${res.game.name}. Put it on an arcade to make it playable.`;
  },
});

action('#slot-form', '#slot-error', '#slot-ok', {
  submitter: () => $('#slot-add'),
  confirmText: () => `Put ${gameName($('#slot-game').value)} on ${arcadeName($('#slot-arcade').value)}, slot ${$('#slot-n').value}?`,
  run: () => call('POST', `/api/v1/admin/arcades/${encodeURIComponent($('#slot-arcade').value)}/games`, {
    body: { game_id: Number($('#slot-game').value), slot: Number($('#slot-n').value) },
  }),
  done: (res) => {
    loadArcades();
    return `${gameName(res.game_id)} is on ${arcadeName(res.arcade_id)}, slot ${res.slot}.`;
  },
});

/* The slot buttons other than Add: PATCH (another game in it) or DELETE (emptied). */
function slotButton(id, { question, method, body, said }) {
  $(id).addEventListener('click', () => {
    if (!$('#slot-form').reportValidity()) return;
    const arcade = $('#slot-arcade').value;
    const slot = $('#slot-n').value;
    confirmed('#slot-form', '#slot-error', '#slot-ok', {
      button: $(id),
      confirmText: () => question(arcade, slot),
      run: () => call(method, `/api/v1/admin/arcades/${encodeURIComponent(arcade)}/games/${encodeURIComponent(slot)}`, { body: body() }),
      done: () => {
        loadArcades();
        return said(arcade, slot);
      },
    });
  });
}
slotButton('#slot-replace', {
  method: 'PATCH',
  body: () => ({ game_id: Number($('#slot-game').value) }),
  question: (a, n) => `Put ${gameName($('#slot-game').value)} in slot ${n} of ${arcadeName(a)}, in place of the game there?`,
  said: (a, n) => `Slot ${n} of ${arcadeName(a)} now holds ${gameName($('#slot-game').value)}.`,
});
slotButton('#slot-empty', {
  method: 'DELETE',
  body: () => undefined,
  question: (a, n) => `Empty slot ${n} of ${arcadeName(a)}? Its game can no longer be booked there.`,
  said: (a, n) => `Slot ${n} of ${arcadeName(a)} is empty.`,
});

action('#promo-form', '#promo-error', '#promo-ok', {
  confirmText: () => `Create the promo code ${$('#promo-code').value.trim().toUpperCase()}: ${$('#promo-tickets').value} ticket(s) per player${
    $('#promo-max').value ? `, ${$('#promo-max').value} use(s) at most` : ', no limit'}?`,
  run: () => {
    const body = { code: $('#promo-code').value.trim(), tickets: Number($('#promo-tickets').value) };
    if ($('#promo-max').value) body.max_uses = Number($('#promo-max').value);
    return call('POST', '/api/v1/admin/promo-codes', { body });
  },
  done: (res) => {
    if ($('#edit-kind').value === 'promo-codes') loadEditList();
    return `Promo code ${res.promo_code.code} created (${res.promo_code.tickets} tickets).`;
  },
});

action('#offer-form', '#offer-error', '#offer-ok', {
  confirmText: () => `Sell “${$('#offer-name').value.trim()}”: ${$('#offer-tickets').value} ticket(s) for ${money(Math.round(Number($('#offer-price').value) * 100))}?`,
  run: () => call('POST', '/api/v1/admin/offers', {
    body: { name: $('#offer-name').value.trim(), tickets: Number($('#offer-tickets').value), price_cents: Math.round(Number($('#offer-price').value) * 100) },
  }),
  done: (res) => {
    if ($('#edit-kind').value === 'offers') loadEditList();
    const o = res.offer || res;
    return `Offer ${o.id} on sale: ${o.name}, ${o.tickets} tickets for ${money(o.price_cents, o.currency)}.`;
  },
});

action('#user-form', '#user-error', '#user-ok', {
  submitter: () => $('#user-delete'),
  confirmText: () => `Delete the account of ${$('#user-uid').value.trim()}? They are signed out everywhere and their waiting bookings are cancelled and refunded.`,
  run: () => call('DELETE', `/api/v1/admin/users/${encodeURIComponent($('#user-uid').value.trim())}`),
  done: () => `${$('#user-uid').value.trim()} is deleted (“Restore…” brings the account back).`,
});

$('#user-restore').addEventListener('click', () => {
  if (!$('#user-form').reportValidity()) return;
  const uid = $('#user-uid').value.trim();
  confirmed('#user-form', '#user-error', '#user-ok', {
    button: $('#user-restore'),
    confirmText: () => `Restore the account of ${uid}?`,
    run: () => call('POST', `/api/v1/admin/users/${encodeURIComponent(uid)}/restore`),
    done: () => `${uid} is back.`,
  });
});

action('#arcade-form', '#arcade-error', '#arcade-ok', {
  confirmText: () => `Open a new arcade “${$('#arc-name').value.trim()}”?`,
  run: () => call('POST', '/api/v1/admin/arcades', { body: { name: $('#arc-name').value.trim(), location: $('#arc-location').value.trim() } }),
  done: (res) => {
    loadArcades();
    return [el('p', {}, `Arcade ${res.arcade.id} created. Its cabinet key (shown once):`), el('p', { class: 'secret' }, res.api_key),
      el('a', { href: `/cabinet.html#key=${res.api_key}`, target: '_blank', rel: 'noopener' }, 'Open its cabinet screen')];
  },
});

action('#void-form', '#void-error', '#void-ok', {
  confirmText: () => {
    const id = $('#void-id').value;
    return `Void reservation #${id}${$('#void-refund').checked ? ' and refund its tickets' : ' without a refund'}? If it is being played, the game ends and the next players are called.`;
  },
  run: () => call('POST', `/api/v1/admin/reservations/${encodeURIComponent($('#void-id').value)}/void`, {
    body: { reason: $('#void-reason').value.trim(), refund: $('#void-refund').checked },
  }),
  done: (res) => `Reservation #${res.reservation_id} voided (it was ${res.previous_status})${res.refunded ? ', tickets refunded' : ', no refund'}.`,
});

/* The maintenance form's "What": the whole arcade, or one of its slots. */
function fillMaintSlots() {
  const entry = state.arcades.get(Number($('#maint-arcade').value));
  const slots = (entry?.arcade?.games || []).map((g) => el('option', { value: String(g.slot) }, `slot ${g.slot}: ${g.name || gameName(g.game_id)}`));
  fill($('#maint-slot'), el('option', { value: '' }, 'the whole arcade'), slots);
}
$('#maint-arcade').addEventListener('change', fillMaintSlots);

action('#maint-form', '#maint-error', '#maint-ok', {
  confirmText: () => {
    const on = $('#maint-on').value === 'on';
    const slot = $('#maint-slot').value;
    const what = `${arcadeName($('#maint-arcade').value)}${slot ? `, slot ${slot}` : ''}`;
    return on ? `Put ${what} out of order?${$('#maint-refund').checked ? ' Everyone waiting is voided and refunded.' : ' The waiting players keep their place.'}`
      : `Put ${what} back in service?`;
  },
  run: () => {
    const arcade = $('#maint-arcade').value;
    const slot = $('#maint-slot').value;
    const on = $('#maint-on').value === 'on';
    const path = slot ? `/api/v1/admin/arcades/${encodeURIComponent(arcade)}/slots/${encodeURIComponent(slot)}/maintenance`
      : `/api/v1/admin/arcades/${encodeURIComponent(arcade)}/maintenance`;
    const body = { on, refund_waiting: $('#maint-refund').checked };
    if (!slot) body.message = $('#maint-message').value.trim() || null;
    return call('PUT', path, { body }).then((res) => ({ ...res, arcade, slot, on }));
  },
  done: (res) => `${arcadeName(res.arcade)}${res.slot ? `, slot ${res.slot},` : ''} is ${res.on ? 'out of order' : 'back in service'}${
    (res.refunded_reservations || []).length ? ` (${res.refunded_reservations.length} booking(s) voided and refunded)` : ''}.`,
});

action('#hours-form', '#hours-error', '#hours-ok', {
  confirmText: () => {
    const open = $('#hours-open').value;
    const close = $('#hours-close').value;
    if (!needs('#hours-error', Boolean(open) !== Boolean(close) ? 'Give both times, or neither (open at all hours).' : '')) return '';
    return `Set the hours of ${arcadeName($('#hours-arcade').value)} to ${open ? `${open}–${close}` : 'open at all hours'}?`;
  },
  run: () => {
    const body = { opens_at: $('#hours-open').value || null, closes_at: $('#hours-close').value || null };
    if ($('#hours-tz').value.trim()) body.time_zone = $('#hours-tz').value.trim();
    if ($('#hours-last').value !== '') body.last_call_min = Number($('#hours-last').value);
    return call('PUT', `/api/v1/admin/arcades/${encodeURIComponent($('#hours-arcade').value)}/hours`, { body });
  },
  done: (res) => {
    const h = res.opening_hours;
    return `${arcadeName(res.arcade_id)}: ${h ? `open ${h.opens_at}–${h.closes_at} (${h.time_zone}), last call ${h.last_call_min} min before` : 'open at all hours'}; ${res.open_now ? 'open now' : 'closed now'}.`;
  },
});

/* ---- catalogue edits: PATCH or DELETE /api/v1/admin/{kind}/{id} ------------------------------------- */

/* Per kind: its list, how an entry is named, its editable fields (text, int, bool; empty is null). */
const EDIT = {
  arcades: {
    word: 'arcade', list: async () => [...state.arcades.values()].map((e) => e.arcade), name: (x) => x.name,
    fields: { name: 'text', location: 'text' },
  },
  games: {
    word: 'game', list: async () => listOf(await call('GET', '/api/v1/games'), 'items'), name: (x) => x.name,
    fields: { ticket_cost: 'int', name: 'text', description: 'text', min_players: 'int', max_players: 'int', max_duration_s: 'int' },
  },
  offers: {
    word: 'ticket offer', list: async () => listOf(await call('GET', '/api/v1/admin/offers?limit=100'), 'items'),
    name: (x) => `${x.name || `${x.tickets} tickets`}${x.active === false ? ' (inactive)' : ''}`,
    fields: { price_cents: 'int', tickets: 'int', name: 'text', currency: 'text', active: 'bool' },
  },
  'promo-codes': {
    word: 'promo code', list: async () => listOf(await call('GET', '/api/v1/admin/promo-codes?limit=100'), 'items'),
    name: (x) => `${x.code}${x.active === false ? ' (inactive)' : ''}`,
    fields: { tickets: 'int', max_uses: 'int', valid_from: 'text', valid_until: 'text', active: 'bool' },
  },
};
const HINT = { int: 'A whole number; empty clears it where it may be empty.', text: 'Text; empty clears it where it may be empty.', bool: 'yes or no.' };

async function loadEditList() {
  const kind = EDIT[$('#edit-kind').value];
  fill($('#edit-field'), Object.keys(kind.fields).map((f) => el('option', { value: f }, f.replace(/_/g, ' '))));
  editHint();
  try {
    const items = await kind.list();
    const was = $('#edit-id').value;
    state.edit = new Map(items.map((x) => [String(x.id), x]));
    fill($('#edit-id'), items.map((x) => el('option', { value: String(x.id) }, `${x.id} · ${kind.name(x)}`)));
    if (state.edit.has(was)) $('#edit-id').value = was;
    showError($('#edit-error'), null);
  } catch (err) {
    sayError($('#edit-error'), err, `The ${kind.word}s cannot be listed`);
  }
  editHint();
}

function editHint() {
  const kind = EDIT[$('#edit-kind').value];
  const field = $('#edit-field').value;
  const cur = state.edit.get($('#edit-id').value)?.[field];
  $('#edit-hint').textContent = `${HINT[kind.fields[field]] || ''}${cur !== undefined ? ` Now: ${cur === null ? 'empty' : String(cur)}.` : ''}`;
}
$('#edit-kind').addEventListener('change', loadEditList);
$('#edit-id').addEventListener('change', editHint);
$('#edit-field').addEventListener('change', editHint);

/* The typed value as the field's JSON type, or undefined after saying why not. */
function editValue() {
  const type = EDIT[$('#edit-kind').value].fields[$('#edit-field').value];
  const raw = $('#edit-value').value.trim();
  if (raw === '' && type !== 'bool') return null;
  if (type === 'int') {
    const n = Number(raw);
    return needs('#edit-error', Number.isInteger(n) ? '' : 'Type a whole number (e.g. 2).') ? n : undefined;
  }
  if (type === 'bool') {
    const yes = /^(yes|true|on|1)$/i.test(raw);
    return needs('#edit-error', yes || /^(no|false|off|0)$/i.test(raw) ? '' : 'Type yes or no.') ? yes : undefined;
  }
  return raw;
}

action('#edit-form', '#edit-error', '#edit-ok', {
  submitter: () => $('#edit-save'),
  confirmText: () => {
    const kind = EDIT[$('#edit-kind').value];
    const entry = state.edit.get($('#edit-id').value);
    if (!needs('#edit-error', entry ? '' : `Pick a ${kind.word}.`)) return '';
    const value = editValue();
    if (value === undefined) return '';
    return `Set the ${$('#edit-field').value.replace(/_/g, ' ')} of ${kind.word} ${entry.id} (${kind.name(entry)}) to ${value === null ? 'empty' : String(value)}?`;
  },
  run: () => {
    const kind = $('#edit-kind').value;
    return call('PATCH', `/api/v1/admin/${kind}/${encodeURIComponent($('#edit-id').value)}`, { body: { [$('#edit-field').value]: editValue() } });
  },
  done: () => {
    const kind = EDIT[$('#edit-kind').value];
    const text = `Saved: the ${$('#edit-field').value.replace(/_/g, ' ')} of ${kind.word} ${$('#edit-id').value} is now ${$('#edit-value').value.trim() || 'empty'}.`;
    if ($('#edit-kind').value === 'arcades') loadArcades();
    else loadEditList();
    if ($('#edit-kind').value === 'games') loadCatalogue();
    return text;
  },
});

$('#edit-retire').addEventListener('click', () => {
  const kindKey = $('#edit-kind').value;
  const kind = EDIT[kindKey];
  const entry = state.edit.get($('#edit-id').value);
  confirmed('#edit-form', '#edit-error', '#edit-ok', {
    button: $('#edit-retire'),
    confirmText: () => {
      if (!needs('#edit-error', entry ? '' : `Pick a ${kind.word}.`)) return '';
      const what = { arcades: 'Its cabinet is disconnected and its key refused; its history stays.',
        games: 'No new booking; games already booked are played.', offers: 'It is no longer sold (active: yes brings it back).',
        'promo-codes': 'It can no longer be used; its uses stay.' }[kindKey];
      return { text: `Retire ${kind.word} ${entry.id} (${kind.name(entry)})? ${what}`, ok: 'Retire' };
    },
    run: () => call('DELETE', `/api/v1/admin/${kindKey}/${encodeURIComponent(entry.id)}`),
    done: () => {
      if (kindKey === 'arcades') {
        state.arcades.delete(Number(entry.id));
        loadArcades();
      } else loadEditList();
      return `Retired ${kind.word} ${entry.id} (${kind.name(entry)}).`;
    },
  });
});

/* ---- go ---------------------------------------------------------------------------------------------- */

const saved = credential('token', 'admin-token');
if (saved) start(saved);
else $('#signin').hidden = false;
