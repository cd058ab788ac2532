// Issue 8: every catch-up completes. Two hubs against one PostgreSQL and one
// Redis; combined outages are scripted (Redis down -> PostgreSQL down ->
// Redis up -> PostgreSQL up; the reverse; a hub killed while Redis is down; a
// hub started while PostgreSQL is down). Whatever was written at any point
// reaches the phones that stayed connected - every private event and the
// current queue view - within 2 s of the moment both PostgreSQL and Redis
// are reachable again, without a reconnect of their own. A called player
// whose your_turn could not be delivered is not expired meanwhile. A hub that
// cannot bind its port exits at once.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { HUB_BIN, connectWs, http, sleep, startHub as startHubRaw, token, waitFor, within } from '../lib/harness.js';
import { ARCADE, GAME_SOLO, cabinet, grant, phone, startHub, startWorld } from './queue_world.js';

// The issue's bound. Measured from the moment the last of PostgreSQL and
// Redis answers again (its start script returned) to the last phone being
// current, on a loaded 2-core box.
const STALENESS_MS = 2000;
const QUIET = 2; // arcade 2 has no cabinet: reservations there stay waiting
const CALL_S = 4;
// The catch-up itself is what these outages test: without the bus's PostgreSQL
// fallback (issue 12, tests/integration/bus_fallback), the other hub hears of
// nothing until Redis returns. With it, it would hear at once.
const CATCH_UP_ONLY = { HUB_BUS_PG_FALLBACK: '0' };

let world;
before(async () => {
  world = await startWorld();
});

const dbEventIds = async (uid) =>
  (await world.pg.psql(`SELECT id FROM user_events WHERE user_id = rn_user_id('${uid}') ORDER BY id`))
    .split('\n')
    .filter(Boolean)
    .map(Number);
const dbVersion = async (arcade) => Number(await world.pg.psql(`SELECT version FROM arcade_queue WHERE arcade_id = ${arcade}`));

/* A new player with tickets (unique per test: the database is shared). */
async function player(prefix) {
  const uid = `${prefix}-${crypto.randomBytes(3).toString('hex')}`;
  await grant(world.pg, uid, 50, uid);
  return uid;
}

/* Private events through hub: a reservation on the quiet arcade, then its cancel (refund). */
async function writeEvents(hub, uid) {
  const res = await http(hub, 'POST', '/api/v1/reservations', {
    token: token(hub, uid),
    body: { arcade_id: QUIET, game_id: GAME_SOLO },
    headers: { 'Idempotency-Key': crypto.randomUUID() },
  });
  assert.equal(res.status, 201, res.text);
  const del = await http(hub, 'DELETE', `/api/v1/reservations/${res.json.reservation.id}`, { token: token(hub, uid) });
  assert.equal(del.status, 200, del.text);
}

/* Resolves once cond() holds, checked at every message a phone receives (no polling). */
function arrival(phones, cond, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!cond()) return false;
      for (const p of phones) p.ws.off('message', onMessage);
      clearTimeout(timer);
      resolve();
      return true;
    };
    const onMessage = () => setImmediate(check); // after the phone's own listener recorded it
    const timer = setTimeout(() => {
      for (const p of phones) p.ws.off('message', onMessage);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    for (const p of phones) p.ws.on('message', onMessage);
    check();
  });
}

/*
 * The database's truth for phones (each {c, uid}) and arcades, read now;
 * resolves the ms it took from t0 until every phone has every event of its
 * user and the newest view of every arcade it watches.
 */
async function caughtUp(phones, arcades, t0, timeoutMs = 15000) {
  const want = [];
  for (const p of phones) want.push({ c: p, ids: await dbEventIds(p.uid) });
  const versions = {};
  for (const a of arcades) versions[a] = await dbVersion(a);
  const done = () =>
    want.every(({ c, ids }) => ids.every((id) => c.seen.some((m) => m.event_id === id))) &&
    phones.every((c) => arcades.every((a) => c.lastSnapshot(a)?.v === versions[a]));
  await arrival(phones, done, timeoutMs, 'phones to be current').catch((err) => {
    const lag = want.map(({ c, ids }) => `${c.uid}: missing ${ids.filter((id) => !c.seen.some((m) => m.event_id === id))}`);
    const views = phones.map((c) => `${c.uid}: ${arcades.map((a) => `a${a} v${c.lastSnapshot(a)?.v}/${versions[a]}`)}`);
    throw new Error(`${err.message}\n${lag.join('\n')}\n${views.join('\n')}`);
  });
  return Date.now() - t0;
}

const readyz = async (hub) => (await http(hub, 'GET', '/readyz', { timeoutMs: 2000 }).catch(() => ({}))).json || {};
const seesRedis = (hubs, state) =>
  waitFor(async () => (await Promise.all(hubs.map(readyz))).every((j) => j.redis === state), {
    timeoutMs: 10000,
    what: `hubs to see redis ${state}`,
  });
