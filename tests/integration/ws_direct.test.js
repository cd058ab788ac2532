// The direct write path (hub/net/session_out.c): on a plain socket the hub
// frames a message once and writes the same bytes to every socket itself
// (sendmsg), handing lws only what a full socket did not take. What a client
// sees must not change: the frames are the ones lws wrote, byte for byte; a
// reader that stops reading still gets every private event in order and the
// newest queue snapshot; a client that vanishes mid-write costs nothing.
// (TLS sockets keep lws_write: tls.test.js.)
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { connectWs, http as hubHttp, parseMetrics, sleep, token, waitFor } from '../lib/harness.js';
import { ARCADE, phone, startWorld, startHub } from './queue_world.js';

let world, hub, redis;

/* One RESP connection to Redis; publish() resolves once Redis answered. */
async function redisClient(port) {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  let pending = 0;
  let waiters = [];
  sock.on('data', (d) => {
    pending -= (d.toString('latin1').match(/\r\n/g) || []).length; // one ":n\r\n" per PUBLISH
    if (pending <= 0) for (const w of waiters.splice(0)) w();
  });
  return {
    publish(channel, payload) {
      const body = Buffer.from(payload);
      pending++;
      sock.write(`*3\r\n$7\r\nPUBLISH\r\n$${Buffer.byteLength(channel)}\r\n${channel}\r\n$${body.length}\r\n`);
      sock.write(body);
      sock.write('\r\n');
    },
    flushed() {
      return pending <= 0 ? Promise.resolve() : new Promise((r) => waiters.push(r));
    },
    end() {
      sock.end();
    },
  };
}

async function metric(name) {
  const res = await hubHttp(hub, 'GET', '/metrics');
  const s = parseMetrics(res.text).find((m) => m.name === name);
  return s ? s.value : undefined;
}

/* The version the hub holds for ARCADE, read from a fresh subscriber. */
async function currentVersion() {
  const c = await phone(hub, `v-probe-${crypto.randomUUID()}`, { subscribe: ARCADE });
  await waitFor(() => c.lastSnapshot(), { what: 'first snapshot' });
  const v = c.lastSnapshot().v;
  c.terminate();
  return v;
}

/* Waits until the hub subscribed to a user's channel on Redis (after auth). */
async function userChannelLive(uid) {
  const channel = `rn:user:${uid}`;
  await waitFor(
    async () => {
      const res = await new Promise((resolve) => {
        const s = net.connect(world.redis.port, '127.0.0.1', () =>
          s.write(`*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$${channel.length}\r\n${channel}\r\n`),
        );
        s.once('data', (d) => {
          s.destroy();
          resolve(d.toString());
        });
      });
      return /:1\r\n$/.test(res);
    },
    { what: `${channel} subscribed` },
  );
}

before(async () => {
  world = await startWorld();
  hub = await startHub({ pg: world.pg, redis: world.redis });
  redis = await redisClient(world.redis.port);
});

