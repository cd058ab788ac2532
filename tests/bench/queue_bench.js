// Benchmark (not a test, not in ctest): the live queue under load.
//
//   RN_HUB_BIN=build/retronova-hub node tests/bench/queue_bench.js \
//       [--sockets 1000] [--arcades 4] [--changes 300] [--clients 32] [--seconds 10]
//       [--hub-args "--pg-pool 8"] [--load c|node] [--warmup 1] [--load-cpu N]
//
// 1. Fan-out latency. --sockets phones subscribe to arcade:<id> over
//    --arcades arcades (round robin). Then --changes reservations are made one
//    after another (each cancelled right after, so queues stay short), on the
//    arcades in turn. For each: when the LAST subscriber of that arcade holds
//    the snapshot showing it, measured from the HTTP request sent (an upper
//    bound of commit -> last subscriber), from the HTTP response (negative
//    when the pushes came first: the hub publishes at commit, then answers),
//    and from the first subscriber's push (the spread of the fan-out as the
//    clients see it). p50 / p99 / max.
// 2. Throughput. --clients concurrent HTTP clients (keep-alive), each its
//    own user with plenty of tickets, loop for --seconds: POST a reservation,
//    DELETE it (the refund recycles the tickets; a user may hold one
//    reservation per arcade). Reports reservations/s (and the cancels, each
//    also a queue change pushed to the subscribers), with the subscribers of
//    part 1 still connected and receiving every change. The hub's CPU time
//    per change from /proc.
//    The loops run in build/tests/bench_rest (tests/bench/rest_load.c: one C
//    process, epoll, keep-alive; --load c, the default): --warmup seconds
//    first, then --seconds measured, the hub's CPU and the snapshots counted
//    over the same seconds; --load-cpu pins it (default: not). --load node
//    runs them as node http clients in this process, as before (no warm-up,
//    a fresh token per request): they burn ~15x the C client's CPU per pair
//    on the cores the hub and PostgreSQL share, so node's number is lower.
//    Both print the client's own CPU per pair (node: this whole process,
//    subscribers included).
//
// Everything runs on this machine: the node clients, PostgreSQL and Redis
// compete with the hub for the cores. Use a Release-ish build (build/).
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import WebSocket from 'ws';
import { HUB_BIN, applyDemo, cleanup, startHub, startPostgres, startRedis, tmpDir, token, waitFor } from '../lib/harness.js';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const SOCKETS = Number(args.sockets || 1000);
const ARCADES = Number(args.arcades || 4);
const CHANGES = Number(args.changes || 300);
const CLIENTS = Number(args.clients || 32);
const SECONDS = Number(args.seconds || 10);
const HUB_ARGS = (args['hub-args'] || '').split(' ').filter(Boolean);
const LOAD = args.load || 'c';
const WARMUP = Number(args.warmup ?? 1);
const LOAD_CPU = args['load-cpu'];
// the C load generator, built with the tree next to the hub (build/tests/)
const REST_BIN = process.env.RN_REST_BIN || path.join(path.dirname(HUB_BIN), 'tests', 'bench_rest');
if (LOAD !== 'node' && LOAD !== 'c') throw new Error(`--load node|c, not ${LOAD}`);
if (LOAD === 'c' && !fs.existsSync(REST_BIN)) throw new Error(`no ${REST_BIN} (cmake --build build; or set RN_REST_BIN)`);
const GAME = 3; // Neon Racer, solo, 1 ticket

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const fmt = (ms) => `${ms.toFixed(2)} ms`;

function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (100/s)
}

// ---- set-up ---------------------------------------------------------------

const pg = await startPostgres();
const redis = await startRedis();
await applyDemo(pg);
// extra arcades with Neon Racer, and bench users with a million tickets each
await pg.psql(`
  INSERT INTO arcades (id, name, status)
  SELECT g, 'Bench ' || g, 'offline' FROM generate_series(4, ${Math.max(3, ARCADES)}) g ON CONFLICT DO NOTHING;
  INSERT INTO arcade_games (arcade_id, slot, game_id)
  SELECT g, 9, ${GAME} FROM generate_series(1, ${ARCADES}) g ON CONFLICT DO NOTHING;
  INSERT INTO users (firebase_uid, pseudo)
  SELECT 'bench-' || g, 'bench' || g FROM generate_series(0, ${CLIENTS}) g;
  WITH u AS (UPDATE users SET tickets_balance = 1000000 WHERE firebase_uid LIKE 'bench-%'
             RETURNING id, tickets_balance)
  INSERT INTO ledger (user_id, delta, balance_after, kind, reason)
  SELECT id, 1000000, tickets_balance, 'adjustment', 'bench' FROM u;`);
