// Benchmark (not a test): hub CPU per delivered message when one event fans
// out to many sockets. S sockets (default 1,000) subscribe to arcade 1; E queue
// snapshots (default 500) with increasing versions are published straight on
// Redis (rn:arcade:1), one every GAP ms (default 2; a burst would be conflated,
// by design), so only the hub's fan-out path is measured: decode once, encode
// once, one shared buffer written to every socket. Hub CPU comes from
// /proc/<pid>/stat (utime + stime, also printed apart); deliveries are counted
// at the clients. The public lane conflates only for a socket that cannot take
// more (full, or written through lws): it gets the newest view later instead of
// every one, so delivered can be below S x E when the load generator (node, on
// the same cores) falls behind; a socket that keeps up gets every snapshot,
// those that arrive in one loop turn in one write. The run ends when every socket has the last
// version (or after 30 s).
//
//   RN_HUB_BIN=build/retronova-hub node tests/bench/fanout_cpu.mjs [S] [E] [GAP]
//   node tests/bench/fanout_cpu.mjs --floor [S] [E] [GAP]
//
// --floor measures what the kernel alone costs, with no hub: a node process
// writes the same 175-byte frame to S loopback TCP sockets, E rounds GAP ms
// apart, read by this process. Its system CPU per write is the floor under
// hub_cpu_us_per_delivery: a delivery is at least one send(), and on loopback
// the sender also pays for the receiver's TCP processing.
//
// RN_BENCH_PAD=N adds N bytes to every snapshot (a long queue; frames over
// lws's per-send limit take another path).
//
// RN_BENCH_HOLD_S=N prints the hub's pid and waits N seconds before publishing,
// to attach strace -c -p PID or perf record -e cpu-clock -g -p PID to the
// fan-out phase only.
import { execFileSync, fork } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { applyDemo, cleanup, sleep, startHub, startPostgres, startRedis, token, waitFor } from '../lib/harness.js';

const FLOOR = process.argv[2] === '--floor';
const args = process.argv.slice(FLOOR ? 3 : 2);
const S = Number(args[0] || 1000);
const E = Number(args[1] || 500);
const GAP_MS = Number(args[2] || 2);
const HOLD_S = Number(process.env.RN_BENCH_HOLD_S || 0);
const PAD = Number(process.env.RN_BENCH_PAD || 0);
const FRAME_BYTES = 175; // what the hub writes for the demo snapshot: 2-byte header + 173

const TICK_S = 0.01; // USER_HZ: /proc/<pid>/stat counts in 1/100 s on Linux
function cpuSeconds(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: Number(f[11]) * TICK_S, sys: Number(f[12]) * TICK_S }; // utime, stime
}

/* The floor's sender (a child process): accepts S sockets, writes E rounds when told. */
async function floorSender() {
  const socks = [];
  const server = net.createServer((c) => { c.setNoDelay(true); socks.push(c); });
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
  await new Promise((r) => process.once('message', r));
  const frame = Buffer.alloc(FRAME_BYTES, 0x78);
  frame[0] = 0x81; // FIN + text
  frame[1] = FRAME_BYTES - 2;
  const c0 = process.cpuUsage();
  for (let i = 0; i < E; i++) {
    for (const c of socks) c.write(frame);
    await sleep(GAP_MS);
  }
  const c = process.cpuUsage(c0);
  const writes = E * socks.length;
  process.send({ writes, user_us: c.user / writes, sys_us: c.system / writes });
}

async function floor() {
  const sender = fork(fileURLToPath(import.meta.url), process.argv.slice(2),
    { env: { ...process.env, RN_BENCH_FLOOR_SENDER: '1' } });
  const { port } = await new Promise((r) => sender.once('message', r));
  let bytes = 0;
  const conns = await Promise.all(Array.from({ length: S }, () => new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => resolve(c));
    c.on('data', (d) => { bytes += d.length; });
  })));
  await sleep(200);
  sender.send('go');
  const r = await new Promise((resolve) => sender.once('message', resolve));
  await waitFor(() => bytes >= S * E * FRAME_BYTES, { timeoutMs: 30000, intervalMs: 5, what: 'bytes' }).catch(() => {});
  console.log(JSON.stringify({
    floor: true, sockets: S, events: E, gap_ms: GAP_MS, writes: r.writes,
    sender_sys_us_per_write: Number(r.sys_us.toFixed(3)),
    sender_user_us_per_write: Number(r.user_us.toFixed(3)),
  }));
  for (const c of conns) c.destroy();
  sender.kill();
}

async function fanout() {
  const pg = await startPostgres();
  const redis = await startRedis();
  await applyDemo(pg);
  const hub = await startHub({ pg, redis, debugRoutes: false });
  let delivered = 0;
  let lastV = 0;
  let finalV = Infinity;
  let complete = 0; // sockets that have the last version
  const sockets = await Promise.all(Array.from({ length: S }, (_, i) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/ws`, ['retronova.v1'], {
      headers: { Authorization: `Bearer ${token(hub, `fan-${i}`)}` }, perMessageDeflate: false });
    let ready = false;
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'ok' && !m.id) ws.send('{"type":"subscribe","id":1,"ch":"arcade:1"}');
      else if (m.type === 'queue' && !ready) { ready = true; lastV = m.v; resolve(ws); }
      else if (m.type === 'queue') {
        delivered++;
        if (m.v === finalV) complete++;
      }
    });
    ws.on('error', reject);
  })));

  const snapshot = JSON.parse(execFileSync('psql', ['-qAt', pg.url, '-c', 'SELECT rn_queue_snapshot(1)']).toString());
  if (PAD) snapshot.pad = 'x'.repeat(PAD);
  const redisConn = net.connect(redis.port, '127.0.0.1');
  await new Promise((r) => redisConn.once('connect', r));
  redisConn.on('data', () => {});
  if (HOLD_S) {
    console.error(`hub pid ${hub.proc.pid}: publishing in ${HOLD_S} s`);
    await sleep(HOLD_S * 1000);
  }
  finalV = lastV + E;
  const cpu0 = cpuSeconds(hub.proc.pid);
  const t0 = process.hrtime.bigint();
  let bytes = 0;
  for (let i = 1; i <= E; i++) {
    snapshot.v = lastV + i;
    const payload = JSON.stringify(snapshot);
    bytes = Buffer.byteLength(payload);
    redisConn.write(`*3\r\n$7\r\nPUBLISH\r\n$11\r\nrn:arcade:1\r\n$${bytes}\r\n${payload}\r\n`);
    await sleep(GAP_MS);
  }
  await waitFor(() => complete >= S, { timeoutMs: 30000, intervalMs: 5, what: 'deliveries' }).catch(() => {});
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu1 = cpuSeconds(hub.proc.pid);
  const user = cpu1.user - cpu0.user;
  const sys = cpu1.sys - cpu0.sys;
  const us = (s) => Number(((s * 1e6) / delivered).toFixed(3));
  console.log(JSON.stringify({
    sockets: S, events: E, gap_ms: GAP_MS, payload_bytes: bytes, delivered, complete,
    hub_cpu_s: Number((user + sys).toFixed(3)),
    hub_cpu_us_per_delivery: us(user + sys),
    user_us: us(user), sys_us: us(sys),
    wall_ms: Math.round(wallMs),
  }));
  redisConn.end();
  for (const ws of sockets) ws.terminate();
  await cleanup();
}

if (process.env.RN_BENCH_FLOOR_SENDER) await floorSender();
else if (FLOOR) await floor();
else await fanout();
process.exit(0);
