// The operator's side of the queue (issue 10 items 1, 2, 9): an admin voids
// a reservation (even one called on another hub process), a game past its
// maximum duration ends as timed_out, a reconnecting cabinet reports what it
// is doing and the hub reconciles, maintenance refuses and pushes, an
// offline arcade refuses, and a player holds one active reservation at a
// time across the network. Real PostgreSQL and Redis; the books are audited.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { http, parseMetrics, token } from '../lib/harness.js';
import { ARCADE, GAME_SOLO, cabinet, cabinetKey, grant, nextEvent, nextSnapshot, phone, reserve, startWorld, startHub } from './queue_world.js';
import { ADMIN, api, assertBooksBalance, assertError } from './tickets_world.js';

let world;

before(async () => {
  world = await startWorld();
});

const balance = async (uid) => Number(await world.pg.psql(`SELECT tickets_balance FROM users WHERE firebase_uid = '${uid}'`));
const status = (id) => world.pg.psql(`SELECT status FROM reservations WHERE id = ${id}`);
const codeOf = (id) => world.pg.psql(`SELECT unlock_code FROM reservations WHERE id = ${id}`);

/* A fresh player with tickets. */
async function player(tickets = 20) {
  const uid = `ops-${crypto.randomUUID().slice(0, 8)}`;
  await grant(world.pg, uid, tickets);
  return uid;
}

/* A fresh arcade with games 1..4 in slots 1..4, never connected (so it takes bookings). */
async function newArcade() {
  const id = await world.pg.psql(`
    WITH a AS (INSERT INTO arcades (name) VALUES ('Ops arcade ${crypto.randomUUID().slice(0, 8)}') RETURNING id),
         g AS (INSERT INTO arcade_games (arcade_id, slot, game_id) SELECT a.id, n, n FROM a, generate_series(1, 4) AS n)
    SELECT id FROM a`);
  return Number(id);
}

/* POST /reservations as uid without throwing: the raw answer. */
function tryReserve(hub, uid, arcade, game = GAME_SOLO) {
  return http(hub, 'POST', '/api/v1/reservations', {
    token: token(hub, uid),
    body: { arcade_id: arcade, game_id: game },
    headers: { 'Idempotency-Key': crypto.randomUUID() },
  });
}

async function cabinetMetrics(hub) {
  const res = await http(hub, 'GET', '/metrics');
  return Object.fromEntries(
    parseMetrics(res.text)
      .filter((m) => m.name === 'rn_cabinet_events_total')
      .map((m) => [m.labels.event, m.value]),
  );
}

/* Ends every live reservation of an arcade so the next test starts empty. */
async function clear(hub, arcade) {
  const ids = (await world.pg.psql(`SELECT id FROM reservations WHERE arcade_id = ${arcade} AND status IN ('waiting','called','playing') ORDER BY id`))
    .split('\n')
    .filter(Boolean);
  for (const id of ids) {
    const res = await api(hub, 'POST', `/admin/reservations/${id}/void`, ADMIN, { body: { reason: 'test cleanup', refund: true } });
    assert.ok([200, 409].includes(res.status), res.text);
  }
}

