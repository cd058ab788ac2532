// Private events are never lost: a phone that did not ack your_turn gets it
// again after reconnecting with resume; one that acked does not. A cabinet
// resumes its own inbox the same way.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../lib/harness.js';
import { ARCADE, GAME_DUO, cabinet, nextEvent, phone, reserve, startWorld, startHub } from './queue_world.js';

let world, hub;

before(async () => {
  world = await startWorld();
  hub = await startHub({ pg: world.pg, redis: world.redis });
});

test('your_turn unacked comes back on resume; acked, it does not', async () => {
  // alice never acks anything; bob acks everything.
  const alice = await phone(hub, 'demo-alice');
  const bob = await phone(hub, 'demo-bob', { autoAck: true });
  const cab = await cabinet(hub, world.keys[ARCADE]);
  const duo = (await reserve(hub, 'demo-alice', { game: GAME_DUO, player2: 'demo-bob' })).json.reservation;
  const aTurn = await nextEvent(alice, 'your_turn', (m) => m.reservation_id === duo.id);
  const bTurn = await nextEvent(bob, 'your_turn', (m) => m.reservation_id === duo.id);
  await cab.queue((m) => m.called?.reservation_id === duo.id);
  // bob's ack is a database write: wait until it landed
  const bobAcked = async () =>
    (await world.pg.psql(`SELECT acked_at IS NOT NULL FROM user_events WHERE id = ${bTurn.event_id}`)) === 't';
  for (let i = 0; i < 100 && !(await bobAcked()); i++) await sleep(20);
  assert.ok(await bobAcked(), "bob's ack was stored");

  alice.terminate();
  bob.terminate();
  const alice2 = await phone(hub, 'demo-alice', { resume: 0 });
  const bob2 = await phone(hub, 'demo-bob', { resume: 0 });

  const again = await nextEvent(alice2, 'your_turn', (m) => m.reservation_id === duo.id);
  assert.equal(again.event_id, aTurn.event_id, 'the same event, by id');
  assert.equal(again.code, aTurn.code);
  // everything alice missed, in order, each once
  const ids = alice2.events().map((m) => m.event_id);
  assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'in event_id order');
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  const unacked = (
    await world.pg.psql(
      `SELECT id FROM user_events WHERE user_id = rn_user_id('demo-alice') AND acked_at IS NULL ORDER BY id`,
    )
  )
    .split('\n')
    .filter(Boolean)
    .map(Number);
  assert.deepEqual(ids, unacked, 'exactly the unacked events');

  await sleep(500);
  assert.equal(bob2.events('your_turn').length, 0, 'bob acked his: not replayed');

  // resume since a later id skips what came before it
  const alice3 = await phone(hub, 'demo-alice', { resume: aTurn.event_id });
  await sleep(300);
  assert.ok(alice3.events().every((m) => m.event_id > aTurn.event_id));
  assert.equal(alice3.events('your_turn').length, 0);
});

test('a cabinet gets cabinet_queue on connect, and its unacked inbox on resume', async () => {
  const cab = await cabinet(hub, world.keys[2], { autoAck: false });
  const first = await cab.queue();
  assert.equal(first.arcade_id, 2);
  assert.ok(first.v > 0);
  cab.terminate();
  // a new socket of the same cabinet: the unacked event again (resume 0), then a fresh one
  const cab2 = await cabinet(hub, world.keys[2], { autoAck: true });
  const replayed = await cab2.queue((m) => m.event_id === first.event_id);
  assert.equal(replayed.v, first.v);
  const fresh = await cab2.queue((m) => m.event_id > first.event_id);
  assert.ok(fresh.v > first.v, 'the newest view comes last: act on the last one');
});