const seesPg = (hubs, state) =>
  waitFor(async () => (await Promise.all(hubs.map(readyz))).every((j) => j.postgres === state), {
    timeoutMs: 10000,
    what: `hubs to see postgres ${state}`,
  });

const notClosed = (...phones) => {
  for (const p of phones) assert.equal(p.ws.readyState, 1, `${p.uid}'s socket stayed open`);
};

async function watchingPhone(hub, uid) {
  const c = await phone(hub, uid, { autoAck: true });
  for (const a of [ARCADE, QUIET]) {
    const r = await c.request({ type: 'subscribe', ch: `arcade:${a}` });
    assert.equal(r.type, 'ok', JSON.stringify(r));
  }
  await waitFor(() => c.lastSnapshot(ARCADE) && c.lastSnapshot(QUIET), { what: `${uid}'s first views` });
  return c;
}

test('Redis down -> PostgreSQL down -> Redis up -> PostgreSQL up: caught up within 2 s; the call waits for its delivery', async () => {
  const { pg, redis } = world;
  // leases shorter than the outage: nobody could renew them while PostgreSQL was down
  const args = ['--call-deadline-s', String(CALL_S), '--cabinet-lease-ms', '3000'];
  const a = await startHub({ pg, redis, env: CATCH_UP_ONLY, args });
  const b = await startHub({ pg, redis, env: CATCH_UP_ONLY, args });
  const cab = await cabinet(a, world.keys[ARCADE]);
  await cab.queue();
  const alice = await watchingPhone(b, await player('alice'));
  const bob = await watchingPhone(b, await player('bob'));

  await redis.stop();
  await seesRedis([a, b], 'down');
  await writeEvents(a, bob.uid); // B cannot hear of it
  // alice is called at once (the cabinet on A is idle); her phone is on B
  const res = await http(a, 'POST', '/api/v1/reservations', {
    token: token(a, alice.uid),
    body: { arcade_id: ARCADE, game_id: GAME_SOLO },
    headers: { 'Idempotency-Key': crypto.randomUUID() },
  });
  assert.equal(res.status, 201, res.text);
  const rid = res.json.reservation.id;
  const calledAt = Number(await pg.psql(`SELECT rn_ms(called_at) FROM reservations WHERE id = ${rid}`));
  assert.ok(calledAt > 0, 'called at once');

  await pg.stop();
  await redis.start();
  await seesRedis([a, b], 'up');
  // the nominal deadline passes while PostgreSQL is down and her phone has nothing
  await sleep(Math.max(0, calledAt + CALL_S * 1000 + 500 - Date.now()));
  assert.equal(alice.events('your_turn').length, 0, 'your_turn could not be delivered yet');
  await pg.start();
  const t0 = Date.now();

  const ms = await caughtUp([alice, bob], [ARCADE, QUIET], t0);
  console.log(`# Redis down, PG down, Redis up, PG up: phones current ${ms} ms after PostgreSQL returned`);
  assert.ok(ms <= STALENESS_MS, `caught up after ${ms} ms`);
  notClosed(alice, bob);
  const turn = alice.events('your_turn').find((m) => m.reservation_id === rid);
  assert.ok(turn, 'your_turn delivered by the catch-up');
  assert.equal(await pg.psql(`SELECT status FROM reservations WHERE id = ${rid}`), 'called', 'not expired while undeliverable');

  // decided on facts: the turn lasts to the maximum (twice the deadline), not less
  const expired = await alice.next((m) => m.type === 'reservation' && m.reservation_id === rid && m.status === 'expired', 15000);
  const endedAt = Number(await pg.psql(`SELECT rn_ms(ended_at) FROM reservations WHERE id = ${rid}`));
  assert.ok(expired && endedAt >= calledAt + 2 * CALL_S * 1000 - 50, `expired ${endedAt - calledAt} ms after the call`);

  // the cabinet stayed connected: its arcade was never swept offline for our outage
  assert.notEqual(await pg.psql(`SELECT status FROM arcades WHERE id = ${ARCADE}`), 'offline');
  assert.doesNotMatch(a.logs() + b.logs(), /cabinet lease expired/);

  const metrics = await http(b, 'GET', '/metrics');
  assert.match(metrics.text, /rn_catchup_total\{event="waited"\} [1-9]/, 'the wait was counted');
  assert.match(b.logs(), /"msg":"catch-up waiting"/);
  assert.match(b.logs(), /"msg":"catch-up done"/);
  await Promise.all([a.stop(), b.stop()]);
});