test('an admin voids a reservation called on another hub: refunded, pushed, next called, and that hub times the next call', async () => {
  const { pg, redis, keys } = world;
  const a = await startHub({ pg, redis, args: ['--call-deadline-s', '3'] });
  const b = await startHub({ pg, redis, args: ['--call-deadline-s', '3'] });
  const cab = await cabinet(a, keys[ARCADE]); // the cabinet, and so its timers, on A
  const [p1, p2] = [await player(), await player()];
  const phone1 = await phone(b, p1, { autoAck: true });
  const phone2 = await phone(a, p2, { autoAck: true });

  const r1 = (await reserve(a, p1)).json.reservation;
  await nextEvent(phone1, 'your_turn', (m) => m.reservation_id === r1.id);
  const r2 = (await reserve(a, p2)).json.reservation;
  assert.equal(r2.status, 'waiting');
  const before1 = await balance(p1);

  // refusals first: they change nothing
  assertError(await api(b, 'POST', `/admin/reservations/${r1.id}/void`, { uid: p2 }, { body: { reason: 'x' } }), 403, 'forbidden');
  assertError(await api(b, 'POST', `/admin/reservations/${r1.id}/void`, ADMIN, { body: { refund: true } }), 400, 'bad_request');
  assertError(await api(b, 'POST', `/admin/reservations/${r1.id}/void`, ADMIN, { body: { reason: '  ', refund: true } }), 422, 'bad_reason');
  assertError(await api(b, 'POST', '/admin/reservations/99999999/void', ADMIN, { body: { reason: 'x' } }), 404, 'reservation_not_found');
  assert.equal(await status(r1.id), 'called');

  const res = await api(b, 'POST', `/admin/reservations/${r1.id}/void`, ADMIN, { body: { reason: 'cabinet jammed', refund: true } });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.previous_status, 'called');
  assert.equal(res.json.refunded, true);
  const voided = await nextEvent(phone1, 'reservation', (m) => m.reservation_id === r1.id && m.status === 'voided');
  assert.equal(voided.reason, 'cabinet jammed');
  assert.equal(voided.refunded, true);
  assert.equal(await balance(p1), before1 + r1.cost, 'refunded through the ledger');
  assertError(await api(b, 'POST', `/admin/reservations/${r1.id}/void`, ADMIN, { body: { reason: 'again', refund: true } }), 409, 'not_voidable');
  assert.equal(await balance(p1), before1 + r1.cost, 'once');
  // the void is in the audit log, once, with its before and after
  const audit = await api(b, 'GET', `/admin/audit?action=reservation.void&target_id=${r1.id}`, ADMIN);
  assert.equal(audit.status, 200, audit.text);
  assert.equal(audit.json.items.length, 1, audit.text);
  const entry = audit.json.items[0];
  assert.equal(entry.before.status, 'called');
  assert.deepEqual([entry.after.status, entry.after.reason, entry.after.refunded], ['voided', 'cabinet jammed', true]);

  // the next player is called, and the cabinet on A knows it
  await nextEvent(phone2, 'your_turn', (m) => m.reservation_id === r2.id);
  await cab.queue((m) => m.called?.reservation_id === r2.id);
  // A's in-memory state learned the change: its deadline timer expires r2
  await nextEvent(phone2, 'reservation', (m) => m.reservation_id === r2.id && m.status === 'expired', 15000);
  assert.equal((await cabinetMetrics(a)).no_show, 1);
  assert.equal((await cabinetMetrics(b)).voided, 1);
  cab.terminate();
  await Promise.all([a.stop(), b.stop()]);
});

test('a cabinet killed mid-game: after the game maximum + grace it ends timed_out, refunded per policy, the next is called', async () => {
  const { pg, redis, keys } = world;
  await pg.psql(`UPDATE games SET max_duration_s = 2 WHERE id = ${GAME_SOLO}`);
  const hub = await startHub({
    pg,
    redis,
    args: ['--game-grace-s', '1', '--game-timeout-sweep-ms', '300', '--refund-timed-out', '--offline-grace-ms', '60000'],
  });
  try {
    const cab = await cabinet(hub, keys[ARCADE]);
    const [p1, p2] = [await player(), await player()];
    const phone1 = await phone(hub, p1, { autoAck: true });
    const phone2 = await phone(hub, p2, { autoAck: true });
    const r1 = (await reserve(hub, p1)).json.reservation;
    const turn = await nextEvent(phone1, 'your_turn', (m) => m.reservation_id === r1.id);
    const unlocked = await cab.request({ type: 'unlock', code: turn.code });
    assert.equal(unlocked.type, 'ok', JSON.stringify(unlocked));
    const startedAt = Date.now();
    const r2 = (await reserve(hub, p2)).json.reservation;
    assert.equal(r2.status, 'waiting');
    const before1 = await balance(p1);
    cab.terminate(); // killed: no goodbye, no game_over

    const out = await nextEvent(phone1, 'reservation', (m) => m.reservation_id === r1.id && m.status === 'timed_out', 15000);
    const tookMs = Date.now() - startedAt;
    assert.ok(tookMs >= 2500, `timed out after ${tookMs} ms, before 2 s + 1 s grace`);
    assert.equal(out.reason, 'max_duration');
    assert.equal(out.refunded, true);
    assert.equal(await balance(p1), before1 + r1.cost);
    assert.equal(await pg.psql(`SELECT count(*) FROM scores WHERE reservation_id = ${r1.id}`), '0', 'no score');
    await nextEvent(phone2, 'your_turn', (m) => m.reservation_id === r2.id);
    assert.equal((await cabinetMetrics(hub)).timed_out, 1);
    await clear(hub, ARCADE);
  } finally {
    await pg.psql(`UPDATE games SET max_duration_s = NULL WHERE id = ${GAME_SOLO}`);
    await hub.stop();
  }
});

