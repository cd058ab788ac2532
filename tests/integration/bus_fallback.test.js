// Issue 12 item 4: no single bus. Two hubs share one PostgreSQL and one
// Redis; Redis is stopped for ~10 s while reservations, cancels and ticket
// purchases are made through hub A. Phones on hub B (their user channel and
// an arcade) keep getting everything through PostgreSQL LISTEN/NOTIFY: the
// delay from commit to hub B's phone is measured per private event (its
// at_ms vs its arrival) and per queue snapshot (a version's arrival on hub A,
// where it is applied at commit, vs its arrival on hub B), its p99 printed
// and asserted under 1 s. Redis back: nothing missing, no event id twice on
// one socket, views equal to the database, Redis the path again. Behind
// HAProxy checking /readyz (the operators' setup, docker/haproxy.cfg), the
// same outage takes no hub out of the pool and cuts no socket. And when one
// hub alone loses Redis (its link cut, the others keep theirs), they copy
// what they publish to PostgreSQL for it: its phones miss nothing.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { freePort, http, parseMetrics, sleep, token, track, waitFor } from '../lib/harness.js';
import { haproxySupport, startHaproxy } from '../lib/haproxy.js';
import { grant, phone, startHub, startWorld } from './queue_world.js';

const QUIET = 2; // no cabinet: reservations there stay waiting
const GAME = 3; // Neon Racer, on arcade 2
const OUTAGE_MS = 10000;
const P99_MAX_MS = 1000; // the bound
const PLAYERS = 4;
// each phone acks ~40 events/s here: above the default inbound limit (50/s, close 4008) in bursts
const ARGS = ['--msg-rate', '1000'];

let world;
before(async () => {
  world = await startWorld();
});

const readyz = async (hub) => (await http(hub, 'GET', '/readyz', { timeoutMs: 2000 }).catch(() => ({}))).json || {};
const seesRedis = (hubs, state) =>
  waitFor(async () => (await Promise.all(hubs.map(readyz))).every((j) => j.redis === state), {
    timeoutMs: 15000,
    what: `hubs to see redis ${state}`,
  });
const metric = async (hub, name, labels = {}) => {
  const m = parseMetrics((await http(hub, 'GET', '/metrics')).text);
  const want = Object.entries(labels);
  return m
    .filter((s) => s.name === name && want.every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
};

/* Resolves once hub has stopped copying to PostgreSQL for a process without Redis (hub.c's bus watch). */
const notCopying = (hub) =>
  waitFor(async () => (await metric(hub, 'rn_bus_pg_copying')) === 0, {
    timeoutMs: 10000,
    what: 'copies to PostgreSQL to stop',
  });

const dbEventIds = async (uid) =>
  (await world.pg.psql(`SELECT id FROM user_events WHERE user_id = rn_user_id('${uid}') ORDER BY id`))
    .split('\n')
    .filter(Boolean)
    .map(Number);
const dbVersion = async (arcade) => Number(await world.pg.psql(`SELECT version FROM arcade_queue WHERE arcade_id = ${arcade}`));

/* A phone watching arcade QUIET, every message stamped with its arrival time. */
async function watcher(hub, uid) {
  const c = await phone(hub, uid, { autoAck: true });
  c.arrivals = [];
  c.ws.on('message', (data) => {
    const t = Date.now();
    try {
      c.arrivals.push({ t, m: JSON.parse(data.toString('utf8')) });
    } catch {
      /* not JSON: not ours to measure */
    }
  });
  const r = await c.request({ type: 'subscribe', ch: `arcade:${QUIET}` });
  assert.equal(r.type, 'ok', JSON.stringify(r));
  await waitFor(() => c.lastSnapshot(QUIET), { what: `${uid}'s first view` });
  return c;
}

/* PLAYERS new users named prefix<i>-<random>, 1000 tickets each. */
async function players(pg, prefix) {
  const uids = [];
  for (let i = 0; i < PLAYERS; i++) {
    const uid = `${prefix}${i}-${crypto.randomBytes(3).toString('hex')}`;
    await grant(pg, uid, 1000, uid);
    uids.push(uid);
  }
  return uids;
}

/* One round of a player's business through hub: reserve, cancel, buy tickets. */
async function round(hub, uid) {
  const headers = () => ({ 'Idempotency-Key': crypto.randomUUID() });
  const res = await http(hub, 'POST', '/api/v1/reservations', {
    token: token(hub, uid),
    body: { arcade_id: QUIET, game_id: GAME },
    headers: headers(),
  });
  assert.equal(res.status, 201, res.text);
  const del = await http(hub, 'DELETE', `/api/v1/reservations/${res.json.reservation.id}`, { token: token(hub, uid) });
  assert.equal(del.status, 200, del.text);
  const buy = await http(hub, 'POST', '/api/v1/tickets/purchase', {
    token: token(hub, uid),
    body: { offer_id: 1, payment_token: 'tok_ok' },
    headers: headers(),
  });
  assert.equal(buy.status, 201, buy.text);
}

/* Resolves once every phone has every event of its user and the arcade's current view. */
async function current(phones) {
  const want = [];
  for (const p of phones) want.push({ p, ids: await dbEventIds(p.uid) });
  const v = await dbVersion(QUIET);
  const done = () =>
    want.every(({ p, ids }) => ids.every((id) => p.seen.some((m) => m.event_id === id))) &&
    phones.every((p) => p.lastSnapshot(QUIET)?.v === v);
  await waitFor(done, { timeoutMs: 15000, intervalMs: 20, what: 'phones to be current' }).catch((err) => {
    const lag = want.map(({ p, ids }) => `${p.uid}: missing ${ids.filter((id) => !p.seen.some((m) => m.event_id === id))}`);
    throw new Error(`${err.message}\n${lag.join('\n')}\nviews ${phones.map((p) => p.lastSnapshot(QUIET)?.v)} / ${v}`);
  });
  return v;
}

const p99 = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(s.length * 0.99) - 1)] : NaN;
};

