/*
 * phone.js: the player's app. One column at phone size: the current spot
 * (position, ETA, the code and its countdown, the game's result) always on
 * top, then Play (arcade -> game -> solo or a friend -> reserve), Tickets
 * (buy, promo code), Friends (requests, search) and History. REST for what
 * the player asks; the WebSocket (retronova.js: acked, resumed after a
 * reconnect) for what happens. Errors are said in plain words next to what
 * caused them, with the next step.
 */
import { connect } from '/retronova.js';
import {
  $, tokenApi, el, fill, pill, credential, saveCredential, jwtClaims, listOf, uuid, showError,
  wsUrl, roughly, countdown, secondsLeft, connectionPill, logLine, banner, clock,
} from '/common.js';

const FINAL = new Set(['completed', 'cancelled', 'expired', 'voided', 'timed_out']);

const state = {
  token: '',
  rn: null,
  me: null, // the profile: {uid, pseudo, tickets_balance}
  balance: null,
  games: new Map(), // game id -> {id, name, ticket_cost, min_players, max_players}
  arcades: new Map(), // arcade id -> arcade (REST, then live status from snapshots)
  queues: new Map(), // arcade id -> last queue snapshot
  reservations: new Map(), // id -> {id, arcade_id, game_id, status, position, eta_s, code, deadline}
  friends: [],
  pick: { arcade: 0, game: 0, partner: '' }, // the Play flow's choices
  result: null, // the last score event, shown until dismissed
  notice: null, // a reservation that ended without a game (voided, missed), shown until OK
  turn: null, // {reservation_id, stop}
  refused: false,
  connected: false,
};

const log = (kind, text) => logLine($('#log'), kind, text);
const arcadeName = (id) => state.arcades.get(Number(id))?.name || `arcade ${id}`;
const gameName = (id) => state.games.get(Number(id))?.name || `game ${id}`;
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
const call = tokenApi(state);

/* ---- errors in plain words ----------------------------------------------------- */

/*
 * What to tell a player about an error, and the next step:
 * {text, action: {label, run}}. Unknown codes keep the hub's own message.
 */
function plain(err) {
  const go = (tab, label) => ({ label, run: () => showTab(tab) });
  switch (err?.code) {
    case 'insufficient_tickets': return { text: 'Not enough tickets for this game.', action: go('tickets', 'Buy tickets') };
    case 'not_registered': return { text: 'You need a player profile first.', action: { label: 'Create my profile', run: showSignup } };
    case 'not_a_friend': return { text: 'You can only play with a friend.', action: go('friends', 'Add a friend') };
    case 'arcade_unavailable': return { text: 'This arcade is in maintenance: try another one or come back later.', action: { label: 'Other arcades', run: () => { state.pick.arcade = 0; renderPlay(); } } };
    case 'game_not_on_arcade': return { text: 'This game is not on this arcade any more.', action: null };
    case 'wrong_player_count': return { text: 'This game needs a different number of players: pick “Just me” or a friend.', action: null };
    case 'already_queued': return { text: 'You already have a place in a queue.', action: null };
    case 'promo_not_found': return { text: 'This code does not exist. Check the spelling.', action: null };
    case 'promo_already_used': return { text: 'You have already used this code.', action: null };
    case 'promo_expired': case 'promo_inactive': return { text: 'This code is not valid any more.', action: null };
    case 'promo_exhausted': return { text: 'This code has been used up.', action: null };
    case 'payment_declined': return { text: 'The payment was declined. Nothing was charged.', action: null };
    case 'pseudo_taken': return { text: 'This player name is taken: try another.', action: null };
    case 'invalid_pseudo': return { text: 'Player names are 3 to 32 letters, digits, dots, dashes or underscores.', action: null };
    case 'invalid_name': return { text: 'Please fill in your first and last name.', action: null };
    case 'user_not_found': return { text: 'No player has that name.', action: null };
    case 'already_friends': return { text: 'You are already friends.', action: null };
    case 'already_requested': return { text: 'You already asked: wait for their answer.', action: null };
    case 'cannot_befriend_self': return { text: 'That is you!', action: null };
    case 'rate_limited': return { text: 'Too many tries: wait a moment and try again.', action: null };
    case 'network': case 'timeout': return { text: 'No connection to Retronova. Check your network and try again.', action: null };
    case 'db_unavailable': case 'retry': return { text: 'Retronova is busy: try again in a moment.', action: null };
    default: {
      const msg = err?.message && err.message !== err.code ? err.message : 'Something went wrong';
      return { text: `${msg.charAt(0).toUpperCase()}${msg.slice(1)}.`.replace(/\.\.$/, '.'), action: null };
    }
  }
}

/* Shows plain(err) in node (an .error next to what failed); null hides it. */
function say(node, err) {
  if (!err) return showError(node, null);
  const { text, action } = plain(err);
  fill(node, el('span', {}, text), action
    ? [' ', el('button', { type: 'button', class: 'link', onclick: action.run }, action.label)] : null);
  node.dataset.code = err.code || '';
  node.hidden = false;
  return undefined;
}

