// Benchmark (not a test): hub CPU per delivered message when one event fans
// out to many sockets. S sockets (default 1,000) subscribe to arcade 1; E queue
// snapshots (default 500) with increasing versions are published straight on
// Redis (rn:arcade:1), one every 2 ms (a burst would be conflated, by design), so only the hub's fan-out path is measured: decode once,
// encode once, one shared buffer queued on every socket. Hub CPU comes from
// /proc/<pid>/stat (utime + stime); deliveries are counted at the clients
// (conflation may legitimately drop views a slow client had not read yet).
//
//   RN_HUB_BIN=build/retronova-hub node tests/bench/fanout_cpu.mjs [S] [E]
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import WebSocket from 'ws';
import { applyDemo, cleanup, sleep, startHub, startPostgres, startRedis, token, waitFor } from '../lib/harness.js';

const S = Number(process.argv[2] || 1000);
const E = Number(process.argv[3] || 500);
const TICK_S = 0.01; // USER_HZ: /proc/<pid>/stat counts in 1/100 s on Linux

function cpuSeconds(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_S; // utime, stime
}

const pg = await startPostgres();
const redis = await startRedis();
await applyDemo(pg);
const hub = await startHub({ pg, redis, debugRoutes: false });
let delivered = 0;
let lastV = 0;
const sockets = await Promise.all(Array.from({ length: S }, (_, i) => new Promise((resolve, reject) => {
  const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/ws`, ['retronova.v1'], {
    headers: { Authorization: `Bearer ${token(hub, `fan-${i}`)}` }, perMessageDeflate: false });
  let ready = false;
  ws.on('message', (data) => {
    const m = JSON.parse(data);
    if (m.type === 'ok' && !m.id) ws.send('{"type":"subscribe","id":1,"ch":"arcade:1"}');
    else if (m.type === 'queue' && !ready) { ready = true; lastV = m.v; resolve(ws); }
    else if (m.type === 'queue') delivered++;
  });
  ws.on('error', reject);
})));

const snapshot = JSON.parse(execFileSync('psql', ['-qAt', pg.url, '-c', 'SELECT rn_queue_snapshot(1)']).toString());
const redisConn = net.connect(redis.port, '127.0.0.1');
await new Promise((r) => redisConn.once('connect', r));
redisConn.on('data', () => {});
const cpu0 = cpuSeconds(hub.proc.pid);
const t0 = process.hrtime.bigint();
for (let i = 1; i <= E; i++) {
  snapshot.v = lastV + i;
  const payload = JSON.stringify(snapshot);
  redisConn.write(`*3\r\n$7\r\nPUBLISH\r\n$11\r\nrn:arcade:1\r\n$${Buffer.byteLength(payload)}\r\n${payload}\r\n`);
  await sleep(2);
}
await waitFor(() => delivered >= S * E, { timeoutMs: 30000, intervalMs: 20, what: 'deliveries' }).catch(() => {});
const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
const cpu = cpuSeconds(hub.proc.pid) - cpu0;
console.log(JSON.stringify({
  sockets: S, events: E, delivered,
  hub_cpu_s: Number(cpu.toFixed(3)),
  hub_cpu_us_per_delivery: Number(((cpu * 1e6) / delivered).toFixed(3)),
  wall_ms: Math.round(wallMs),
}));
redisConn.end();
for (const ws of sockets) ws.terminate();
await cleanup();
process.exit(0);
