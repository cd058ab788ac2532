/*
 * cabinet.js: the cabinet's screen. Attract mode while nobody is called; the
 * called players and a big keypad for their code; "now playing" with the time
 * played and one score field per player; the result. It authenticates with
 * the cabinet's API key and reconnects by itself (retronova.js) after a hub
 * restart. The screen follows the newest queue view (cabinet_queue or queue,
 * highest v wins); game over is sent at most once per reservation, whatever
 * the keyboard does. The attract screen lists the games, prices and opening
 * hours of the arcade's cabinet_config (the newest event_id wins: the hub
 * pushes one on connect, after every catalogue edit and operator's switch)
 * and says "Out of order" while the arcade is in maintenance (the cabinet's
 * own switch or an operator's).
 */
import { connect } from '/retronova.js';
import {
  $, el, fill, pill, credential, saveCredential, showError, describeError, wsUrl, countdown,
  secondsLeft, outcome, connectionPill, logLine, banner, clock,
} from '/common.js';

const CODE_LEN = 6;
const RESULT_MS = 6000; // how long the result stays on screen

const state = {
  rn: null,
  arcadeId: 0,
  v: -1, // version of the queue view applied last
  view: null, // that view
  phase: 'attract', // attract | called | playing | over
  reservationId: 0, // the reservation the screen is about
  players: [],
  code: '',
  stopDeadline: null,
  elapsedTimer: null,
  lockedUntil: 0,
  sent: new Set(), // reservation ids whose game_over was sent (or is in flight)
  overUntil: 0,
  config: null, // the newest cabinet_config
  configId: -1, // its event_id
};

const log = (kind, text) => logLine($('#log'), kind, text);
const nameOf = (p) => (typeof p === 'string' ? p : p?.pseudo || p?.uid || '?');
const names = (players) => (players || []).map(nameOf).join(' & ') || '—';

/* ---- connect --------------------------------------------------------------------------- */

function start(key) {
  saveCredential('cabinet-key', key);
  $('#signin').hidden = true;
  $('#screen').hidden = false;
  $('#ops').hidden = false;
  const setConn = connectionPill($('#conn'));
  setConn('connecting');
  const rn = connect(wsUrl(), { api_key: key });
  state.rn = rn;
  rn.on('connect', (who) => {
    state.arcadeId = who.arcade_id;
    setConn('online');
    $('#who').textContent = `Arcade ${who.arcade_id}`;
    $('#who').dataset.arcade = String(who.arcade_id);
    banner($('#banner'), null);
  });
  rn.on('disconnect', ({ code, willRetry }) => {
    setConn(willRetry ? 'reconnecting' : 'offline', String(code));
    if (willRetry) banner($('#banner'), 'Connection lost: reconnecting by itself…', 'warn');
    else {
      banner($('#banner'), code === 4001 ? 'The hub refused this cabinet key (it was rotated?): open the new cabinet link.'
        : `Disconnected (${code}): reload to try again.`, 'bad');
    }
  });
  rn.on('error', (e) => log('error', `${e?.code || 'error'}: ${e?.message || ''}`));
  rn.on('cabinet_queue', onView);
  rn.on('queue', onView);
  rn.on('cabinet_config', onConfig);
  rn.on('unlock_result', (ev) => log('unlock', `#${ev.reservation_id}: ${ev.ok ? 'unlocked' : 'refused'}`));
}

$('#key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const key = $('#key').value.trim();
  if (key) start(key);
});

$('#signout').addEventListener('click', () => {
  state.rn?.close();
  saveCredential('cabinet-key', '');
  location.reload();
});

/* ---- the queue view decides the screen ---------------------------------------------------- */

function onView(ev) {
  if (typeof ev.v === 'number') {
    if (ev.v < state.v) return; // an older view (a replay)
    state.v = ev.v;
  }
  state.view = ev;
  $('#arcade-name').textContent = ev.name || '';
  if (ev.status) fill($('#state'), pill(ev.status));
  const waiting = Array.isArray(ev.waiting) ? ev.waiting.length : 0;
  $('#waiting-count').textContent = `${waiting} waiting`;
  attractLine();
  log('queue', ev.called ? `#${ev.called.reservation_id} called (${names(ev.called.players)})`
    : ev.playing ? `#${ev.playing.reservation_id} playing` : `nobody called, ${waiting} waiting`);
  render();
}