/* ---- start ----------------------------------------------------------------------- */

async function start(token) {
  state.token = token;
  saveCredential('phone-token', token);
  $('#signin').hidden = true;
  try {
    const me = await call('GET', '/api/v1/auth/me');
    state.me = me.user || me;
  } catch (err) {
    if (err.code === 'not_registered') return showSignup();
    if (err.status === 401) return undefined;
    say($('#error'), err);
  }
  return enterApp();
}

function enterApp() {
  $('#signup').hidden = true;
  $('#app').hidden = false;
  $('#balance-chip').hidden = false;
  $('#who').textContent = state.me?.pseudo ? `Signed in as ${state.me.pseudo}` : jwtClaims(state.token).sub || '';
  if (typeof state.me?.tickets_balance === 'number') setBalance(state.me.tickets_balance);
  openSocket();
  refresh();
  loadOffers();
  renderPlay();
  return undefined;
}

/* What REST knows, again: at start and after every reconnect (nothing is missed). */
function refresh() {
  loadBalance();
  loadCatalogue().then(loadArcades);
  loadReservations();
  loadFriends();
}

function showSignup() {
  $('#signin').hidden = true;
  $('#app').hidden = true;
  $('#signup').hidden = false;
  $('#su-pseudo').focus();
}

$('#signup-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const body = { pseudo: $('#su-pseudo').value.trim(), first_name: $('#su-first').value.trim(), last_name: $('#su-last').value.trim() };
  const button = $('#signup-go');
  button.disabled = true;
  try {
    const res = await call('POST', '/api/v1/auth/register', { body });
    state.me = res.user || res;
    say($('#signup-error'), null);
    enterApp();
  } catch (err) {
    say($('#signup-error'), err);
    (err.code === 'pseudo_taken' || err.code === 'invalid_pseudo' ? $('#su-pseudo') : $('#su-first')).focus();
  } finally {
    button.disabled = false;
  }
});

$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('#token').value.trim();
  if (token) start(token);
});

$('#signout').addEventListener('click', () => {
  state.rn?.close();
  saveCredential('phone-token', '');
  location.reload();
});

/* ---- tabs ------------------------------------------------------------------------- */

