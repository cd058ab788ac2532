/*
 * phone.js: the player's page. REST for what the player asks (arcades,
 * reserve, cancel, buy), the WebSocket for what happens (queue snapshots of
 * the watched arcade, and the private events: position, your_turn,
 * reservation, score, balance, acked by retronova.js and resumed after a
 * reconnect).
 */
import { connect } from '/retronova.js';
import {
  $, tokenApi, el, fill, pill, credential, saveCredential, jwtClaims, api, listOf, uuid, showError,
  wsUrl, roughly, countdown, secondsLeft, outcome, connectionPill, logLine,
} from '/common.js';

const FINAL = new Set(['completed', 'cancelled', 'expired', 'voided']);

const state = {
  token: '',
  rn: null,
  games: new Map(), // game id -> {name, ticket_cost}
  arcades: new Map(), // arcade id -> arcade
  reservations: new Map(), // reservation id -> {id, arcade_id, game_id, status, position, eta_s, unlock_code}
  watching: 0, // arcade id of the live queue shown
  turn: null, // {reservation_id, stop}
  refused: false, // the hub answered 401 to this token
};

const log = (kind, text) => logLine($('#log'), kind, text);
const arcadeName = (id) => state.arcades.get(Number(id))?.name || `arcade ${id}`;
const gameName = (id) => state.games.get(Number(id))?.name || `game ${id}`;
const playerName = (p) => (typeof p === 'string' ? p : p?.pseudo || p?.uid || '?');

/* api() with this page's token (common.js: a refused token stops the socket). */
const call = tokenApi(state);

/* ---- sign in ------------------------------------------------------------ */

function start(token) {
  state.token = token;
  saveCredential('phone-token', token);
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#signout').hidden = false;
  $('#who').textContent = jwtClaims(token).sub || '';
  openSocket();
  loadBalance();
  loadCatalogue().finally(loadArcades);
  loadReservations();
  loadOffers();
}

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

/* ---- the live connection -------------------------------------------------- */

function openSocket() {
  const setConn = connectionPill($('#conn'));
  setConn('connecting');
  const uid = jwtClaims(state.token).sub || 'anonymous';
  const rn = connect(wsUrl(), { token: state.token });
  state.rn = rn;
  rn.on('connect', (who) => {
    setConn('online');
    $('#who').textContent = who.uid || '';
    showError($('#error'), null);
  });
  rn.on('disconnect', ({ code, willRetry }) => {
    setConn(willRetry ? 'reconnecting' : 'offline', String(code));
    if (!willRetry && !state.refused) {
      const why = code === 4001 ? 'the hub refused this token (close 4001): sign out and use a fresh one'
        : `the hub closed the connection (${code})`;
      showError($('#error'), { code: 'disconnected', message: why }, 'Live connection');
    }
  });
  rn.on('error', (e) => log('error', `${e?.code || 'error'}: ${e?.message || ''}`));
  rn.on('queue', (q) => {
    if (Number(q.arcade_id) === state.watching) renderQueue(q);
  });
  rn.on('position', (ev) => {
    track(ev.reservation_id, { arcade_id: ev.arcade_id, position: ev.position, eta_s: ev.eta_s });
    log('position', `#${ev.reservation_id} at ${arcadeName(ev.arcade_id)}: position ${ev.position}, ` +
      `ETA ${roughly(ev.eta_s)} (estimate)`);
  });
  rn.on('your_turn', (ev) => {
    const code = ev.unlock_code ?? ev.code;
    track(ev.reservation_id, { arcade_id: ev.arcade_id, game_id: ev.game_id, status: 'called', unlock_code: code, position: null });
    showTurn(ev, code);
    log('your_turn', `#${ev.reservation_id}: your turn at ${arcadeName(ev.arcade_id)}, code ${code}`);
  });
  rn.on('reservation', (ev) => {
    track(ev.reservation_id, { arcade_id: ev.arcade_id, status: ev.status });
    if (ev.status !== 'called' && state.turn?.reservation_id === ev.reservation_id) hideTurn();
    log('reservation', `#${ev.reservation_id} at ${arcadeName(ev.arcade_id)}: ${ev.status}`);
  });
  rn.on('score', (ev) => {
    const scores = (ev.scores || []).map((s) => `${playerName(s)} ${s.score}`).join(', ');
    const result = outcome(ev);
    const text = `#${ev.reservation_id} ${gameName(ev.game_id)}: ${result} (${scores})`;
    const last = $('#last-score');
    fill(last, el('strong', {}, 'Last game: '), text);
    last.hidden = false;
    log('score', text);
  });
  rn.on('balance', (ev) => {
    setBalance(ev.balance);
    const delta = ev.delta > 0 ? `+${ev.delta}` : String(ev.delta);
    log('balance', `${ev.balance} tickets (${delta}, ${ev.reason || 'change'})`);
  });
}

