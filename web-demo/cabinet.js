/*
 * cabinet.js: a cabinet simulator. It authenticates with the cabinet's API
 * key, shows what cabinet_queue pushes say (the called reservation, its
 * players and deadline) and the queue snapshots of its arcade the hub sends
 * it unasked, forwards the code a player types (unlock), and reports
 * game_started, game_over with scores, and its state.
 */
import { connect } from '/retronova.js';
import {
  $, el, fill, pill, credential, saveCredential, showError, describeError, wsUrl, countdown,
  secondsLeft, outcome, connectionPill, logLine,
} from '/common.js';

const CODE_LEN = 6;

const state = {
  rn: null,
  arcadeId: 0,
  v: -1, // queue version of the cabinet_queue applied last
  players: [], // [{uid, pseudo}] of the reservation being unlocked or played
  code: '',
  stopDeadline: null,
  lockedUntil: 0,
};

const log = (kind, text) => logLine($('#log'), kind, text);
const names = (players) => (players || []).map((p) => (typeof p === 'string' ? p : p.pseudo || p.uid)).join(' & ') || '—';

/* ---- connect ------------------------------------------------------------------ */

function start(key) {
  saveCredential('cabinet-key', key);
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#signout').hidden = false;
  const setConn = connectionPill($('#conn'));
  setConn('connecting');
  const arcade = /^rn_(\d+)_/.exec(key)?.[1] || 'unknown';
  const rn = connect(wsUrl(), { api_key: key });
  state.rn = rn;
  rn.on('connect', (who) => {
    state.arcadeId = who.arcade_id;
    setConn('online');
    $('#who').textContent = `arcade ${who.arcade_id}`;
    const auth = $('#auth-state');
    auth.className = 'notice';
    auth.dataset.arcade = String(who.arcade_id);
    fill(auth, 'Authenticated as the cabinet of ', el('strong', {}, `arcade ${who.arcade_id}`), '.');
    showError($('#error'), null);
  });
  rn.on('disconnect', ({ code, willRetry }) => {
    setConn(willRetry ? 'reconnecting' : 'offline', String(code));
    if (!willRetry) {
      const why = code === 4001 ? 'the hub refused this API key (close 4001): it may have been rotated'
        : `the hub closed the connection (${code})`;
      const auth = $('#auth-state');
      auth.className = 'empty';
      auth.textContent = 'Not authenticated.';
      showError($('#error'), { code: 'disconnected', message: why }, 'Live connection');
    }
  });
  rn.on('error', (e) => log('error', `${e?.code || 'error'}: ${e?.message || ''}`));
  rn.on('cabinet_queue', onCabinetQueue);
  rn.on('queue', onCabinetQueue); // the same view, for changes that call nobody
  rn.on('unlock_result', (ev) => {
    if (ev.ok) setGame(ev.reservation_id, ev.players);
    log('unlock', `#${ev.reservation_id}: ${ev.ok ? 'unlocked' : 'refused'}`);
  });
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

/* ---- what to do next: cabinet_queue ----------------------------------------------- */

/* A cabinet_queue event or a queue snapshot of this arcade: the newest v wins. */
function onCabinetQueue(ev) {
  if (typeof ev.v === 'number') {
    if (ev.v < state.v) return; // a replay older than what we show
    state.v = ev.v;
    $('#version').textContent = `v${ev.v}`;
  }
  const waiting = Array.isArray(ev.waiting) ? ev.waiting.length : ev.waiting ?? 0;
  $('#waiting').textContent = String(waiting);
  if (ev.status) fill($('#state'), pill(ev.status));
  renderCalled(ev.called, ev.playing);
  if (ev.playing) setGame(ev.playing.reservation_id, ev.playing.players);
  else if (ev.called) setGame(ev.called.reservation_id, ev.called.players);
  const what = ev.called ? `#${ev.called.reservation_id} called (${names(ev.called.players)})`
    : ev.playing ? `#${ev.playing.reservation_id} playing` : 'nobody called';
  log('queue', `${what}, ${waiting} waiting`);
}

function renderCalled(called, playing) {
  state.stopDeadline?.();
  state.stopDeadline = null;
  const view = $('#called-view');
  if (!called) {
    fill(view, playing
      ? el('p', {}, el('strong', {}, `#${playing.reservation_id}`), ' is playing: ', names(playing.players))
      : el('p', { class: 'empty' }, 'Nobody called.'));
    return;
  }
  const left = el('span', { class: 'countdown' });
  fill(view,
    el('dl', { class: 'facts' },
      el('dt', {}, 'Reservation'), el('dd', {}, `#${called.reservation_id}`),
      el('dt', {}, 'Players'), el('dd', {}, names(called.players)),
      called.slot !== undefined ? [el('dt', {}, 'Slot'), el('dd', {}, String(called.slot))] : null,
      called.game_id !== undefined ? [el('dt', {}, 'Game'), el('dd', {}, called.game || `#${called.game_id}`)] : null,
      el('dt', {}, 'Deadline'), el('dd', {}, left)),
    el('p', { class: 'hint' }, 'Waiting for the player to type their code.'));
  state.stopDeadline = countdown(left, secondsLeft(called));
}

/* ---- state: idle / maintenance ------------------------------------------------------ */

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

/* ---- keypad and unlock ------------------------------------------------------------- */

function renderDigits() {
  fill($('#digits'), Array.from({ length: CODE_LEN }, (_, i) => el('span', {}, state.code[i] || '')));
}

function press(key) {
  if (key === 'back') state.code = state.code.slice(0, -1);
  else if (key === 'enter') return unlock();
  else if (/^\d$/.test(key) && state.code.length < CODE_LEN) state.code += key;
  renderDigits();
}

fill($('#keypad'), ['1', '2', '3', '4', '5', '6', '7', '8', '9', 'back', '0', 'enter'].map((k) =>
  el('button', {
    type: 'button',
    class: k === 'enter' ? 'primary' : '',
    'aria-label': k,
    'data-key': k,
    onclick: () => press(k),
  }, k === 'back' ? '⌫' : k === 'enter' ? 'OK' : k)));

document.addEventListener('keydown', (e) => {
  if ($('#app').hidden || e.target.closest('input, textarea, select')) return;
  if (/^\d$/.test(e.key)) press(e.key);
  else if (e.key === 'Backspace') press('back');
  else if (e.key === 'Enter') press('enter');
});

async function unlock() {
  const result = $('#unlock-result');
  if (state.code.length !== CODE_LEN) {
    result.textContent = `The code has ${CODE_LEN} digits.`;
    return;
  }
  const left = Math.ceil((state.lockedUntil - performance.now()) / 1000);
  if (left > 0) {
    result.textContent = `Unlock is locked for ${left} s more.`;
    return;
  }
  const code = state.code;
  state.code = '';
  renderDigits();
  try {
    const ok = await state.rn.request('unlock', { code });
    showError($('#unlock-error'), null);
    if (ok.players) setGame(ok.reservation_id, ok.players);
    else if (ok.reservation_id) $('#game-res').value = String(ok.reservation_id);
    result.textContent = `Unlocked #${ok.reservation_id}: ${names(ok.players || state.players)}. Start the game!`;
    log('unlock', `#${ok.reservation_id} unlocked`);
  } catch (err) {
    const lockedFor = err.reply?.retry_after_s; // the fifth wrong code, or unlock_locked
    if (lockedFor) state.lockedUntil = performance.now() + lockedFor * 1000;
    result.textContent = err.code === 'bad_code' ? 'Wrong code: ask the player to check their phone.' : '';
    showError($('#unlock-error'), err, 'unlock');
    log('unlock', describeError(err));
  }
}

/* ---- game started / game over ------------------------------------------------------ */

/* The reservation the game form acts on, and who plays it. */
function setGame(reservationId, players) {
  if (reservationId) $('#game-res').value = String(reservationId);
  state.players = Array.isArray(players) ? players : [];
  const p = state.players;
  const label = (i) => (p[i] ? `${typeof p[i] === 'string' ? p[i] : p[i].pseudo || p[i].uid} score` : `Player ${i + 1} score`);
  $('#score1-label').firstChild.textContent = label(0);
  $('#score2-label').firstChild.textContent = label(1);
  $('#score2-label').hidden = p.length === 1;
}

$('#started').addEventListener('click', async () => {
  const id = Number($('#game-res').value);
  if (!id) return showError($('#game-error'), { code: 'bad_request', message: 'which reservation?' }, 'game_started');
  try {
    await state.rn.request('game_started', { reservation_id: id });
    showError($('#game-error'), null);
    $('#game-result').textContent = `#${id}: game started.`;
    fill($('#state'), pill('playing'));
    log('game', `#${id} started`);
  } catch (err) {
    showError($('#game-error'), err, 'game_started');
  }
});

$('#game-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const id = Number($('#game-res').value);
  const inputs = $('#score2-label').hidden ? [$('#score1')] : [$('#score1'), $('#score2')];
  const scores = inputs.map((input) => Math.trunc(Number(input.value)) || 0); // in player order, booker first
  try {
    const ok = await state.rn.request('game_over', { reservation_id: id, scores });
    showError($('#game-error'), null);
    const result = outcome(ok);
    $('#game-result').textContent = `#${id}: game over, ${result}.`;
    log('game', `#${id} over: ${result}`);
  } catch (err) {
    showError($('#game-error'), err, 'game_over');
  }
});

/* ---- go --------------------------------------------------------------------------------- */

renderDigits();
const saved = credential('key', 'cabinet-key');
if (saved) start(saved);