/*
 * Both hubs on Redis again: once A stops copying, a round of each player
 * through A sends nothing through PostgreSQL (why), and every phone is
 * current, each event id once, its socket open.
 */
async function assertBackOnRedis(a, uids, phones, why) {
  await notCopying(a); // the last announces keep A copying a few seconds
  const sent = await metric(a, 'rn_bus_pg_messages_total', { direction: 'sent' });
  for (const uid of uids) await round(a, uid);
  await current(phones);
  assert.equal(await metric(a, 'rn_bus_pg_messages_total', { direction: 'sent' }), sent, why);
  assertNoDuplicates(phones);
  for (const p of phones) assert.equal(p.ws.readyState, 1, `${p.uid}'s socket stayed open`);
}

function assertNoDuplicates(phones) {
  for (const p of phones) {
    const ids = p.seen.filter((m) => m.event_id).map((m) => m.event_id);
    assert.equal(new Set(ids).size, ids.length, `${p.uid}: an event id delivered twice`);
  }
}

test('Redis down 10 s: commits on hub A reach phones on hub B through PostgreSQL, p99 < 1 s; Redis back: nothing lost', async () => {
  const { pg, redis } = world;
  const a = await startHub({ pg, redis, args: ARGS });
  const b = await startHub({ pg, redis, args: ARGS });
  await waitFor(async () => (await metric(a, 'rn_bus_pg_listening')) === 1 && (await metric(b, 'rn_bus_pg_listening')) === 1, {
    what: 'both hubs listening on PostgreSQL',
  });
  const uids = await players(pg, 'bf');
  const phones = [];
  for (const uid of uids) phones.push(await watcher(b, uid));
  const ref = await watcher(a, `ref-${crypto.randomBytes(3).toString('hex')}`); // snapshots at commit

  // Redis is the normal path: nothing goes through PostgreSQL while it is up
  await round(a, uids[0]);
  await current(phones);
  assert.equal(await metric(a, 'rn_bus_pg_messages_total', { direction: 'sent' }), 0, 'Redis up: no NOTIFY');

  await redis.stop();
  await seesRedis([a, b], 'down');
  const t0 = Date.now();
  let rounds = 0;
  await Promise.all(
    uids.map(async (uid) => {
      while (Date.now() - t0 < OUTAGE_MS) {
        await round(a, uid);
        rounds++;
      }
    }),
  );
  const t1 = Date.now();
  // everything arrives while Redis is still down
  const vOutage = await current(phones).catch(async (err) => {
    console.log(b.logs().split('\n').slice(-30).join('\n'), phones.map((p) => p.ws.readyState));
    console.log((await http(b, 'GET', '/metrics')).text.split('\n').filter((l) => /rn_bus|rn_pg|sock|close/.test(l)).join('\n'));
    throw err;
  });
  assert.equal((await readyz(b)).redis, 'down', 'still down: delivered without Redis');

  // private events: their commit time (at_ms) -> arrival on hub B
  const eventMs = [];
  for (const p of phones)
    for (const { t, m } of p.arrivals) if (m.event_id && m.at_ms >= t0 && m.at_ms <= t1) eventMs.push(t - m.at_ms);
  // snapshots: a version's arrival on hub A (applied at commit) -> first view at least as new on hub B
  const seenOnA = new Map();
  for (const { t, m } of ref.arrivals)
    if (m.type === 'queue' && m.arcade_id === QUIET && t >= t0 && !seenOnA.has(m.v)) seenOnA.set(m.v, t);
  const snapMs = [];
  for (const [v, ta] of seenOnA)
    for (const p of phones) {
      const hit = p.arrivals.find(({ m }) => m.type === 'queue' && m.arcade_id === QUIET && m.v >= v);
      assert.ok(hit, `${p.uid} saw version ${v}`);
      snapMs.push(Math.max(0, hit.t - ta));
    }
  const all = [...eventMs, ...snapMs];
  const sent = await metric(a, 'rn_bus_pg_messages_total', { direction: 'sent' });
  const received = await metric(b, 'rn_bus_pg_messages_total', { direction: 'received' });
  console.log(
    `# Redis down ${t1 - t0} ms: ${rounds} rounds through hub A, ${eventMs.length} private events + ${snapMs.length} snapshots ` +
      `measured on hub B; commit -> hub B phone p99 ${p99(all)} ms (events p99 ${p99(eventMs)} ms, max ${Math.max(...eventMs)} ms; ` +
      `snapshots p99 ${p99(snapMs)} ms); NOTIFY sent by A ${sent}, received by B ${received}`,
  );
  assert.ok(rounds >= PLAYERS, `${rounds} rounds`);
  assert.ok(eventMs.length >= rounds * 3, `${eventMs.length} events measured for ${rounds} rounds`);
  assert.ok(snapMs.length > 0, 'snapshots measured');
  assert.ok(p99(all) < P99_MAX_MS, `p99 ${p99(all)} ms`);
  assert.ok(sent > 0 && received > 0, `NOTIFY sent ${sent}, received ${received}`);
  assert.ok(vOutage > 0);

  // Redis back: the normal path again; nothing missing, nothing twice
  await redis.start();
  await seesRedis([a, b], 'up');
  await assertBackOnRedis(a, uids, phones, 'Redis back: no NOTIFY');
  const view = await http(b, 'GET', `/api/v1/arcades/${QUIET}/queue`);
  assert.equal(view.status, 200, view.text);
  for (const p of phones) assert.equal(p.lastSnapshot(QUIET).v, await dbVersion(QUIET), 'view equals the database');
  await Promise.all([a.stop(), b.stop()]);
});