/* ---- balance ---------------------------------------------------------------- */

function setBalance(n) {
  if (typeof n !== 'number') return;
  fill($('#balance'), String(n), ' ', el('small', {}, n === 1 ? 'ticket' : 'tickets'));
  $('#balance').dataset.balance = String(n);
}

async function loadBalance() {
  try {
    const b = await call('GET', '/api/v1/tickets/balance');
    setBalance(b.balance ?? b.tickets_balance);
    showError($('#account-error'), null);
  } catch (err) {
    try { // older or partial deployments: the profile carries the balance too
      const me = await call('GET', '/api/v1/auth/me');
      const user = me.user || me;
      setBalance(user.tickets_balance ?? user.balance);
      if (user.pseudo) $('#balance-note').textContent = `Signed in as ${user.pseudo}.`;
    } catch {
      showError($('#account-error'), err, 'GET /api/v1/tickets/balance');
    }
  }
}

/* ---- arcades and games ------------------------------------------------------ */

async function loadCatalogue() {
  try {
    for (const g of listOf(await call('GET', '/api/v1/games'), 'games')) {
      state.games.set(Number(g.id), g);
    }
  } catch {
    /* names then come from each arcade's own game list */
  }
}

/* An arcade's games as [{id, name, ticket_cost}], whatever shape the API gives. */
function gamesOf(arcade) {
  return (arcade.games || []).map((g) => {
    const id = Number(g.game_id ?? g.game?.id ?? g.id);
    const known = state.games.get(id) || g.game || {};
    const game = { id, name: g.name || known.name || `game ${id}`, ticket_cost: g.ticket_cost ?? known.ticket_cost, slot: g.slot };
    if (!state.games.has(id)) state.games.set(id, game);
    return game;
  });
}

async function loadArcades() {
  const list = $('#arcade-list');
  try {
    const arcades = listOf(await call('GET', '/api/v1/arcades'), 'arcades');
    showError($('#arcades-error'), null);
    if (!arcades.length) {
      fill(list, el('li', { class: 'empty' }, 'No arcades yet.'));
      return;
    }
    fill(list, arcades.map((a) => {
      state.arcades.set(Number(a.id), a);
      return arcadeItem(a);
    }));
  } catch (err) {
    fill(list, el('li', { class: 'empty' }, 'The arcades cannot be listed right now.'));
    showError($('#arcades-error'), err, 'GET /api/v1/arcades');
  }
}

function arcadeItem(a) {
  const select = el('select', { 'aria-label': 'game' });
  const player2 = el('input', { placeholder: 'player 2 uid, e.g. demo-bob', 'aria-label': 'player 2', autocomplete: 'off' });
  const reserveBtn = el('button', { class: 'primary' }, 'Reserve');
  const idem = {};
  const fillGames = (games) => {
    fill(select, games.length ? games.map((g) =>
      el('option', { value: String(g.id) }, g.ticket_cost ? `${g.name} · ${g.ticket_cost} ticket${g.ticket_cost === 1 ? '' : 's'}` : g.name))
      : el('option', { value: '' }, 'no games'));
    reserveBtn.disabled = !games.length;
  };
  if (Array.isArray(a.games)) fillGames(gamesOf(a));
  else { // the list may leave games out: ask for the arcade itself, else offer the catalogue
    fillGames([]);
    call('GET', `/api/v1/arcades/${encodeURIComponent(a.id)}`)
      .then((full) => fillGames(gamesOf(full.arcade || full)))
      .catch(() => fillGames([...state.games.values()]));
  }
  const form = el('form', {
    class: 'reserve',
    onsubmit: (e) => {
      e.preventDefault();
      reserve(Number(a.id), Number(select.value), player2.value.trim(), reserveBtn, idem);
    },
  }, select, el('button', { type: 'button', 'data-action': 'watch', onclick: () => watch(Number(a.id)) }, 'Watch'), player2, reserveBtn);
  return el('li', { 'data-arcade-id': a.id },
    el('div', { class: 'row-head' }, el('span', { class: 'row-title' }, a.name || `Arcade ${a.id}`),
      a.status ? pill(a.status) : null),
    el('div', { class: 'row-sub' }, a.location || ''),
    form);
}