test('frames are written as lws wrote them: FIN text, minimal unmasked length, the bytes published', async () => {
  // a raw client reads the frames byte for byte
  const sock = await new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: hub.port,
      path: '/ws',
      agent: false,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
        'Sec-WebSocket-Protocol': 'retronova.v1',
      },
    });
    req.on('upgrade', (res, socket, head) => {
      if (head.length) socket.unshift(head);
      resolve(socket);
    });
    req.on('response', (res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    req.on('error', reject);
    req.end();
  });
  let buf = Buffer.alloc(0);
  const frames = [];
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1] & 0x7f;
      let hd = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        hd = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        hd = 10;
      }
      if (buf.length < hd + len) return;
      frames.push({ b0: buf[0], masked: (buf[1] & 0x80) !== 0, hd, len, payload: buf.subarray(hd, hd + len).toString() });
      buf = buf.subarray(hd + len);
    }
  });
  const send = (obj) => {
    const p = Buffer.from(JSON.stringify(obj));
    const mask = crypto.randomBytes(4);
    const hdr = p.length < 126 ? Buffer.from([0x81, 0x80 | p.length]) : Buffer.from([0x81, 0x80 | 126, p.length >> 8, p.length & 0xff]);
    sock.write(Buffer.concat([hdr, mask, Buffer.from(p.map((x, i) => x ^ mask[i & 3]))]));
  };
  const find = (pred, what) => waitFor(() => frames.find(pred), { what });
  send({ type: 'auth', id: 1, token: token(hub, 'raw-reader') });
  await find((f) => f.payload.includes('"id":1'), 'auth ok');
  send({ type: 'subscribe', id: 2, ch: `arcade:${ARCADE}` });
  await find((f) => f.payload.includes('"id":2'), 'subscribe ok');
  await find((f) => f.payload.includes('"type":"queue"'), 'first snapshot');
  let v = 0;
  for (const f of frames) if (f.payload.includes('"type":"queue"')) v = Math.max(v, JSON.parse(f.payload).v);

  // one header of each length encoding: 7-bit, 16-bit, 64-bit
  for (const pad of [10, 400, 70000]) {
    v++;
    const payload = JSON.stringify({ type: 'queue', arcade_id: ARCADE, v, entries: [], pad: 'p'.repeat(pad) });
    redis.publish(`rn:arcade:${ARCADE}`, payload);
    const f = await find((x) => x.payload === payload, `snapshot v${v} (${payload.length} bytes)`);
    assert.equal(f.b0, 0x81, 'FIN + text');
    assert.equal(f.masked, false, 'a server frame is not masked');
    assert.equal(f.len, Buffer.byteLength(payload));
    assert.equal(f.hd, payload.length < 126 ? 2 : payload.length <= 0xffff ? 4 : 10, 'the minimal length encoding');
  }
  for (const f of frames) assert.equal(f.b0, 0x81, `every frame is one final text frame: ${f.payload.slice(0, 60)}`);
  sock.destroy();
});

test('a socket that keeps up gets every snapshot of a burst, in order (conflation only when full)', async () => {
  const c = await phone(hub, 'burst-direct', { subscribe: ARCADE });
  await waitFor(() => c.lastSnapshot(), { what: 'first snapshot' });
  const v0 = c.lastSnapshot().v;
  const N = 20;
  // one write to Redis: the hub reads the 20 messages in one or a few loop turns
  for (let i = 1; i <= N; i++) redis.publish(`rn:arcade:${ARCADE}`, JSON.stringify({ type: 'queue', arcade_id: ARCADE, v: v0 + i, entries: [] }));
  await redis.flushed();
  await waitFor(() => c.lastSnapshot().v === v0 + N, { what: `snapshot v${v0 + N}` });
  const vs = c.snapshots().map((m) => m.v).filter((v) => v > v0);
  assert.deepEqual(vs, Array.from({ length: N }, (_, i) => v0 + 1 + i), 'every snapshot once, in order');
  c.terminate();
});