function showTab(name) {
  for (const tab of document.querySelectorAll('.tab')) {
    if (tab.dataset.tab === name) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${name}`;
  if (name === 'history') loadHistory();
  if (name === 'friends') loadFriends();
  if (name === 'tickets') loadBalance();
}
for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => showTab(tab.dataset.tab));

/* ---- the live connection ------------------------------------------------------------ */

function openSocket() {
  const setConn = connectionPill($('#conn'));
  setConn('connecting');
  const rn = connect(wsUrl(), { token: state.token });
  state.rn = rn;
  rn.on('connect', () => {
    setConn('online');
    const wasDown = state.connected === false && state.everConnected;
    state.connected = true;
    state.everConnected = true;
    banner($('#banner'), null);
    showError($('#error'), null);
    if (wasDown) refresh(); // retronova.js resubscribes and resumes; REST catches up the rest
  });
  rn.on('disconnect', ({ code, willRetry }) => {
    state.connected = false;
    setConn(willRetry ? 'reconnecting' : 'offline', String(code));
    if (willRetry) {
      banner($('#banner'), hasPlace() ? 'Reconnecting — your place is kept.' : 'Reconnecting…', 'warn');
    } else if (!state.refused) {
      banner($('#banner'), code === 4001 ? 'Your sign-in has expired: sign out and open a fresh link.'
        : 'Disconnected. Reload the page to reconnect.', 'bad');
    }
  });
  rn.on('error', (e) => log('error', `${e?.code || 'error'}: ${e?.message || ''}`));
  rn.on('queue', onQueue);
  rn.on('position', (ev) => {
    track(ev.reservation_id, { arcade_id: ev.arcade_id, position: ev.position, eta_s: ev.eta_s, status: 'waiting' });
    log('position', `${arcadeName(ev.arcade_id)}: you are number ${ev.position} (${roughly(ev.eta_s)})`);
  });
  rn.on('your_turn', (ev) => {
    const code = ev.code ?? ev.unlock_code;
    const windowS = typeof ev.deadline_ms === 'number' && typeof ev.at_ms === 'number'
      ? (ev.deadline_ms - ev.at_ms) / 1000 : secondsLeft(ev);
    const left = Math.min(windowS, Math.max(0, secondsLeft(ev)) || windowS);
    track(ev.reservation_id, {
      arcade_id: ev.arcade_id, game_id: ev.game_id, status: 'called', code, position: null, deadlineAt: performance.now() + left * 1000,
    });
    $('#announce').textContent = `Your turn at ${ev.arcade || arcadeName(ev.arcade_id)}! Your code is ${String(code).split('').join(' ')}.`;
    log('your_turn', `your turn at ${arcadeName(ev.arcade_id)}, code ${code}`);
  });
  rn.on('reservation', (ev) => {
    const fields = { arcade_id: ev.arcade_id, game_id: ev.game_id, status: ev.status };
    if (ev.position) fields.position = ev.position;
    if (ev.status === 'playing') fields.startedAt = Date.now();
    track(ev.reservation_id, fields);
    const words = {
      waiting: ev.reason === 'cabinet_unavailable' ? 'the cabinet went away: you are first in line again' : 'booked',
      playing: 'unlocked: have fun!', cancelled: 'cancelled (tickets refunded)',
      expired: ev.refunded ? 'missed (tickets refunded)' : 'missed: the code was not typed in time',
      voided: `voided by Retronova${ev.refunded ? ' (tickets refunded)' : ''}`, completed: 'game over',
    };
    log('reservation', `${gameName(ev.game_id)} at ${arcadeName(ev.arcade_id)}: ${words[ev.status] || ev.status}`);
    if (ev.reason === 'cabinet_unavailable') {
      banner($('#banner'), `${arcadeName(ev.arcade_id)}: the cabinet went away — you are first in line and will be called again.`, 'warn');
    }
    if (ev.status === 'expired' || ev.status === 'voided') {
      $('#announce').textContent = `Your reservation at ${arcadeName(ev.arcade_id)} was ${ev.status}${ev.refunded ? ' and your tickets refunded' : ''}.`;
      state.result = null;
      state.notice = { ...ev };
      renderSpot();
    }
  });
  rn.on('score', onScore);
  rn.on('balance', (ev) => {
    setBalance(ev.balance);
    const delta = ev.delta > 0 ? `+${ev.delta}` : String(ev.delta);
    log('balance', `${plural(ev.balance, 'ticket')} (${delta}, ${ev.reason || 'change'})`);
  });
  for (const kind of ['friend_request', 'friend_accepted', 'friend_removed']) {
    rn.on(kind, (ev) => {
      const words = { friend_request: 'wants to be your friend', friend_accepted: 'is now your friend', friend_removed: 'is no longer your friend' };
      log('friends', `${ev.pseudo} ${words[kind]}`);
      loadFriends();
    });
  }
}

/* ---- balance ---------------------------------------------------------------------------- */

function setBalance(n) {
  if (typeof n !== 'number') return;
  state.balance = n;
  $('#balance').textContent = String(n);
  $('#balance').dataset.balance = String(n);
  $('#balance-big').textContent = String(n);
}

async function loadBalance() {
  try {
    const b = await call('GET', '/api/v1/tickets/balance');
    setBalance(b.balance ?? b.tickets_balance);
  } catch { /* the chip keeps its last value; the socket pushes changes */ }
}

/* ---- arcades, games, live queues ----------------------------------------------------------- */

async function loadCatalogue() {
  try {
    for (const g of listOf(await call('GET', '/api/v1/games'), 'games')) state.games.set(Number(g.id), g);
  } catch { /* names then come from each arcade's games */ }
}

async function loadArcades() {
  try {
    for (const a of listOf(await call('GET', '/api/v1/arcades'), 'arcades')) {
      for (const g of a.games || []) {
        const id = Number(g.game_id ?? g.id);
        if (!state.games.has(id)) state.games.set(id, { id, ...g });
      }
      const live = state.queues.get(Number(a.id));
      state.arcades.set(Number(a.id), { ...a, status: live?.status || a.status });
      watch(Number(a.id));
    }
    showError($('#arcades-error'), null);
  } catch (err) {
    state.arcadesError = err;
  }
  renderPlay();
}

/* Every arcade's queue is live on the Play screen: status, queue length, who plays. */
function watch(id) {
  if (state.queues.has(id)) return;
  state.queues.set(id, null);
  state.rn?.subscribe(`arcade:${id}`).catch(() => state.queues.delete(id));
}

function onQueue(q) {
  const id = Number(q.arcade_id);
  state.queues.set(id, q);
  const a = state.arcades.get(id);
  if (a) {
    const wasUp = a.status !== 'offline';
    a.status = q.status;
    a.maintenance = Boolean(q.maintenance);
    a.maintenance_message = q.maintenance_message || null;
    a.queue_length = (q.waiting || []).length;
    if (wasUp && q.status === 'offline' && hasPlaceAt(id)) {
      banner($('#banner'), `${a.name} is offline right now — your place is kept.`, 'warn');
    } else if (q.status !== 'offline' && hasPlaceAt(id) && $('#banner').textContent.includes(a.name)) {
      banner($('#banner'), null);
    }
  }
  for (const w of q.waiting || []) {
    if (state.reservations.has(Number(w.reservation_id))) {
      track(w.reservation_id, { position: w.position, eta_s: w.eta_s, status: 'waiting' }, false);
    }
  }
  renderSpot();
  renderPlay();
}

/* ---- Play: arcade -> game -> solo or a friend -> reserve ------------------------------------- */

function renderPlay() {
  const view = $('#view-play');
  if (view.contains(document.activeElement) && document.activeElement.matches('input, select')) return;
  const a = state.arcades.get(state.pick.arcade);
  if (!a) return renderArcades(view);
  const g = state.games.get(state.pick.game);
  if (!g || !(a.games || []).some((x) => Number(x.game_id ?? x.id) === g.id)) return renderGames(view, a);
  return renderConfirm(view, a, g);
}

/* Bookings are refused: the cabinet's own maintenance, or an operator's switch. */
const inMaintenance = (a) => a.status === 'maintenance' || a.maintenance === true;

function statusWords(a) {
  const q = state.queues.get(Number(a.id));
  const waiting = q ? (q.waiting || []).length : a.queue_length ?? 0;
  if (a.status === 'offline') return 'offline right now';
  if (inMaintenance(a)) return 'in maintenance';
  if (!waiting) return q?.playing || q?.called ? 'in use · nobody waiting' : 'free now';
  const last = q?.waiting?.[waiting - 1];
  return `${plural(waiting, 'player group')} waiting · ${roughly(last?.eta_s ?? waiting * (q?.avg_game_s || 180))}`;
}

function renderArcades(view) {
  const list = [...state.arcades.values()];
  fill(view,
    el('h1', { class: 'screen-title' }, 'Where do you play?'),
    list.length ? el('ul', { class: 'choices' }, list.map((a) => el('li', {},
      el('button', {
        type: 'button', class: 'choice', 'data-arcade-id': a.id,
        onclick: () => { state.pick = { arcade: Number(a.id), game: 0, partner: '' }; renderPlay(); },
      },
      el('span', { class: 'choice-title' }, a.name, ' ', inMaintenance(a) ? pill('maintenance') : pill(a.status || 'unknown')),
      el('span', { class: 'choice-sub' }, a.location || ''),
      el('span', { class: 'choice-sub' }, statusWords(a))))))
      : el('p', { class: 'empty' }, state.arcadesError ? 'The arcades cannot be listed right now.' : 'Loading the arcades…'),
    el('div', { class: 'error', id: 'arcades-error', role: 'alert', hidden: !state.arcadesError },
      state.arcadesError ? plain(state.arcadesError).text : ''));
}

function renderGames(view, a) {
  const games = (a.games || []).map((x) => ({ ...state.games.get(Number(x.game_id ?? x.id)), ...x, id: Number(x.game_id ?? x.id) }));
  fill(view,
    el('button', { type: 'button', class: 'back', onclick: () => { state.pick.arcade = 0; renderPlay(); } }, '‹ All arcades'),
    el('h1', { class: 'screen-title' }, a.name),
    el('p', { class: 'hint' }, statusWords(a)),
    el('ul', { class: 'choices' }, games.map((g) => el('li', {},
      el('button', {
        type: 'button', class: 'choice', 'data-game-id': g.id,
        onclick: () => { state.pick.game = g.id; state.pick.partner = ''; renderPlay(); },
      },
      el('span', { class: 'choice-title' }, g.name || gameName(g.id)),
      el('span', { class: 'choice-sub' }, `${plural(g.ticket_cost ?? 1, 'ticket')} · ${
        (g.max_players ?? 1) > 1 ? ((g.min_players ?? 1) > 1 ? 'two players' : 'solo or with a friend') : 'solo'}`))))));
}

function renderConfirm(view, a, g) {
  const duoOnly = (g.min_players ?? 1) > 1;
  const duoOk = (g.max_players ?? 1) > 1;
  if (duoOnly && !state.pick.partner && state.friends[0]) state.pick.partner = '';
  const option = (value, label) => el('label', { class: 'radio' },
    el('input', {
      type: 'radio', name: 'partner', value, checked: state.pick.partner === value,
      onchange: () => { state.pick.partner = value; },
    }), label);
  const cost = g.ticket_cost ?? 1;
  const closed = inMaintenance(a);
  const warn = a.status === 'offline' || closed;
  const go = el('button', { type: 'submit', class: 'primary big-button', id: 'reserve-go', disabled: closed },
    closed ? 'Closed for maintenance' : warn ? `Reserve anyway · ${plural(cost, 'ticket')}` : `Reserve · ${plural(cost, 'ticket')}`);
  const idem = {};
  fill(view,
    el('button', { type: 'button', class: 'back', onclick: () => { state.pick.game = 0; renderPlay(); } }, `‹ ${a.name}`),
    el('h1', { class: 'screen-title' }, g.name),
    el('form', {
      class: 'stack-form', id: 'reserve-form',
      onsubmit: (e) => { e.preventDefault(); reserve(a, g, go, idem); },
    },
    duoOk ? el('fieldset', {}, el('legend', {}, 'Who plays?'),
      duoOnly ? null : option('', 'Just me'),
      state.friends.filter((f) => f.uid).map((f) => option(f.uid, `Me and ${f.pseudo}`)),
      state.friends.some((f) => f.uid) ? null
        : el('p', { class: 'hint' }, 'No friends yet: ', el('button', { type: 'button', class: 'link', onclick: () => showTab('friends') }, 'add one'), '.'))
      : null,
    warn ? el('p', { class: 'warning', role: 'note', id: 'reserve-warning' },
      !closed
        ? 'This arcade is offline right now. You can book: you keep your place, but nobody is called until it is back.'
        : `This arcade is in maintenance${a.maintenance_message ? ` (“${a.maintenance_message}”)` : ''}: no booking until it is back. Try another arcade.`,
      closed ? [' ', el('button', { type: 'button', class: 'link', onclick: () => { state.pick.arcade = 0; renderPlay(); } }, 'Other arcades')] : null) : null,
    el('p', { class: 'hint' }, `You have ${plural(state.balance ?? 0, 'ticket')} · ${a.name}: ${statusWords(a)}`),
    go,
    el('div', { class: 'error', id: 'reserve-error', role: 'alert', hidden: true })));
}

/* The Idempotency-Key of a ticket-moving POST: the same while the same body is retried. */
function idemKey(holder, body) {
  const sig = JSON.stringify(body);
  if (holder.sig !== sig) {
    holder.sig = sig;
    holder.key = uuid();
  }
  return holder.key;
}

async function reserve(a, g, button, idem) {
  const body = { arcade_id: Number(a.id), game_id: g.id };
  if (state.pick.partner) body.player2_id = state.pick.partner;
  if ((g.min_players ?? 1) > 1 && !body.player2_id) {
    return say($('#reserve-error'), { code: 'pick', message: 'this game needs two players: pick a friend' });
  }
  button.disabled = true;
  try {
    const res = await call('POST', '/api/v1/reservations', { body, idempotencyKey: idemKey(idem, body) });
    const r = res.reservation || res;
    track(r.id ?? r.reservation_id, {
      arcade_id: body.arcade_id, game_id: g.id, status: r.status || 'waiting', position: r.position, eta_s: r.eta_s, players: r.players, cost: r.cost,
    });
    state.pick = { arcade: 0, game: 0, partner: '' };
    renderPlay();
    log('reserved', `${g.name} at ${a.name}`);
  } catch (err) {
    if (err.status) idem.sig = null;
    say($('#reserve-error'), err);
    button.disabled = false;
  }
  return undefined;
}

/* ---- my reservations and the spot on top ------------------------------------------------------- */

async function loadReservations() {
  try {
    const list = listOf(await call('GET', '/api/v1/reservations/my?limit=20'), 'items');
    for (const r of list) {
      const cur = state.reservations.get(Number(r.id));
      track(r.id, {
        arcade_id: r.arcade_id, arcade: r.arcade, game_id: r.game_id, game: r.game, status: cur && FINAL.has(cur.status) ? cur.status : r.status,
        position: r.position, eta_s: r.eta_s, players: r.players, result: r.result, cost: r.cost,
      }, false);
    }
    renderSpot();
  } catch { /* the socket still says what changes */ }
}

/* Merges what is known about a reservation; redraws the spot unless told not to. */
function track(id, fields, redraw = true) {
  if (id === undefined || id === null) return;
  const key = Number(id);
  const r = state.reservations.get(key) || { id: key };
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) r[k] = v;
  if (fields.position === null) delete r.position;
  state.reservations.set(key, r);
  if (redraw) renderSpot();
}

const hasPlace = () => [...state.reservations.values()].some((r) => !FINAL.has(r.status));
const hasPlaceAt = (arcadeId) => [...state.reservations.values()].some((r) => !FINAL.has(r.status) && Number(r.arcade_id) === arcadeId);

/* The reservation that matters most now: called, then playing, then the first waiting. */
function currentSpot() {
  const open = [...state.reservations.values()].filter((r) => !FINAL.has(r.status));
  const rank = { called: 0, playing: 1, waiting: 2 };
  open.sort((x, y) => (rank[x.status] ?? 3) - (rank[y.status] ?? 3) || (x.position ?? 99) - (y.position ?? 99) || x.id - y.id);
  return open[0] || null;
}

function renderSpot() {
  const r = currentSpot();
  const spot = $('#spot');
  if (!r || r.status !== 'called') {
    state.turn?.stop();
    state.turn = null;
  }
  if (!r && !state.result && !state.notice) {
    spot.hidden = true;
    return;
  }
  spot.hidden = false;
  if (!r) return state.notice ? renderNotice(spot) : renderResult(spot);
  spot.className = `spot spot-${r.status}`;
  spot.dataset.status = r.status;
  spot.dataset.reservationId = String(r.id);
  const where = `${typeof r.game === 'string' ? r.game : gameName(r.game_id)} · ${arcadeName(r.arcade_id)}`;
  const body = $('#spot-body');
  if (r.status === 'called') {
    $('#spot-title').textContent = 'Your turn!';
    if (state.turn?.reservation_id === r.id) return undefined; // the countdown runs
    state.turn?.stop();
    const left = el('span', { class: 'countdown', id: 'turn-left', role: 'timer' });
    fill(body,
      el('p', {}, 'Type this code on the cabinet:'),
      el('p', { class: 'code', id: 'turn-code', 'aria-label': `code ${String(r.code || '').split('').join(' ')}` }, r.code || '······'),
      el('p', {}, where),
      el('p', { class: 'spot-time' }, 'Time left ', left));
    const seconds = r.deadlineAt ? (r.deadlineAt - performance.now()) / 1000 : 120;
    let lastSaid = Infinity;
    const stop = countdown(left, seconds, () => { $('#announce-time').textContent = 'Time is up.'; });
    const talk = setInterval(() => { // the countdown, for screen readers: each half minute, then the last 10 s
      const s = Math.max(0, Math.ceil((r.deadlineAt - performance.now()) / 1000));
      const mark = s <= 10 ? s : Math.ceil(s / 30) * 30;
      if (mark < lastSaid && (s <= 10 ? s % 5 === 0 : true)) {
        lastSaid = mark;
        $('#announce-time').textContent = `${clock(s)} left to type your code.`;
      }
    }, 1000);
    state.turn = { reservation_id: r.id, stop: () => { stop(); clearInterval(talk); } };
    return undefined;
  }
  if (r.status === 'playing') {
    $('#spot-title').textContent = 'Playing now';
    fill(body, el('p', { class: 'spot-big' }, where), el('p', { class: 'hint' }, 'Your result appears here when the game ends.'));
    return undefined;
  }
  $('#spot-title').textContent = 'Your place';
  const q = state.queues.get(Number(r.arcade_id));
  const offline = q?.status === 'offline' || state.arcades.get(Number(r.arcade_id))?.status === 'offline';
  fill(body,
    el('div', { class: 'spot-row' },
      el('p', { class: 'spot-position' }, el('span', { class: 'big', id: 'position' }, r.position ? `#${r.position}` : '…'),
        el('small', {}, 'in line')),
      el('div', {},
        el('p', { class: 'spot-big' }, where),
        el('p', { id: 'eta' }, r.position ? `Your turn in ${roughly(r.eta_s)} (estimate)` : 'Waiting for your position…'),
        offline ? el('p', { class: 'warning' }, 'The arcade is offline: your place is kept.') : null)),
    el('button', { type: 'button', class: 'danger', id: 'cancel', onclick: (e) => cancelReservation(r.id, e.currentTarget) }, 'Cancel and get my tickets back'),
    el('div', { class: 'error', id: 'cancel-error', role: 'alert', hidden: true }));
  return undefined;
}