test('a message too big for NOTIFY: the receiving hub catches the channel up from PostgreSQL', async () => {
  // a payload over 8000 bytes goes as the channel name alone; hub B resyncs that channel
  const { pg, redis } = world;
  const a = await startHub({ pg, redis, args: ARGS });
  const b = await startHub({ pg, redis, args: ARGS });
  const uid = `big-${crypto.randomBytes(3).toString('hex')}`;
  await grant(pg, uid, 1000, uid);
  const p = await watcher(b, uid);
  await redis.stop();
  await seesRedis([a, b], 'down');
  const receivedBefore = await metric(b, 'rn_bus_pg_messages_total', { direction: 'received' });
  // many waiting players make the arcade's snapshot large
  const fill = [];
  for (let i = 0; i < 80; i++) {
    const u = `fill${i}-${crypto.randomBytes(6).toString('hex')}-${'x'.repeat(40)}`;
    await grant(pg, u, 10, u.slice(0, 30));
    fill.push(u);
  }
  for (const u of fill) {
    const r = await http(a, 'POST', '/api/v1/reservations', {
      token: token(a, u),
      body: { arcade_id: QUIET, game_id: GAME },
      headers: { 'Idempotency-Key': crypto.randomUUID() },
    });
    assert.equal(r.status, 201, r.text);
  }
  await current([p]);
  const size = JSON.stringify(p.lastSnapshot(QUIET)).length;
  console.log(`# snapshot of ${size} bytes delivered through PostgreSQL with Redis down`);
  assert.ok(size > 8000, `snapshot of ${size} bytes: over NOTIFY's limit`);
  assert.ok((await metric(b, 'rn_bus_pg_messages_total', { direction: 'received' })) > receivedBefore);
  await redis.start();
  await seesRedis([a, b], 'up');
  assertNoDuplicates([p]);
  await Promise.all([a.stop(), b.stop()]);
});

