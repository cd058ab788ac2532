// WebSocket authentication and the protocol's first line of defence.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, startRedis, startHub, connectWs, rawUpgrade, token, sleep } from '../lib/harness.js';

const AUTH_TIMEOUT_MS = 500;

let hub;

before(async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  hub = await startHub({ pg, redis, args: ['--auth-timeout-ms', String(AUTH_TIMEOUT_MS)] });
});

/* Sends one auth frame with tok; expects an error frame echoing the id, then close 4001. */
async function expectRejected(tok, label) {
  const c = await connectWs(hub);
  c.send({ type: 'auth', id: 1, token: tok });
  const { code } = await c.closed(5000);
  assert.equal(code, 4001, `${label}: close code`);
  const err = c.inbox.find((m) => m.type === 'error');
  assert.ok(err, `${label}: an error frame before the close (got ${JSON.stringify(c.inbox)})`);
  assert.equal(err.id, 1, `${label}: the error echoes the id`);
  assert.ok(!c.inbox.some((m) => m.type === 'ok'), `${label}: no ok`);
}

test('a good HS256 token in the auth frame: ok with uid and role player', async () => {
  const c = await connectWs(hub);
  assert.equal(c.ws.protocol, 'retronova.v1');
  c.send({ type: 'auth', id: 1, token: token(hub, 'demo-alice') });
  const { server_time_ms: serverTime, ...reply } = await c.next((m) => m.id === 1);
  assert.deepEqual(reply, { id: 1, type: 'ok', uid: 'demo-alice', role: 'player' });
  // the hub's clock, for counting down deadline_ms without trusting the device's
  assert.ok(Math.abs(serverTime - Date.now()) < 5000, `server_time_ms ${serverTime}`);
  assert.deepEqual(await c.request({ type: 'ping', id: 2 }), { id: 2, type: 'pong' });
  c.close();
});

test('an admin token: role admin', async () => {
  const c = await connectWs(hub);
  c.send({ type: 'auth', id: 7, token: token(hub, 'demo-admin', { admin: true }) });
  const { server_time_ms: serverTime, ...reply } = await c.next((m) => m.id === 7);
  assert.deepEqual(reply, { id: 7, type: 'ok', uid: 'demo-admin', role: 'admin' });
  assert.equal(typeof serverTime, 'number');
  c.close();
});

test('bad tokens: an error frame, then close 4001', async () => {
  const now = Math.floor(Date.now() / 1000);
  await expectRejected('not-a-jwt', 'garbage');
  await expectRejected(token(hub, 'demo-alice', { secret: 'some-other-secret' }), 'wrong secret');
  await expectRejected(token(hub, 'demo-alice', { iat: now - 7200, exp: now - 3600 }), 'expired');
  await expectRejected(token(hub, 'demo-alice', { alg: 'none' }), 'alg none');
  await expectRejected(token(hub, '', {}), 'empty sub');
});

test(`no auth frame: close 4001 after --auth-timeout-ms (${AUTH_TIMEOUT_MS} ms)`, async () => {
  const t0 = Date.now();
  const c = await connectWs(hub);
  const { code } = await c.closed(5000);
  const took = Date.now() - t0;
  assert.equal(code, 4001);
  assert.ok(took >= AUTH_TIMEOUT_MS - 50, `closed after ${took} ms, before the timeout`);
  assert.ok(took < AUTH_TIMEOUT_MS + 2000, `closed only after ${took} ms`);
});

test('Authorization: Bearer at the handshake authenticates without the frame', async () => {
  const c = await connectWs(hub, { headers: { Authorization: `Bearer ${token(hub, 'demo-bob')}` } });
  // Past the auth timeout, the socket is still open and served.
  await sleep(AUTH_TIMEOUT_MS + 300);
  assert.ok(c.isOpen, `closed: ${JSON.stringify(c.closeInfo)}`);
  assert.deepEqual(await c.request({ type: 'ping', id: 3 }), { id: 3, type: 'pong' });
  c.close();
});

test('a bad Authorization header at the handshake does not authenticate', async () => {
  const r = await rawUpgrade(hub, { headers: { Authorization: 'Bearer not-a-jwt' } });
  if (r.status !== 101) return; // refused at the handshake: fine
  const c = await connectWs(hub, { headers: { Authorization: 'Bearer not-a-jwt' } });
  const { code } = await c.closed(AUTH_TIMEOUT_MS + 3000);
  assert.equal(code, 4001);
});

test('a wrong subprotocol or path is refused at the handshake', async () => {
  const good = await rawUpgrade(hub);
  assert.equal(good.status, 101, `the right request is accepted: ${JSON.stringify(good)}`);
  assert.equal(good.protocol, 'retronova.v1');

  const wrongProto = await rawUpgrade(hub, { protocol: 'retronova.v0' });
  assert.notEqual(wrongProto.status, 101, `subprotocol retronova.v0 accepted: ${JSON.stringify(wrongProto)}`);
  const wrongPath = await rawUpgrade(hub, { path: '/nope' });
  assert.notEqual(wrongPath.status, 101, `path /nope accepted: ${JSON.stringify(wrongPath)}`);
});

test('garbage JSON: error bad_json, and the socket stays open', async () => {
  const c = await connectWs(hub, { token: token(hub, 'demo-alice') });
  c.send('{"type": "ping", "id": 5');
  const err = await c.next((m) => m.type === 'error');
  assert.equal(err.code, 'bad_json', JSON.stringify(err));
  c.send('nope');
  assert.equal((await c.next((m) => m.type === 'error')).code, 'bad_json');
  assert.deepEqual(await c.request({ type: 'ping', id: 6 }), { id: 6, type: 'pong' });
  assert.ok(c.isOpen);
  c.close();
});

test('unknown type: error unknown_type echoing the id', async () => {
  const c = await connectWs(hub, { token: token(hub, 'demo-alice') });
  const reply = await c.request({ type: 'teleport', id: 77 });
  assert.equal(reply.type, 'error');
  assert.equal(reply.id, 77);
  assert.equal(reply.code, 'unknown_type', JSON.stringify(reply));
  assert.equal(typeof reply.message, 'string');
  assert.deepEqual(await c.request({ type: 'ping', id: 78 }), { id: 78, type: 'pong' });
  c.close();
});

test('an oversize frame (> 16 KiB) closes with 1009', async () => {
  const c = await connectWs(hub, { token: token(hub, 'demo-alice') });
  c.send(JSON.stringify({ type: 'ping', id: 9, pad: 'x'.repeat(17 * 1024) }));
  const { code } = await c.closed(5000);
  assert.equal(code, 1009);
});

test('the hub is still healthy after all that', async () => {
  const c = await connectWs(hub, { token: token(hub, 'demo-bob') });
  assert.equal(c.auth.uid, 'demo-bob');
  c.close();
});
