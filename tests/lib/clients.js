// clients: what talks to a running hub. Dev tokens signed here (independently
// of the hub's own code), an HTTP client, a raw WebSocket upgrade, the
// WebSocket client phones and cabinets use in tests (request/response by id,
// waiting for a pushed message), and a Prometheus text parser for /metrics.
// Sockets opened here are closed at cleanup (servers.js).

import crypto from 'node:crypto';
import http from 'node:http';
import WebSocket from 'ws';
import { within } from './assert.js';
import { register } from './servers.js';

export const SUBPROTOCOL = 'retronova.v1';

// ---------------------------------------------------------------------------
// Tokens

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/*
 * An HS256 dev token for uid, signed here with node:crypto (an implementation
 * independent of the hub's). Options: admin, ttl (s, default 3600), iat, exp,
 * secret (default hub.secret), alg (header; "none" makes an unsigned token),
 * claims (extra or overriding claims).
 */
export function token(hub, uid, { admin = false, ttl = 3600, iat, exp, secret, alg = 'HS256', claims = {} } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const payload = { sub: uid, iat: iat ?? now, exp: exp ?? now + ttl };
  if (admin) payload.admin = true;
  Object.assign(payload, claims);
  const head = b64url(JSON.stringify({ alg, typ: 'JWT' }));
  const body = b64url(JSON.stringify(payload));
  if (alg === 'none') return `${head}.${body}.`;
  const sig = crypto
    .createHmac('sha256', secret ?? hub.secret)
    .update(`${head}.${body}`)
    .digest();
  return `${head}.${body}.${b64url(sig)}`;
}

// ---------------------------------------------------------------------------
// HTTP