async function cancelReservation(id, button) {
  button.disabled = true;
  try {
    await call('DELETE', `/api/v1/reservations/${encodeURIComponent(id)}`);
    track(id, { status: 'cancelled', position: null });
  } catch (err) {
    button.disabled = false;
    say($('#cancel-error'), err);
  }
}

/* ---- the game's end ---------------------------------------------------------------------------- */

/* A reservation that ended without a game: voided by an operator, or missed. Stays until OK. */
function renderNotice(spot) {
  const ev = state.notice;
  const voided = ev.status === 'voided';
  spot.className = `spot spot-${ev.status}`;
  spot.dataset.status = ev.status;
  spot.dataset.reservationId = String(ev.reservation_id);
  $('#spot-title').textContent = voided ? 'Reservation voided' : 'You missed your turn';
  // The booker paid for both players of a duo: the refund goes to them.
  const r = state.reservations.get(Number(ev.reservation_id)) || {};
  const booker = Array.isArray(r.players) ? r.players[0] : undefined;
  const mine = !booker || !state.me?.pseudo || booker === state.me.pseudo;
  const why = !voided ? 'The code was not typed on the cabinet in time.'
    : ev.reason === 'maintenance' ? 'The arcade went into maintenance.'
      : ev.reason === 'closed' ? 'The arcade closed for the day.'
        : `Retronova staff voided it${ev.reason ? `: “${ev.reason}”` : ''}.`;
  fill($('#spot-body'),
    el('p', {}, gameName(ev.game_id), ' · ', arcadeName(ev.arcade_id)),
    el('p', { id: 'notice-why' }, why),
    el('p', { id: 'notice-refund', class: ev.refunded ? 'notice' : 'hint' }, !ev.refunded ? 'No refund for this one.'
      : mine ? `Your tickets were refunded${typeof r.cost === 'number' ? ` (+${plural(r.cost, 'ticket')})` : ''}.`
        : `The tickets were refunded to ${booker}, who booked.`),
    el('button', { type: 'button', class: 'primary', onclick: () => { state.notice = null; renderSpot(); } }, 'OK'));
}

