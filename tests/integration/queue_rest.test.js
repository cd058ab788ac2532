// The REST side of the queues: reserve, cancel, read one's reservations, and
// the public catalogue and queue views, against a real PostgreSQL through the
// hub (storage/sql/03_queue.sql behind hub/api_queue.c).
//
// Each test works on arcades and users of its own (made with SQL below), so
// that the tests do not depend on one another's queues.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  applyDemo,
  connectWs,
  http,
  startHub,
  startPostgres,
  startRedis,
  token,
} from '../lib/harness.js';

let pg, hub;

before(async () => {
  const [p, redis] = await Promise.all([startPostgres(), startRedis()]);
  pg = p;
  await applyDemo(pg);
  hub = await startHub({ pg, redis });
});

// ---------------------------------------------------------------------------
// Helpers

let seq = 0;
const uniq = () => `${process.pid}x${++seq}`;

/* A fresh arcade carrying games 1..4 in slots 1..4; its id. */
async function newArcade(status = 'offline') {
  const id = await pg.psql(`
    WITH a AS (INSERT INTO arcades (name, status) VALUES ('Test arcade ${uniq()}', '${status}')
               RETURNING id),
         g AS (INSERT INTO arcade_games (arcade_id, slot, game_id)
               SELECT a.id, n, n FROM a, generate_series(1, 4) AS n)
    SELECT id FROM a`);
  return Number(id);
}

/* A registered user with `tickets` tickets granted through the ledger; {uid, pseudo}. */
async function newUser(tickets = 10) {
  const u = { uid: `uid-${uniq()}`, pseudo: `p${uniq()}` };
  await pg.psql(`
    WITH u AS (INSERT INTO users (firebase_uid, pseudo, tickets_balance)
               VALUES ('${u.uid}', '${u.pseudo}', ${tickets}) RETURNING id, tickets_balance)
    INSERT INTO ledger (user_id, delta, balance_after, kind, reason)
    SELECT id, tickets_balance, tickets_balance, 'adjustment', 'test grant' FROM u
    WHERE tickets_balance > 0`);
  return u;
}

async function befriend(a, b, status = 'accepted') {
  await pg.psql(`
    INSERT INTO friendships (requester_id, addressee_id, status)
    SELECT x.id, y.id, '${status}' FROM users x, users y
    WHERE x.firebase_uid = '${a.uid}' AND y.firebase_uid = '${b.uid}'`);
}

async function balance(user) {
  return Number(await pg.psql(`SELECT tickets_balance FROM users WHERE firebase_uid = '${user.uid}'`));
}

const api = (method, path, user, opts = {}) =>
  http(hub, method, `/api/v1${path}`, { ...opts, token: user ? token(hub, user.uid) : undefined });

function reserve(user, body, key = crypto.randomUUID()) {
  const headers = key ? { 'Idempotency-Key': key } : {};
  return api('POST', '/reservations', user, { body, headers });
}

/* Asserts an error answer: status and code. */
function assertError(res, status, code) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.json?.error?.code, code, res.text);
  assert.equal(typeof res.json.error.message, 'string');
}

const alice = { uid: 'demo-alice', pseudo: 'alice' };
const bob = { uid: 'demo-bob', pseudo: 'bob' };

// ---------------------------------------------------------------------------
// Catalogue