test('PostgreSQL down -> Redis down -> PostgreSQL up -> Redis up: a resume is held, not refused; caught up within 2 s', async () => {
  const { pg, redis } = world;
  const a = await startHub({ pg, redis, env: CATCH_UP_ONLY });
  const b = await startHub({ pg, redis, env: CATCH_UP_ONLY });
  const carol = await watchingPhone(b, await player('carol'));
  await writeEvents(a, carol.uid); // live, both up

  await pg.stop();
  await seesPg([a, b], 'down');
  // held: no "unavailable", the socket kept, answered once PostgreSQL returns
  const resumed = carol.request({ type: 'resume', since: 0 }, 30000);
  let answered = false;
  resumed.then(() => (answered = true)).catch(() => {});
  await redis.stop();
  await sleep(300);
  assert.equal(answered, false, 'the resume waits for PostgreSQL');
  await pg.start();
  assert.equal((await resumed).type, 'ok');
  await seesRedis([a, b], 'down');
  await seesPg([a], 'up');
  await writeEvents(a, carol.uid); // through A while Redis is down: B cannot hear of it
  await redis.start();
  const t0 = Date.now();

  const ms = await caughtUp([carol], [ARCADE, QUIET], t0);
  console.log(`# PG down, Redis down, PG up, Redis up: phone current ${ms} ms after Redis returned`);
  assert.ok(ms <= STALENESS_MS, `caught up after ${ms} ms`);
  notClosed(carol);
  await Promise.all([a.stop(), b.stop()]);
});

test('a hub killed while Redis is down: what it committed reaches the other hub\'s phones within 2 s of Redis', async () => {
  const { pg, redis } = world;
  const a = await startHub({ pg, redis, env: CATCH_UP_ONLY });
  const b = await startHub({ pg, redis, env: CATCH_UP_ONLY });
  const dave = await watchingPhone(b, await player('dave'));

  await redis.stop();
  await seesRedis([a, b], 'down');
  await writeEvents(a, dave.uid);
  await writeEvents(a, dave.uid);
  await a.kill();
  await redis.start();
  const t0 = Date.now();
  const ms = await caughtUp([dave], [ARCADE, QUIET], t0);
  console.log(`# hub killed while Redis down: phone on the other hub current ${ms} ms after Redis returned`);
  assert.ok(ms <= STALENESS_MS, `caught up after ${ms} ms`);
  notClosed(dave);
  await b.stop();
});

test('a hub started while PostgreSQL is down: healthz 200, readyz 503, then migrates, serves and catches up', async () => {
  const { pg, redis } = world;
  const b = await startHub({ pg, redis });
  const erin = await player('erin');
  await writeEvents(b, erin);
  await b.stop();
  await pg.stop();

  const c = await startHubRaw({ pg, redis, waitPg: false });
  assert.equal((await http(c, 'GET', '/healthz')).status, 200);
  const ready = await http(c, 'GET', '/readyz');
  assert.equal(ready.status, 503);
  assert.equal(ready.json.postgres, 'down');
  assert.equal(ready.json.migrations, 'pending');
  await waitFor(() => /"msg":"waiting for PostgreSQL"/.test(c.logs()), { what: 'the wait to be logged' });

  // a phone connected meanwhile: its resume is held, the socket kept
  const p = await connectWs(c, { token: token(c, erin) });
  p.uid = erin;
  const resumed = p.request({ type: 'resume', since: 0 }, 30000);
  await pg.start();
  const t0 = Date.now();
  assert.equal((await resumed).type, 'ok');
  const ids = await dbEventIds(erin);
  assert.ok(ids.length >= 2);
  await arrival([p], () => ids.every((id) => p.inbox.some((m) => m.event_id === id)), 15000, 'the replay');
  const ms = Date.now() - t0;
  console.log(`# hub started while PG down: resume answered and replayed ${ms} ms after PostgreSQL returned`);
  assert.ok(ms <= STALENESS_MS, `replayed after ${ms} ms`);
  await waitFor(async () => (await http(c, 'GET', '/readyz')).status === 200, { what: 'ready' });
  assert.match(c.logs(), /"msg":"migrations"/);
  await c.stop();
});

test('a hub asked to bind a taken port exits non-zero within a second, saying why', async () => {
  // a plain listener without SO_REUSEPORT: nothing may share its port
  const holder = net.createServer();
  await new Promise((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const port = holder.address().port;
  try {
    const t0 = Date.now();
    const proc = spawn(HUB_BIN, ['serve', '--listen', '127.0.0.1', '--port', String(port), '--database-url', world.pg.url, '--redis-url', world.redis.url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    const exit = await within(new Promise((resolve) => proc.once('exit', (code) => resolve(code))), 5000);
    if (exit === null) proc.kill('SIGKILL');
    const ms = Date.now() - t0;
    assert.notEqual(exit, null, 'the hub exited');
    assert.notEqual(exit, 0, 'non-zero');
    assert.ok(ms < 1000, `exited after ${ms} ms`);
    assert.match(out, /"msg":"cannot listen".*Address already in use/);
  } finally {
    holder.close();
  }
});
