// The cabinet's timers: the no-show deadline, the unlock lockout, and the
// offline grace window (DESIGN.md, queue semantics 4-5, device liveness).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { http, parseMetrics, sleep, token, waitFor } from '../lib/harness.js';
import { ARCADE, GAME_SOLO, cabinet, nextEvent, nextSnapshot, phone, reserve, startWorld, startHub } from './queue_world.js';

/* rn_cabinet_events_total{event=...} of a hub, as {event: count}. */
async function cabinetMetrics(hub) {
  const res = await http(hub, 'GET', '/metrics');
  return Object.fromEntries(
    parseMetrics(res.text)
      .filter((m) => m.name === 'rn_cabinet_events_total')
      .map((m) => [m.labels.event, m.value]),
  );
}

test('a called player who never unlocks expires at the deadline; the next one is called', async () => {
  const world = await startWorld();
  const hub = await startHub({ pg: world.pg, redis: world.redis, args: ['--call-deadline-s', '2'] });
  const cab = await cabinet(hub, world.keys[ARCADE]);
  const alice = await phone(hub, 'demo-alice', { autoAck: true });
  const carol = await phone(hub, 'demo-carol', { autoAck: true });

  const a = (await reserve(hub, 'demo-alice')).json.reservation;
  const turn = await nextEvent(alice, 'your_turn', (m) => m.reservation_id === a.id);
  const c = (await reserve(hub, 'demo-carol')).json.reservation;
  assert.equal(c.status, 'waiting');

  const expired = await nextEvent(alice, 'reservation', (m) => m.reservation_id === a.id && m.status === 'expired', 8000);
  const lateMs = Date.now() - turn.deadline_ms;
  assert.ok(lateMs >= -50, `expired ${-lateMs} ms before the deadline`);
  assert.ok(lateMs < 1500, `expired ${lateMs} ms after the deadline`);
  assert.equal(expired.refunded, false, 'no refund by default');
  await nextEvent(carol, 'your_turn', (m) => m.reservation_id === c.id);
  const cq = await cab.queue((m) => m.called?.reservation_id === c.id);
  assert.equal(await world.pg.psql(`SELECT status FROM reservations WHERE id = ${a.id}`), 'expired');

  // The next deadline is driven the same way.
  await nextEvent(carol, 'reservation', (m) => m.reservation_id === c.id && m.status === 'expired', 8000);
  // with nobody left to call, the cabinet sees it on its arcade's queue snapshots
  await cab.next((m) => m.type === 'queue' && m.called === null && m.v > cq.v, 5000, 'queue with nothing called');
  const counted = await cabinetMetrics(hub);
  assert.equal(counted.no_show, 2);
  assert.equal(counted.online, 1);
});

test('five wrong codes lock unlock for 60 s; the lock ends when the failures age out', async () => {
  const world = await startWorld();
  const hub = await startHub({ pg: world.pg, redis: world.redis, args: ['--call-deadline-s', '120'] });
  const cab = await cabinet(hub, world.keys[ARCADE]);
  const alice = await phone(hub, 'demo-alice', { autoAck: true });
  const a = (await reserve(hub, 'demo-alice')).json.reservation;
  const { code } = await nextEvent(alice, 'your_turn', (m) => m.reservation_id === a.id);
  const wrong = code === '999999' ? '999998' : '999999';

  for (let i = 1; i <= 4; i++) {
    const r = await cab.request({ type: 'unlock', code: wrong });
    assert.equal(r.code, 'bad_code');
    assert.equal(r.attempts_left, 5 - i);
    assert.equal(r.retry_after_s, undefined);
  }
  const fifth = await cab.request({ type: 'unlock', code: wrong });
  assert.equal(fifth.code, 'bad_code');
  assert.equal(fifth.attempts_left, 0);
  assert.equal(fifth.retry_after_s, 60, 'the fifth failure says how long the lock lasts');

  const sixth = await cab.request({ type: 'unlock', code });
  assert.equal(sixth.type, 'error', 'even the right code is refused while locked');
  assert.equal(sixth.code, 'unlock_locked');
  assert.ok(sixth.retry_after_s > 0 && sixth.retry_after_s <= 60, `retry_after_s ${sixth.retry_after_s}`);
  assert.equal(await world.pg.psql(`SELECT status FROM reservations WHERE id = ${a.id}`), 'called');

  // 61 s later (backdated rather than waited for) the lock is over.
  await world.pg.psql(`UPDATE unlock_failures SET created_at = created_at - interval '61 seconds'`);
  const ok = await cab.request({ type: 'unlock', code });
  assert.equal(ok.type, 'ok', JSON.stringify(ok));
  assert.equal(ok.reservation_id, a.id);
  const counted = await cabinetMetrics(hub);
  assert.deepEqual([counted.unlock_bad, counted.unlock_locked, counted.unlock_ok], [5, 1, 1]);
});