async function onScore(ev) {
  state.notice = null;
  track(ev.reservation_id, { status: 'completed', result: ev }, false);
  let best = null;
  try {
    const stats = await call('GET', '/api/v1/scores/my-stats');
    best = (stats.games || []).find((g) => Number(g.game_id) === Number(ev.game_id))?.best_score ?? null;
  } catch { /* the result shows without the best */ }
  state.result = { ...ev, best };
  const mine = ev.you?.score;
  $('#announce').textContent = ev.tie ? `Game over: a tie, ${mine}.` : ev.you?.won ? `Game over: you won with ${mine}!`
    : `Game over: your score is ${mine}.`;
  log('score', `${gameName(ev.game_id)}: ${(ev.scores || []).map((s) => `${s.pseudo} ${s.score}`).join(', ')}`);
  renderSpot();
}

function renderResult(spot) {
  const ev = state.result;
  const me = state.me?.pseudo;
  const mine = ev.you?.score ?? (ev.scores || []).find((s) => s.pseudo === me)?.score;
  const duo = (ev.scores || []).length > 1;
  spot.className = 'spot spot-result';
  spot.dataset.status = 'result';
  $('#spot-title').textContent = !duo ? 'Game over' : ev.tie ? "It's a tie!" : ev.you?.won ? 'You won!' : `${ev.winner} wins`;
  const record = ev.best !== null && mine !== undefined && mine >= ev.best;
  fill($('#spot-body'),
    el('p', {}, gameName(ev.game_id), ' · ', arcadeName(ev.arcade_id)),
    el('ul', { class: 'scores' }, (ev.scores || []).map((s) => el('li', { class: s.pseudo === me ? 'me' : '' },
      el('span', {}, s.pseudo === me ? `${s.pseudo} (you)` : s.pseudo),
      el('strong', {}, s.score.toLocaleString('en')), s.pseudo === ev.winner ? el('span', { class: 'crown' }, ' winner') : null))),
    ev.best !== null ? el('p', { id: 'best' }, record ? `New personal best: ${ev.best.toLocaleString('en')}!` : `Your best: ${ev.best.toLocaleString('en')}`) : null,
    el('button', { type: 'button', class: 'primary', onclick: () => { state.result = null; renderSpot(); } }, 'Play again'));
}

