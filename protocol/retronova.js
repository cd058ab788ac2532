/**
 * retronova.js: browser client for the Retronova WebSocket protocol v1
 * (protocol/PROTOCOL.md). ES module, no dependencies.
 *
 *   import { connect } from '/retronova.js';
 *   const rn = connect('wss://hub.example/ws', { token, persistKey: 'rn:demo-alice' });
 *   rn.on('your_turn', (ev) => showCode(ev.unlock_code));
 *   rn.on('queue', (q) => render(q));
 *   await rn.subscribe('arcade:3');
 *   await rn.request('ping');                     // resolves with {"id":..,"type":"pong"}
 *
 * What it does for you:
 * - opens the socket with the subprotocol, authenticates in the first frame
 *   (browsers cannot set an Authorization header), then sends
 *   {"type":"resume","since":<last event_id handled>} and re-subscribes its channels;
 * - request(type, body) sends {"id":n,"type":type,...body} and resolves with the
 *   reply carrying the same id, or rejects with a RetronovaError (error reply,
 *   timeout, disconnect);
 * - private events (any push with "event_id") are handed to on() handlers once,
 *   in order, then acknowledged with {"type":"ack","event_id":N}; a repeat
 *   (event_id <= the last handled) is acked again but not handed out;
 * - public snapshots ("ch" + "v") older than or equal to the last applied one
 *   on their channel are dropped;
 * - reconnects with backoff 0.5 s doubling to 10 s (with jitter); after close
 *   4000 (draining) it waits for the hint {"retry_after_ms":N} in the close
 *   reason, or 0.5-2 s; it stops on 4003, and on 4001 unless getToken() can
 *   supply a fresh token.
 *
 * Pseudo-events besides the server's push types: 'connect' (the auth reply),
 * 'disconnect' ({code, reason, willRetry}), '*' (every push).
 */

export const SUBPROTOCOL = 'retronova.v1';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const STABLE_MS = 5000; // a socket up this long resets the backoff

/** An error reply from the hub, or a local failure ('timeout', 'disconnected', 'closed'). */
export class RetronovaError extends Error {
  constructor(reply) {
    super(reply.message || reply.code);
    this.name = 'RetronovaError';
    this.code = reply.code;
    this.reply = reply; // the whole error object: retry_after_s, attempts_left, ...
  }
}

/**
 * options: { token } or { api_key } or { getToken: async () => token };
 * lastEventId (default 0, or what persistKey holds); persistKey (localStorage key
 * for the last event_id); autoAck (default true); timeoutMs per request
 * (default 10000); WebSocket (an implementation, for non-browser use).
 */
export function connect(url, options = {}) {
  return new RetronovaClient(url, options);
}

export class RetronovaClient {
  constructor(url, options = {}) {
    this.url = url;
    this.opts = options;
    this.lastEventId = options.lastEventId ?? loadEventId(options.persistKey);
    this.identity = null; // the auth reply: {uid, role} or {role:'cabinet', arcade_id}
    this.channels = new Set();
    this.lastV = new Map(); // channel -> last applied snapshot version
    this.handlers = new Map();
    this.pending = new Map(); // request id -> {resolve, reject, timer}
    this.outbox = []; // frames of requests made while not authenticated
    this.nextId = 1;
    this.ready = false;
    this.closed = false;
    this.backoffMs = BACKOFF_MIN_MS;
    this.retryTimer = null;
    this.readySince = 0;
    this.open();
  }