/* The configuration the hub pushes: name, location, the games and their price. */
function onConfig(ev) {
  if (typeof ev.event_id === 'number') {
    if (ev.event_id < state.configId) return; // an older one (a replay)
    state.configId = ev.event_id;
  }
  state.config = ev;
  if (ev.name) $('#arcade-name').textContent = ev.name;
  $('#arcade-location').textContent = ev.location || '';
  const h = ev.opening_hours;
  $('#arcade-hours').textContent = h ? `Open ${h.opens_at}–${h.closes_at}${h.last_call_min ? ` · last booking ${h.last_call_min} min before closing` : ''}` : '';
  const players = (g) => ((g.max_players ?? 1) > 1 ? ((g.min_players ?? 1) > 1 ? '2 players' : '1 or 2 players') : '1 player');
  fill($('#attract-games'), (ev.games || []).filter((g) => g.active !== false).map((g) => el('li', { 'data-slot': g.slot, 'data-game-id': g.game_id },
    el('strong', {}, g.name), el('span', {}, `${g.ticket_cost} ticket${g.ticket_cost === 1 ? '' : 's'} · ${players(g)}`))));
  log('config', `${(ev.games || []).length} game(s)${ev.retired ? ', retired' : ''}`);
  attractLine();
}

/* "Out of order" while the arcade is in maintenance: the newest queue view says, else the config. */
function attractLine() {
  const view = state.view;
  const cfg = state.config?.maintenance;
  const down = view ? view.status === 'maintenance' || view.maintenance === true : Boolean(cfg?.active);
  const message = view ? view.maintenance_message : cfg?.message;
  const line = $('#attract-line');
  line.textContent = down ? `Out of order${message ? `: ${message}` : ': maintenance'}` : 'Book a game on your phone';
  line.classList.toggle('blink', !down);
  line.classList.toggle('cab-down', down);
  document.body.dataset.maintenance = String(down);
  const waiting = Array.isArray(view?.waiting) ? view.waiting : [];
  $('#attract-next').textContent = down ? `No booking until it is back${waiting.length ? ` · ${waiting.length} waiting keep their place` : ''}.`
    : waiting.length ? `Next: ${names(waiting[0].players)} · ${waiting.length} waiting` : 'Nobody waiting: the next booking plays at once.';
}

function render() {
  const ev = state.view || {};
  if (state.phase === 'over' && performance.now() < state.overUntil) return; // the result stays a moment
  if (ev.playing && !state.sent.has(ev.playing.reservation_id)) return showPlaying(ev.playing);
  if (ev.called) return showCalled(ev.called);
  return show('attract');
}

/* Shows one phase; leaving one drops focus and its timers (nothing typed carries over). */
function show(phase, reservationId = 0) {
  const changed = phase !== state.phase || reservationId !== state.reservationId;
  if (changed) {
    document.activeElement?.blur?.();
    state.stopDeadline?.();
    state.stopDeadline = null;
    clearInterval(state.elapsedTimer);
    state.elapsedTimer = null;
  }
  state.phase = phase;
  state.reservationId = reservationId;
  document.body.dataset.phase = phase;
  for (const id of ['attract', 'called', 'playing', 'over-screen']) $(`#${id}`).hidden = id !== (phase === 'over' ? 'over-screen' : phase);
  return changed;
}

function showCalled(called) {
  if (!show('called', called.reservation_id)) return;
  state.players = called.players || [];
  state.code = '';
  renderDigits();
  $('#unlock-result').textContent = '';
  showError($('#unlock-error'), null);
  $('#called-players').textContent = names(called.players);
  $('#called-game').textContent = [called.game, called.slot ? `slot ${called.slot}` : ''].filter(Boolean).join(' · ');
  state.stopDeadline = countdown($('#called-left'), secondsLeft(called));
}

/* A new reservation gets fresh, empty score fields: one per player. */
function showPlaying(playing) {
  if (!show('playing', playing.reservation_id)) return;
  state.players = playing.players || [];
  $('#playing-players').textContent = names(playing.players);
  $('#playing-game').textContent = playing.game || '';
  showError($('#game-error'), null);
  $('#over').disabled = false;
  fill($('#score-fields'), state.players.map((p, i) => el('label', {}, `${nameOf(p)}'s score`,
    el('input', { type: 'number', min: '0', step: '1', inputmode: 'numeric', required: true, id: `score${i + 1}`, 'data-player': nameOf(p) }))));
  const since = typeof playing.started_ms === 'number' ? Date.now() - playing.started_ms : 0;
  const t0 = performance.now() - Math.max(0, since);
  const tick = () => { $('#elapsed').textContent = clock((performance.now() - t0) / 1000); };
  tick();
  state.elapsedTimer = setInterval(tick, 500);
  if (!state.started?.has(playing.reservation_id)) startGame(playing.reservation_id);
}

/* The game itself begins right after the unlock on this simulator: game_started. */
async function startGame(id) {
  state.started ||= new Set();
  state.started.add(id);
  try {
    await state.rn.request('game_started', { reservation_id: id });
    log('game', `#${id} started`);
  } catch (err) {
    log('game', `game_started: ${describeError(err)}`);
  }
}

/* ---- state: idle / maintenance -------------------------------------------------------------- */

for (const button of document.querySelectorAll('[data-state]')) {
  button.addEventListener('click', async () => {
    const want = button.dataset.state;
    button.disabled = true;
    try {
      await state.rn.request('status', { state: want });
      fill($('#state'), pill(want));
      showError($('#status-error'), null);
      log('status', want);
    } catch (err) {
      showError($('#status-error'), err, `status ${want}`);
    } finally {
      button.disabled = false;
    }
  });
}