/* ---- tickets ------------------------------------------------------------------------------------ */

function price(o) {
  if (typeof o.price_cents !== 'number') return '';
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency: o.currency || 'EUR' }).format(o.price_cents / 100);
  } catch {
    return `${(o.price_cents / 100).toFixed(2)} ${o.currency || ''}`;
  }
}

async function loadOffers() {
  const list = $('#offers');
  try {
    const offers = listOf(await call('GET', '/api/v1/tickets/offers'), 'offers');
    fill(list, offers.length ? offers.map((o) => {
      const idem = {};
      return el('li', { 'data-offer-id': o.id, class: 'offer' },
        el('span', {}, el('span', { class: 'row-title' }, o.name || `${o.tickets} tickets`), ' ', el('span', { class: 'hint' }, price(o))),
        el('button', { type: 'button', class: 'primary', onclick: (e) => buy(o, e.currentTarget, idem) }, `Buy ${price(o)}`));
    }) : el('li', { class: 'empty' }, 'No offers right now.'));
    showError($('#tickets-error'), null);
  } catch (err) {
    fill(list, el('li', { class: 'empty' }, 'Offers cannot be shown right now.'));
    say($('#tickets-error'), err);
  }
}

async function buy(offer, button, idem) {
  const body = { offer_id: offer.id, payment_token: 'tok_ok' };
  button.disabled = true;
  try {
    const res = await call('POST', '/api/v1/tickets/purchase', { body, idempotencyKey: idemKey(idem, body) });
    idem.sig = null;
    setBalance(res.balance ?? res.tickets_balance ?? res.purchase?.balance_after);
    showError($('#tickets-error'), null);
    log('purchase', `${offer.name || offer.tickets} bought`);
  } catch (err) {
    if (err.status) idem.sig = null;
    say($('#tickets-error'), err);
  } finally {
    button.disabled = false;
  }
}

