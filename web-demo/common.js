/*
 * common.js: what the demo pages share. Credentials from the URL fragment or
 * sessionStorage, a fetch wrapper that turns the API's
 * {"error":{"code","message"}} into a readable ApiError, and DOM helpers that
 * only ever write text (never innerHTML), so nothing the hub or a user sends
 * can become markup.
 */

/* ---- DOM -------------------------------------------------------------- */

export const $ = (selector, root = document) => root.querySelector(selector);

/*
 * el('li', {class: 'row', onclick: fn, 'data-id': 3}, 'text', childNode):
 * "on*" props become listeners, "class" the class name, other props are set
 * as properties when the element has them (value, disabled, type, ...), else
 * as attributes. Strings and numbers become text nodes; null and false are skipped.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key in node && !key.includes('-')) node[key] = value;
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/* Replaces a node's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/* A status pill: <span class="pill pill-idle">idle</span>. */
export function pill(text, kind = text) {
  return el('span', { class: `pill pill-${String(kind).replace(/[^a-z0-9_-]/gi, '')}` }, text);
}

/* ---- credentials ------------------------------------------------------- */

/*
 * The credential a page runs with. A link may carry it in the URL fragment
 * (#token=... or #key=...): fragments never reach a server or its logs. It is
 * moved to sessionStorage (this tab only) under rn:<storeKey> and taken out of
 * the address bar; later loads of the tab read it from there.
 */
export function credential(param, storeKey) {
  const frag = new URLSearchParams(location.hash.slice(1));
  const fromUrl = frag.get(param);
  if (fromUrl) {
    saveCredential(storeKey, fromUrl.trim());
    history.replaceState(null, '', location.pathname + location.search);
    return fromUrl.trim();
  }
  try {
    return sessionStorage.getItem(`rn:${storeKey}`) || '';
  } catch {
    return '';
  }
}

export function saveCredential(storeKey, value) {
  try {
    if (value) sessionStorage.setItem(`rn:${storeKey}`, value);
    else sessionStorage.removeItem(`rn:${storeKey}`);
  } catch { /* storage disabled: this page load only */ }
}

/* The claims of a JWT, unverified (the hub verifies): for display and naming only. */
export function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

/* ---- REST --------------------------------------------------------------- */

/* An API error: status (0 when the request never got an answer), code, message. */
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/* A v4 UUID for Idempotency-Key; randomUUID needs a secure context, getRandomValues does not. */
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/*
 * api('GET', '/api/v1/arcades', {token}) resolves the JSON body of a 2xx
 * answer, or rejects with an ApiError carrying the API's error code and
 * message (or a made-up code when the answer was not the API's JSON).
 * opts: token, body (JSON-encoded), idempotencyKey, timeoutMs (10 s).
 */
export async function api(method, path, { token, body, idempotencyKey, timeoutMs = 10000 } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const timeout = err.name === 'TimeoutError';
    throw new ApiError(0, timeout ? 'timeout' : 'network',
      timeout ? `no answer within ${timeoutMs / 1000} s` : 'the hub cannot be reached');
  }
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = undefined;
  }
  if (res.ok) {
    if (json === undefined) throw new ApiError(res.status, 'bad_response', 'the answer is not JSON');
    return json;
  }
  const e = json && json.error;
  if (e && typeof e === 'object') throw new ApiError(res.status, String(e.code || 'error'), String(e.message || ''), json);
  throw new ApiError(res.status, `http_${res.status}`, res.statusText || 'request failed');
}

/*
 * The items of a list answer, whatever the envelope: a bare array,
 * {items:[...]}, {<key>:[...]}, or the first array-valued field.
 */
export function listOf(json, key) {
  if (Array.isArray(json)) return json;
  if (!json || typeof json !== 'object') return [];
  if (Array.isArray(json.items)) return json.items;
  if (key && Array.isArray(json[key])) return json[key];
  return Object.values(json).find(Array.isArray) || [];
}

/* "not_found (404): no route for /api/v1/arcades" for an ApiError or a RetronovaError. */
export function describeError(err) {
  if (!err) return 'unknown error';
  const code = err.code || err.name || 'error';
  const status = err.status ? ` (${err.status})` : '';
  const message = err.message && err.message !== code ? `: ${err.message}` : '';
  let extra = '';
  const reply = err.reply || {};
  if (reply.attempts_left !== undefined) extra += ` — ${reply.attempts_left} attempt(s) left`;
  if (reply.retry_after_s !== undefined) extra += ` — retry in ${reply.retry_after_s} s`;
  return `${code}${status}${message}${extra}`;
}

/*
 * Shows an error in a page's error line (class "error"): what failed, then
 * the code and message. showError(node, null) hides it.
 */
export function showError(node, err, what = '') {
  if (!err) {
    node.hidden = true;
    node.replaceChildren();
    return;
  }
  fill(node, what ? el('strong', {}, `${what}: `) : null, describeError(err));
  node.hidden = false;
}