test('arcades and games: lists, one, 404s, public', async () => {
  const arcades = await api('GET', '/arcades');
  assert.equal(arcades.status, 200, arcades.text);
  const paris = arcades.json.items.find((a) => a.id === 1);
  assert.equal(paris.name, 'Retronova Paris Bastille');
  assert.deepEqual(paris.games.map((g) => [g.slot, g.game_id]), [[1, 1], [2, 2], [3, 3], [4, 4]]);
  assert.ok(!arcades.text.includes('api_key'), 'no key material in the catalogue');

  const one = await api('GET', '/arcades/2');
  assert.equal(one.status, 200, one.text);
  assert.equal(one.json.arcade.id, 2);
  assert.deepEqual(one.json.arcade.games.map((g) => g.name), ['Galaxy Raiders', 'Neon Racer']);
  assertError(await api('GET', '/arcades/999999'), 404, 'arcade_not_found');
  for (const bad of ['abc', '0', '-1', '1.5', '99999999999999999999']) {
    assert.equal((await api('GET', `/arcades/${bad}`)).status, 404, bad);
  }

  const games = await api('GET', '/games');
  assert.equal(games.status, 200, games.text);
  assert.deepEqual(games.json.items.filter((g) => g.id <= 4).map((g) => g.ticket_cost), [2, 1, 1, 1]);
  const galaxy = await api('GET', '/games/2');
  assert.equal(galaxy.status, 200);
  assert.equal(galaxy.json.game.max_players, 2);
  assert.deepEqual(galaxy.json.game.arcades.filter((a) => a.arcade_id <= 3).map((a) => a.arcade_id), [1, 2]);
  assertError(await api('GET', '/games/999999'), 404, 'game_not_found');
  assert.equal((await api('GET', '/games/x')).status, 404);
});

// ---------------------------------------------------------------------------
// Reserve

test('reserve solo: 201, debited once through the ledger, position and ETA, no code', async () => {
  const arcade = await newArcade();
  const [u1, u2] = [await newUser(10), await newUser(10)];
  const res = await reserve(u1, { arcade_id: arcade, game_id: 3 });
  assert.equal(res.status, 201, res.text);
  const r = res.json.reservation;
  assert.equal(res.json.balance, 9);
  assert.equal(r.status, 'waiting');
  assert.equal(r.arcade_id, arcade);
  assert.equal(r.game_id, 3);
  assert.equal(r.cost, 1);
  assert.equal(r.position, 1);
  assert.equal(r.eta_s, 180, 'default game length while history is thin');
  assert.deepEqual(r.players, [u1.pseudo]);
  assert.ok(r.created_at);
  assert.ok(!/code/i.test(res.text), `no unlock code in a REST body: ${res.text}`);
  assert.equal(await balance(u1), 9);
  const ledger = await pg.psql(
    `SELECT delta || ' ' || balance_after FROM ledger WHERE kind = 'reservation' AND reservation_id = ${r.id}`,
  );
  assert.equal(ledger, '-1 9');

  const second = await reserve(u2, { arcade_id: arcade, game_id: 4 });
  assert.equal(second.status, 201, second.text);
  assert.equal(second.json.reservation.position, 2);
  assert.equal(second.json.reservation.eta_s, 360);
  assert.equal(await pg.psql(`SELECT version FROM arcade_queue WHERE arcade_id = ${arcade}`), '2');
});

test('reserve duo: alice books with bob; both see it, the booker pays', async () => {
  const arcade = await newArcade();
  const bobBefore = await balance(bob);
  const aliceBefore = await balance(alice);
  const res = await reserve(alice, { arcade_id: arcade, game_id: 1, player2_id: 'demo-bob' });
  assert.equal(res.status, 201, res.text);
  const r = res.json.reservation;
  assert.deepEqual(r.players, ['alice', 'bob']);
  assert.equal(r.cost, 2);
  assert.equal(res.json.balance, aliceBefore - 2);
  assert.equal(await balance(bob), bobBefore);

  for (const who of [alice, bob]) {
    const got = await api('GET', `/reservations/${r.id}`, who);
    assert.equal(got.status, 200, got.text);
    assert.equal(got.json.reservation.id, r.id);
    assert.ok(!/code/i.test(got.text), 'never the code over REST');
  }
  // bob is queued on that arcade as player 2
  assertError(await reserve(bob, { arcade_id: arcade, game_id: 3 }), 409, 'already_queued');
  // Player 2 cannot cancel it: only the booker.
  assertError(await api('DELETE', `/reservations/${r.id}`, bob), 403, 'not_owner');
  const cancel = await api('DELETE', `/reservations/${r.id}`, alice);
  assert.equal(cancel.status, 200, cancel.text);
  assert.equal(await balance(alice), aliceBefore);
});