test('a cabinet that drops for 3 s is not shown offline (default 10 s grace)', async () => {
  const world = await startWorld();
  const hub = await startHub({ pg: world.pg, redis: world.redis });
  const watcher = await phone(hub, 'watcher-1', { subscribe: ARCADE });
  let cab = await cabinet(hub, world.keys[ARCADE]);
  await nextSnapshot(watcher, (m) => m.status === 'idle');
  const vBefore = watcher.lastSnapshot().v;

  cab.terminate(); // no close frame: a network blip
  await sleep(3000);
  cab = await cabinet(hub, world.keys[ARCADE]);
  await cab.queue();
  await sleep(300);
  const seen = watcher.snapshots().filter((m) => m.v > vBefore);
  assert.ok(seen.every((m) => m.status === 'idle'), `statuses: ${seen.map((m) => m.status)}`);

  // and once back it still calls players
  const alice = await phone(hub, 'demo-alice', { autoAck: true });
  const a = (await reserve(hub, 'demo-alice')).json.reservation;
  await nextEvent(alice, 'your_turn', (m) => m.reservation_id === a.id);
  // still idle well after the grace window of the first socket
  await sleep(200);
  assert.equal(watcher.lastSnapshot().status, 'idle');
});

test('a cabinet gone longer than the grace window is shown offline and calls nobody until it returns', async () => {
  const world = await startWorld();
  const hub = await startHub({ pg: world.pg, redis: world.redis, args: ['--offline-grace-ms', '1500'] });
  const watcher = await phone(hub, 'watcher-1', { subscribe: ARCADE });
  const alice = await phone(hub, 'demo-alice', { autoAck: true });
  const carol = await phone(hub, 'demo-carol', { autoAck: true });
  const cab = await cabinet(hub, world.keys[ARCADE]);
  const a = (await reserve(hub, 'demo-alice')).json.reservation;
  const turn = await nextEvent(alice, 'your_turn', (m) => m.reservation_id === a.id);
  const c = (await reserve(hub, 'demo-carol')).json.reservation;
  assert.equal(c.status, 'waiting');

  await waitFor(() => watcher.lastSnapshot()?.called?.reservation_id === a.id, { what: 'the watcher to see the call' });
  const vCalled = watcher.lastSnapshot().v;
  const t0 = Date.now();
  cab.terminate();
  const off = await nextSnapshot(watcher, (m) => m.status === 'offline' && m.v > vCalled, { timeoutMs: 6000 });
  const took = Date.now() - t0;
  assert.ok(took >= 1400, `shown offline after ${took} ms, inside the grace window`);
  assert.ok(took < 4000, `shown offline only after ${took} ms`);
  assert.equal(off.called, null, 'the called reservation went back to the queue');
  assert.equal(off.waiting[0].reservation_id, a.id, 'at the head');
  await nextEvent(alice, 'reservation', (m) => m.reservation_id === a.id && m.status === 'waiting');

  // Offline past the grace window: a new reservation is refused (issue 10), nobody is called.
  const refused = await http(hub, 'POST', '/api/v1/reservations', {
    token: token(hub, 'demo-bob'),
    body: { arcade_id: ARCADE, game_id: GAME_SOLO },
    headers: { 'Idempotency-Key': crypto.randomUUID() },
  });
  assert.equal(refused.status, 409, refused.text);
  assert.equal(refused.json.error.code, 'arcade_unavailable');
  await sleep(500);
  assert.equal(alice.events('your_turn').length, 1);
  assert.equal(carol.events('your_turn').length, 0);
  assert.equal(await world.pg.psql(`SELECT count(*) FROM reservations WHERE status = 'called'`), '0');

  // Back: idle, and the head (alice, same code) is called again.
  const back = await cabinet(hub, world.keys[ARCADE]);
  const again = await nextEvent(alice, 'your_turn', (m) => m.reservation_id === a.id && m.event_id > turn.event_id);
  assert.equal(again.code, turn.code, 'the players keep their code');
  await back.queue((m) => m.called?.reservation_id === a.id);
  await waitFor(() => watcher.lastSnapshot().status === 'idle', { what: 'idle again' });
  assert.equal(carol.events('your_turn').length, 0, 'carol still waits');
  const counted = await cabinetMetrics(hub);
  assert.deepEqual([counted.online, counted.offline], [2, 1]);
});