/* "win for alice", "tie", "solo": from {result, winner} or {winner, tie}. */
export function outcome(r) {
  if (r.result === 'win' || (!r.result && r.winner)) return `win for ${r.winner}`;
  if (r.result) return r.result;
  return r.tie ? 'tie' : 'solo';
}

/* ---- WebSocket and time ------------------------------------------------- */

export function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/* 95 -> "1:35"; negative -> "0:00". */
export function clock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/*
 * Seconds until a deadline: deadline_in_s when the hub sends it (immune to a
 * wrong device clock), else from deadline_ms or an RFC 3339 deadline.
 */
export function secondsLeft(o) {
  if (typeof o.deadline_in_s === 'number') return o.deadline_in_s;
  const at = typeof o.deadline_ms === 'number' ? o.deadline_ms : Date.parse(o.deadline);
  return Number.isFinite(at) ? (at - Date.now()) / 1000 : 0;
}

/* 240 -> "about 4 min"; for estimates. */
export function roughly(seconds) {
  if (!Number.isFinite(seconds)) return 'unknown';
  if (seconds < 60) return 'under a minute';
  return `about ${Math.round(seconds / 60)} min`;
}

/*
 * Counts down from `seconds` in node (m:ss), on the monotonic clock (the
 * device's wall clock may be wrong). Calls onEnd once at zero. Returns stop().
 */
export function countdown(node, seconds, onEnd) {
  const end = performance.now() + seconds * 1000;
  let timer;
  const tick = () => {
    const left = (end - performance.now()) / 1000;
    node.textContent = clock(left);
    node.classList.toggle('urgent', left <= 15);
    if (left <= 0) {
      clearInterval(timer);
      if (onEnd) onEnd();
    }
  };
  timer = setInterval(tick, 250);
  tick();
  return () => clearInterval(timer);
}

/*
 * Shows a socket's state in a pill: connecting, online (the auth reply came),
 * reconnecting, or offline (the close code goes in the title, not the text,
 * so that the header never wraps). Returns the handler to call with each state.
 */
export function connectionPill(node) {
  const words = { connecting: 'connecting…', online: 'live', reconnecting: 'reconnecting…', offline: 'offline' };
  return (state, detail = '') => {
    node.className = `pill pill-${state}`;
    node.textContent = words[state] || state;
    node.title = detail ? `${state} (${detail})` : state;
  };
}

/*
 * A page-wide banner (role="status"): banner(node, 'Reconnecting…', 'warn'),
 * banner(node, null) hides it.
 */
export function banner(node, text, kind = 'warn') {
  node.hidden = !text;
  node.className = `banner banner-${kind}`;
  node.textContent = text || '';
}

/* 65 -> "1:05" elapsed, counting up. */
export function elapsed(ms) {
  return clock(ms / 1000);
}

/*
 * A confirmation in the page's <dialog id="confirm"> (#confirm-text,
 * #confirm-body, #confirm-error, #confirm-ok, #confirm-cancel): resolves true
 * when confirmed, false when cancelled (Cancel or Escape). opts.body: nodes
 * shown under the question (a reason field, a checkbox); opts.check(): '' when
 * they are fine, else a sentence said in the dialog, which stays open.
 */
export function confirmDialog(text, okLabel = 'Confirm', { body = null, check = null } = {}) {
  const dialog = $('#confirm');
  const extra = $('#confirm-body');
  const error = $('#confirm-error');
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  if (extra) fill(extra, body);
  if (error) fill(error).hidden = true;
  return new Promise((resolve) => {
    let answer = false;
    dialog.addEventListener('close', () => {
      $('#confirm-ok').onclick = null;
      $('#confirm-cancel').onclick = null;
      resolve(answer);
    }, { once: true });
    $('#confirm-ok').onclick = () => {
      const problem = check ? check() : '';
      if (problem && error) {
        fill(error, problem).hidden = false;
        return;
      }
      answer = true;
      dialog.close();
    };
    $('#confirm-cancel').onclick = () => dialog.close();
    dialog.showModal();
    ((body && extra?.querySelector('input, select')) || $('#confirm-cancel')).focus();
  });
}

/* Adds a line at the top of an event log (<ol>), replacing its placeholder, keeping the newest 100. */
export function logLine(list, kind, text) {
  list.querySelector(':scope > li.empty')?.remove();
  const time = new Date().toLocaleTimeString([], { hour12: false });
  list.prepend(el('li', {}, el('time', {}, time), ' ', el('span', { class: 'tag' }, kind), ' ', text));
  while (list.children.length > 100) list.lastElementChild.remove();
}

/*
 * A page's api(): calls with state.token. A 401 means the hub refuses the
 * token itself: say so once, at the top, and stop the page's socket
 * (state.rn) from retrying with it.
 */
export function tokenApi(state) {
  return async function call(method, path, opts = {}) {
    try {
      return await api(method, path, { token: state.token, ...opts });
    } catch (err) {
      if (err.status === 401 && !state.refused) {
        state.refused = true;
        state.rn?.close();
        showError($('#error'), err, 'This token is refused: sign out and paste a fresh one');
      }
      throw err;
    }
  };
}