test('reserve refusals: 400 malformed, 401, 404, 409, 422', async () => {
  const arcade = await newArcade();
  const u = await newUser(10);
  const poor = await newUser(0);
  const stranger = await newUser(10);
  const pending = await newUser(10);
  await befriend(u, pending, 'pending');

  for (const body of [
    { arcade_id: String(arcade), game_id: 3 },
    { arcade_id: arcade },
    { arcade_id: arcade, game_id: 1.5 },
    { arcade_id: 0, game_id: 3 },
    { arcade_id: arcade, game_id: 3, player2_id: 42 },
    { arcade_id: arcade, game_id: 3, player2_id: '' },
    [arcade, 3],
  ]) {
    const res = await reserve(u, body);
    assert.equal(res.status, 400, `${JSON.stringify(body)} -> ${res.text}`);
  }
  assert.equal((await reserve(u, 'not json')).status, 400);
  assert.equal((await http(hub, 'POST', '/api/v1/reservations', { body: { arcade_id: arcade, game_id: 3 } })).status, 401);

  assertError(await reserve({ uid: 'never-registered' }, { arcade_id: arcade, game_id: 3 }), 404, 'not_registered');
  assertError(await reserve(u, { arcade_id: 999999, game_id: 3 }), 404, 'arcade_not_found');
  assertError(await reserve(u, { arcade_id: 2, game_id: 1 }), 422, 'game_not_on_arcade');
  assertError(await reserve(u, { arcade_id: arcade, game_id: 999999 }), 422, 'game_not_on_arcade');

  const broke = await reserve(poor, { arcade_id: arcade, game_id: 3 });
  assertError(broke, 409, 'insufficient_tickets');
  assert.equal(broke.json.error.balance, 0);
  assert.equal(broke.json.error.cost, 1);

  assertError(await reserve(u, { arcade_id: arcade, game_id: 2, player2_id: stranger.uid }), 422, 'not_a_friend');
  assertError(await reserve(u, { arcade_id: arcade, game_id: 2, player2_id: pending.uid }), 422, 'not_a_friend');
  assertError(await reserve(u, { arcade_id: arcade, game_id: 2, player2_id: u.uid }), 422, 'not_a_friend');
  assertError(await reserve(u, { arcade_id: arcade, game_id: 2, player2_id: 'nobody-at-all' }), 422, 'not_a_friend');
  // Street Brawler is for exactly two; Neon Racer for one.
  assertError(await reserve(u, { arcade_id: arcade, game_id: 1 }), 422, 'wrong_player_count');

  await pg.psql(`UPDATE arcades SET status = 'maintenance' WHERE id = ${arcade}`);
  assertError(await reserve(u, { arcade_id: arcade, game_id: 3 }), 409, 'arcade_unavailable');
  await pg.psql(`UPDATE arcades SET status = 'offline' WHERE id = ${arcade}`);

  assert.equal((await reserve(u, { arcade_id: arcade, game_id: 3 })).status, 201);
  assertError(await reserve(u, { arcade_id: arcade, game_id: 4 }), 409, 'already_queued');
  // Nothing refused moved a ticket or left a reservation behind.
  assert.equal(await balance(u), 9);
  assert.equal(await balance(poor), 0);
  assert.equal(await pg.psql(`SELECT count(*) FROM reservations WHERE arcade_id = ${arcade}`), '1');
});

