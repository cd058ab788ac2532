// A short randomized fault run (issue 8): two hubs, phones on both, writes
// through whichever hub is up, while Redis and PostgreSQL stop and start and
// hubs are killed and restarted, in random combinations, for about a minute
// (RN_CHAOS_MS). Then everything is brought back and the invariants checked:
// every phone that stayed connected has every stored event of its user,
// delivered live (no reconnect, no resume of its own), and the views equal
// the database, within 2 s of both being back; a phone whose hub was killed
// has everything after its resume elsewhere; the ticket audit finds nothing.
// The seed is printed (RN_CHAOS_SEED replays a run). ctest label: chaos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { HUB_BIN, http, run, sleep, startHub as startHubRaw, token, waitFor } from '../lib/harness.js';
import { ARCADE, GAME_SOLO, grant, phone, startWorld } from './queue_world.js';

const RUN_MS = Number(process.env.RN_CHAOS_MS || 60000);
const STALENESS_MS = 2000;
const QUIET = 2;
const ARCADES = [ARCADE, QUIET];

/* Resolves once cond() holds, checked at every message a phone receives (no polling). */
function arrival(phones, cond, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const stop = () => {
      for (const c of phones) c.ws.off('message', onMessage);
      clearTimeout(timer);
    };
    const check = () => cond() && (stop(), resolve(), true);
    const onMessage = () => setImmediate(check); // after the phone's own listener recorded it
    const timer = setTimeout(() => (stop(), reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))), timeoutMs);
    for (const c of phones) c.ws.on('message', onMessage);
    check();
  });
}

