// Benchmark (not a test): what --workers buys on this machine. For each
// worker count (default 1 and 2), one hub started with --workers N:
//
//  1. connection capacity: C sockets (default 5,000) opened, authenticated
//     and subscribed to arcade 1 in waves of 250; prints sockets/s and how
//     many made it;
//  2. fan-out: E queue snapshots (default 300), one every GAP ms (default 2),
//     published straight on Redis (rn:arcade:1), delivered to those sockets;
//     prints deliveries/s at the clients and the hub CPU per delivery, summed
//     over every worker (utime + stime from /proc).
//
// The load generator is this one node process, on the same two cores: with
// two workers it is often the limit, so compare the runs of one invocation
// and read the wall time and CPU figures together. The public lane conflates
// (a socket already written in a loop turn gets the newest view later), so
// "delivered" can be below sockets x events when someone falls behind; the
// run ends when every socket has the last version (or after 30 s).
//
//   RN_HUB_BIN=build/retronova-hub node tests/bench/workers.mjs [C] [E] [GAP] [WORKERS...]
//   (ulimit -n must allow C sockets twice over: run.sh raises it)
import fs from 'node:fs';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import WebSocket from 'ws';
import { applyDemo, cleanup, sleep, startHub, startPostgres, startRedis, token, waitFor } from '../lib/harness.js';

const args = process.argv.slice(2);
const C = Number(args[0] || 5000);
const E = Number(args[1] || 300);
const GAP_MS = Number(args[2] || 2);
const COUNTS = args.slice(3).map(Number);
const WAVE = 250;
const TICK_S = 0.01; // USER_HZ

function cpuSeconds(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_S;
}

function workerPids(ppid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return out;
}

/* One socket: authenticated by header, subscribed; counts its queue pushes. */
function openSocket(hub, i, state) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/ws`, ['retronova.v1'], {
      headers: { Authorization: `Bearer ${token(hub, `wk-${i}`)}` },
      perMessageDeflate: false,
    });
    let ready = false;
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'ok' && !m.id) ws.send('{"type":"subscribe","id":1,"ch":"arcade:1"}');
      else if (m.type === 'queue' && !ready) {
        ready = true;
        state.lastV = Math.max(state.lastV, m.v);
        resolve(ws);
      } else if (m.type === 'queue') {
        state.delivered++;
        if (m.v === state.finalV) state.complete++;
      }
    });
    ws.on('error', () => resolve(null));
    ws.on('close', () => resolve(null));
  });
}

async function runOnce(workers, pg, redis) {
  const hub = await startHub({ pg, redis, debugRoutes: false, args: ['--workers', String(workers)] });
  if (workers > 1) await waitFor(() => workerPids(hub.proc.pid).length === workers, { what: 'workers' });
  await sleep(1000); // every worker listening
  const pids = workers > 1 ? workerPids(hub.proc.pid) : [hub.proc.pid];
  const cpu = () => pids.reduce((s, pid) => s + cpuSeconds(pid), 0);

  const state = { delivered: 0, complete: 0, lastV: 0, finalV: Infinity };
  const sockets = [];
  const t0 = Date.now();
  for (let i = 0; i < C; i += WAVE) {
    const wave = await Promise.all(Array.from({ length: Math.min(WAVE, C - i) }, (_, j) => openSocket(hub, i + j, state)));
    sockets.push(...wave.filter(Boolean));
  }
  const openMs = Date.now() - t0;

  const snapshot = JSON.parse(execFileSync('psql', ['-qAt', pg.url, '-c', 'SELECT rn_queue_snapshot(1)']).toString());
  const redisConn = net.connect(redis.port, '127.0.0.1');
  await new Promise((r) => redisConn.once('connect', r));
  redisConn.on('data', () => {});
  state.finalV = state.lastV + E;
  const cpu0 = cpu();
  const t1 = Date.now();
  for (let i = 1; i <= E; i++) {
    snapshot.v = state.lastV + i;
    const payload = JSON.stringify(snapshot);
    redisConn.write(`*3\r\n$7\r\nPUBLISH\r\n$11\r\nrn:arcade:1\r\n$${Buffer.byteLength(payload)}\r\n${payload}\r\n`);
    await sleep(GAP_MS);
  }
  await waitFor(() => state.complete >= sockets.length, { timeoutMs: 30000, intervalMs: 5, what: 'deliveries' }).catch(() => {});
  const wallMs = Date.now() - t1;
  const cpuS = cpu() - cpu0;
  const r = {
    workers,
    sockets_wanted: C,
    sockets_open: sockets.length,
    sockets_per_s: Math.round((sockets.length * 1000) / openMs),
    events: E,
    gap_ms: GAP_MS,
    delivered: state.delivered,
    complete: state.complete,
    deliveries_per_s: Math.round((state.delivered * 1000) / wallMs),
    hub_cpu_us_per_delivery: Number(((cpuS * 1e6) / Math.max(1, state.delivered)).toFixed(3)),
    wall_ms: wallMs,
  };
  console.log(
    `${workers} worker(s): ${r.sockets_open}/${C} sockets at ${r.sockets_per_s}/s; ${E} snapshots -> ${r.delivered} deliveries ` +
      `(${r.complete} sockets got the last) at ${r.deliveries_per_s}/s, hub CPU ${r.hub_cpu_us_per_delivery} µs per delivery`,
  );
  console.log(JSON.stringify(r));
  redisConn.end();
  for (const ws of sockets) ws.terminate();
  await hub.stop({ timeoutMs: 30000 });
  return r;
}

const pg = await startPostgres();
const redis = await startRedis();
await applyDemo(pg);
const runs = [];
for (const w of COUNTS.length ? COUNTS : [1, 2]) runs.push(await runOnce(w, pg, redis));
const x = (a, b) => (b ? (a / b).toFixed(2) : '-');
for (const r of runs.slice(1))
  console.log(
    `${r.workers} workers / ${runs[0].workers}: sockets/s x${x(r.sockets_per_s, runs[0].sockets_per_s)}, ` +
      `deliveries/s x${x(r.deliveries_per_s, runs[0].deliveries_per_s)}, CPU per delivery x${x(r.hub_cpu_us_per_delivery, runs[0].hub_cpu_us_per_delivery)}`,
  );
await cleanup();
process.exit(0);