test('idempotent reserve: same key + body replays, debits once; same key, other body 422', async () => {
  const arcade = await newArcade();
  const other = await newArcade();
  const u = await newUser(10);
  const key = crypto.randomUUID();
  const body = { arcade_id: arcade, game_id: 3 };
  const first = await reserve(u, body, key);
  assert.equal(first.status, 201, first.text);
  const replay = await reserve(u, body, key);
  assert.equal(replay.status, 201, replay.text);
  assert.deepEqual(replay.json, first.json, 'the stored answer, as it was');
  assert.equal(await balance(u), 9, 'debited once');
  assert.equal(
    await pg.psql(`SELECT count(*) FROM reservations r JOIN users x ON x.id = r.user_id WHERE x.firebase_uid = '${u.uid}'`),
    '1',
  );
  assertError(await reserve(u, { arcade_id: other, game_id: 3 }, key), 422, 'idempotency_key_reused');
  // The key is the user's own: another user may use the same one.
  const v = await newUser(10);
  assert.equal((await reserve(v, body, key)).status, 201);
  // Without a key, a second attempt is a second request (and is refused here).
  assertError(await reserve(u, body, null), 409, 'already_queued');
});

// ---------------------------------------------------------------------------
// Cancel

test('cancel refunds exactly once; repeat 409; strangers 404; after called 409', async () => {
  const arcade = await newArcade();
  const u = await newUser(5);
  const behind = await newUser(5);
  const stranger = await newUser(5);
  const r = (await reserve(u, { arcade_id: arcade, game_id: 3 })).json.reservation;
  const b = (await reserve(behind, { arcade_id: arcade, game_id: 4 })).json.reservation;
  assert.equal(b.position, 2);

  assertError(await api('DELETE', `/reservations/${r.id}`, stranger), 404, 'reservation_not_found');
  assertError(await api('DELETE', '/reservations/999999', u), 404, 'reservation_not_found');
  assert.equal((await api('DELETE', '/reservations/abc', u)).status, 404);

  const cancel = await api('DELETE', `/reservations/${r.id}`, u);
  assert.equal(cancel.status, 200, cancel.text);
  assert.equal(cancel.json.reservation.status, 'cancelled');
  assert.equal(cancel.json.balance, 5);
  assert.equal(cancel.json.refunded, 1);
  assert.equal(await balance(u), 5);

  const again = await api('DELETE', `/reservations/${r.id}`, u);
  assertError(again, 409, 'not_cancellable');
  assert.match(again.json.error.message, /cancelled/);
  assert.equal(await balance(u), 5, 'no second refund');
  assert.equal(await pg.psql(`SELECT count(*) FROM ledger WHERE kind = 'refund' AND reservation_id = ${r.id}`), '1');

  // The one behind moved up, and was told so.
  const moved = (await api('GET', `/reservations/${b.id}`, behind)).json.reservation;
  assert.equal(moved.position, 1);
  const pos = await pg.psql(`
    SELECT e.payload->>'position' FROM user_events e JOIN users x ON x.id = e.user_id
    WHERE x.firebase_uid = '${behind.uid}' AND e.kind = 'position'
      AND (e.payload->>'reservation_id')::bigint = ${b.id}
    ORDER BY e.id DESC LIMIT 1`);
  assert.equal(pos, '1');

  // Called: too late to cancel.
  const late = await newUser(5);
  const idleArcade = await newArcade('idle');
  const c = (await reserve(late, { arcade_id: idleArcade, game_id: 3 })).json.reservation;
  assert.equal(c.status, 'called');
  const tooLate = await api('DELETE', `/reservations/${c.id}`, late);
  assertError(tooLate, 409, 'not_cancellable');
  assert.equal(tooLate.json.error.status, 'called');
  assert.equal(await balance(late), 4);
});

// ---------------------------------------------------------------------------
// Reading one's reservations

test('GET /reservations/{id}: participants only', async () => {
  const arcade = await newArcade();
  const u = await newUser(5);
  const stranger = await newUser(5);
  const r = (await reserve(u, { arcade_id: arcade, game_id: 3 })).json.reservation;
  const mine = await api('GET', `/reservations/${r.id}`, u);
  assert.equal(mine.status, 200, mine.text);
  assert.equal(mine.json.reservation.status, 'waiting');
  assertError(await api('GET', `/reservations/${r.id}`, stranger), 404, 'reservation_not_found');
  assertError(await api('GET', '/reservations/999999', u), 404, 'reservation_not_found');
  assert.equal((await api('GET', '/reservations/0', u)).status, 404);
  assert.equal((await http(hub, 'GET', `/api/v1/reservations/${r.id}`)).status, 401);
});

