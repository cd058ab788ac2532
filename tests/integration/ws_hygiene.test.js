// Protocol hygiene around the live queue: floods, slow readers, and what a
// phone or a cabinet may not do.
import { execFileSync } from 'node:child_process';
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { connectWs, sleep, token } from '../lib/harness.js';
import { GAME_ANY, cabinet, nextEvent, phone, reserve, startWorld, startHub } from './queue_world.js';

const SEND_QUEUE_MAX = 16;
let world, hub;

before(async () => {
  world = await startWorld();
  hub = await startHub({
    pg: world.pg,
    redis: world.redis,
    args: ['--msg-rate', '20', '--send-queue-max', String(SEND_QUEUE_MAX)],
  });
});

test('a flood of messages closes 4008', async () => {
  // its own hub: with this file's small send queue the 40 pongs of the burst would close 4009 first
  const flooded = await startHub({ pg: world.pg, redis: world.redis, args: ['--msg-rate', '20'] });
  const c = await connectWs(flooded, { token: token(flooded, 'demo-alice') });
  for (let i = 0; i < 200; i++) c.send({ type: 'ping', id: i });
  const { code } = await c.closed(5000);
  assert.equal(code, 4008);
  const pongs = c.inbox.filter((m) => m.type === 'pong').length;
  assert.ok(pongs >= 20 && pongs <= 60, `${pongs} pongs before the close (burst of 2 x 20/s)`);
});

/*
 * A reader that falls behind on live traffic. Loopback TCP buffers absorb
 * megabytes before lws sees a socket unwritable, and queue snapshots are
 * conflated, so a paused reader alone cannot fill the send queue in a test's
 * time. A burst of live private events does: 40 pushes published by one Redis
 * EVAL reach the hub in one read and are queued before the socket's
 * next writable turn, over a queue of 16. (Replayed events are not capped:
 * a resume is bounded by its batch and must never cost the device its socket.)
 */
test('a send queue overflow (a live burst over --send-queue-max) closes 4009', async () => {
  const c = await connectWs(hub, { token: token(hub, 'slow-reader') });
  const redisCli = (...args) => execFileSync('redis-cli', ['-p', String(world.redis.port), ...args]).toString();
  // the hub subscribes to the user's channel asynchronously after auth
  for (let i = 0; i < 100 && !/\n1\s*$/.test(redisCli('PUBSUB', 'NUMSUB', 'rn:user:slow-reader')); i++) await sleep(20);
  // one EVAL publishes all 40 at once: Redis writes them to the hub in one go
  const events = Array.from({ length: 40 }, (_, i) =>
    JSON.stringify({ type: 'balance', event_id: 1000 + i, pad: 'x'.repeat(200) }),
  );
  redisCli('EVAL', "for i = 1, #ARGV do redis.call('PUBLISH', KEYS[1], ARGV[i]) end", '1', 'rn:user:slow-reader', ...events);
  const { code } = await c.closed(5000);
  assert.equal(code, 4009);
  const got = c.inbox.filter((m) => m.type === 'balance').length;
  assert.ok(got < 40, `${got} of 40 events delivered before the close`);
});

test('a phone cannot listen to another user or act as a cabinet', async () => {
  const alice = await phone(hub, 'demo-alice');
  for (const ch of ['user:demo-bob', 'rn:user:demo-bob', 'cabinet:1', 'arcade:1:x', 'arcade:-1']) {
    const r = await alice.request({ type: 'subscribe', ch });
    assert.equal(r.type, 'error', ch);
    assert.equal(r.code, 'bad_request', `${ch}: ${JSON.stringify(r)}`);
  }
  for (const msg of [
    { type: 'unlock', code: '123456' },
    { type: 'game_over', reservation_id: 1, scores: [1] },
    { type: 'game_started', reservation_id: 1 },
    { type: 'status', state: 'maintenance' },
  ]) {
    const r = await alice.request(msg);
    assert.equal(r.code, 'forbidden', `${msg.type}: ${JSON.stringify(r)}`);
  }
  assert.ok(alice.isOpen, 'refused, not disconnected');
});

test("a cabinet cannot unlock, start or end another arcade's reservation", async () => {
  const cab1 = await cabinet(hub, world.keys[1]);
  const cab2 = await cabinet(hub, world.keys[2]);
  const bob = await phone(hub, 'demo-bob', { autoAck: true });
  const carol = await phone(hub, 'demo-carol', { autoAck: true });
  // bob is called on arcade 1, carol on arcade 2
  const r1 = (await reserve(hub, 'demo-bob', { arcade: 1, game: GAME_ANY })).json.reservation;
  const r2 = (await reserve(hub, 'demo-carol', { arcade: 2, game: GAME_ANY })).json.reservation;
  const bobTurn = await nextEvent(bob, 'your_turn', (m) => m.reservation_id === r1.id);
  const carolTurn = await nextEvent(carol, 'your_turn', (m) => m.reservation_id === r2.id);
  assert.equal(carolTurn.arcade_id, 2);

  // arcade 2's code typed on arcade 1's cabinet: checked against arcade 1's called reservation only
  if (carolTurn.code !== bobTurn.code) {
    const u = await cab1.request({ type: 'unlock', code: carolTurn.code, arcade_id: 2 });
    assert.equal(u.code, 'bad_code', JSON.stringify(u));
  }
  const s = await cab1.request({ type: 'game_started', reservation_id: r2.id });
  assert.equal(s.code, 'reservation_not_found');
  const o = await cab1.request({ type: 'game_over', reservation_id: r2.id, scores: [1], arcade_id: 2 });
  assert.equal(o.code, 'reservation_not_found');
  assert.equal(await world.pg.psql(`SELECT status FROM reservations WHERE id = ${r2.id}`), 'called');
  // its own cabinet can
  assert.equal((await cab2.request({ type: 'unlock', code: carolTurn.code })).type, 'ok');
  assert.equal(await world.pg.psql(`SELECT status FROM reservations WHERE id = ${r2.id}`), 'playing');
});