$('#promo-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const code = $('#promo-code').value.trim();
  if (!code) return;
  const button = $('#promo-go');
  button.disabled = true;
  $('#promo-ok').hidden = true;
  try {
    const res = await call('POST', '/api/v1/promos/use', { body: { code }, idempotencyKey: uuid() });
    setBalance(res.balance);
    say($('#promo-error'), null);
    $('#promo-ok').textContent = `${res.code}: ${plural(res.tickets, 'free ticket')} added. Enjoy!`;
    $('#promo-ok').hidden = false;
    $('#promo-code').value = '';
    log('promo', `${res.code}: +${res.tickets}`);
  } catch (err) {
    say($('#promo-error'), err);
    $('#promo-code').focus();
  } finally {
    button.disabled = false;
  }
});

/* ---- friends ------------------------------------------------------------------------------------- */

async function loadFriends() {
  try {
    state.friends = listOf(await call('GET', '/api/v1/friends'), 'items');
    fill($('#friends'), state.friends.length ? state.friends.map((f) => el('li', { class: 'friend' },
      el('span', { class: 'row-title' }, f.pseudo))) : el('li', { class: 'empty' }, 'No friends yet: find one below.'));
    const reqs = listOf(await call('GET', '/api/v1/friends/requests'), 'items');
    fill($('#requests'), reqs.length ? reqs.map((r) => el('li', { class: 'friend' },
      el('span', {}, r.direction === 'incoming' ? `${r.pseudo} wants to be your friend` : `You asked ${r.pseudo}`),
      r.direction === 'incoming' ? el('span', { class: 'actions' },
        el('button', { type: 'button', class: 'primary', onclick: () => answer(r, 'accept') }, 'Accept'),
        el('button', { type: 'button', onclick: () => answer(r, 'reject') }, 'Decline')) : null))
      : el('li', { class: 'empty' }, 'No request waiting.'));
    if (!$('#view-play').hidden && state.pick.game) renderPlay();
  } catch (err) {
    if (err.code !== 'not_registered') say($('#requests-error'), err);
  }
}