const hub = await startHub({ pg, redis, debugRoutes: false, args: HUB_ARGS });
await waitFor(async () => (await fetch(`${hub.url}/readyz`)).status === 200, { what: 'ready' });

const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS + 4 });
function call(method, path, uid, body) {
  return new Promise((resolve, reject) => {
    const payload = body ? JSON.stringify(body) : undefined;
    const headers = { Authorization: `Bearer ${token(hub, uid, { ttl: 7200 })}` };
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = Buffer.byteLength(payload);
      headers['Idempotency-Key'] = crypto.randomUUID();
    }
    const req = http.request({ host: '127.0.0.1', port: hub.port, method, path, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

// ---- subscribers ----------------------------------------------------------

// Per socket: its arcade and the arrival time of each snapshot version (no
// JSON parse on the hot path: v is read with a regex).
const subs = [];
function open(i) {
  const arcade = 1 + (i % ARCADES);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(hub.wsUrl, ['retronova.v1'], {
      headers: { Authorization: `Bearer ${token(hub, `phone-${i}`, { ttl: 7200 })}` },
      perMessageDeflate: false,
    });
    const sub = { ws, arcade, arrivals: [] }; // [v, t]
    ws.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('{"type":"queue"') || text.includes('"type":"queue"')) {
        const v = Number(/"v":(\d+)/.exec(text)[1]);
        sub.arrivals.push([v, performance.now(), text.length]);
        if (!sub.ready) {
          sub.ready = true;
          resolve(sub);
        }
      } else if (/"type":"ok"/.test(text) && !/"id"/.test(text)) {
        ws.send(JSON.stringify({ type: 'subscribe', id: 1, ch: `arcade:${arcade}` }));
      } else if (/"type":"error"/.test(text)) {
        reject(new Error(text));
      }
    });
    ws.on('error', reject);
  });
}
let t0 = Date.now();
for (let i = 0; i < SOCKETS; i += 200) {
  const batch = [];
  for (let j = i; j < Math.min(SOCKETS, i + 200); j++) batch.push(open(j));
  subs.push(...(await Promise.all(batch)));
}
console.log(`${SOCKETS} subscribers over ${ARCADES} arcades in ${Date.now() - t0} ms`);

// ---- 1. fan-out latency ----------------------------------------------------

// One change at a time, the cabinets offline: a reservation bumps its
// arcade's queue_version by exactly one, so the snapshot that shows it is
// the first with v greater than what every subscriber held before.
const latest = (s) => (s.arrivals.length ? s.arrivals[s.arrivals.length - 1][0] : -1);
const fromSend = []; // request sent -> last subscriber: bounds commit -> last subscriber from above
const fromResponse = []; // response received -> last subscriber (negative: the pushes came first)
const spread = []; // first subscriber -> last subscriber: the fan-out itself, as the clients see it
const uid = 'bench-0';
for (let k = 0; k < CHANGES && subs.length; k++) {
  const arcade = 1 + (k % ARCADES);
  const mine = subs.filter((s) => s.arcade === arcade);
  await waitFor(() => mine.every((s) => latest(s) === latest(mine[0])), { intervalMs: 1, what: 'quiet' });
  const target = latest(mine[0]) + 1;
  const tSend = performance.now();
  const res = await call('POST', '/api/v1/reservations', uid, { arcade_id: arcade, game_id: GAME });
  const tResponse = performance.now();
  if (res.status !== 201) throw new Error(`reserve: ${res.status} ${res.text}`);
  await waitFor(() => mine.every((s) => latest(s) >= target), { timeoutMs: 10000, intervalMs: 1, what: 'all subscribers' });
  const times = mine.map((s) => s.arrivals.find(([v]) => v >= target)[1]);
  const last = Math.max(...times);
  fromSend.push(last - tSend);
  fromResponse.push(last - tResponse);
  spread.push(last - Math.min(...times));
  const id = JSON.parse(res.text).reservation.id;
  const del = await call('DELETE', `/api/v1/reservations/${id}`, uid);
  if (del.status !== 200) throw new Error(`cancel: ${del.status} ${del.text}`);
}
if (subs.length) {
  const line = (name, xs) => `${name} p50 ${fmt(pct(xs, 50))}, p99 ${fmt(pct(xs, 99))}, max ${fmt(Math.max(...xs))}`;
  console.log(`fan-out: ${CHANGES} reservations, ${Math.round(SOCKETS / ARCADES)} subscribers each; to the LAST subscriber's queue push`);
  console.log(`  ${line('from the HTTP request sent:', fromSend)}`);
  console.log(`  ${line('from the HTTP response:    ', fromResponse)} (negative: pushed before the response came)`);
  console.log(`  ${line('from the first subscriber: ', spread)}`);
}