/* ---- keypad and unlock ------------------------------------------------------------------------- */

function renderDigits() {
  fill($('#digits'), Array.from({ length: CODE_LEN }, (_, i) => el('span', {}, state.code[i] || '')));
}

function press(key) {
  if (state.phase !== 'called') return;
  if (key === 'back') state.code = state.code.slice(0, -1);
  else if (key === 'enter') {
    unlock();
    return;
  } else if (/^\d$/.test(key) && state.code.length < CODE_LEN) state.code += key;
  renderDigits();
}

fill($('#keypad'), ['1', '2', '3', '4', '5', '6', '7', '8', '9', 'back', '0', 'enter'].map((k) =>
  el('button', {
    type: 'button',
    class: k === 'enter' ? 'primary' : '',
    'aria-label': k === 'back' ? 'delete' : k === 'enter' ? 'OK' : k,
    'data-key': k,
    onclick: () => press(k),
  }, k === 'back' ? '⌫' : k === 'enter' ? 'OK' : k)));

/*
 * The physical keyboard types the code only on the code screen, and there it
 * is the only thing Enter does (no button keeps a default action). On the
 * score screen Enter submits the score form, which sends at most once.
 */
document.addEventListener('keydown', (e) => {
  if (state.phase !== 'called' || e.target.closest('input, textarea, select')) return;
  const key = /^\d$/.test(e.key) ? e.key : e.key === 'Backspace' ? 'back' : e.key === 'Enter' ? 'enter' : '';
  if (!key) return;
  e.preventDefault();
  press(key);
});

async function unlock() {
  const result = $('#unlock-result');
  if (state.code.length !== CODE_LEN) {
    result.textContent = `The code has ${CODE_LEN} digits.`;
    return;
  }
  const left = Math.ceil((state.lockedUntil - performance.now()) / 1000);
  if (left > 0) {
    result.textContent = `Too many wrong codes: wait ${left} s.`;
    return;
  }
  const code = state.code;
  const id = state.reservationId;
  state.code = '';
  renderDigits();
  try {
    const ok = await state.rn.request('unlock', { code });
    showError($('#unlock-error'), null);
    result.textContent = 'Unlocked!';
    log('unlock', `#${ok.reservation_id} unlocked`);
    // The queue view that follows says "playing"; show it now with what we know.
    if (state.phase === 'called' && state.reservationId === id) {
      showPlaying({ reservation_id: ok.reservation_id, players: state.players, game: state.view?.called?.game });
    }
  } catch (err) {
    const lockedFor = err.reply?.retry_after_s;
    if (lockedFor) state.lockedUntil = performance.now() + lockedFor * 1000;
    const left2 = err.reply?.attempts_left;
    result.textContent = err.code === 'bad_code'
      ? `Wrong code: check your phone.${left2 !== undefined ? ` ${left2} tries left.` : ''}` : '';
    if (err.code !== 'bad_code') showError($('#unlock-error'), err, 'unlock');
    log('unlock', describeError(err));
  }
}

/* ---- game over ------------------------------------------------------------------------------------ */

$('#game-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const id = state.reservationId;
  if (state.phase !== 'playing' || !id || state.sent.has(id)) return; // at most once per reservation
  const inputs = [...$('#score-fields').querySelectorAll('input')];
  const scores = inputs.map((input) => Number(input.value));
  if (inputs.some((input) => input.value === '') || scores.some((n) => !Number.isInteger(n) || n < 0)) {
    showError($('#game-error'), { code: 'scores', message: 'type each player\'s score (a whole number)' }, 'Scores');
    return;
  }
  state.sent.add(id);
  $('#over').disabled = true;
  try {
    const ok = await state.rn.request('game_over', { reservation_id: id, scores });
    showError($('#game-error'), null);
    const scored = ok.scores || inputs.map((input, i) => ({ pseudo: input.dataset.player, score: scores[i] }));
    const text = ok.tie ? "It's a tie!" : ok.winner ? `${ok.winner} wins!` : `Score ${scores[0].toLocaleString('en')}`;
    show('over', id);
    state.overUntil = performance.now() + RESULT_MS;
    $('#game-result').textContent = text;
    fill($('#over-scores'), scored.map((s) => el('li', {}, el('span', {}, s.pseudo), el('strong', {}, Number(s.score).toLocaleString('en')))));
    log('game', `#${id} over: ${outcome(ok)}`);
    setTimeout(render, RESULT_MS + 50);
  } catch (err) {
    if (err.code !== 'not_playing' && err.code !== 'reservation_not_found') {
      state.sent.delete(id); // not recorded: the operator may send it again
      $('#over').disabled = false;
    }
    showError($('#game-error'), err, 'game over');
  }
});

/* ---- go --------------------------------------------------------------------------------------------- */

renderDigits();
show('attract');
const saved = credential('key', 'cabinet-key');
if (saved) start(saved);
else $('#signin').hidden = false;
