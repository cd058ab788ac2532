// The identity lifecycle across hub processes: a deleted user's token is
// refused on REST (403 account_deleted) and WebSocket (close 4003) by every
// hub, the user's live sockets close everywhere, and a restore lets them back.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { connectWs, http, parseMetrics, startRedis, token, waitFor } from '../lib/harness.js';
import { startHub, startWorld } from './queue_world.js';
import { ADMIN, api, assertError, newUser } from './tickets_world.js';

let world, a, b;

before(async () => {
  world = await startWorld();
  [a, b] = await Promise.all([startHub({ pg: world.pg, redis: world.redis }), startHub({ pg: world.pg, redis: world.redis })]);
});

async function metric(h, name) {
  return parseMetrics((await http(h, 'GET', '/metrics')).text).find((s) => s.name === name)?.value;
}

/* A socket closed for a deleted account: the error first, then 4003. */
async function assertClosedDeleted(c, label) {
  const err = await c.next((m) => m.type === 'error', 10000);
  assert.equal(err.code, 'account_deleted', `${label}: ${JSON.stringify(err)}`);
  assert.equal((await c.closed(10000)).code, 4003, label);
}

async function wsRefused(h, uid) {
  const c = await connectWs(h);
  c.send({ id: 1, type: 'auth', token: token(h, uid) });
  const reply = await c.next((m) => m.id === 1, 10000);
  assert.equal(reply.code, 'account_deleted', JSON.stringify(reply));
  assert.equal((await c.closed(10000)).code, 4003);
}

test('delete through hub A: sockets on A and B close 4003, REST 403 on both; restore through B lets them back', async () => {
  const user = await newUser(world.pg);
  const onA = await connectWs(a, { token: token(a, user.uid) });
  const onB = await connectWs(b, { token: token(b, user.uid) });
  assert.equal((await onB.request({ type: 'subscribe', ch: 'arcade:1' })).type, 'ok');
  assert.equal((await api(a, 'GET', '/auth/me', user)).status, 200);
  const refusedBefore = await metric(b, 'rn_deleted_user_refused_total');

  const del = await api(a, 'DELETE', `/admin/users/${user.uid}`, ADMIN);
  assert.equal(del.status, 200, del.text);
  await assertClosedDeleted(onA, 'socket on A');
  await assertClosedDeleted(onB, 'socket on B');
  assert.ok((await metric(b, 'rn_deleted_user_refused_total')) > refusedBefore);

  for (const h of [a, b]) {
    assertError(await api(h, 'GET', '/auth/me', user), 403, 'account_deleted');
    assertError(await api(h, 'GET', '/games', user), 403, 'account_deleted');
    await wsRefused(h, user.uid);
  }
  // others are untouched
  assert.equal((await api(b, 'GET', '/auth/me', 'demo-alice')).status, 200);

  const restore = await api(b, 'POST', `/admin/users/${user.uid}/restore`, ADMIN);
  assert.equal(restore.status, 200, restore.text);
  // A learns it from B through Redis
  await waitFor(async () => (await api(a, 'GET', '/auth/me', user)).status === 200, { what: 'A lets the user back' });
  assert.equal((await api(b, 'GET', '/auth/me', user)).status, 200);
  for (const h of [a, b]) (await connectWs(h, { token: token(h, user.uid) })).close();
});

test('Redis down: the deleting hub closes its sockets at once; the other hears through PostgreSQL at once too', async () => {
  const redis = await startRedis();
  const [c, d] = await Promise.all([startHub({ pg: world.pg, redis }), startHub({ pg: world.pg, redis })]);
  const user = await newUser(world.pg);
  const onC = await connectWs(c, { token: token(c, user.uid) });
  const onD = await connectWs(d, { token: token(d, user.uid) });
  await redis.stop();
  for (const h of [c, d]) await waitFor(async () => (await metric(h, 'rn_bus_up')) === 0, { what: 'bus down' });

  assert.equal((await api(c, 'DELETE', `/admin/users/${user.uid}`, ADMIN)).status, 200);
  await assertClosedDeleted(onC, 'socket on the deleting hub, Redis down');
  // the bus's fallback (issue 12): the announcement goes by PostgreSQL NOTIFY
  await assertClosedDeleted(onD, 'socket on the other hub, Redis still down');
  assertError(await api(d, 'GET', '/auth/me', user), 403, 'account_deleted');
  assert.equal(await metric(d, 'rn_bus_up'), 0, 'without Redis');
  await redis.start();
  await Promise.all([c.stop(), d.stop()]);
});

test('Redis down, no PostgreSQL fallback: the deleting hub closes its sockets at once; the other catches up when Redis is back', async () => {
  const redis = await startRedis();
  const env = { HUB_BUS_PG_FALLBACK: '0' };
  const [c, d] = await Promise.all([startHub({ pg: world.pg, redis, env }), startHub({ pg: world.pg, redis, env })]);
  const user = await newUser(world.pg);
  const onC = await connectWs(c, { token: token(c, user.uid) });
  const onD = await connectWs(d, { token: token(d, user.uid) });
  await redis.stop();
  for (const h of [c, d]) await waitFor(async () => (await metric(h, 'rn_bus_up')) === 0, { what: 'bus down' });

  assert.equal((await api(c, 'DELETE', `/admin/users/${user.uid}`, ADMIN)).status, 200);
  await assertClosedDeleted(onC, 'socket on the deleting hub, Redis down');
  assertError(await api(c, 'GET', '/auth/me', user), 403, 'account_deleted');
  assert.ok(onD.isOpen, 'the other hub could not be told yet');

  await redis.start();
  // its bus comes back, it loads the deleted users again and closes the socket
  await assertClosedDeleted(onD, 'socket on the other hub, after Redis came back');
  assertError(await api(d, 'GET', '/auth/me', user), 403, 'account_deleted');
  await Promise.all([c.stop(), d.stop()]);
});

test('a hub started after the deletion refuses the user from its first load', async () => {
  const user = await newUser(world.pg);
  assert.equal((await api(a, 'DELETE', `/admin/users/${user.uid}`, ADMIN)).status, 200);
  const late = await startHub({ pg: world.pg, redis: world.redis });
  await waitFor(async () => (await api(late, 'GET', '/auth/me', user)).status === 403, { what: 'the late hub refuses' });
  await wsRefused(late, user.uid);
  await late.stop();
});