test('a reader that stops reading still gets every private event in order and the newest snapshot', async () => {
  const uid = 'slow-direct';
  const c = await phone(hub, uid, { subscribe: ARCADE });
  await waitFor(() => c.lastSnapshot(), { what: 'first snapshot' });
  await userChannelLive(uid);
  const v0 = c.lastSnapshot().v;
  const partial0 = (await metric('rn_ws_writes_partial_total')) ?? 0;

  c.ws._socket.pause(); // the kernel's buffers fill, then the hub's writes stop fitting
  const EVENTS = 120;
  const SNAPSHOTS = 40;
  const pad = 'x'.repeat(64 * 1024); // 120 x 64 KiB: more than loopback buffers take
  for (let i = 1; i <= EVENTS; i++) {
    redis.publish(`rn:user:${uid}`, JSON.stringify({ type: 'balance', event_id: 7000000 + i, pad }));
    if (i % 3 === 0 && i / 3 <= SNAPSHOTS) {
      const v = v0 + i / 3;
      redis.publish(`rn:arcade:${ARCADE}`, JSON.stringify({ type: 'queue', arcade_id: ARCADE, v, entries: [], pad: pad.slice(0, 8192) }));
    }
    if (i % 10 === 0) {
      await redis.flushed();
      await sleep(10); // several loop turns: some frames go straight, some wait
    }
  }
  await redis.flushed();
  await waitFor(async () => (await metric('rn_ws_writes_partial_total')) > partial0, {
    timeoutMs: 10000,
    what: 'a write the full socket did not take whole',
  });
  await sleep(300);
  assert.ok(c.isOpen, 'still open while not reading (the queue never passed --send-queue-max)');

  c.ws._socket.resume();
  await waitFor(() => c.events('balance').length >= EVENTS && c.lastSnapshot()?.v === v0 + SNAPSHOTS, {
    timeoutMs: 30000,
    what: `${EVENTS} events and snapshot v${v0 + SNAPSHOTS} (have ${c.events('balance').length}, v${c.lastSnapshot()?.v})`,
  });
  const ids = c.events('balance').map((m) => m.event_id);
  assert.deepEqual(ids, Array.from({ length: EVENTS }, (_, i) => 7000001 + i), 'every event once, in order');
  const vs = c.snapshots().map((m) => m.v);
  for (let i = 1; i < vs.length; i++) assert.ok(vs[i] > vs[i - 1], `snapshots only move forward: ${vs.join(',')}`);
  assert.ok(vs.length <= SNAPSHOTS + 1, 'no snapshot twice');
  c.terminate();
});

test('a client that vanishes mid-write costs nothing: the hub goes on serving', async () => {
  const uid = 'gone-direct';
  const gone = await phone(hub, uid, { subscribe: ARCADE });
  await waitFor(() => gone.lastSnapshot(), { what: 'first snapshot' });
  await userChannelLive(uid);
  const watcher = await phone(hub, 'watcher-direct', { subscribe: ARCADE });
  await waitFor(() => watcher.lastSnapshot(), { what: 'watcher snapshot' });
  const partial0 = (await metric('rn_ws_writes_partial_total')) ?? 0;

  gone.ws._socket.pause();
  const pad = 'y'.repeat(64 * 1024);
  for (let i = 1; i <= 100; i++) redis.publish(`rn:user:${uid}`, JSON.stringify({ type: 'balance', event_id: 8000000 + i, pad }));
  await redis.flushed();
  await waitFor(async () => (await metric('rn_ws_writes_partial_total')) > partial0, {
    timeoutMs: 10000,
    what: 'lws holds the rest of a frame',
  });
  gone.ws._socket.destroy(); // unread data: the hub's next writes fail (RST)
  let v = (await currentVersion()) + 1;
  for (let i = 1; i <= 50; i++, v++) {
    redis.publish(`rn:user:${uid}`, JSON.stringify({ type: 'balance', event_id: 8000100 + i, pad }));
    redis.publish(`rn:arcade:${ARCADE}`, JSON.stringify({ type: 'queue', arcade_id: ARCADE, v, entries: [] }));
  }
  await redis.flushed();
  await waitFor(() => watcher.lastSnapshot()?.v === v - 1, { what: `watcher at v${v - 1}` });
  const players = async () => {
    const r = await hubHttp(hub, 'GET', '/metrics');
    return parseMetrics(r.text).find((m) => m.name === 'rn_connections' && m.labels.kind === 'player')?.value;
  };
  await waitFor(async () => (await players()) === 1, { timeoutMs: 10000, what: 'the vanished socket closed, the watcher left' });
  const again = await connectWs(hub, { token: token(hub, 'after-direct') });
  assert.ok(again.isOpen, 'the hub still accepts sockets');
  again.terminate();
  watcher.terminate();
});
