/*
 * admin.js: the operations console. A live board per arcade (its queue
 * snapshots: status, now playing, called with its countdown, queue length and
 * ETA, online/offline since), live charts (uPlot, vendored) of the `stats`
 * pushes and of the admin_event stream, that stream in plain sentences with
 * filters, and the operator actions the admin REST API offers, each after a
 * confirmation.
 */
import { connect } from '/retronova.js';
import {
  $, tokenApi, el, fill, pill, credential, saveCredential, jwtClaims, listOf, showError, wsUrl,
  connectionPill, logLine, banner, clock, roughly, secondsLeft, confirmDialog, uuid,
} from '/common.js';

const WINDOW = 300; // seconds of history in the charts
const MINUTES = 15; // minutes in the reservations / revenue chart

const state = {
  token: '', rn: null, refused: false, lastStatsAt: 0, prev: null,
  arcades: new Map(), // id -> {arcade, q, since: {status, at}}
  games: new Map(),
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
    fill($('#rot-arcade'), options());
    fill($('#slot-arcade'), options());
    showError($('#board-error'), null);
    renderBoard();
  } catch (err) {
    showError($('#board-error'), err, 'GET /api/v1/arcades');
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
    const sinceText = since.at ? ` since ${new Date(since.at).toLocaleTimeString('en-GB')}` : '';
    const playing = q?.playing;
    const called = q?.called;
    return el('article', { class: 'card arcade-card', 'data-arcade-id': id, 'data-status': status },
      el('h3', {}, el('span', {}, arcade.name || q?.name), pill(status)),
      el('dl', {},
        el('dt', {}, 'Cabinet'), el('dd', {}, online ? `online${sinceText}` : `offline${sinceText}`),
        el('dt', {}, 'Now playing'), el('dd', { class: 'now-playing' }, playing
          ? [names(playing.players), ' · ', playing.game || gameName(playing.game_id), ' · ',
            el('span', { class: 'elapsed', 'data-started': playing.started_ms || '' }, typeof playing.started_ms === 'number' ? clock((Date.now() - playing.started_ms) / 1000) : 'just started')]
          : 'nobody'),
        el('dt', {}, 'Called'), el('dd', { class: 'called' }, called
          ? [names(called.players), ' · ', el('span', { class: 'countdown', 'data-deadline': called.deadline_ms || '' }, clock(secondsLeft(called)))]
          : 'nobody'),
        el('dt', {}, 'Queue'), el('dd', { class: 'queue-length' }, waiting.length
          ? `${waiting.length} waiting · last in ${roughly(waiting[waiting.length - 1].eta_s)}` : 'empty')));
  });
  fill($('#board'), cards.length ? cards : el('p', { class: 'empty' }, 'No arcades yet.'));
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
  const ch = state.charts;
  ch['chart-conns']?.setData([ser.t, ser.player, ser.cabinet, ser.admin]);
  ch['chart-msgs']?.setData([ser.t, ser.in, ser.out]);
  if (!fresh && state.ack.kinds.size) ch['chart-ack']?.setData([state.ack.t, ...state.ack.kinds.values()]);
  ch['chart-money']?.setData(moneyData());
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
    default: return `${ev.kind}: ${JSON.stringify(ev)}`;
  }
}

function onAdminEvent(msg) {
  const ev = msg.event && typeof msg.event === 'object' ? msg.event : msg;
  const kind = ev.kind || 'event';
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

/* Runs a confirmed action: errors next to the form, success in its notice. */
function action(formId, errorId, okId, { confirmText, run, done }) {
  $(formId).addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = $(formId).querySelector('button');
    const text = confirmText();
    if (!text || !(await confirmDialog(text))) return;
    button.disabled = true;
    $(okId).hidden = true;
    try {
      const res = await run();
      showError($(errorId), null);
      fill($(okId), done(res));
      $(okId).hidden = false;
    } catch (err) {
      showError($(errorId), err);
    } finally {
      button.disabled = false;
    }
  });
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
  confirmText: () => `Put ${gameName($('#slot-game').value)} on ${arcadeName($('#slot-arcade').value)}, slot ${$('#slot-n').value}?`,
  run: () => call('POST', `/api/v1/admin/arcades/${encodeURIComponent($('#slot-arcade').value)}/games`, {
    body: { game_id: Number($('#slot-game').value), slot: Number($('#slot-n').value) },
  }),
  done: (res) => `${gameName(res.game_id)} is on ${arcadeName(res.arcade_id)}, slot ${res.slot}.`,
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

/* ---- go ---------------------------------------------------------------------------------------------- */

const saved = credential('token', 'admin-token');
if (saved) start(saved);
else $('#signin').hidden = false;