test('a reconnecting cabinet reports idle: the playing reservation it no longer knows ends, no refund by default', async () => {
  const { pg, redis, keys } = world;
  const hub = await startHub({ pg, redis });
  try {
    let cab = await cabinet(hub, keys[ARCADE]);
    const [p1, p2] = [await player(), await player()];
    const phone1 = await phone(hub, p1, { autoAck: true });
    const phone2 = await phone(hub, p2, { autoAck: true });
    const r1 = (await reserve(hub, p1)).json.reservation;
    const turn = await nextEvent(phone1, 'your_turn', (m) => m.reservation_id === r1.id);
    assert.equal((await cab.request({ type: 'unlock', code: turn.code })).type, 'ok');
    const r2 = (await reserve(hub, p2)).json.reservation;
    const before1 = await balance(p1);
    cab.terminate();

    cab = await cabinet(hub, keys[ARCADE]);
    // it says it plays r1: nothing changes
    const same = await cab.request({ type: 'status', state: 'playing', reservation_id: r1.id });
    assert.equal(same.type, 'ok', JSON.stringify(same));
    assert.equal(same.changed, false);
    assert.equal(await status(r1.id), 'playing');
    const bad = await cab.request({ type: 'status', state: 'playing' });
    assert.equal(bad.code, 'bad_request');
    // it restarted and is idle: r1 ends as timed_out, r2 is called
    const idle = await cab.request({ type: 'status', state: 'idle' });
    assert.equal(idle.type, 'ok', JSON.stringify(idle));
    assert.equal(idle.ended_reservation_id, r1.id);
    const out = await nextEvent(phone1, 'reservation', (m) => m.reservation_id === r1.id && m.status === 'timed_out');
    assert.equal(out.reason, 'cabinet_reset');
    assert.equal(out.refunded, false);
    assert.equal(await balance(p1), before1, 'no refund by default');
    await nextEvent(phone2, 'your_turn', (m) => m.reservation_id === r2.id);
    await cab.queue((m) => m.called?.reservation_id === r2.id);
    assert.equal(await pg.psql(`SELECT status FROM arcades WHERE id = ${ARCADE}`), 'idle');
    assert.equal((await cabinetMetrics(hub)).reconciled, 1);
    await clear(hub, ARCADE);
    cab.terminate();
  } finally {
    await hub.stop();
  }
});