test('GET /reservations/my: newest first, limit and cursor', async () => {
  const arcade = await newArcade();
  const u = await newUser(20);
  const ids = [];
  for (let i = 0; i < 5; i++) {
    const r = (await reserve(u, { arcade_id: arcade, game_id: 3 })).json.reservation;
    ids.push(r.id);
    assert.equal((await api('DELETE', `/reservations/${r.id}`, u)).status, 200);
  }
  const duo = (await reserve(alice, { arcade_id: arcade, game_id: 2, player2_id: 'demo-bob' })).json.reservation;

  const seen = [];
  let cursor = null;
  let pages = 0;
  do {
    const q = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
    const page = await api('GET', `/reservations/my${q}`, u);
    assert.equal(page.status, 200, page.text);
    assert.ok(page.json.items.length <= 2);
    seen.push(...page.json.items.map((r) => r.id));
    cursor = page.json.next_cursor;
    pages++;
  } while (cursor !== null && pages < 10);
  assert.deepEqual(seen, [...ids].reverse(), 'every one, newest first, once');
  assert.equal(pages, 3);

  const all = await api('GET', '/reservations/my', u);
  assert.equal(all.json.items.length, 5, 'default limit 20');
  assert.equal(all.json.next_cursor, null);
  // Player 2 sees the duo among theirs.
  const bobs = await api('GET', '/reservations/my?limit=100', bob);
  assert.ok(bobs.json.items.some((r) => r.id === duo.id));

  for (const q of ['?limit=0', '?limit=101', '?limit=x', '?limit=', '?cursor=abc', '?cursor=0', '?cursor=-4']) {
    assertError(await api('GET', `/reservations/my${q}`, u), 400, 'bad_request');
  }
  assert.equal((await api('DELETE', `/reservations/${duo.id}`, alice)).status, 200);
});

// ---------------------------------------------------------------------------
// The public queue and the call

test('the public queue: positions 1..n, pseudos only, never a uid or a code', async () => {
  const arcade = await newArcade();
  const users = [await newUser(5), await newUser(5), await newUser(5)];
  for (const u of users) assert.equal((await reserve(u, { arcade_id: arcade, game_id: 3 })).status, 201);
  const duo = await reserve(alice, { arcade_id: arcade, game_id: 1, player2_id: 'demo-bob' });
  assert.equal(duo.status, 201, duo.text);

  const q = await api('GET', `/arcades/${arcade}/queue`); // public: no token
  assert.equal(q.status, 200, q.text);
  const s = q.json;
  assert.equal(s.type, 'queue');
  assert.equal(s.arcade_id, arcade);
  assert.equal(s.v, Number(await pg.psql(`SELECT version FROM arcade_queue WHERE arcade_id = ${arcade}`)));
  assert.equal(s.status, 'offline');
  assert.equal(s.called, null);
  assert.equal(s.playing, null);
  assert.equal(s.eta_is_estimate, true);
  assert.deepEqual(s.waiting.map((w) => w.position), [1, 2, 3, 4]);
  assert.deepEqual(s.waiting.map((w) => w.eta_s), [1, 2, 3, 4].map((n) => n * s.avg_game_s));
  assert.deepEqual(s.waiting.map((w) => w.players), [...users.map((u) => [u.pseudo]), ['alice', 'bob']]);

  const codes = (await pg.psql(`SELECT unlock_code FROM reservations WHERE arcade_id = ${arcade}`)).split('\n');
  assert.equal(codes.length, 4);
  for (const secret of [...codes, ...users.map((u) => u.uid), 'demo-alice', 'demo-bob']) {
    assert.ok(!q.text.includes(secret), `the public queue leaks ${secret}`);
  }
  assert.ok(!/code|uid|firebase/i.test(q.text), q.text);
  assertError(await api('GET', '/arcades/999999/queue'), 404, 'arcade_not_found');
  assert.equal((await api('DELETE', `/reservations/${duo.json.reservation.id}`, alice)).status, 200);
});

