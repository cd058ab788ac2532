// Benchmark (not a test): the delay from commit to a phone on ANOTHER hub,
// with Redis up and during a Redis outage, when delivery between hubs goes
// through PostgreSQL LISTEN/NOTIFY (issue 12 item 4; the test
// tests/integration/bus_fallback.test.js asserts the same with less load).
//
// Two hubs on one PostgreSQL and one Redis. U players (default 32), each with
// a phone on hub B subscribed to its user channel and to arcade 2 (no
// cabinet: reservations stay waiting); a reference phone on hub A. For S
// seconds (default 10) with Redis up, then S seconds with Redis stopped, K
// concurrent loops (default 8) make reservations, cancels and ticket
// purchases through hub A. Per phase it prints the commit -> hub B phone
// delay: private events by their at_ms, snapshots by version (the version's
// arrival on hub A, applied at commit, against the first view at least as new
// on hub B); p50 / p99 / max, and the NOTIFY counts from /metrics.
//
//   RN_HUB_BIN=build/retronova-hub node tests/bench/bus_outage.mjs [U] [S] [K]
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { grant } from '../integration/queue_world.js';
import { applyDemo, cleanup, http, parseMetrics, startHub, startPostgres, startRedis, token, waitFor } from '../lib/harness.js';

const args = process.argv.slice(2);
const U = Number(args[0] || 32);
const S = Number(args[1] || 10);
const K = Number(args[2] || 8);
const QUIET = 2;
const GAME = 3;

const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
await applyDemo(pg);
const ready = async (hub) => waitFor(async () => (await http(hub, 'GET', '/readyz')).status === 200, { timeoutMs: 30000 });
const ARGS = ['--msg-rate', '1000']; // phones ack every event
const a = await startHub({ pg, redis, args: ARGS });
const b = await startHub({ pg, redis, args: ARGS });
await Promise.all([ready(a), ready(b)]);


function connect(hub, uid) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/ws`, 'retronova.v1');
    const c = { uid, ws, arrivals: [] };
    ws.on('message', (data) => {
      const t = Date.now();
      const m = JSON.parse(data.toString('utf8'));
      c.arrivals.push({ t, m });
      if (m.event_id) ws.send(JSON.stringify({ type: 'ack', event_id: m.event_id }));
    });
    ws.on('error', reject);
    ws.on('open', () => {
      ws.send(JSON.stringify({ type: 'auth', token: token(hub, uid), id: 1 }));
      ws.send(JSON.stringify({ type: 'subscribe', ch: `arcade:${QUIET}`, id: 2 }));
      resolve(c);
    });
  });
}

async function round(uid) {
  const key = () => ({ 'Idempotency-Key': crypto.randomUUID() });
  const res = await http(a, 'POST', '/api/v1/reservations', { token: token(a, uid), body: { arcade_id: QUIET, game_id: GAME }, headers: key() });
  if (res.status !== 201) throw new Error(`reserve ${res.status} ${res.text}`);
  await http(a, 'DELETE', `/api/v1/reservations/${res.json.reservation.id}`, { token: token(a, uid) });
  await http(a, 'POST', '/api/v1/tickets/purchase', { token: token(a, uid), body: { offer_id: 1, payment_token: 'tok_ok' }, headers: key() });
}

// (no Math.max(...xs): a 10 s phase has more arrivals than a call may take arguments)
const q = (xs, p) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(s.length * p) - 1)] : NaN;
};
const sentBy = async (hub, dir) =>
  parseMetrics((await http(hub, 'GET', '/metrics')).text)
    .filter((s) => s.name === 'rn_bus_pg_messages_total' && s.labels.direction === dir)
    .reduce((n, s) => n + s.value, 0);

const uids = Array.from({ length: U }, (_, i) => `bo${i}-${crypto.randomBytes(3).toString('hex')}`);
for (const uid of uids) await grant(pg, uid, 100000, uid);
const phones = await Promise.all(uids.map((uid) => connect(b, uid)));
const ref = await connect(a, `ref-${crypto.randomBytes(3).toString('hex')}`);

async function phase(name) {
  const t0 = Date.now();
  let rounds = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: K }, async () => {
      while (Date.now() - t0 < S * 1000) {
        await round(uids[next++ % U]);
        rounds++;
      }
    }),
  );
  const t1 = Date.now();
  await new Promise((r) => setTimeout(r, 3000)); // the stragglers (a missing one shows in max)
  const ev = [];
  for (const p of phones) for (const { t, m } of p.arrivals) if (m.event_id && m.at_ms >= t0 && m.at_ms <= t1) ev.push(t - m.at_ms);
  const onA = new Map();
  for (const { t, m } of ref.arrivals) if (m.type === 'queue' && m.arcade_id === QUIET && t >= t0 && t <= t1 && !onA.has(m.v)) onA.set(m.v, t);
  const snap = [];
  for (const [v, ta] of onA)
    for (const p of phones) {
      const hit = p.arrivals.find(({ m }) => m.type === 'queue' && m.arcade_id === QUIET && m.v >= v);
      if (hit) snap.push(Math.max(0, hit.t - ta));
    }
  const all = [...ev, ...snap];
  console.log(
    `${name}: ${rounds} rounds in ${t1 - t0} ms (${((rounds * 1000) / (t1 - t0)).toFixed(1)}/s), ${ev.length} events + ${snap.length} snapshot arrivals on hub B; ` +
      `commit -> hub B phone p50 ${q(all, 0.5)} ms, p99 ${q(all, 0.99)} ms, max ${all.reduce((m, x) => Math.max(m, x), -Infinity)} ms ` +
      `(events p99 ${q(ev, 0.99)}, snapshots p99 ${q(snap, 0.99)}); NOTIFY sent by A ${await sentBy(a, 'sent')}, received by B ${await sentBy(b, 'received')}`,
  );
}

await phase('Redis up');
await redis.stop();
await waitFor(async () => (await http(b, 'GET', '/readyz')).json?.redis === 'down' && (await http(a, 'GET', '/readyz')).json?.redis === 'down');
await phase('Redis down (PostgreSQL NOTIFY)');
await redis.start();
for (const p of [...phones, ref]) p.ws.close();
await cleanup();
process.exit(0);
