// hub: the hub process under test (RN_HUB_BIN): starting it against a
// PostgreSQL and Redis from servers.js, stopping and killing it, its logs,
// and the exit checks. The hub's stderr (JSON log lines) is kept; when a hub
// dies on its own, exits non-zero when stopped, or printed a sanitizer
// report, its log tail is printed and the file fails at cleanup.
// RN_TEST_VERBOSE=1 echoes hub logs live.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { sleep, within } from './assert.js';
import { request as httpRequest } from './clients.js';
import { SOURCE_DIR, freePort, problems, register, run, watch } from './servers.js';

export const HUB_BIN =
  process.env.RN_HUB_BIN || path.join(SOURCE_DIR, 'build', 'retronova-hub');

const VERBOSE = process.env.RN_TEST_VERBOSE === '1';

// ---------------------------------------------------------------------------
// The hub

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer/;

function hubEnv(extra) {
  const env = { ...process.env };
  // The hub takes every flag from the environment too: make sure nothing from
  // the developer's shell leaks into a test.
  for (const k of Object.keys(env)) {
    if (k.startsWith('HUB_') || k === 'DATABASE_URL' || k === 'REDIS_URL') delete env[k];
  }
  env.UBSAN_OPTIONS ||= 'print_stacktrace=1:halt_on_error=1';
  env.ASAN_OPTIONS ||= 'detect_leaks=1';
  return { ...env, ...extra };
}

/*
 * The abuse limits out of the way: suites that are not about limits make
 * thousands of requests from 127.0.0.1. A suite about limits passes
 * startHub({ limits: true }) for the hub's real defaults (and env to tune).
 */
const NO_LIMITS = Object.fromEntries(
  ['REST_IP', 'REST_USER', 'WS_IP', 'WS_USER', 'CABINET_KEY', 'PROMO', 'TOKEN'].map((k) => [`HUB_LIMIT_${k}`, '0']),
);

/*
 * Starts RN_HUB_BIN serve against pg and redis with a random HS256 secret, on
 * a free port; resolves once GET /healthz is 200 and, with pg, once /readyz
 * says postgres is up (the hub listens before its migrations ran:
 * opts.waitPg = false for a hub started while pg is down). opts.debugRoutes adds
 * --debug-routes (only a test build, -DRN_DEBUG_ROUTES=ON, accepts it).
 * opts.args are appended to the command line; opts.env is added to its
 * environment; opts.limits keeps the abuse limits on (see NO_LIMITS).
 * Returns { url, wsUrl, port, secret, proc, stop(), kill(), exited, logs() }.
 */
export async function startHub({ pg, redis, env = {}, args = [], debugRoutes = false, secret, readyTimeoutMs = 30000, limits = false, host, waitPg = true } = {}) {
  if (!limits) env = { ...NO_LIMITS, ...env };
  if (!fs.existsSync(HUB_BIN)) throw new Error(`hub binary not found: ${HUB_BIN} (set RN_HUB_BIN)`);
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startHubOnce({ pg, redis, env, args, debugRoutes, secret, readyTimeoutMs, host, waitPg });
    } catch (err) {
      lastErr = err;
      if (!err.portTaken) break;
    }
  }
  throw lastErr;
}

