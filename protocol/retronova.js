/**
 * retronova.js: browser client for the Retronova WebSocket protocol v1
 * (protocol/PROTOCOL.md). ES module, no dependencies.
 *
 *   import { connect } from '/retronova.js';
 *   const rn = connect('wss://hub.example/ws', { token });
 *   rn.on('your_turn', (ev) => showCode(ev.code));
 *   rn.on('queue', (q) => render(q));
 *   await rn.subscribe('arcade:3');
 *   await rn.request('ping');                     // resolves with {"id":..,"type":"pong"}
 *
 * What it does for you:
 * - opens the socket with the subprotocol, authenticates in the first frame
 *   (browsers cannot set an Authorization header), then sends
 *   {"type":"resume","since":0} (every event not acked yet: it acks all it hands
 *   out, so that is exactly what it has not seen) and re-subscribes its channels;
 * - request(type, body) sends {"id":n,"type":type,...body} and resolves with the
 *   reply carrying the same id, or rejects with a RetronovaError (error reply,
 *   timeout, disconnect);
 * - private events (any push with "event_id") are handed to on() handlers once,
 *   then acknowledged with {"type":"ack","event_id":N}; a repeat (an id handled
 *   lately: a replay may overlap a live push) is acked again but not handed
 *   out. Ids, not a high-water mark: an older unacked event may arrive after a
 *   newer live one and must still be shown;
 * - queue snapshots ("arcade_id" + "v") not newer than the last applied one for
 *   their arcade are dropped;
 * - reconnects with backoff 0.5 s doubling to 10 s (with jitter); after close
 *   4000 (draining) it waits for the hint {"retry_after_ms":N} in the close
 *   reason, or 0.5-2 s; it stops on 4003, and on 4001 unless getToken() can
 *   supply a fresh token or the reason is "unavailable" (the hub could not
 *   check the credentials, its database was away: not their fault, so it
 *   retries with backoff, as PROTOCOL.md section 8 says).
 *
 * Pseudo-events besides the server's push types: 'connect' (the auth reply),
 * 'disconnect' ({code, reason, willRetry}), '*' (every push).
 */

export const SUBPROTOCOL = 'retronova.v1';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const STABLE_MS = 5000; // a socket up this long resets the backoff
const HANDLED_IDS_MAX = 1024; // private event ids remembered to drop repeats

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
 * autoAck (default true); timeoutMs per request
 * (default 10000); WebSocket (an implementation, for non-browser use).
 */
export function connect(url, options = {}) {
  return new RetronovaClient(url, options);
}

export class RetronovaClient {
  constructor(url, options = {}) {
    this.url = url;
    this.opts = options;
    this.handledIds = new Set(); // private event ids handed out lately (HANDLED_IDS_MAX)
    this.identity = null; // the auth reply: {uid, role} or {role:'cabinet', arcade_id}
    this.channels = new Set();
    this.lastV = new Map(); // 'arcade:<id>' -> last applied snapshot version
    this.handlers = new Map();
    this.pending = new Map(); // request id -> {resolve, reject, timer}
    this.outbox = []; // frames of requests made while not authenticated
    this.restoring = null; // channels the handshake in progress will subscribe again
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
    this.restoring?.delete(ch); // this request subscribes it: the handshake must not again
    return this.request('subscribe', { ch });
  }

  unsubscribe(ch) {
    this.channels.delete(ch);
    this.restoring?.delete(ch);
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
    // The channels to subscribe again once resumed; a subscribe() made meanwhile takes its
    // channel out (its own frame subscribes it: one subscribe per channel, not two).
    const restoring = (this.restoring = new Set(this.channels));
    const cred = this.opts.getToken ? { token: await this.opts.getToken() }
      : this.opts.api_key ? { api_key: this.opts.api_key } : { token: this.opts.token };
    if (ws !== this.ws) return;
    this.identity = await this.call('auth', cred, true);
    this.ready = true;
    this.readySince = Date.now();
    this.emit('connect', this.identity);
    // Replayed events follow the resume's ok; they pass through onMessage like live ones.
    // A failed resume (database down) must not stall the socket: live events still come,
    // and the next connection resumes again.
    await this.call('resume', { since: 0 }, true).catch((err) => this.emit('error', err.reply));
    if (this.restoring === restoring) this.restoring = null;
    const waiting = new Set(this.outbox.filter((f) => f.type === 'subscribe').map((f) => f.ch));
    for (const ch of restoring) {
      if (waiting.has(ch)) continue; // its own subscribe() waits in the outbox, sent just below
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
      if (!this.handledIds.has(msg.event_id)) {
        this.handledIds.add(msg.event_id);
        if (this.handledIds.size > HANDLED_IDS_MAX) {
          this.handledIds.delete(this.handledIds.values().next().value); // the oldest
        }
        this.emit(msg.type, msg);
      }
      if (this.opts.autoAck !== false) this.ack(msg.event_id);
      return;
    }
    if (msg.type === 'queue' && typeof msg.arcade_id === 'number' && typeof msg.v === 'number') {
      const ch = `arcade:${msg.arcade_id}`;
      if (msg.v <= (this.lastV.get(ch) ?? -Infinity)) return; // stale snapshot
      this.lastV.set(ch, msg.v);
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
    const fatal = e.code === 4003 || (e.code === 4001 && e.reason !== 'unavailable' && !this.opts.getToken);
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