test('behind HAProxy checking /readyz: a Redis restart takes no hub out and cuts no socket', { skip: haproxySupport() || false }, async () => {
  const { pg, redis } = world;
  const secret = crypto.randomBytes(24).toString('hex'); // one token works on either hub
  const a = await startHub({ pg, redis, args: ARGS, secret });
  const b = await startHub({ pg, redis, args: ARGS, secret });
  const checkMs = 200; // fall 2: a hub failing /readyz would be out within ~0.4 s
  const hp = await startHaproxy(
    [a, b].map((h, i) => ({ name: `hub${i}`, addr: '127.0.0.1', port: h.port })),
    { checkIntervalMs: checkMs },
  );
  await hp.waitStatus({ hub0: 'UP', hub1: 'UP' });
  const front = { port: hp.port, secret }; // what the clients need: HAProxy's port and the secret
  const uids = await players(pg, 'hp');
  const phones = [];
  for (const uid of uids) phones.push(await watcher(front, uid));
  for (const h of [a, b]) assert.ok((await metric(h, 'rn_connections', { kind: 'player' })) > 0, 'phones on both hubs');

  await redis.stop();
  await seesRedis([a, b], 'down');
  const statuses = [];
  for (const t0 = Date.now(); Date.now() - t0 < 15 * checkMs; await sleep(checkMs / 2)) statuses.push(await hp.stat());
  for (const s of statuses) assert.deepEqual(Object.values(s), ['UP', 'UP'], `never a failed check: ${JSON.stringify(s)}`);
  // business through HAProxy, over both hubs, reaches every phone through PostgreSQL
  for (const uid of uids) await round(front, uid);
  await current(phones);
  for (const p of phones) assert.equal(p.ws.readyState, 1, `${p.uid}'s socket stayed open`);
  assert.equal((await readyz(a)).bus, 'postgres');

  await redis.start();
  await seesRedis([a, b], 'up');
  for (const uid of uids) await round(front, uid);
  await current(phones);
  assertNoDuplicates(phones);
  for (const p of phones) assert.equal(p.ws.readyState, 1, `${p.uid}'s socket stayed open`);
  await hp.stop();
  await Promise.all([a.stop(), b.stop()]);
});

/* A TCP relay to Redis that the test can cut and reopen: the hub behind it loses Redis alone. */
async function relay(redisPort) {
  const port = await freePort();
  const conns = new Set();
  let server = null;
  const open = () =>
    new Promise((resolve, reject) => {
      server = net.createServer((c) => {
        const u = net.connect(redisPort, '127.0.0.1');
        const end = () => {
          c.destroy();
          u.destroy();
          conns.delete(c);
          conns.delete(u);
        };
        for (const s of [c, u]) {
          conns.add(s);
          s.on('error', end);
          s.on('close', end);
        }
        c.pipe(u);
        u.pipe(c);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
  const cut = () => {
    for (const s of conns) s.destroy();
    server.close();
  };
  await open();
  track(`redis relay :${port}`, async () => cut(), () => cut()); // a failed test leaves none behind
  return { port, open, cut };
}

test('one hub loses Redis, the others keep it: they copy to PostgreSQL for it, its phones miss nothing, it stays ready', async () => {
  const { pg, redis } = world;
  const link = await relay(redis.port);
  const a = await startHub({ pg, redis, args: ARGS });
  const b = await startHub({ pg, redis: { url: `redis://127.0.0.1:${link.port}` }, args: ARGS });
  const uids = await players(pg, 'cut');
  const phones = [];
  for (const uid of uids) phones.push(await watcher(b, uid));
  await round(a, uids[0]);
  await current(phones);

  link.cut(); // B's Redis links drop; A keeps its own
  await seesRedis([b], 'down');
  assert.equal((await readyz(a)).redis, 'up', 'A keeps Redis');
  const rb = await http(b, 'GET', '/readyz');
  assert.equal(rb.status, 200, rb.text);
  assert.equal(rb.json.bus, 'postgres');
  const t0 = Date.now();
  let rounds = 0;
  await Promise.all(
    uids.map(async (uid) => {
      while (Date.now() - t0 < 4000) {
        await round(a, uid);
        rounds++;
      }
    }),
  );
  await current(phones); // every event and the newest view, with B still cut off
  assert.equal((await readyz(b)).redis, 'down', 'delivered while B had no Redis');
  const copies = await metric(a, 'rn_bus_pg_messages_total', { direction: 'sent' });
  // once A heard B's announce (within a second) and B caught up (its second announce), live
  const settled = t0 + 2500;
  const late = [];
  for (const p of phones) for (const { t, m } of p.arrivals) if (m.event_id && m.at_ms >= settled) late.push(t - m.at_ms);
  console.log(
    `# B cut from Redis 4 s: ${rounds} rounds through A, ${copies} copies sent by A to PostgreSQL; ` +
      `A commit -> B phone p99 ${p99(late)} ms over ${late.length} events after the first 2.5 s`,
  );
  assert.ok(copies > 0, 'A copied to PostgreSQL');
  assert.equal(await metric(a, 'rn_bus_pg_copying'), 1, 'and says so');
  assert.ok(late.length > 0 && p99(late) < P99_MAX_MS, `p99 ${p99(late)} ms over ${late.length}`);

  await link.open();
  await seesRedis([b], 'up');
  await assertBackOnRedis(a, uids, phones, 'both on Redis: no copies');
  assert.equal(await metric(a, 'rn_bus_pg_copying'), 0);
  await Promise.all([a.stop(), b.stop()]);
  link.cut();
});
