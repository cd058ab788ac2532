// The admin stream carries what players do, for the operations console: a
// reservation's every status, a game's score and a promo credit, as
// admin_event kinds `reservation`, `score` and `promo` (PROTOCOL.md). A duo's
// two players get twin private events; the stream shows each step once. A
// player's socket never gets any of it.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { HUB_BIN, applyDemo, connectWs, http, run, startHub, startPostgres, startRedis, token } from '../lib/harness.js';

let hub, pg;

before(async () => {
  const [p, redis] = await Promise.all([startPostgres(), startRedis()]);
  pg = p;
  await applyDemo(pg);
  hub = await startHub({ pg, redis });
});

const post = async (uid, path, body) => {
  const res = await http(hub, 'POST', path, { token: token(hub, uid), body, headers: { 'Idempotency-Key': crypto.randomUUID() } });
  assert.ok(res.status < 300, `${path}: ${res.status} ${res.text}`);
  return res.json;
};

test('reservations, scores and promo credits reach the admin stream, once each', async () => {
  const admin = await connectWs(hub, { token: token(hub, 'demo-admin', { admin: true }) });
  const seen = [];
  admin.ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    if (m.type === 'admin_event') seen.push(m.event);
  });
  const alice = await connectWs(hub, { token: token(hub, 'demo-alice') });
  const key = (await run(HUB_BIN, ['cabinet-key', '--database-url', pg.url, '2'])).stdout.trim();
  const cab = await connectWs(hub, { headers: { Authorization: `ApiKey ${key}` } });
  await cab.next((m) => m.type === 'cabinet_queue', 10000);

  // A duo on arcade 2, whose cabinet is idle: booked, then called at once.
  const booked = await post('demo-alice', '/api/v1/reservations', { arcade_id: 2, game_id: 2, player2_id: 'demo-bob' });
  const rid = booked.reservation.id;
  const turn = await alice.next((m) => m.type === 'your_turn' && m.reservation_id === rid, 10000);
  assert.equal((await cab.request({ type: 'unlock', code: turn.code })).type, 'ok');
  const over = await cab.request({ type: 'game_over', reservation_id: rid, scores: [900, 300] });
  assert.equal(over.winner, 'alice');
  await post('demo-bob', '/api/v1/promos/use', { code: 'WELCOME10' });

  // The promo credit is the last thing done: once it is in, everything before is too.
  const promo = (await admin.next((m) => m.type === 'admin_event' && m.event.kind === 'promo', 10000)).event;
  assert.equal(promo.uid, 'demo-bob');
  assert.equal(promo.delta, 10);

  const mine = seen.filter((e) => e.reservation_id === rid);
  const steps = mine.filter((e) => e.kind === 'reservation').map((e) => e.status);
  assert.deepEqual(steps, ['waiting', 'called', 'playing', 'completed'], JSON.stringify(mine));
  const scores = mine.filter((e) => e.kind === 'score');
  assert.equal(scores.length, 1, 'one score event for the duo');
  assert.deepEqual(scores[0].scores, [{ pseudo: 'alice', score: 900 }, { pseudo: 'bob', score: 300 }]);
  assert.equal(scores[0].winner, 'alice');
  assert.equal(scores[0].you, undefined, 'no player-relative field');
  assert.equal(typeof scores[0].at_ms, 'number');
  assert.ok(['demo-alice', 'demo-bob'].includes(scores[0].uid));

  // Nothing of it on a player's socket.
  assert.equal(alice.inbox.filter((m) => m.type === 'admin_event').length, 0);
  for (const c of [admin, alice, cab]) c.close();
});