// ---- 2. throughput ---------------------------------------------------------

const deliveredSoFar = () => subs.reduce((n, s) => n + s.arrivals.length, 0);

// node: CLIENTS async loops in this process (a fresh token per request).
async function loadNode() {
  let reserved = 0;
  let cancelled = 0;
  const errors = {};
  const deadline = Date.now() + SECONDS * 1000;
  const cpu0 = cpuTicks(hub.pid);
  const own0 = process.cpuUsage();
  const delivered0 = deliveredSoFar();
  const t = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      const who = `bench-${c + 1}`;
      const arcade = 1 + (c % ARCADES);
      while (Date.now() < deadline) {
        const r = await call('POST', '/api/v1/reservations', who, { arcade_id: arcade, game_id: GAME });
        if (r.status !== 201) {
          errors[r.status] = (errors[r.status] || 0) + 1;
          continue;
        }
        reserved++;
        const d = await call('DELETE', `/api/v1/reservations/${JSON.parse(r.text).reservation.id}`, who);
        if (d.status === 200) cancelled++;
        else errors[`cancel ${d.status}`] = (errors[`cancel ${d.status}`] || 0) + 1;
      }
    }),
  );
  const own = process.cpuUsage(own0);
  const secs = (performance.now() - t) / 1000;
  const hubCpu = (cpuTicks(hub.pid) - cpu0) / 100;
  await new Promise((r) => setTimeout(r, 500));
  return {
    secs,
    reserved,
    cancelled,
    errors,
    hubCpu,
    clientCpu: (own.user + own.system) / 1e6,
    delivered: deliveredSoFar() - delivered0,
  };
}

// c: the same users and loops in bench_rest (tests/bench/rest_load.c), which
// reads one `token arcade_id game_id` line per connection and prints one
// JSON line; a non-201/200 answer or a timeout makes it exit non-zero.
async function loadC() {
  const file = path.join(tmpDir('rn-rest-load-'), 'clients.txt');
  const lines = Array.from({ length: CLIENTS }, (_, c) =>
    `${token(hub, `bench-${c + 1}`, { ttl: 7200 })} ${1 + (c % ARCADES)} ${GAME}`);
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  const argv = ['-p', String(hub.port), '-f', file, '-w', String(WARMUP), '-s', String(SECONDS), '-P', String(hub.pid)];
  if (LOAD_CPU !== undefined) argv.push('-c', String(LOAD_CPU));
  const child = spawn(REST_BIN, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const at = {}; // snapshots delivered when bench_rest opened and closed its measured window
  child.stdout.on('data', (d) => {
    out += d;
    for (const phase of ['measure', 'stop'])
      if (at[phase] === undefined && out.includes(`{"phase":"${phase}"}`)) at[phase] = deliveredSoFar();
  });
  const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? sig)));
  if (code !== 0) throw new Error(`bench_rest exited ${code}: ${out}`);
  const r = JSON.parse(out.trim().split('\n').pop());
  console.log(`bench_rest: ${JSON.stringify(r)}`);
  return {
    secs: r.seconds,
    reserved: r.pairs,
    cancelled: r.pairs,
    errors: {},
    hubCpu: r.hub_cpu_s,
    clientCpu: r.client_user_s + r.client_sys_s,
    delivered: at.stop - at.measure,
  };
}

// for strace -c / perf stat -p over a few seconds of this phase (tests/bench/README.md)
console.log(`throughput phase: hub pid ${hub.pid}, metrics ${hub.url}/metrics`);
const { secs, reserved, cancelled, errors, hubCpu, clientCpu, delivered } = LOAD === 'c' ? await loadC() : await loadNode();
console.log(
  `throughput: ${CLIENTS} clients (${LOAD}), ${secs.toFixed(1)} s: ${(reserved / secs).toFixed(0)} reservations/s ` +
    `(+ ${(cancelled / secs).toFixed(0)} cancels/s; ${((reserved + cancelled) / secs).toFixed(0)} queue changes/s), ` +
    `${delivered} snapshots delivered (conflated), hub CPU ${hubCpu.toFixed(1)} s ` +
    `= ${((hubCpu * 1e6) / (reserved + cancelled)).toFixed(0)} us per change, ` +
    `client CPU ${((clientCpu * 1e6) / reserved).toFixed(0)} us per pair` +
    (Object.keys(errors).length ? `, errors ${JSON.stringify(errors)}` : ''),
);

for (const s of subs) s.ws.terminate();
agent.destroy();
await cleanup();