test('maintenance: phones see it live, new bookings 409 arcade_unavailable, waiting keep their place or are refunded', async () => {
  const { pg, redis, keys } = world;
  const arcade = 2;
  const hub = await startHub({ pg, redis });
  try {
    const cab = await cabinet(hub, keys[arcade]);
    const watcher = await phone(hub, await player(), { subscribe: arcade });
    await nextSnapshot(watcher, () => true, { arcade });
    const [p1, p2, p3] = [await player(), await player(), await player()];
    const phone2 = await phone(hub, p2, { autoAck: true });
    const r1 = (await reserve(hub, p1, { arcade })).json.reservation; // called at once
    const r2 = (await reserve(hub, p2, { arcade })).json.reservation; // waiting
    assert.equal(r2.status, 'waiting');

    assertError(await api(hub, 'PUT', `/admin/arcades/${arcade}/maintenance`, ADMIN, { body: { on: 'yes' } }), 400, 'bad_request');
    assertError(await api(hub, 'PUT', '/admin/arcades/999999/maintenance', ADMIN, { body: { on: true } }), 404, 'arcade_not_found');
    const on = await api(hub, 'PUT', `/admin/arcades/${arcade}/maintenance`, ADMIN, { body: { on: true, message: 'Joystick repair until 15:00' } });
    assert.equal(on.status, 200, on.text);
    assert.equal(on.json.maintenance, true);
    const snap = await nextSnapshot(watcher, (m) => m.maintenance === true, { arcade });
    assert.equal(snap.maintenance_message, 'Joystick repair until 15:00');
    assert.equal(snap.called, null, 'nobody is called in maintenance');
    assert.deepEqual(snap.waiting.map((w) => w.reservation_id), [r1.id, r2.id], 'the called one back at the head; all keep their place');
    await cab.queue((m) => m.maintenance === true);

    const before3 = await balance(p3);
    const refused = await tryReserve(hub, p3, arcade);
    assertError(refused, 409, 'arcade_unavailable');
    assert.equal(refused.json.error.message, 'Joystick repair until 15:00');
    assert.equal(await balance(p3), before3, 'nothing debited');
    const pub = await http(hub, 'GET', `/api/v1/arcades/${arcade}`);
    assert.equal(pub.json.arcade.maintenance, true);

    // again with refund_waiting: the waiting are voided and refunded
    const before2 = await balance(p2);
    const refund = await api(hub, 'PUT', `/admin/arcades/${arcade}/maintenance`, ADMIN, { body: { on: true, message: 'closed today', refund_waiting: true } });
    assert.equal(refund.status, 200, refund.text);
    assert.deepEqual(refund.json.refunded_reservations, [r1.id, r2.id]);
    const ev = await nextEvent(phone2, 'reservation', (m) => m.reservation_id === r2.id && m.status === 'voided');
    assert.equal(ev.reason, 'maintenance');
    assert.equal(await balance(p2), before2 + r2.cost);

    const off = await api(hub, 'PUT', `/admin/arcades/${arcade}/maintenance`, ADMIN, { body: { on: false } });
    assert.equal(off.status, 200, off.text);
    await nextSnapshot(watcher, (m) => m.maintenance === false && m.maintenance_message === null, { arcade });
    const again = await tryReserve(hub, p3, arcade);
    assert.equal(again.status, 201, again.text);
    assert.equal(again.json.reservation.status, 'called', 'the idle cabinet calls at once');
    await clear(hub, arcade);
    cab.terminate();
  } finally {
    await hub.stop();
  }
});

test('one slot in maintenance: its game is refused and skipped, the others are served, refunds by choice', async () => {
  const { pg, redis } = world;
  const arcade = await newArcade();
  const key = await cabinetKey(pg, arcade);
  const hub = await startHub({ pg, redis });
  try {
    const cab = await cabinet(hub, key);
    const [p1, p2, p3, p4] = [await player(), await player(), await player(), await player()];
    const phone2 = await phone(hub, p2, { autoAck: true });
    const phone3 = await phone(hub, p3, { autoAck: true });
    const r1 = (await tryReserve(hub, p1, arcade, 3)).json.reservation;
    assert.equal(r1.status, 'called');
    const r2 = (await tryReserve(hub, p2, arcade, 2)).json.reservation;
    const r3 = (await tryReserve(hub, p3, arcade, 3)).json.reservation;

    assertError(await api(hub, 'PUT', `/admin/arcades/${arcade}/slots/9/maintenance`, ADMIN, { body: { on: true } }), 404, 'slot_not_found');
    assertError(await api(hub, 'PUT', `/admin/arcades/${arcade}/slots/3/maintenance`, ADMIN, { body: { on: 1 } }), 400, 'bad_request');
    const on = await api(hub, 'PUT', `/admin/arcades/${arcade}/slots/3/maintenance`, ADMIN, { body: { on: true } });
    assert.equal(on.status, 200, on.text);
    assert.equal(on.json.game_id, 3);
    // the called game-3 player goes back to the head; game 2 behind is served past them
    await nextEvent(phone2, 'your_turn', (m) => m.reservation_id === r2.id);
    await cab.queue((m) => m.called?.reservation_id === r2.id);
    assert.equal(await status(r1.id), 'waiting');
    assert.equal(await status(r3.id), 'waiting');
    const refused = await tryReserve(hub, p4, arcade, 3);
    assertError(refused, 409, 'arcade_unavailable');
    assert.equal(refused.json.error.reason, 'slot_maintenance');
    const pub = await http(hub, 'GET', `/api/v1/arcades/${arcade}`);
    assert.equal(pub.json.arcade.games.find((g) => g.slot === 3).maintenance, true);

    const before3 = await balance(p3);
    const refund = await api(hub, 'PUT', `/admin/arcades/${arcade}/slots/3/maintenance`, ADMIN, { body: { on: true, refund_waiting: true } });
    assert.deepEqual(refund.json.refunded_reservations, [r1.id, r3.id]);
    const ev = await nextEvent(phone3, 'reservation', (m) => m.reservation_id === r3.id && m.status === 'voided');
    assert.equal(ev.refunded, true);
    assert.equal(await balance(p3), before3 + r3.cost);
    const off = await api(hub, 'PUT', `/admin/arcades/${arcade}/slots/3/maintenance`, ADMIN, { body: { on: false } });
    assert.equal(off.status, 200, off.text);
    assert.equal((await tryReserve(hub, p4, arcade, 3)).status, 201);
    await clear(hub, arcade);
    cab.terminate();
  } finally {
    await hub.stop();
  }
});