/*
 * The Idempotency-Key of a ticket-moving POST: the same while the same body
 * is retried (a double click, a lost answer), a fresh one for a new request.
 */
function idemKey(holder, body) {
  const sig = JSON.stringify(body);
  if (holder.sig !== sig) {
    holder.sig = sig;
    holder.key = uuid();
  }
  return holder.key;
}

async function reserve(arcadeId, gameId, player2, button, idem) {
  const body = { arcade_id: arcadeId, game_id: gameId };
  if (player2) body.player2_id = player2; // a friend's uid
  button.disabled = true;
  try {
    const res = await call('POST', '/api/v1/reservations', { body, idempotencyKey: idemKey(idem, body) });
    idem.sig = null;
    const r = res.reservation || res;
    const id = r.id ?? r.reservation_id;
    track(id, { arcade_id: arcadeId, game_id: gameId, status: r.status || 'waiting', position: r.position, eta_s: r.eta_s });
    showError($('#arcades-error'), null);
    log('reserved', `#${id}: ${gameName(gameId)} at ${arcadeName(arcadeId)}`);
    if (state.watching !== arcadeId) watch(arcadeId);
  } catch (err) {
    if (err.status) idem.sig = null; // answered: a retry is a new request
    showError($('#arcades-error'), err, 'Reserve');
  } finally {
    button.disabled = false;
  }
}

/* ---- the live queue ----------------------------------------------------------- */

$('#watch-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = Number($('#watch-id').value);
  if (id > 0) watch(id);
});

async function watch(arcadeId) {
  const rn = state.rn;
  if (state.watching === arcadeId) return;
  if (state.watching) rn.unsubscribe(`arcade:${state.watching}`).catch(() => {});
  state.watching = arcadeId;
  $('#watch-id').value = String(arcadeId);
  const view = $('#queue-view');
  delete view.dataset.v;
  fill(view, el('p', { class: 'empty' }, `Subscribing to ${arcadeName(arcadeId)}…`));
  showError($('#queue-error'), null);
  try {
    await rn.subscribe(`arcade:${arcadeId}`);
  } catch (err) {
    if (state.watching !== arcadeId) return;
    rn.unsubscribe(`arcade:${arcadeId}`).catch(() => {}); // no resubscribe after a reconnect
    state.watching = 0;
    fill(view, el('p', { class: 'empty' }, 'No live queue.'));
    showError($('#queue-error'), err, `subscribe arcade:${arcadeId}`);
  }
}

function players(list) {
  return (list || []).map(playerName).join(' & ') || '—';
}

function renderQueue(q) {
  const view = $('#queue-view');
  view.dataset.v = String(q.v);
  view.dataset.arcade = String(q.arcade_id);
  const mine = (id) => state.reservations.has(Number(id));
  const waiting = q.waiting || [];
  fill(view,
    el('div', { class: 'queue-head' }, el('strong', {}, q.name || arcadeName(q.arcade_id)), pill(q.status || 'unknown'),
      el('span', { class: 'v', title: 'queue version' }, `v${q.v}`)),
    el('div', { class: 'slot' }, el('div', { class: 'label' }, 'Playing'),
      q.playing ? [players(q.playing.players), q.playing.game_id ? ` · ${q.playing.game || gameName(q.playing.game_id)}` : '']
        : el('span', { class: 'empty' }, 'nobody')),
    el('div', { class: 'slot' }, el('div', { class: 'label' }, 'Called'),
      q.called ? players(q.called.players) : el('span', { class: 'empty' }, 'nobody')),
    el('div', { class: 'slot' }, el('div', { class: 'label' }, `Waiting (${waiting.length})`),
      waiting.length ? el('ol', { class: 'waiting' }, waiting.map((w) =>
        el('li', { class: mine(w.reservation_id) ? 'mine' : '' }, players(w.players),
          w.game_id ? ` · ${w.game || gameName(w.game_id)}` : '', mine(w.reservation_id) ? ' (you)' : '')))
        : el('span', { class: 'empty' }, 'nobody waiting')),
    q.avg_game_s ? el('p', { class: 'hint' }, `A game takes ${roughly(q.avg_game_s)} here (an estimate).`) : null);
}

/* ---- my reservations --------------------------------------------------------- */

