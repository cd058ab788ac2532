// Two hub processes sharing Postgres and Redis: a change made through one
// reaches the phones of the other at once; a process killed with SIGKILL
// loses nothing (its phones resume elsewhere); Redis down delays pushes
// between processes but never makes them wrong.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { http, sleep, waitFor } from '../lib/harness.js';
import { ARCADE, GAME_DUO, cabinet, nextEvent, nextSnapshot, phone, queueVersion, reserve, startWorld, startHub } from './queue_world.js';

const PUSH_BUDGET_MS = 200;

let world;

before(async () => {
  world = await startWorld();
});

const dbEventIds = async (uid, after) =>
  (await world.pg.psql(`SELECT id FROM user_events WHERE user_id = rn_user_id('${uid}') AND id > ${after} ORDER BY id`))
    .split('\n')
    .filter(Boolean)
    .map(Number);

test('a change made through B reaches a phone on A within 200 ms; A killed -9 loses nothing', async () => {
  const { pg, redis } = world;
  let a = await startHub({ pg, redis });
  const b = await startHub({ pg, redis });
  const alice = await phone(a, 'demo-alice', { subscribe: ARCADE, autoAck: true });
  await nextSnapshot(alice);
  const watcherB = await phone(b, 'watcher-b', { subscribe: ARCADE });
  await nextSnapshot(watcherB);

  // private lane: alice (and bob) reserve through B; her phone on A gets the events
  const bal = nextEvent(alice, 'balance');
  const mine = await reserve(b, 'demo-alice', { game: GAME_DUO, player2: 'demo-bob' });
  const t1 = Date.now();
  await bal;
  const privateMs = Date.now() - t1;
  // public lane: carol reserves through B; alice on A sees the snapshot
  const seen = nextSnapshot(alice, (m) => m.waiting.some((w) => w.players.includes('carol')));
  const res = await reserve(b, 'demo-carol');
  const t2 = Date.now();
  const snap = await seen;
  const publicMs = Date.now() - t2;
  console.log(`# B -> A: queue snapshot ${publicMs} ms, private event ${privateMs} ms after the HTTP response`);
  assert.ok(publicMs <= PUSH_BUDGET_MS, `snapshot took ${publicMs} ms`);
  assert.ok(privateMs <= PUSH_BUDGET_MS, `private event took ${privateMs} ms`);
  assert.equal(snap.waiting.at(-1).reservation_id, res.json.reservation.id);

  // A dies without a word. The cabinet, on B, plays the duo meanwhile.
  await waitFor(async () => (await dbEventIds('demo-alice', 0)).every((id) => alice.events().some((m) => m.event_id === id)), {
    what: 'alice to have everything so far',
  });
  const since = Math.max(...alice.events().map((m) => m.event_id));
  await a.kill();
  await alice.closed(5000);
  const cab = await cabinet(b, world.keys[ARCADE]);
  const duo = mine.json.reservation.id;
  // the code, from the database (alice's phone is down; bob could read it too)
  const code = await pg.psql(`SELECT unlock_code FROM reservations WHERE id = ${duo}`);
  await cab.queue((m) => m.called?.reservation_id === duo);
  assert.equal((await cab.request({ type: 'unlock', code })).type, 'ok');
  const over = await cab.request({ type: 'game_over', reservation_id: duo, scores: [10, 20] });
  assert.equal(over.winner, 'bob');

  a = await startHub({ pg, redis });
  const alice2 = await phone(a, 'demo-alice', { resume: since, subscribe: ARCADE });
  const missed = await dbEventIds('demo-alice', since);
  assert.ok(missed.length >= 4, `alice missed ${missed.length} events`);
  await waitFor(() => alice2.events().length >= missed.length, { what: `${missed.length} replayed events` });
  await sleep(300); // nothing more may come
  assert.deepEqual(alice2.events().map((m) => m.event_id), missed, 'exactly what she missed, in order, once');
  assert.ok(alice2.events('score').length === 1);

  const dbV = await queueVersion(pg);
  const rest = await http(a, 'GET', `/api/v1/arcades/${ARCADE}/queue`);
  assert.equal(rest.status, 200, rest.text);
  assert.equal(rest.json.v, dbV, "A's REST queue is the database's");
  await waitFor(() => alice2.lastSnapshot()?.v === dbV, { what: `alice's snapshot at v${dbV}` });
  await waitFor(() => watcherB.lastSnapshot()?.v === dbV, { what: `B's watcher at v${dbV}` });
});

test('Redis down: each hub still pushes its own changes, B hears of them through PostgreSQL; converged when Redis returns', async () => {
  const { pg, redis } = world;
  const a = await startHub({ pg, redis });
  const b = await startHub({ pg, redis });
  const bob = await phone(a, 'demo-bob', { subscribe: ARCADE, autoAck: true });
  const watcherB = await phone(b, 'watcher-b2', { subscribe: ARCADE });
  await nextSnapshot(bob);
  await nextSnapshot(watcherB);

  await redis.stop();
  await waitFor(async () => (await http(a, 'GET', '/readyz')).json?.redis === 'down', { what: 'A to see Redis down' });
  const vBefore = watcherB.lastSnapshot().v;

  // bob's own reservation through A: his phone on A still gets the snapshot and the events
  const r = await reserve(a, 'demo-bob');
  const snap = await nextSnapshot(bob, (m) => m.waiting.some((w) => w.reservation_id === r.json.reservation.id), { timeoutMs: 2000 });
  assert.equal(snap.v, await queueVersion(pg));
  await nextEvent(bob, 'balance', (m) => m.reservation_id === r.json.reservation.id, 2000);
  // no single bus (issue 12): B hears of it through PostgreSQL NOTIFY, Redis still down
  assert.ok(snap.v > vBefore);
  await waitFor(() => watcherB.lastSnapshot()?.v === snap.v, { timeoutMs: 2000, intervalMs: 10, what: `B's watcher at v${snap.v} without Redis` });
  assert.equal((await http(b, 'GET', '/readyz')).json?.redis, 'down', 'still without Redis');

  await redis.start();
  const dbV = await queueVersion(pg);
  await waitFor(() => watcherB.lastSnapshot()?.v === dbV, { timeoutMs: 15000, what: `B's watcher to reach v${dbV}` });
  assert.ok(watcherB.lastSnapshot().waiting.some((w) => w.reservation_id === r.json.reservation.id));
});