test('an arcade offline past the grace window refuses bookings with arcade_unavailable', async () => {
  const { pg, redis, keys } = world;
  const arcade = 3;
  const hub = await startHub({ pg, redis, args: ['--offline-grace-ms', '300'] });
  try {
    const watcher = await phone(hub, await player(), { subscribe: arcade });
    const cab = await cabinet(hub, keys[arcade]);
    const idle = await nextSnapshot(watcher, (m) => m.status === 'idle', { arcade });
    cab.terminate();
    await nextSnapshot(watcher, (m) => m.status === 'offline' && m.v > idle.v, { arcade, timeoutMs: 10000 });
    const p = await player();
    const before = await balance(p);
    const res = await tryReserve(hub, p, arcade, 4);
    assertError(res, 409, 'arcade_unavailable');
    assert.equal(res.json.error.reason, 'offline');
    assert.equal(await balance(p), before);
  } finally {
    await hub.stop();
  }
});

test('opening hours: closed and last call refuse bookings; at closing the waiting are refunded', async () => {
  const { pg, redis } = world;
  const arcade = await newArcade();
  const hub = await startHub({ pg, redis, args: ['--game-timeout-sweep-ms', '300'] });
  /* "HH:MM" in UTC, minutes from now */
  const hhmm = (min) => new Date(Date.now() + min * 60000).toISOString().slice(11, 16);
  const hours = (body) => api(hub, 'PUT', `/admin/arcades/${arcade}/hours`, ADMIN, { body });
  try {
    for (const body of [
      { opens_at: '10:00' },
      { opens_at: '25:00', closes_at: '10:00' },
      { opens_at: '10:00', closes_at: '10:00' },
      { opens_at: '10:00', closes_at: '20:00', time_zone: 'Mars/Olympus' },
      { opens_at: '10:00', closes_at: '20:00', last_call_min: -1 },
    ]) {
      assertError(await hours(body), 422, 'bad_hours');
    }
    assertError(await api(hub, 'PUT', '/admin/arcades/999999/hours', ADMIN, { body: { opens_at: null, closes_at: null } }), 404, 'arcade_not_found');

    // a player waits while it is open
    const p1 = await player();
    const phone1 = await phone(hub, p1, { autoAck: true });
    const open = await hours({ opens_at: hhmm(-60), closes_at: hhmm(120), time_zone: 'UTC', last_call_min: 15 });
    assert.equal(open.status, 200, open.text);
    assert.equal(open.json.open_now, true);
    const r1 = (await tryReserve(hub, p1, arcade, 2)).json.reservation;
    assert.ok(r1, 'booked while open');
    const before1 = await balance(p1);

    // last call: closing in 10 minutes, bookings stop 15 minutes before
    assert.equal((await hours({ opens_at: hhmm(-60), closes_at: hhmm(10) })).status, 200);
    const p2 = await player();
    const late = await tryReserve(hub, p2, arcade, 2);
    assertError(late, 409, 'arcade_unavailable');
    assert.equal(late.json.error.reason, 'closed');
    assert.equal((await http(hub, 'GET', `/api/v1/arcades/${arcade}`)).json.arcade.opening_hours.last_call_min, 15);

    // closed: the sweep voids and refunds whoever still waits
    const closed = await hours({ opens_at: hhmm(120), closes_at: hhmm(240) });
    assert.equal(closed.json.open_now, false);
    const ev = await nextEvent(phone1, 'reservation', (m) => m.reservation_id === r1.id && m.status === 'voided', 10000);
    assert.equal(ev.reason, 'closed');
    assert.equal(ev.refunded, true);
    assert.equal(await balance(p1), before1 + r1.cost);
    assertError(await tryReserve(hub, p2, arcade, 2), 409, 'arcade_unavailable');
  } finally {
    await hub.stop();
  }
});

