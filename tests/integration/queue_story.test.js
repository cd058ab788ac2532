// The live queue of one arcade, end to end: reserve, call, unlock, play,
// score, next — every step pushed to the phones and the cabinet as it commits.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { connectWs, waitFor } from '../lib/harness.js';
import { ARCADE, GAME_DUO, GAME_SOLO, cabinet, nextEvent, phone, queueVersion, reserve, startWorld, startHub } from './queue_world.js';

let world, hub;

before(async () => {
  world = await startWorld();
  hub = await startHub({ pg: world.pg, redis: world.redis });
});

test('duo reserved, carol behind; the cabinet connects, unlock, game over, carol is next', async () => {
  const { pg, keys } = world;
  const alice = await phone(hub, 'demo-alice', { subscribe: ARCADE, autoAck: true });
  const bob = await phone(hub, 'demo-bob', { subscribe: ARCADE, autoAck: true });
  const carol = await phone(hub, 'demo-carol', { subscribe: ARCADE, autoAck: true });
  const watcher = await phone(hub, 'watcher-1', { subscribe: ARCADE });

  // The cabinet is offline: reservations queue up, nobody is called.
  const duo = (await reserve(hub, 'demo-alice', { game: GAME_DUO, player2: 'demo-bob' })).json.reservation;
  const solo = (await reserve(hub, 'demo-carol', { game: GAME_SOLO })).json.reservation;
  assert.equal(duo.status, 'waiting');
  assert.equal(solo.position, 2);
  const carolAt2 = await nextEvent(carol, 'position', (m) => m.reservation_id === solo.id);
  assert.equal(carolAt2.position, 2);

  // The cabinet connects: the duo is called.
  const cab = await cabinet(hub, keys[ARCADE]);
  assert.equal(cab.auth.arcade_id, ARCADE);
  const [aTurn, bTurn] = await Promise.all([
    nextEvent(alice, 'your_turn', (m) => m.reservation_id === duo.id),
    nextEvent(bob, 'your_turn', (m) => m.reservation_id === duo.id),
  ]);
  assert.match(aTurn.code, /^[0-9]{6}$/);
  assert.equal(bTurn.code, aTurn.code, 'both players of a duo get the same code');
  assert.ok(aTurn.deadline_ms > Date.now(), 'the deadline is ahead');
  const cq = await cab.queue((m) => m.called?.reservation_id === duo.id);
  assert.equal(cq.arcade_id, ARCADE);
  assert.equal(cq.called.deadline_ms, aTurn.deadline_ms, 'the cabinet gets the deadline');
  assert.deepEqual(cq.called.players, ['alice', 'bob']);
  assert.ok(!JSON.stringify(cq).includes(aTurn.code), 'the cabinet never sees the code');
  const carolAt1 = await nextEvent(carol, 'position', (m) => m.reservation_id === solo.id && m.position === 1);
  assert.equal(carolAt1.position, 1, "carol's position went 2 -> 1");

  // A wrong code is refused, the right one unlocks, once.
  const wrong = aTurn.code === '000000' ? '000001' : '000000';
  const r1 = await cab.request({ type: 'unlock', code: wrong });
  assert.equal(r1.type, 'error');
  assert.equal(r1.code, 'bad_code');
  assert.equal(r1.attempts_left, 4);
  const shape = await cab.request({ type: 'unlock', code: '12ab56' });
  assert.equal(shape.code, 'bad_code', 'a malformed code is refused');
  assert.equal(shape.attempts_left, undefined, 'a malformed code does not count');
  const r2 = await cab.request({ type: 'unlock', code: aTurn.code });
  assert.equal(r2.type, 'ok', JSON.stringify(r2));
  assert.equal(r2.reservation_id, duo.id);
  const r3 = await cab.request({ type: 'unlock', code: aTurn.code });
  assert.equal(r3.type, 'error', 'single use');
  assert.equal(r3.code, 'nothing_called');
  await nextEvent(alice, 'reservation', (m) => m.reservation_id === duo.id && m.status === 'playing');

  assert.equal((await cab.request({ type: 'game_started', reservation_id: duo.id })).type, 'ok');
  const bad = await cab.request({ type: 'game_over', reservation_id: duo.id, scores: [1.5, 2] });
  assert.equal(bad.code, 'bad_request', 'scores are integers');
  const over = await cab.request({ type: 'game_over', reservation_id: duo.id, scores: [15200, 9900] });
  assert.equal(over.type, 'ok', JSON.stringify(over));
  assert.equal(over.winner, 'alice');
  const again = await cab.request({ type: 'game_over', reservation_id: duo.id, scores: [15200, 9900] });
  assert.equal(again.type, 'ok', 'game_over is idempotent');
  assert.equal(again.winner, 'alice');

  const [aScore, bScore] = await Promise.all([
    nextEvent(alice, 'score', (m) => m.reservation_id === duo.id),
    nextEvent(bob, 'score', (m) => m.reservation_id === duo.id),
  ]);
  for (const s of [aScore, bScore]) {
    assert.equal(s.winner, 'alice');
    assert.deepEqual(s.scores.map((x) => x.score).sort(), [15200, 9900].sort());
  }
  assert.equal(aScore.you.won, true);
  assert.equal(bScore.you.won, false);
  assert.equal(alice.events('score').length, 1, 'one score event, the repeat pushed nothing');

  // Carol is next.
  const cTurn = await nextEvent(carol, 'your_turn', (m) => m.reservation_id === solo.id);
  assert.match(cTurn.code, /^[0-9]{6}$/);
  await cab.queue((m) => m.called?.reservation_id === solo.id);

  // Every phone on arcade:1 saw snapshots with growing v, ending at the database's.
  const dbV = await queueVersion(pg);
  await waitFor(() => watcher.lastSnapshot()?.v === dbV, { what: `the watcher at v${dbV}` });
  for (const p of [alice, bob, carol, watcher]) {
    const vs = p.snapshots().map((m) => m.v);
    assert.ok(vs.length >= 3, `${p.uid}: ${vs.length} snapshots`);
    // never backwards; the first subscriber of a process may get its first view twice (queue.c)
    for (let i = 1; i < vs.length; i++) assert.ok(vs[i] >= vs[i - 1], `${p.uid}: v never goes back (${vs})`);
    assert.ok(vs.slice(2).every((v, i) => v > vs[i + 1]), `${p.uid}: v grows after the first (${vs})`);
    assert.ok(!JSON.stringify(p.snapshots()).includes(cTurn.code), 'snapshots never carry a code');
  }
  const last = watcher.lastSnapshot();
  assert.equal(last.called.reservation_id, solo.id);
  assert.equal(last.status, 'idle');
  assert.equal(last.waiting.length, 0);
});

