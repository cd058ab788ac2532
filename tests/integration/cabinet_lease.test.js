// Cabinet leases: the hub holding a cabinet renews its lease; if that hub dies
// without a goodbye (kill -9), another hub's sweep shows the arcade offline,
// so nobody is called to a dead cabinet.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../lib/harness.js';
import { ARCADE, cabinet, nextSnapshot, phone, startHub, startWorld } from './queue_world.js';

const LEASE_MS = 1500;
let world;

before(async () => {
  world = await startWorld();
});

const status = async () => world.pg.psql(`SELECT status FROM arcades WHERE id = ${ARCADE}`);

test('a live cabinet keeps its lease; killed -9, its hub is swept and phones see offline', async () => {
  const args = ['--cabinet-lease-ms', String(LEASE_MS)];
  const a = await startHub({ pg: world.pg, redis: world.redis, args });
  const b = await startHub({ pg: world.pg, redis: world.redis, args });
  const watcher = await phone(b, 'demo-carol', { subscribe: ARCADE });

  await cabinet(a, world.keys[ARCADE]);
  await nextSnapshot(watcher, (m) => m.status !== 'offline');
  // three lease periods later the cabinet, renewed by A, is still online
  await sleep(3 * LEASE_MS);
  assert.notEqual(await status(), 'offline', 'a renewed lease is not swept');

  const before = watcher.lastSnapshot().v;
  await a.kill();
  const t0 = Date.now();
  const offline = await nextSnapshot(watcher, (m) => m.v > before && m.status === 'offline', {
    timeoutMs: 4 * LEASE_MS,
  });
  assert.equal(offline.called, null, 'nobody is called to a dead cabinet');
  assert.equal(await status(), 'offline');
  assert.ok(Date.now() - t0 < 4 * LEASE_MS, `shown offline ${Date.now() - t0} ms after the kill`);
});