async function answer(r, verb) {
  try {
    await call('POST', `/api/v1/friends/${verb}/${encodeURIComponent(r.id)}`);
    say($('#requests-error'), null);
  } catch (err) {
    say($('#requests-error'), err);
  }
  loadFriends();
}

$('#search-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const q = $('#search-q').value.trim();
  if (q.length < 2) return say($('#search-error'), { code: 'short', message: 'type at least two letters' });
  try {
    const found = listOf(await call('GET', `/api/v1/users/search?q=${encodeURIComponent(q)}`), 'items');
    say($('#search-error'), null);
    fill($('#search-results'), found.length ? found.map((u) => el('li', { class: 'friend' },
      el('span', { class: 'row-title' }, u.pseudo),
      u.relation === 'none' ? el('button', { type: 'button', class: 'primary', onclick: (ev) => ask(u, ev.currentTarget) }, 'Add friend')
        : el('span', { class: 'hint' }, { friend: 'your friend', requested: 'asked', requested_you: 'asked you: see requests' }[u.relation] || u.relation)))
      : el('li', { class: 'empty' }, `Nobody's name starts with “${q}”.`));
  } catch (err) {
    say($('#search-error'), err);
  }
  return undefined;
});

async function ask(u, button) {
  button.disabled = true;
  try {
    await call('POST', '/api/v1/friends/request', { body: { pseudo: u.pseudo } });
    button.replaceWith(el('span', { class: 'hint' }, 'asked'));
    loadFriends();
  } catch (err) {
    button.disabled = false;
    say($('#search-error'), err);
  }
}

/* ---- history --------------------------------------------------------------------------------------- */

async function loadHistory() {
  try {
    const s = await call('GET', '/api/v1/scores/my-stats');
    fill($('#stats'),
      el('dl', { class: 'stat-grid' },
        el('div', {}, el('dt', {}, 'Games'), el('dd', {}, String(s.games_played ?? 0))),
        el('div', {}, el('dt', {}, 'Wins'), el('dd', {}, String(s.wins ?? 0))),
        el('div', {}, el('dt', {}, 'Ties'), el('dd', {}, String(s.ties ?? 0))),
        el('div', {}, el('dt', {}, 'Tickets spent'), el('dd', {}, String(s.tickets_spent ?? 0)))),
      (s.games || []).length ? el('ul', { class: 'rows' }, s.games.map((g) => el('li', { class: 'offer' },
        el('span', {}, g.game), el('span', {}, 'best ', el('strong', {}, (g.best_score ?? 0).toLocaleString('en')))))) : null);
    const list = listOf(await call('GET', '/api/v1/reservations/my?limit=20'), 'items');
    fill($('#history'), list.length ? list.map((r) => {
      const res = r.result;
      const line = res ? (res.scores || []).map((x) => `${x.pseudo} ${x.score.toLocaleString('en')}`).join(' · ') : '';
      return el('li', { 'data-reservation-id': r.id },
        el('div', { class: 'row-head' }, el('span', { class: 'row-title' }, r.game || gameName(r.game_id)), pill(r.status)),
        el('div', { class: 'row-sub' }, [r.arcade || arcadeName(r.arcade_id), (r.players || []).join(' & '),
          r.created_at ? new Date(r.created_at).toLocaleString('en', { dateStyle: 'medium', timeStyle: 'short' }) : ''].filter(Boolean).join(' · ')),
        line ? el('div', {}, line, res.tie ? ' · tie' : res.winner ? ` · ${res.winner} won` : '') : null);
    }) : el('li', { class: 'empty' }, 'No games yet: book one in Play.'));
    showError($('#history-error'), null);
  } catch (err) {
    say($('#history-error'), err);
  }
}

/* ---- go -------------------------------------------------------------------------------------------- */

const saved = credential('token', 'phone-token');
if (saved) start(saved);
else $('#signin').hidden = false;
