// WebSocket keepalive (hub/net/session.c): the hub pings a socket silent for
// --ws-ping-ms and drops one silent for --ws-hangup-ms; any frame from the
// peer (a pong, a message) counts as life. Short times here; 30 s / 40 s by
// default (PROTOCOL.md).
import { spawnSync } from 'node:child_process';
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { HUB_BIN, SUBPROTOCOL, applyDemo, sleep, startHub, startPostgres, startRedis, token } from '../lib/harness.js';

const PING_MS = 400;
const HANGUP_MS = 1200;
let hub;

before(async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  hub = await startHub({ pg, redis, args: ['--ws-ping-ms', String(PING_MS), '--ws-hangup-ms', String(HANGUP_MS)] });
});

/* An authenticated socket; counts the pings it gets and notes its close. */
function open(uid, { autoPong }) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(hub.wsUrl, [SUBPROTOCOL], { headers: { Authorization: `Bearer ${token(hub, uid)}` }, autoPong });
    const c = { ws, pings: 0, closed: null };
    ws.on('ping', () => c.pings++);
    ws.on('close', (code) => (c.closed = { code, at: Date.now() }));
    ws.on('error', reject);
    ws.on('message', (data) => {
      if (JSON.parse(data).type === 'ok') resolve(c);
    });
  });
}

test('a peer that answers pings keeps its socket, pinged after each silence', async () => {
  const c = await open('demo-alice', { autoPong: true });
  await sleep(3 * HANGUP_MS);
  assert.equal(c.closed, null, 'still open');
  assert.ok(c.pings >= 3, `${c.pings} pings in ${3 * HANGUP_MS} ms of silence`);
  c.ws.close();
});

test('a peer that answers nothing is dropped after --ws-hangup-ms', async () => {
  const c = await open('demo-bob', { autoPong: false });
  const t0 = Date.now();
  for (let i = 0; i < 40 && !c.closed; i++) await sleep(100);
  assert.ok(c.closed, 'dropped');
  assert.ok(c.pings >= 1, 'pinged before the drop');
  const after = c.closed.at - t0;
  assert.ok(after >= HANGUP_MS - 200 && after <= HANGUP_MS + 1500, `dropped ${after} ms after its last frame`);
  assert.equal(c.closed.code, 1006, 'no close frame');
});

test('many silent peers dropped in one sweep, the answering ones between them kept', async () => {
  // opened together: their deadlines fall in the same timer tick, so one walk
  // of the list closes many sessions in a row (and skips the live ones)
  const all = await Promise.all(Array.from({ length: 60 }, (_, i) => open(i % 2 ? 'demo-alice' : 'demo-bob', { autoPong: i % 3 === 0 })));
  await sleep(HANGUP_MS + 1500);
  const silent = all.filter((_, i) => i % 3 !== 0);
  const answering = all.filter((_, i) => i % 3 === 0);
  assert.equal(silent.filter((c) => c.closed).length, silent.length, 'every silent peer dropped');
  assert.equal(answering.filter((c) => c.closed).length, 0, 'no answering peer dropped');
  for (const c of answering) c.ws.close();
});

test('any message counts as life, not only a pong', async () => {
  const c = await open('demo-alice', { autoPong: false });
  for (let i = 0; i < 12; i++) {
    c.ws.send(JSON.stringify({ type: 'ping', id: i }));
    await sleep(PING_MS / 2);
  }
  assert.equal(c.closed, null, 'still open after 2.4 s of messages and no pong');
  c.ws.close();
});

test('--ws-hangup-ms must be more than --ws-ping-ms', () => {
  const r = spawnSync(HUB_BIN, ['serve', '--database-url', 'postgresql://127.0.0.1:1/x', '--ws-ping-ms', '1000', '--ws-hangup-ms', '1000'], {
    encoding: 'utf8',
    timeout: 10000,
  });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /out of range/);
});