test('an idle cabinet calls the head at once: your_turn with a 6-digit code, pushed live', async () => {
  const arcade = await newArcade();
  await pg.psql(`UPDATE arcades SET status = 'idle' WHERE id = ${arcade}`);
  const u = await newUser(5);
  const next = await newUser(5);
  const phone = await connectWs(hub, { token: token(hub, u.uid) });
  const sub = await phone.request({ type: 'subscribe', ch: `arcade:${arcade}` });
  assert.equal(sub.type, 'ok', JSON.stringify(sub));
  await phone.next((m) => m.type === 'queue' && m.arcade_id === arcade);

  const res = await reserve(u, { arcade_id: arcade, game_id: 3 });
  assert.equal(res.status, 201, res.text);
  const r = res.json.reservation;
  assert.equal(r.status, 'called');
  assert.equal(r.position, null);
  assert.ok(r.deadline_ms > Date.now() + 60000, 'the default deadline is 120 s away');
  assert.ok(!/code/i.test(res.text), 'the code goes only to the players, privately');

  const [code] = (await pg.psql(`SELECT unlock_code FROM reservations WHERE id = ${r.id}`)).split('\n');
  assert.match(code, /^[0-9]{6}$/);
  const turn = await pg.psql(`
    SELECT e.payload->>'code' FROM user_events e JOIN users x ON x.id = e.user_id
    WHERE x.firebase_uid = '${u.uid}' AND e.kind = 'your_turn'
      AND (e.payload->>'reservation_id')::bigint = ${r.id}`);
  assert.equal(turn, code);
  const cab = await pg.psql(`
    SELECT count(*) FROM user_events WHERE arcade_id = ${arcade} AND kind = 'cabinet_queue'
      AND (payload->'called'->>'reservation_id')::bigint = ${r.id}
      AND payload::text NOT LIKE '%${code}%'`);
  assert.equal(cab, '1', 'the cabinet is told, without the code');

  // Live: the private your_turn and the public snapshot with the call.
  const live = await phone.next((m) => m.type === 'your_turn' && m.reservation_id === r.id);
  assert.equal(live.code, code);
  assert.equal(live.arcade_id, arcade);
  assert.equal(live.slot, 3);
  assert.ok(live.event_id > 0);
  const snap = await phone.next((m) => m.type === 'queue' && m.arcade_id === arcade && m.called);
  assert.equal(snap.called.reservation_id, r.id);
  assert.deepEqual(snap.called.players, [u.pseudo]);
  assert.ok(!JSON.stringify(snap).includes(code));

  // The next one waits behind the called one, at position 1.
  const n = (await reserve(next, { arcade_id: arcade, game_id: 4 })).json.reservation;
  assert.equal(n.status, 'waiting');
  assert.equal(n.position, 1);
  phone.close();
});

test('the books balance: tickets_balance = sum(ledger.delta) for every user', async () => {
  const off = await pg.psql(`
    SELECT count(*) FROM users u
    WHERE u.tickets_balance <> (SELECT coalesce(sum(l.delta), 0) FROM ledger l WHERE l.user_id = u.id)`);
  assert.equal(off, '0');
  const lastBalance = await pg.psql(`
    SELECT count(*) FROM users u
    WHERE u.tickets_balance <> coalesce((SELECT l.balance_after FROM ledger l WHERE l.user_id = u.id
                                         ORDER BY l.id DESC LIMIT 1), 0)`);
  assert.equal(lastBalance, '0', 'every ledger row records the balance it left');
});