/* mulberry32: a small seeded generator, so a failing run can be replayed. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('randomized combined faults: audit 0, every stored event delivered live, views equal the database', { timeout: RUN_MS + 120000 }, async () => {
  const seed = Number(process.env.RN_CHAOS_SEED || crypto.randomInt(1, 2 ** 31));
  console.log(`# chaos seed ${seed} (RN_CHAOS_SEED=${seed} replays it), ${RUN_MS} ms`);
  const rand = rng(seed);
  const pick = (xs) => xs[Math.floor(rand() * xs.length)];
  const world = await startWorld();
  const { pg, redis } = world;
  const up = { pg: true, redis: true };
  const startHub = () => startHubRaw({ pg, redis, waitPg: false });
  const hubs = [await startHub(), await startHub()];
  await waitFor(async () => (await Promise.all(hubs.map((h) => http(h, 'GET', '/readyz')))).every((r) => r.status === 200), {
    what: 'hubs ready',
  });

  // three players per hub, each watching both arcades, acking what it gets; B is never killed
  const players = [];
  for (let i = 0; i < 6; i++) {
    const uid = `chaos-${i}-${crypto.randomBytes(2).toString('hex')}`;
    await grant(pg, uid, 1000, uid);
    players.push({ uid, hub: i % 2, reconnected: false });
  }
  const connect = async (p, resume) => {
    if (p.c) p.before = [...(p.before || []), ...p.c.seen]; // what its killed socket got (and acked)
    p.c = await phone(hubs[p.hub], p.uid, { autoAck: true, resume });
    for (const a of ARCADES) {
      // a subscribe is held while PostgreSQL is down: wait as long as a fault lasts
      const r = await p.c.request({ type: 'subscribe', ch: `arcade:${a}` }, 30000);
      assert.equal(r.type, 'ok', JSON.stringify(r));
    }
  };
  for (const p of players) await connect(p);

  let writes = 0;
  let refused = 0;
  const write = async () => {
    const live = hubs.map((h, i) => [h, i]).filter(([h]) => h && !h.exitInfo);
    const [hub] = pick(live);
    const p = pick(players);
    const res = await http(hub, 'POST', '/api/v1/reservations', {
      token: token(hub, p.uid),
      body: { arcade_id: pick(ARCADES), game_id: GAME_SOLO },
      headers: { 'Idempotency-Key': crypto.randomUUID() },
      timeoutMs: 15000,
    }).catch(() => ({ status: 0 }));
    if (res.status !== 201) return void refused++;
    writes++;
    if (res.json.reservation.status === 'waiting' && rand() < 0.9)
      await http(hub, 'DELETE', `/api/v1/reservations/${res.json.reservation.id}`, { token: token(hub, p.uid), timeoutMs: 15000 }).catch(() => {});
  };

  const faults = {
    async redis() {
      if (up.redis) await redis.stop();
      else await redis.start();
      up.redis = !up.redis;
    },
    async pg() {
      if (up.pg) await pg.stop();
      else await pg.start();
      up.pg = !up.pg;
    },
    async hub() {
      // kill A (B's phones are the ones that stay connected); A's phones reconnect to B and resume
      const i = 0;
      await hubs[i].kill();
      hubs[i] = await startHub();
      for (const p of players.filter((q) => q.hub === i)) {
        p.hub = 1 - i;
        p.reconnected = true;
        const since = 0; // everything unacked: the device drops what it has
        if (up.pg) await connect(p, since);
        else p.pendingResume = true; // reconnected when PostgreSQL is back (auth may need it)
      }
    },
  };

  const end = Date.now() + RUN_MS;
  const log = [];
  while (Date.now() < end) {
    const what = rand() < 0.6 ? 'write' : pick(Object.keys(faults));
    log.push(what);
    if (what === 'write') await Promise.all([write(), write()]);
    else await faults[what]();
    if (up.pg) for (const p of players.filter((q) => q.pendingResume)) {
      p.pendingResume = false;
      await connect(p, 0);
    }
    await sleep(50 + rand() * 700);
  }
  console.log(`# ${log.length} steps: ${writes} writes, ${refused} refused; ${log.filter((w) => w !== 'write').join(' ')}`);

  // the last fault is always the issue's: writes Redis could not carry, then
  // PostgreSQL gone while Redis comes back, then PostgreSQL back
  if (!up.pg) await pg.start();
  if (up.redis) await redis.stop();
  up.pg = true;
  up.redis = false;
  for (const p of players.filter((q) => q.pendingResume)) {
    p.pendingResume = false;
    await connect(p, 0);
  }
  await waitFor(async () => (await http(hubs[0], 'GET', '/readyz')).json?.postgres === 'up', { what: 'A back on PostgreSQL' });
  for (let i = 0; i < 4; i++) await write();
  await pg.stop();
  await redis.start();
  await sleep(500);
  await pg.start();
  const t0 = Date.now();
  up.pg = up.redis = true;
  for (const p of players.filter((q) => q.pendingResume)) {
    p.pendingResume = false;
    await connect(p, 0);
  }
  // the database's truth, in one round trip
  const truth = JSON.parse(
    await pg.psql(`SELECT json_build_object(
        'events', (SELECT json_object_agg(u.firebase_uid, (SELECT coalesce(json_agg(e.id ORDER BY e.id), '[]')
                                                          FROM user_events e WHERE e.user_id = u.id))
                   FROM users u WHERE u.firebase_uid LIKE 'chaos-%'),
        'versions', (SELECT json_object_agg(arcade_id, version) FROM arcade_queue WHERE arcade_id IN (${ARCADES})))`),
  );
  const want = players.map((p) => ({ p, ids: truth.events[p.uid] || [] }));
  const versions = truth.versions;
  const got = (p, id) => p.c.seen.some((m) => m.event_id === id) || (p.before || []).some((m) => m.event_id === id);
  const current = () =>
    want.every(({ p, ids }) => ids.every((id) => got(p, id))) &&
    players.every((p) => ARCADES.every((a) => p.c.lastSnapshot(a)?.v === versions[a]));
  // the bound is for the phones that stayed connected; the others reconnected on their own
  const stayed = players.filter((p) => !p.reconnected);
  const stayedCurrent = () =>
    want.every(({ p, ids }) => p.reconnected || ids.every((id) => got(p, id))) &&
    stayed.every((p) => ARCADES.every((a) => p.c.lastSnapshot(a)?.v === versions[a]));
  await arrival(stayed.map((p) => p.c), stayedCurrent, 20000, 'the phones that stayed connected').catch(() => {});
  const ms = Date.now() - t0;
  await arrival(players.map((p) => p.c), current, 20000, 'every phone current').catch((err) => {
    const lag = want.map(({ p, ids }) => `${p.uid}${p.reconnected ? ' (reconnected)' : ''}: missing ${ids.filter((id) => !got(p, id))}; views ${ARCADES.map((a) => `${p.c.lastSnapshot(a)?.v}/${versions[a]}`)}`);
    throw new Error(`${err.message} (seed ${seed})\n${lag.join('\n')}`);
  });
  console.log(`# ${stayed.length} phones that stayed connected current ${ms} ms after PostgreSQL and Redis were both back; all ${Date.now() - t0} ms`);
  assert.ok(ms <= STALENESS_MS, `current after ${ms} ms (seed ${seed})`);
  for (const p of players) if (!p.reconnected) assert.equal(p.c.ws.readyState, 1, `${p.uid} stayed connected`);

  // exit 0 and nothing named (run rejects on any other exit)
  await run(HUB_BIN, ['audit', '--database-url', pg.url]);
  for (const h of hubs) await h.stop();
});