  /** Adds a handler for a push type; returns a function that removes it. */
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type).delete(handler);
  }

  /** Sends a request; resolves with its ok/pong reply, rejects with RetronovaError. */
  request(type, body = {}) {
    return this.call(type, body, false);
  }

  /** Subscribes now and again after every reconnect. */
  subscribe(ch) {
    this.channels.add(ch);
    return this.request('subscribe', { ch });
  }

  unsubscribe(ch) {
    this.channels.delete(ch);
    this.lastV.delete(ch);
    return this.request('unsubscribe', { ch });
  }

  /** Acknowledges a private event by hand (only needed with autoAck: false). */
  ack(eventId) {
    this.sendFrame({ type: 'ack', event_id: eventId });
  }

  /** Closes for good: no reconnect; pending requests reject with 'closed'. */
  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.failPending('closed');
    for (const f of this.outbox) this.settle(f.id, new RetronovaError({ code: 'closed' }));
    this.outbox = [];
    if (this.ws) this.ws.close(1000);
  }

  // ---- internals ----

  open() {
    const WS = this.opts.WebSocket || globalThis.WebSocket;
    const ws = new WS(this.url, SUBPROTOCOL);
    this.ws = ws;
    ws.onopen = () => this.handshake(ws).catch(() => {}); // a failed handshake ends in onclose
    ws.onmessage = (e) => this.onMessage(e.data);
    ws.onclose = (e) => this.onClose(ws, e);
    ws.onerror = () => {}; // always followed by close
  }

  async handshake(ws) {
    const cred = this.opts.getToken ? { token: await this.opts.getToken() }
      : this.opts.api_key ? { api_key: this.opts.api_key } : { token: this.opts.token };
    if (ws !== this.ws) return;
    this.identity = await this.call('auth', cred, true);
    this.ready = true;
    this.readySince = Date.now();
    this.emit('connect', this.identity);
    // Replayed events follow the resume's ok; they pass through onMessage like live ones.
    await this.call('resume', { since: this.lastEventId }, true);
    for (const ch of this.channels) {
      this.call('subscribe', { ch }, true).catch((err) => this.emit('error', err.reply));
    }
    const queued = this.outbox;
    this.outbox = [];
    for (const frame of queued) this.sendFrame(frame);
  }

  /* early: may go out before authentication (auth, resume, re-subscribe). */
  call(type, body, early) {
    const id = this.nextId++;
    const frame = { id, type, ...body };
    frame.id = id;
    frame.type = type;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.outbox = this.outbox.filter((f) => f.id !== id);
        this.settle(id, new RetronovaError({ code: 'timeout', message: `${type} timed out` }));
      }, this.opts.timeoutMs ?? 10000);
      this.pending.set(id, { resolve, reject, timer });
      if (early || this.ready) this.sendFrame(frame);
      else this.outbox.push(frame);
    });
  }

  settle(id, result) {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (result instanceof RetronovaError) p.reject(result);
    else p.resolve(result);
  }

  sendFrame(frame) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    if ('id' in msg) { // a reply: pushes never carry id
      this.settle(msg.id, msg.type === 'error' ? new RetronovaError(msg) : msg);
      return;
    }
    if (typeof msg.event_id === 'number') {
      if (msg.event_id > this.lastEventId) {
        this.emit(msg.type, msg);
        this.lastEventId = msg.event_id;
        saveEventId(this.opts.persistKey, msg.event_id);
      }
      if (this.opts.autoAck !== false) this.ack(msg.event_id);
      return;
    }
    if (typeof msg.ch === 'string' && typeof msg.v === 'number') {
      if (msg.v <= (this.lastV.get(msg.ch) ?? -Infinity)) return; // stale snapshot
      this.lastV.set(msg.ch, msg.v);
    }
    this.emit(msg.type, msg);
  }

  emit(type, payload) {
    for (const key of [type, '*']) {
      if (key === '*' && (type === 'connect' || type === 'disconnect')) continue;
      for (const h of this.handlers.get(key) || []) {
        try {
          h(payload);
        } catch (err) {
          console.error('retronova: handler for', type, 'threw', err); // still acked: no replay loop
        }
      }
    }
  }

  failPending(code) {
    for (const id of [...this.pending.keys()]) {
      if (!this.outbox.some((f) => f.id === id)) this.settle(id, new RetronovaError({ code }));
    }
  }

  onClose(ws, e) {
    if (ws !== this.ws) return;
    const stable = this.ready && Date.now() - this.readySince >= STABLE_MS;
    this.ws = null;
    this.ready = false;
    this.failPending('disconnected'); // requests not yet sent wait in the outbox
    const fatal = e.code === 4003 || (e.code === 4001 && !this.opts.getToken);
    const willRetry = !this.closed && !fatal;
    this.emit('disconnect', { code: e.code, reason: e.reason, willRetry });
    if (!willRetry) {
      if (!this.closed) this.close();
      return;
    }
    if (stable) this.backoffMs = BACKOFF_MIN_MS;
    let delay = this.backoffMs * (0.8 + 0.4 * Math.random());
    if (e.code === 4000) { // draining: come back when the hub says, else soon and spread out
      delay = 500 + 1500 * Math.random();
      try {
        const hint = JSON.parse(e.reason);
        if (Number.isFinite(hint.retry_after_ms)) delay = hint.retry_after_ms + 250 * Math.random();
      } catch { /* a plain-text reason: no hint */ }
    }
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }
}

function loadEventId(key) {
  try {
    return (key && Number(globalThis.localStorage?.getItem(key))) || 0;
  } catch {
    return 0;
  }
}

function saveEventId(key, id) {
  try {
    if (key) globalThis.localStorage?.setItem(key, String(id));
  } catch { /* storage full or disabled: resume from memory only */ }
}
