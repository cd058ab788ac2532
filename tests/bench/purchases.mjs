// Benchmark (not a test): ticket purchases per second through the hub
// (POST /api/v1/tickets/purchase with tok_ok and a fresh Idempotency-Key, N
// concurrent keep-alive clients) against the same two transactions run by
// pgbench on the same database (rn_purchase_begin, then rn_purchase_settle,
// each one statement, as the hub sends them). Prints both rates and the ratio.
// Run it through tests/bench/purchases.sh.
//
//   RN_HUB_BIN=build/retronova-hub node tests/bench/purchases.mjs
//   env: BENCH_SECONDS (10), CLIENTS (32 HTTP clients), POOL (4: the hub's
//   connections, and pgbench's clients), USERS (200), ROUNDS (3, alternating),
//   LOADGEN (wrk when installed, with purchases.lua; LOADGEN=node forces the
//   node client, which costs more CPU on a small machine than pgbench's)
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyDemo, cleanup, startHub, startPostgres, startRedis, token } from '../lib/harness.js';

const SECONDS = Number(process.env.BENCH_SECONDS || 10);
const WARMUP = 2;
const CLIENTS = Number(process.env.CLIENTS || 32);
const POOL = Number(process.env.POOL || 4);
const USERS = Number(process.env.USERS || 200);
const ROUNDS = Number(process.env.ROUNDS || 3);
const HERE = path.dirname(fileURLToPath(import.meta.url));

function haveWrk() {
  if (process.env.LOADGEN === 'node') return false;
  return (process.env.PATH || '').split(':').some((d) => fs.existsSync(path.join(d, 'wrk')));
}
const USE_WRK = haveWrk();
const loadHub = (hub) => (USE_WRK ? loadHubWrk(hub) : loadHubNode(hub));

function post(agent, port, tok, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/api/v1/tickets/purchase',
        agent,
        headers: {
          Authorization: `Bearer ${tok}`,
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'Idempotency-Key': crypto.randomUUID(),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/* wrk when installed (a C load generator, as light as pgbench's client): resolves {rate, ok, failed}. */
function wrkRun(hub, tokensFile, seconds, nonce) {
  return new Promise((resolve, reject) => {
    execFile(
      'wrk',
      ['-t', '2', '-c', String(CLIENTS), '-d', `${seconds}s`, '-s', path.join(HERE, 'purchases.lua'),
        `http://127.0.0.1:${hub.port}`, '--', tokensFile, nonce],
      { timeout: (seconds + 30) * 1000 },
      (err, stdout, stderr) => {
        const m = /WRK ok=(\d+) other=(\d+) seconds=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+)/.exec(stdout);
        if (err || !m) return reject(new Error(`wrk: ${err ? err.message : 'no summary'}\n${stdout}${stderr}`));
        const [ok, failed, secs] = [Number(m[1]), Number(m[2]), Number(m[3])];
        resolve({ rate: ok / secs, ok, failed, p50: Number(m[4]), p99: Number(m[5]) });
      },
    );
  });
}

let wrkRound = 0;
async function loadHubWrk(hub) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rn-bench-')), 'tokens');
  fs.writeFileSync(file, Array.from({ length: USERS }, (_, i) => token(hub, `bench-${i + 1}`, { ttl: 3600 })).join('\n'));
  wrkRound++;
  await wrkRun(hub, file, WARMUP, `warm${wrkRound}-${process.pid}`);
  const r = await wrkRun(hub, file, SECONDS, `run${wrkRound}-${process.pid}`);
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
  return r;
}

/* CLIENTS loops posting purchases; counts the 201s inside the measured window. */
async function loadHubNode(hub) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const tokens = Array.from({ length: USERS }, (_, i) => token(hub, `bench-${i + 1}`, { ttl: 3600 }));
  const body = JSON.stringify({ offer_id: 1, payment_token: 'tok_ok' });
  const start = Date.now() + WARMUP * 1000;
  const stop = start + SECONDS * 1000;
  let ok = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = c; Date.now() < stop; i += CLIENTS) {
        const status = await post(agent, hub.port, tokens[i % USERS], body);
        const now = Date.now();
        if (now < start || now > stop) continue;
        if (status === 201) ok++;
        else failed++;
      }
    }),
  );
  agent.destroy();
  return { rate: ok / SECONDS, ok, failed };
}