async function startHubOnce({ pg, redis, env, args, debugRoutes, secret, readyTimeoutMs, host = '127.0.0.1', waitPg }) {
  const port = await freePort();
  secret ||= crypto.randomBytes(24).toString('hex');
  // opts.host: the address the hub binds (--listen) and every helper talks to.
  const hostUrl = host.includes(':') ? `[${host}]` : host;
  const argv = ['serve', '--listen', host, '--port', String(port), '--jwt-hs256-secret', secret];
  if (pg) argv.push('--database-url', pg.url);
  if (redis) argv.push('--redis-url', redis.url);
  if (debugRoutes) argv.push('--debug-routes');
  argv.push(...args);

  const proc = spawn(HUB_BIN, argv, { env: hubEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  if (proc.pid) watch('pid', proc.pid);
  const log = [];
  const keep = (prefix) => (chunk) => {
    const text = chunk.toString();
    log.push(text);
    if (log.length > 4000) log.splice(0, log.length - 4000);
    if (VERBOSE) process.stderr.write(text.replace(/^(?=.)/gm, `[hub ${port}${prefix}] `));
  };
  proc.stdout.on('data', keep(' out'));
  proc.stderr.on('data', keep(''));

  let stopping = false;
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  const logs = () => log.join('');
  const tail = (n = 60) => logs().split('\n').slice(-n).join('\n');

  const hub = {
    port,
    host,
    secret,
    proc,
    pid: proc.pid,
    url: `http://${hostUrl}:${port}`,
    wsUrl: `ws://${hostUrl}:${port}/ws`,
    exited,
    logs,
    tail,
    get exitInfo() {
      return exitInfo;
    },
    /*
     * SIGTERM, then waits for the exit (SIGKILL and throw after timeoutMs).
     * Resolves the exit code (null when a signal ended it: see exitInfo).
     */
    async stop({ timeoutMs = 10000 } = {}) {
      stopping = true;
      if (!exitInfo) proc.kill('SIGTERM');
      const info = await within(exited, timeoutMs);
      if (!info) {
        proc.kill('SIGKILL');
        await exited;
        throw new Error(`hub did not exit within ${timeoutMs} ms of SIGTERM\n${tail()}`);
      }
      return info.code;
    },
    async kill() {
      stopping = true;
      if (!exitInfo) proc.kill('SIGKILL');
      return exited;
    },
  };

  register(
    `hub :${port}`,
    async () => {
      const died = exitInfo && !stopping;
      let code = exitInfo ? exitInfo.code : null;
      if (!exitInfo) {
        stopping = true;
        code = await hub.stop();
      }
      const report = [];
      if (died) report.push(`hub :${port} died during the test (${JSON.stringify(exitInfo)})`);
      else if (!hub._killedOnPurpose && exitInfo && exitInfo.signal === null && code !== 0 && !hub.allowNonZeroExit)
        report.push(`hub :${port} exited ${code} on SIGTERM`);
      if (SANITIZER_RE.test(logs())) report.push(`hub :${port} printed a sanitizer report`);
      if (report.length) {
        process.stderr.write(`---- hub :${port} log tail ----\n${tail(120)}\n----\n`);
        problems.push(...report);
      }
    },
    () => {
      if (!exitInfo) proc.kill('SIGKILL');
    },
  );
  const origKill = hub.kill;
  hub.kill = async () => {
    hub._killedOnPurpose = true;
    return origKill();
  };

  // Wait for /healthz, or for the process to give up.
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exitInfo) {
      const text = logs();
      const err = new Error(`hub exited before answering /healthz (${JSON.stringify(exitInfo)}):\n${tail()}`);
      err.portTaken = /address already in use|EADDRINUSE|bind/i.test(text);
      stopping = true;
      throw err;
    }
    try {
      const res = await httpRequest(hub, 'GET', waitPg && pg ? '/readyz' : '/healthz', { timeoutMs: 1000 });
      if (res.status === 200 || (waitPg && pg && res.json?.postgres === 'up')) return hub;
    } catch {
      /* not listening yet */
    }
    if (Date.now() >= deadline) {
      throw new Error(`hub did not answer /healthz within ${readyTimeoutMs} ms:\n${tail()}`);
    }
    await sleep(50);
  }
}

/*
 * Applies the migrations (retronova-hub migrate) and storage/demo.sql to pg.
 */
export async function applyDemo(pg) {
  await run(HUB_BIN, ['migrate', '--database-url', pg.url], { env: hubEnv({}) });
  const demo = path.join(SOURCE_DIR, 'storage', 'demo.sql');
  if (!fs.existsSync(demo)) throw new Error(`${demo} is missing`);
  await run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', pg.url, '-f', demo]);
}
