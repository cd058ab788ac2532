// The unacked sweep (hub/events_sweep.c): an event committed by a hub that
// died before publishing it (here: a row written straight into user_events,
// which is exactly what such a hub leaves behind) still reaches the phone
// connected to another hub, without a reconnect, within two sweep periods.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { http, parseMetrics } from '../lib/harness.js';
import { nextEvent, phone, startHub, startWorld } from './queue_world.js';

const SWEEP_MS = 500;
let world;

before(async () => {
  world = await startWorld();
});

test('an event nobody published is pushed to the connected phone by the sweep', async () => {
  const hub = await startHub({ pg: world.pg, redis: world.redis, args: ['--unacked-sweep-ms', String(SWEEP_MS)] });
  const alice = await phone(hub, 'demo-alice', { autoAck: true });
  const id = Number(await world.pg.psql(`INSERT INTO user_events (user_id, kind, payload)
    VALUES (rn_user_id('demo-alice'), 'balance', '{"balance": 4242}') RETURNING id`));
  const t0 = Date.now();
  const ev = await nextEvent(alice, 'balance', (m) => m.event_id === id, 10 * SWEEP_MS);
  const took = Date.now() - t0;
  console.log(`# an unpublished event reached the phone ${took} ms after its commit (sweep every ${SWEEP_MS} ms)`);
  assert.equal(ev.balance, 4242);
  assert.ok(took >= SWEEP_MS - 50, `not before it was ${SWEEP_MS} ms old (${took} ms)`);
  // acked now: the next sweeps leave it alone
  await nextEvent(alice, 'balance', (m) => m.event_id === id, 4 * SWEEP_MS).then(
    () => assert.fail('pushed twice on one socket'),
    () => {},
  );
  const metrics = parseMetrics((await http(hub, 'GET', '/metrics')).text);
  assert.ok(metrics.find((s) => s.name === 'rn_unacked_sweep_events_total').value >= 1);
});