function pgbench(pg, script, seconds) {
  return new Promise((resolve, reject) => {
    execFile(
      'pgbench',
      ['-n', '-M', 'extended', '-c', String(POOL), '-j', String(Math.min(POOL, 2)), '-T', String(seconds),
        '-D', `nusers=${USERS}`, '-f', script, pg.url],
      { timeout: (seconds + 60) * 1000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`pgbench: ${err.message}\n${stderr}`));
        const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
        if (!m) return reject(new Error(`pgbench: no tps in\n${stdout}`));
        resolve(Number(m[1]));
      },
    );
  });
}

/* utime + stime of a process, in seconds. */
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // clock ticks: USER_HZ is 100 on Linux
}

async function main() {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  await pg.psql(`INSERT INTO users (firebase_uid, pseudo)
                 SELECT 'bench-' || i, 'bench' || i FROM generate_series(1, ${USERS}) AS i`);
  const hub = await startHub({ pg, redis, debugRoutes: false, args: ['--pg-pool', String(POOL), '--log-level', 'warn'] });

  // The same transactions, as the hub sends them: begin (claims a fresh key,
  // purchase pending), then settle (succeeded, ledger, balance, event, key answer).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rn-bench-'));
  const script = path.join(dir, 'purchase.sql');
  fs.writeFileSync(script, `\\set u random(1, :nusers)
SELECT (rn_purchase_begin('bench-' || :u, md5(random()::text || clock_timestamp()::text), md5('h'), 1, 'sandbox') -> 'charge' ->> 'purchase_id') AS pid \\gset
SELECT rn_purchase_settle(:pid, true, 'sbx_' || :pid, NULL, NULL);
`);

  // Alternating rounds, best of each side: the machine may be shared, and
  // the database grows as it goes.
  let bestHub = 0;
  let bestPg = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    const cpu0 = cpuSeconds(hub.pid);
    const h = await loadHub(hub);
    const cpuUs = ((cpuSeconds(hub.pid) - cpu0) * 1e6) / Math.max(1, h.ok);
    const lat = h.p50 !== undefined ? `, p50 ${h.p50} ms, p99 ${h.p99} ms` : '';
    console.log(`round ${round} hub:     ${h.rate.toFixed(0)} purchases/s (${h.ok} in ${SECONDS} s, ${h.failed} not 201${lat}; ` +
      `~${cpuUs.toFixed(0)} us of hub CPU per purchase, warm-up included)`);
    await pgbench(pg, script, WARMUP);
    const tps = await pgbench(pg, script, SECONDS);
    console.log(`round ${round} pgbench: ${tps.toFixed(0)} purchases/s`);
    bestHub = Math.max(bestHub, h.rate);
    bestPg = Math.max(bestPg, tps);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`hub:     ${bestHub.toFixed(0)} purchases/s (best round; ${CLIENTS} HTTP clients of ${USE_WRK ? 'wrk' : 'node'}, tok_ok, ` +
    `${POOL} PostgreSQL connections)`);
  console.log(`pgbench: ${bestPg.toFixed(0)} purchases/s (best round; the same 2 transactions, ${POOL} clients)`);
  console.log(`ratio:   ${(bestHub / bestPg).toFixed(2)} (target >= 0.8)`);

  const audit = await new Promise((resolve) =>
    execFile(process.env.RN_HUB_BIN, ['audit', '--database-url', pg.url], (err, stdout) => resolve(stdout.trim())));
  console.log(`audit:   ${audit.split('\n').pop()}`);
  await cleanup();
}

main().catch(async (err) => {
  console.error(err);
  await cleanup().catch(() => {});
  process.exit(1);
});