function httpRequest(hub, method, urlPath, { token: tok, body, headers = {}, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const hdrs = { ...headers };
    let payload;
    if (body !== undefined) {
      payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-type')) hdrs['Content-Type'] = 'application/json';
      hdrs['Content-Length'] = Buffer.byteLength(payload);
    }
    if (tok) hdrs.Authorization = `Bearer ${tok}`;
    const req = http.request(
      { host: hub.host || '127.0.0.1', port: hub.port, method, path: urlPath, headers: hdrs, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error(`${method} ${urlPath}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(payload);
  });
}

/*
 * One HTTP request to the hub on a fresh connection. Resolves { status, json
 * (undefined when the body is not JSON), text, headers }; rejects when there
 * is no answer within opts.timeoutMs (default 10 s).
 */
export const request = httpRequest;
export { httpRequest as http };

/*
 * Sends a WebSocket upgrade request by hand and reports how the server
 * answered: { status: 101, protocol } for an accepted upgrade, { status }
 * for an HTTP answer, { error } when the server closed the connection.
 */
export function rawUpgrade(hub, { path: urlPath = '/ws', protocol = SUBPROTOCOL, headers = {}, timeoutMs = 5000 } = {}) {
  return new Promise((resolve) => {
    const hdrs = {
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
      ...headers,
    };
    if (protocol) hdrs['Sec-WebSocket-Protocol'] = protocol;
    const req = http.request({ host: '127.0.0.1', port: hub.port, path: urlPath, headers: hdrs, agent: false });
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ error: 'timeout' });
    }, timeoutMs);
    req.on('upgrade', (res, socket) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: 101, protocol: res.headers['sec-websocket-protocol'] });
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      res.resume();
      resolve({ status: res.statusCode });
      req.destroy();
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      resolve({ error: err.code || err.message });
    });
    req.end();
  });
}

// ---------------------------------------------------------------------------
// WebSocket

let nextRequestId = 1000;

/*
 * Opens a WebSocket to the hub (subprotocol retronova.v1 unless
 * opts.protocol says otherwise; null for none) and resolves once open.
 * opts.headers go with the handshake; opts.token sends the auth frame and
 * waits for its "ok" (throws otherwise; the reply is client.auth).
 *
 * The client buffers every message (JSON-parsed; {raw} when not JSON):
 *   send(obj)                      JSON-encodes objects, sends strings/Buffers as they are
 *   next(predicate, timeoutMs)     first buffered/future message matching predicate
 *   request(obj, timeoutMs)        sends obj with an id (one is made if missing), resolves the reply with that id
 *   closed(timeoutMs)              resolves {code, reason} when the socket closes
 *   ping(data) / ws                the underlying ws client
 */
export function connectWs(hub, { token: tok, headers = {}, protocol = SUBPROTOCOL, path: urlPath = '/ws', timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const url = `ws://127.0.0.1:${hub.port}${urlPath}`;
    const ws = new WebSocket(url, protocol ? [protocol] : [], { headers, handshakeTimeout: timeoutMs });
    const client = makeClient(ws);
    register(
      `ws ${url}`,
      async () => client.terminate(),
      () => client.terminate(),
    );
    ws.once('unexpected-response', (req, res) => {
      reject(new Error(`WebSocket handshake refused: HTTP ${res.statusCode}`));
      ws.terminate();
    });
    ws.once('error', (err) => reject(err));
    ws.once('open', async () => {
      if (!tok) return resolve(client);
      try {
        const reply = await client.request({ type: 'auth', token: tok }, timeoutMs);
        if (reply.type !== 'ok') throw new Error(`auth refused: ${JSON.stringify(reply)}`);
        client.auth = reply;
        resolve(client);
      } catch (err) {
        client.terminate();
        reject(err);
      }
    });
  });
}

function makeClient(ws) {
  const inbox = [];
  const waiters = []; // { predicate, resolve, reject, timer }
  let closeInfo = null;
  const closeWaiters = [];

  ws.on('message', (data, isBinary) => {
    let msg;
    const text = data.toString('utf8');
    try {
      msg = JSON.parse(text);
    } catch {
      msg = { raw: text, binary: isBinary };
    }
    const i = waiters.findIndex((w) => w.predicate(msg));
    if (i >= 0) {
      const [w] = waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(msg);
    } else {
      inbox.push(msg);
    }
  });
  ws.on('error', () => {
    /* surfaced through close */
  });
  ws.on('close', (code, reason) => {
    closeInfo = { code, reason: reason.toString('utf8') };
    for (const w of waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error(`socket closed (${closeInfo.code} ${closeInfo.reason}) while waiting for ${w.what}`));
    }
    for (const w of closeWaiters.splice(0)) {
      clearTimeout(w.timer);
      w.resolve(closeInfo);
    }
  });

  const client = {
    ws,
    inbox,
    auth: null,
    get isOpen() {
      return ws.readyState === WebSocket.OPEN;
    },
    get closeInfo() {
      return closeInfo;
    },
    send(obj) {
      ws.send(typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj));
    },
    next(predicate = () => true, timeoutMs = 5000, what = predicate.toString()) {
      const i = inbox.findIndex((m) => predicate(m));
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      if (closeInfo) {
        return Promise.reject(new Error(`socket closed (${closeInfo.code} ${closeInfo.reason}) while waiting for ${what}`));
      }
      return new Promise((resolve, reject) => {
        const w = { predicate, resolve, reject, what };
        w.timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no message matching ${what} within ${timeoutMs} ms (buffered: ${JSON.stringify(inbox)})`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    request(obj, timeoutMs = 5000) {
      const msg = { ...obj };
      if (msg.id === undefined) msg.id = nextRequestId++;
      const reply = client.next((m) => m.id === msg.id, timeoutMs, `reply to ${JSON.stringify(msg).slice(0, 120)}`);
      client.send(msg);
      return reply;
    },
    closed(timeoutMs = 5000) {
      if (closeInfo) return Promise.resolve(closeInfo);
      return new Promise((resolve, reject) => {
        const w = { resolve };
        w.timer = setTimeout(() => {
          closeWaiters.splice(closeWaiters.indexOf(w), 1);
          reject(new Error(`socket still open after ${timeoutMs} ms`));
        }, timeoutMs);
        closeWaiters.push(w);
      });
    },
    close(code = 1000, reason = '') {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, reason);
    },
    terminate() {
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
    },
  };
  return client;
}

// ---------------------------------------------------------------------------
// Prometheus text

/*
 * Parses Prometheus exposition text into [{ name, labels: {k: v}, value }].
 */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      for (const lm of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}