async function loadReservations() {
  try {
    const list = listOf(await call('GET', '/api/v1/reservations/my'), 'reservations');
    for (const r of list) {
      const id = r.id ?? r.reservation_id;
      if (!state.reservations.has(Number(id))) {
        track(id, {
          arcade_id: r.arcade_id, arcade: r.arcade, game_id: r.game_id, game: r.game, status: r.status, position: r.position, eta_s: r.eta_s,
        });
      }
    }
    showError($('#mine-error'), null);
  } catch (err) {
    showError($('#mine-error'), err, 'GET /api/v1/reservations/my');
  }
}

/* Merges what is known about a reservation and redraws the list. */
function track(id, fields) {
  if (id === undefined || id === null) return;
  const key = Number(id);
  const r = state.reservations.get(key) || { id: key };
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) r[k] = v;
  state.reservations.set(key, r);
  renderReservations();
}

function renderReservations() {
  const rows = [...state.reservations.values()].sort((a, b) => b.id - a.id).slice(0, 8);
  fill($('#reservations'), rows.length ? rows.map(reservationItem) : el('li', { class: 'empty' }, 'None yet.'));
}

function reservationItem(r) {
  const detail = [];
  if (r.game_id) detail.push(typeof r.game === 'string' ? r.game : gameName(r.game_id));
  if (r.status === 'waiting' && r.position) {
    detail.push(`position ${r.position}`);
    if (r.eta_s !== undefined && r.eta_s !== null) detail.push(`ETA ${roughly(r.eta_s)} (estimate)`);
  }
  if (r.status === 'called' && r.unlock_code) detail.push(`code ${r.unlock_code}`);
  const cancel = r.status === 'waiting'
    ? el('button', { class: 'small danger', onclick: (e) => cancelReservation(r.id, e.currentTarget) }, 'Cancel') : null;
  return el('li', { 'data-reservation-id': r.id, class: FINAL.has(r.status) ? 'done' : '' },
    el('div', { class: 'row-head' },
      el('span', { class: 'row-title' }, `#${r.id} · ${typeof r.arcade === 'string' ? r.arcade : arcadeName(r.arcade_id)}`),
      el('span', {}, r.status ? pill(r.status) : null, ' ', cancel)),
    el('div', { class: 'row-sub' }, detail.join(' · ')));
}

async function cancelReservation(id, button) {
  button.disabled = true;
  try {
    const res = await call('DELETE', `/api/v1/reservations/${encodeURIComponent(id)}`);
    track(id, { status: (res?.reservation || res)?.status || 'cancelled', position: null });
    showError($('#mine-error'), null);
  } catch (err) {
    button.disabled = false;
    showError($('#mine-error'), err, `Cancel #${id}`);
  }
}

/* ---- your turn --------------------------------------------------------------- */

function showTurn(ev, code) {
  hideTurn();
  $('#turn-code').textContent = code || '';
  const game = ev.game || (ev.game_id ? gameName(ev.game_id) : '');
  $('#turn-where').textContent = [ev.arcade || arcadeName(ev.arcade_id), game, ev.slot ? `slot ${ev.slot}` : '']
    .filter(Boolean).join(' · ');
  const stop = countdown($('#turn-left'), secondsLeft(ev));
  state.turn = { reservation_id: ev.reservation_id, stop };
  $('#turn').hidden = false;
}

function hideTurn() {
  state.turn?.stop();
  state.turn = null;
  $('#turn').hidden = true;
}

/* ---- tickets ------------------------------------------------------------------ */

function price(o) {
  if (typeof o.price_cents !== 'number') return '';
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: o.currency || 'EUR' }).format(o.price_cents / 100);
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
      return el('li', { 'data-offer-id': o.id },
        el('div', { class: 'row-head' },
          el('span', {}, el('span', { class: 'row-title' }, o.name || `${o.tickets} tickets`), ' ',
            el('span', { class: 'hint' }, price(o))),
          el('button', { class: 'small primary', onclick: (e) => buy(o, e.currentTarget, idem) }, 'Buy')));
    }) : el('li', { class: 'empty' }, 'No offers.'));
  } catch (err) {
    fill(list, el('li', { class: 'empty' }, 'Offers are unavailable right now.'));
    showError($('#tickets-error'), err, 'GET /api/v1/tickets/offers');
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
    showError($('#tickets-error'), err, 'Purchase');
  } finally {
    button.disabled = false;
  }
}

/* ---- go ------------------------------------------------------------------------- */

const saved = credential('token', 'phone-token');
if (saved) start(saved);