test('a message sent while the API key is being checked is refused, not fatal', async () => {
  const c = await connectWs(hub);
  // hold the key lookup: it waits on this lock for a second
  const locked = world.pg.psql(
    'BEGIN; LOCK TABLE arcades IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(1); COMMIT;',
  );
  await waitFor(
    async () =>
      (await world.pg.psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation " +
          "WHERE c.relname = 'arcades' AND l.mode = 'AccessExclusiveLock' AND l.granted",
      )) === '1',
    { timeoutMs: 5000, what: 'the lock on arcades' },
  );
  c.send({ type: 'auth', id: 1, api_key: world.keys[2] });
  c.send({ type: 'ping', id: 2 });
  const early = await c.next((m) => m.id === 2);
  assert.equal(early.code, 'authenticating', JSON.stringify(early));
  await locked;
  assert.equal((await c.next((m) => m.id === 1)).role, 'cabinet');
  assert.equal((await c.request({ type: 'ping', id: 3 })).type, 'pong', 'still open, now authenticated');
  c.close();
});

test('cabinet messages are checked before they reach the database', async () => {
  const cab = await cabinet(hub, world.keys[2]);
  const cases = [
    [{ type: 'unlock' }, 'bad_code'],
    [{ type: 'unlock', code: 123456 }, 'bad_code'],
    [{ type: 'unlock', code: '1234567' }, 'bad_code'],
    [{ type: 'game_started' }, 'bad_request'],
    [{ type: 'game_started', reservation_id: '5' }, 'bad_request'],
    [{ type: 'game_over', reservation_id: 5, scores: [] }, 'bad_request'],
    [{ type: 'game_over', reservation_id: 5, scores: [1, 2, 3] }, 'bad_request'],
    [{ type: 'game_over', reservation_id: 5, scores: ['1'] }, 'bad_request'],
    [{ type: 'status', state: 'playing' }, 'bad_request'],
    [{ type: 'status', state: 'offline' }, 'bad_request'],
  ];
  for (const [msg, code] of cases) {
    const r = await cab.request(msg);
    assert.equal(r.type, 'error', JSON.stringify(msg));
    assert.equal(r.code, code, `${JSON.stringify(msg)} -> ${JSON.stringify(r)}`);
  }
  const r = await cab.request({ type: 'game_started', reservation_id: 987654 });
  assert.equal(r.code, 'reservation_not_found', 'a SQL 404 becomes an error reply with its code');
  assert.equal(typeof r.message, 'string');
  const u = await cab.request({ type: 'unlock', code: '123456' });
  assert.equal(u.code, 'nothing_called');
  // maintenance and back
  const m = await cab.request({ type: 'status', state: 'maintenance' });
  assert.equal(m.type, 'ok');
  assert.equal(m.status, 'maintenance');
  assert.equal((await cab.request({ type: 'status', state: 'idle' })).status, 'idle');
});

test('SIGTERM with cabinets connected and a deadline armed: a clean exit', async () => {
  // the first hub still holds arcade 1's cabinet with carol called
  assert.equal(await hub.stop({ timeoutMs: 10000 }), 0, hub.tail());

  // a cabinet that never reads its close frame outlives the drain: lws closes
  // it during the teardown, after the cabinets are gone
  const other = await startHub({ pg: world.pg, redis: world.redis, args: ['--drain-timeout-ms', '300'] });
  const cab = await cabinet(other, world.keys[3]);
  await cab.queue();
  cab.ws._socket.pause();
  assert.equal(await other.stop({ timeoutMs: 10000 }), 0, other.tail());
});