test('one active reservation per player across the network, as booker or player 2, even when raced', async () => {
  const { pg, redis } = world;
  const hub = await startHub({ pg, redis });
  try {
    const [a1, a2] = [await newArcade(), await newArcade()];
    const p = await player(50);
    const first = await tryReserve(hub, p, a1);
    assert.equal(first.status, 201, first.text);
    const second = await tryReserve(hub, p, a2);
    assertError(second, 409, 'already_queued');
    assert.equal(second.json.error.reservation_id, first.json.reservation.id);
    assert.equal(second.json.error.arcade_id, a1);
    // player 2 counts too: bob queued solo at arcade 2 cannot be alice's player 2 at arcade 1
    const bobSolo = await tryReserve(hub, 'demo-bob', a2, 2);
    assert.equal(bobSolo.status, 201, bobSolo.text);
    const asP2 = await api(hub, 'POST', '/reservations', 'demo-alice', { body: { arcade_id: a1, game_id: 1, player2_id: 'demo-bob' }, key: crypto.randomUUID() });
    assertError(asP2, 409, 'already_queued');
    assert.equal(asP2.json.error.player, 2);
    await clear(hub, a2);
    // and bob as player 2 of alice's duo at arcade 1 cannot book elsewhere
    await reserve(hub, 'demo-alice', { arcade: a1, game: 1, player2: 'demo-bob' });
    assertError(await tryReserve(hub, 'demo-bob', a2, 2), 409, 'already_queued');
    await clear(hub, a1);
    await clear(hub, a2);

    // raced: 12 bookings by one player at two arcades at once -> one
    const q = await player(50);
    const before = await balance(q);
    const all = await Promise.all([a1, a2, a1, a2, a1, a2, a1, a2, a1, a2, a1, a2].map((a) => tryReserve(hub, q, a)));
    const ok = all.filter((r) => r.status === 201);
    assert.equal(ok.length, 1, all.map((r) => r.status).join(','));
    for (const r of all.filter((x) => x.status !== 201)) assertError(r, 409, 'already_queued');
    assert.equal(await balance(q), before - ok[0].json.reservation.cost);
    assert.equal(await pg.psql(`SELECT count(*) FROM reservations WHERE user_id = rn_user_id('${q}') AND status IN ('waiting','called','playing')`), '1');
    await clear(hub, a1);
    await clear(hub, a2);
  } finally {
    await hub.stop();
  }
});

