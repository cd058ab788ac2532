// Benchmark (not a test): hub memory per idle, authenticated, subscribed
// WebSocket. Opens N sockets (default 10,000), each authenticated with its own
// dev token (Authorization header) and subscribed to one of the demo arcades,
// then reads the hub's RSS from /proc and reports the growth per socket.
//
//   ulimit -n 65536; RN_HUB_BIN=build/retronova-hub node tests/bench/idle_sockets.mjs [N]
//
// Run it on a Release-ish build (build/), not the sanitized one.
import fs from 'node:fs';
import WebSocket from 'ws';
import { applyDemo, cleanup, startHub, startPostgres, startRedis, token, sleep } from '../lib/harness.js';

const N = Number(process.argv[2] || 10000);
const BATCH = 500;

function rssKiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

function open(hub, i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/ws`, ['retronova.v1'], {
      headers: { Authorization: `Bearer ${token(hub, `bench-${i}`)}` },
      perMessageDeflate: false,
    });
    let subscribed = false;
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'ok' && !m.id) ws.send(JSON.stringify({ type: 'subscribe', id: 1, ch: `arcade:${1 + (i % 3)}` }));
      if (m.type === 'queue' && !subscribed) {
        subscribed = true;
        resolve(ws);
      }
      if (m.type === 'error') reject(new Error(JSON.stringify(m)));
    });
    ws.on('error', reject);
  });
}

const pg = await startPostgres();
const redis = await startRedis();
await applyDemo(pg);
const hub = await startHub({ pg, redis, debugRoutes: false });
const pid = hub.proc.pid;
await sleep(500);
const before = rssKiB(pid);
const sockets = [];
const t0 = Date.now();
for (let i = 0; i < N; i += BATCH) {
  const batch = [];
  for (let j = i; j < Math.min(N, i + BATCH); j++) batch.push(open(hub, j));
  sockets.push(...(await Promise.all(batch)));
}
const openMs = Date.now() - t0;
await sleep(1000);
const after = rssKiB(pid);
console.log(JSON.stringify({
  sockets: N,
  hub_rss_before_kib: before,
  hub_rss_after_kib: after,
  kib_per_socket: Number(((after - before) / N).toFixed(2)),
  open_and_subscribe_ms: openMs,
}));
for (const ws of sockets) ws.terminate();
await cleanup();
process.exit(0);