test('voids, timeouts, reconciles and maintenance mixed with reserve/cancel load: audit finds 0 discrepancies', async () => {
  const { pg, redis, keys } = world;
  await pg.psql('UPDATE games SET max_duration_s = 1');
  const hub = await startHub({ pg, redis, args: ['--game-grace-s', '0', '--game-timeout-sweep-ms', '200', '--pg-pool', '6'] });
  const cabs = [];
  let stop = false;
  try {
    // every cabinet unlocks whoever it is called for (code read from the database), half the time
    for (const id of [1, 2, 3]) {
      const c = await cabinet(hub, keys[id]);
      cabs.push(c);
      c.ws.on('message', async (data) => {
        let m;
        try {
          m = JSON.parse(data.toString('utf8'));
        } catch {
          return;
        }
        if (stop || m.type !== 'cabinet_queue' || !m.called || Math.random() < 0.5) return;
        const code = await codeOf(m.called.reservation_id).catch(() => null);
        if (code && !stop) c.send({ type: 'unlock', code });
      });
    }
    const users = [];
    for (let i = 0; i < 16; i++) users.push(await player(40));
    const games = { 1: [2, 3, 4], 2: [2, 3], 3: [4] };
    const pick = (xs) => xs[Math.floor(Math.random() * xs.length)];
    const counts = {};
    const count = (k) => (counts[k] = (counts[k] || 0) + 1);

    async function client(uid) {
      for (let i = 0; i < 25; i++) {
        const roll = Math.random();
        if (roll < 0.45) {
          const a = pick([1, 2, 3]);
          const r = await tryReserve(hub, uid, a, pick(games[a]));
          count(`reserve ${r.status}`);
          assert.ok(r.status === 201 || ['already_queued', 'insufficient_tickets', 'arcade_unavailable'].includes(r.json?.error?.code), r.text);
        } else if (roll < 0.6) {
          const id = await pg.psql(`SELECT id FROM reservations WHERE user_id = rn_user_id('${uid}') AND status = 'waiting' LIMIT 1`);
          if (!id) continue;
          const r = await api(hub, 'DELETE', `/reservations/${id}`, uid);
          count(`cancel ${r.status}`);
          assert.ok([200, 409].includes(r.status), r.text);
        } else if (roll < 0.8) {
          const id = await pg.psql(`SELECT id FROM reservations WHERE status IN ('waiting','called','playing') ORDER BY random() LIMIT 1`);
          if (!id) continue;
          const r = await api(hub, 'POST', `/admin/reservations/${id}/void`, ADMIN, { body: { reason: 'load', refund: Math.random() < 0.5 } });
          count(`void ${r.status}`);
          assert.ok([200, 409].includes(r.status), r.text);
        } else if (roll < 0.88) {
          const a = pick([1, 2, 3]);
          const r = await api(hub, 'PUT', `/admin/arcades/${a}/maintenance`, ADMIN, {
            body: { on: Math.random() < 0.5, message: 'load', refund_waiting: Math.random() < 0.5 },
          });
          count(`maintenance ${r.status}`);
          assert.equal(r.status, 200, r.text);
        } else {
          const c = pick(cabs);
          const r = await c.request({ type: 'status', state: 'idle' });
          count(`idle ${r.type}`);
        }
      }
    }
    await Promise.all(users.map(client));
    stop = true;
    for (const a of [1, 2, 3]) await api(hub, 'PUT', `/admin/arcades/${a}/maintenance`, ADMIN, { body: { on: false } });
    const final = await pg.psql(`SELECT status, count(*) FROM reservations GROUP BY 1 ORDER BY 1`);
    console.log('# counts', JSON.stringify(counts), final.replace(/\n/g, ' '));
    assert.ok((counts['void 200'] || 0) > 0, 'some voids');
    assert.ok(Number(await pg.psql(`SELECT count(*) FROM reservations WHERE status = 'timed_out'`)) > 0, 'some timeouts');
    // every refund is one ledger row, never two
    const twice = await pg.psql(`SELECT l.reservation_id, r.status, l.id, l.delta, l.created_at FROM ledger l JOIN reservations r ON r.id = l.reservation_id
      WHERE l.reservation_id IN (SELECT reservation_id FROM ledger WHERE kind = 'refund' GROUP BY 1 HAVING count(*) > 1) ORDER BY l.id`);
    assert.equal(twice, '', 'refunded twice');
    await assertBooksBalance(pg);
  } finally {
    stop = true;
    for (const c of cabs) c.terminate();
    await pg.psql('UPDATE games SET max_duration_s = NULL');
    await hub.stop();
  }
});
