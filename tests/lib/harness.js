// The test harness every integration and end-to-end suite uses: a private
// PostgreSQL and Redis on free loopback ports in fresh temp dirs (through
// scripts/services.sh), the hub binary under test (RN_HUB_BIN) started against
// them, and small HTTP and WebSocket clients.
//
// Everything started here is registered and torn down by one node:test `after`
// hook at the root of the test file (and, as a last resort, synchronously when
// the process exits or is interrupted), so a failing test leaves nothing
// running. Temp dirs are removed afterwards.
//
// The hub's stderr (JSON log lines) is kept; when a hub dies on its own, exits
// non-zero when stopped, or printed a sanitizer report, its log tail is printed
// and the file fails. RN_TEST_VERBOSE=1 echoes hub logs live.
//
// Every wait is bounded; polling (waitFor) instead of fixed sleeps.

import { after } from 'node:test';
import { execFile, execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const SOURCE_DIR =
  process.env.RN_SOURCE_DIR ||
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HUB_BIN =
  process.env.RN_HUB_BIN || path.join(SOURCE_DIR, 'build', 'retronova-hub');
export const SERVICES = path.join(SOURCE_DIR, 'scripts', 'services.sh');
export const SUBPROTOCOL = 'retronova.v1';

const VERBOSE = process.env.RN_TEST_VERBOSE === '1';

// ---------------------------------------------------------------------------
// Resource registry and cleanup

const resources = []; // { name, stop: async () => void, stopSync: () => void }
const problems = []; // messages that make cleanup() fail the file

function register(name, stop, stopSync) {
  const r = { name, stop, stopSync, done: false };
  resources.push(r);
  return r;
}

/*
 * Registers something a test started itself, for cleanup: stop() is awaited
 * by the after hook, stopSync() runs if the process exits first.
 */
export const track = (name, stop, stopSync = () => {}) => register(name, stop, stopSync);

/*
 * The watchdog: if this process is SIGKILLed (ctest's timeout does that), no
 * hook runs. So the first time something is started, a small shell process
 * that outlives us (double fork, re-parented to init) starts polling our pid;
 * when we are gone without having cleaned up, it replays a manifest of what
 * we started, newest first: "pid PID" (SIGKILL, if it is still a
 * retronova-hub), "pg DIR", "redis DIR" (services.sh stop), "rm DIR".
 * A normal cleanup deletes the manifest, and the watchdog exits quietly.
 */
const MANIFEST = path.join(os.tmpdir(), `rn-watch-${process.pid}.list`);
let watchdogStarted = false;

export function watch(kind, arg) {
  if (!watchdogStarted) {
    watchdogStarted = true;
    fs.writeFileSync(MANIFEST, '');
    const script = `
      owner=$1 manifest=$2 services=$3
      ( while kill -0 "$owner" 2>/dev/null; do sleep 1; done
        [ -f "$manifest" ] || exit 0
        tac "$manifest" | while read -r kind arg; do
          case "$kind" in
          pid) grep -q retronova "/proc/$arg/cmdline" 2>/dev/null && kill -KILL "$arg" ;;
          pg) RN_EPHEMERAL=1 bash "$services" pg-stop "$arg" ;;
          redis) bash "$services" redis-stop "$arg" ;;
          rm) rm -rf -- "$arg" ;;
          esac
        done >/dev/null 2>&1
        rm -f "$manifest" ) </dev/null >/dev/null 2>&1 &`;
    const child = spawn('bash', ['-c', script, 'rn-watchdog', String(process.pid), MANIFEST, SERVICES], {
      detached: true,
      stdio: 'ignore',
    });
    child.unref();
  }
  fs.appendFileSync(MANIFEST, `${kind} ${arg}\n`);
}

function dropManifest() {
  if (watchdogStarted) fs.rmSync(MANIFEST, { force: true });
}

/*
 * Stops everything this file started, newest first: hubs, sockets, Redis,
 * Postgres, temp dirs. Runs as a root `after` hook; tests may also call it.
 * Throws (failing the file) when a hub misbehaved: crashed, a non-zero exit on
 * SIGTERM, or a sanitizer report in its log.
 */
export async function cleanup() {
  const errors = [];
  while (resources.length) {
    const r = resources.pop();
    if (r.done) continue;
    r.done = true;
    try {
      await r.stop();
    } catch (err) {
      errors.push(`${r.name}: ${err.message}`);
    }
  }
  dropManifest();
  errors.push(...problems.splice(0));
  if (errors.length) throw new Error(`cleanup found problems:\n${errors.join('\n')}`);
}

after(cleanup);

function cleanupSync() {
  while (resources.length) {
    const r = resources.pop();
    if (r.done) continue;
    r.done = true;
    try {
      r.stopSync();
    } catch {
      /* best effort: the process is going away */
    }
  }
  dropManifest();
}

process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    cleanupSync();
    process.exit(128 + (os.constants.signals[sig] || 0));
  });
}

// ---------------------------------------------------------------------------
// Small utilities

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/*
 * Resolves what promise resolves, or `onTimeout` (default null) after ms; the
 * timer is cleared either way, so it never keeps the process alive.
 */
export function within(promise, ms, onTimeout = null) {
  let timer;
  const t = new Promise((resolve) => {
    timer = setTimeout(() => resolve(onTimeout), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/*
 * Calls fn until it returns a truthy value (returned) or timeoutMs passes
 * (throws, naming `what` and the last value or error). fn may be async and
 * may throw: a throw counts as "not yet".
 */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${detail})`);
    }
    await sleep(intervalMs);
  }
}

/* A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/* Does something accept TCP connections on 127.0.0.1:port? */
export function portOpen(port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (v) => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/* A fresh temp dir, removed at cleanup. */
export function tmpDir(prefix = 'rn-test-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const rm = () => fs.rmSync(dir, { recursive: true, force: true });
  register(`tmp ${dir}`, async () => rm(), rm);
  watch('rm', dir);
  return dir;
}

/* Runs a program; resolves {stdout, stderr}, rejects with both on failure. */
export function run(file, args, { env, timeoutMs = 60000, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          const how = err.killed ? `killed after ${timeoutMs} ms` : `exit ${err.code}`;
          reject(new Error(`${path.basename(file)} ${args.join(' ')}: ${how}\n${stderr}${stdout}`));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
    if (input !== undefined) child.stdin.end(input);
  });
}

const serviceEnv = { RN_EPHEMERAL: '1' };
const services = (...args) => run('bash', [SERVICES, ...args], { env: serviceEnv, timeoutMs: 90000 });
const servicesSync = (...args) =>
  execFileSync('bash', [SERVICES, ...args], {
    env: { ...process.env, ...serviceEnv },
    stdio: 'ignore',
    timeout: 60000,
  });

// Starts a service on a free port, trying another port when that one was
// taken in the meantime.
async function startOnFreePort(kind, dir) {
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      await services(`${kind}-start`, dir, String(port));
      return port;
    } catch (err) {
      lastErr = err;
      await services(`${kind}-stop`, dir).catch(() => {});
    }
  }
  throw lastErr;
}

// ---------------------------------------------------------------------------
// PostgreSQL and Redis

/*
 * A private PostgreSQL (superuser and database "retronova", trust auth) in a
 * fresh temp dir. Returns { url, port, dir, stop(), start(), restart(),
 * psql(sql) }; start() brings it back on the same port and data.
 */
export async function startPostgres() {
  const dir = tmpDir('rn-pg-');
  watch('pg', dir);
  const port = await startOnFreePort('pg', dir);
  let running = true;
  const pg = {
    kind: 'postgres',
    dir,
    port,
    host: '127.0.0.1',
    user: 'retronova',
    database: 'retronova',
    url: `postgresql://retronova@127.0.0.1:${port}/retronova`,
    get running() {
      return running;
    },
    async stop() {
      await services('pg-stop', dir);
      running = false;
    },
    async start() {
      await services('pg-start', dir, String(port));
      running = true;
    },
    async restart() {
      await services('pg-restart', dir, String(port));
      running = true;
    },
    /* Runs SQL through psql; resolves its unaligned, tuples-only output, trimmed. */
    async psql(sql) {
      const { stdout } = await run('psql', ['-X', '-q', '-tA', '-v', 'ON_ERROR_STOP=1', '-d', pg.url, '-c', sql]);
      return stdout.trim();
    },
  };
  register(
    `postgres ${dir}`,
    () => services('pg-stop', dir),
    () => servicesSync('pg-stop', dir),
  );
  return pg;
}

function redisPid(dir) {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'redis.pid'), 'utf8').trim());
    return pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function processAlive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/*
 * A private Redis (nothing persisted) in a fresh temp dir. Returns { url,
 * port, dir, stop(), start(), kill() (SIGKILL), cli(...args) }.
 */
export async function startRedis() {
  const dir = tmpDir('rn-redis-');
  watch('redis', dir);
  const port = await startOnFreePort('redis', dir);
  const redis = {
    kind: 'redis',
    dir,
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      await services('redis-stop', dir);
    },
    async start() {
      await services('redis-start', dir, String(port));
    },
    /* SIGKILL: no goodbye to the clients; resolves once the process is gone. */
    async kill() {
      const pid = redisPid(dir);
      if (!pid) throw new Error(`no redis pid in ${dir}`);
      process.kill(pid, 'SIGKILL');
      await waitFor(() => !processAlive(pid), { timeoutMs: 5000, what: `redis ${pid} to die` });
      fs.rmSync(path.join(dir, 'redis.pid'), { force: true });
    },
    async cli(...args) {
      const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]);
      return stdout.trim();
    },
  };
  register(
    `redis ${dir}`,
    () => services('redis-stop', dir),
    () => servicesSync('redis-stop', dir),
  );
  return redis;
}

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

// ---------------------------------------------------------------------------
// Tokens

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/*
 * An HS256 dev token for uid, signed here with node:crypto (an implementation
 * independent of the hub's). Options: admin, ttl (s, default 3600), iat, exp,
 * secret (default hub.secret), alg (header; "none" makes an unsigned token),
 * claims (extra or overriding claims).
 */
export function token(hub, uid, { admin = false, ttl = 3600, iat, exp, secret, alg = 'HS256', claims = {} } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const payload = { sub: uid, iat: iat ?? now, exp: exp ?? now + ttl };
  if (admin) payload.admin = true;
  Object.assign(payload, claims);
  const head = b64url(JSON.stringify({ alg, typ: 'JWT' }));
  const body = b64url(JSON.stringify(payload));
  if (alg === 'none') return `${head}.${body}.`;
  const sig = crypto
    .createHmac('sha256', secret ?? hub.secret)
    .update(`${head}.${body}`)
    .digest();
  return `${head}.${body}.${b64url(sig)}`;
}

// ---------------------------------------------------------------------------
// HTTP

function httpRequest(hub, method, urlPath, { token: tok, body, headers = {}, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const hdrs = { ...headers };
    let payload;
    if (body !== undefined) {
      payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-type')) hdrs['Content-Type'] = 'application/json';
      hdrs['Content-Length'] = Buffer.byteLength(payload);
    }
    if (tok) hdrs.Authorization = `Bearer ${tok}`;
    const req = http.request(
      { host: hub.host || '127.0.0.1', port: hub.port, method, path: urlPath, headers: hdrs, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error(`${method} ${urlPath}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(payload);
  });
}

/*
 * One HTTP request to the hub on a fresh connection. Resolves { status, json
 * (undefined when the body is not JSON), text, headers }; rejects when there
 * is no answer within opts.timeoutMs (default 10 s).
 */
export const request = httpRequest;
export { httpRequest as http };

/*
 * Sends a WebSocket upgrade request by hand and reports how the server
 * answered: { status: 101, protocol } for an accepted upgrade, { status }
 * for an HTTP answer, { error } when the server closed the connection.
 */
export function rawUpgrade(hub, { path: urlPath = '/ws', protocol = SUBPROTOCOL, headers = {}, timeoutMs = 5000 } = {}) {
  return new Promise((resolve) => {
    const hdrs = {
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
      ...headers,
    };
    if (protocol) hdrs['Sec-WebSocket-Protocol'] = protocol;
    const req = http.request({ host: '127.0.0.1', port: hub.port, path: urlPath, headers: hdrs, agent: false });
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ error: 'timeout' });
    }, timeoutMs);
    req.on('upgrade', (res, socket) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: 101, protocol: res.headers['sec-websocket-protocol'] });
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      res.resume();
      resolve({ status: res.statusCode });
      req.destroy();
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      resolve({ error: err.code || err.message });
    });
    req.end();
  });
}

// ---------------------------------------------------------------------------
// WebSocket

let nextRequestId = 1000;

/*
 * Opens a WebSocket to the hub (subprotocol retronova.v1 unless
 * opts.protocol says otherwise; null for none) and resolves once open.
 * opts.headers go with the handshake; opts.token sends the auth frame and
 * waits for its "ok" (throws otherwise; the reply is client.auth).
 *
 * The client buffers every message (JSON-parsed; {raw} when not JSON):
 *   send(obj)                      JSON-encodes objects, sends strings/Buffers as they are
 *   next(predicate, timeoutMs)     first buffered/future message matching predicate
 *   request(obj, timeoutMs)        sends obj with an id (one is made if missing), resolves the reply with that id
 *   closed(timeoutMs)              resolves {code, reason} when the socket closes
 *   ping(data) / ws                the underlying ws client
 */
export function connectWs(hub, { token: tok, headers = {}, protocol = SUBPROTOCOL, path: urlPath = '/ws', timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const url = `ws://127.0.0.1:${hub.port}${urlPath}`;
    const ws = new WebSocket(url, protocol ? [protocol] : [], { headers, handshakeTimeout: timeoutMs });
    const client = makeClient(ws);
    register(
      `ws ${url}`,
      async () => client.terminate(),
      () => client.terminate(),
    );
    ws.once('unexpected-response', (req, res) => {
      reject(new Error(`WebSocket handshake refused: HTTP ${res.statusCode}`));
      ws.terminate();
    });
    ws.once('error', (err) => reject(err));
    ws.once('open', async () => {
      if (!tok) return resolve(client);
      try {
        const reply = await client.request({ type: 'auth', token: tok }, timeoutMs);
        if (reply.type !== 'ok') throw new Error(`auth refused: ${JSON.stringify(reply)}`);
        client.auth = reply;
        resolve(client);
      } catch (err) {
        client.terminate();
        reject(err);
      }
    });
  });
}

function makeClient(ws) {
  const inbox = [];
  const waiters = []; // { predicate, resolve, reject, timer }
  let closeInfo = null;
  const closeWaiters = [];

  ws.on('message', (data, isBinary) => {
    let msg;
    const text = data.toString('utf8');
    try {
      msg = JSON.parse(text);
    } catch {
      msg = { raw: text, binary: isBinary };
    }
    const i = waiters.findIndex((w) => w.predicate(msg));
    if (i >= 0) {
      const [w] = waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(msg);
    } else {
      inbox.push(msg);
    }
  });
  ws.on('error', () => {
    /* surfaced through close */
  });
  ws.on('close', (code, reason) => {
    closeInfo = { code, reason: reason.toString('utf8') };
    for (const w of waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error(`socket closed (${closeInfo.code} ${closeInfo.reason}) while waiting for ${w.what}`));
    }
    for (const w of closeWaiters.splice(0)) {
      clearTimeout(w.timer);
      w.resolve(closeInfo);
    }
  });

  const client = {
    ws,
    inbox,
    auth: null,
    get isOpen() {
      return ws.readyState === WebSocket.OPEN;
    },
    get closeInfo() {
      return closeInfo;
    },
    send(obj) {
      ws.send(typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj));
    },
    next(predicate = () => true, timeoutMs = 5000, what = predicate.toString()) {
      const i = inbox.findIndex((m) => predicate(m));
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      if (closeInfo) {
        return Promise.reject(new Error(`socket closed (${closeInfo.code} ${closeInfo.reason}) while waiting for ${what}`));
      }
      return new Promise((resolve, reject) => {
        const w = { predicate, resolve, reject, what };
        w.timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no message matching ${what} within ${timeoutMs} ms (buffered: ${JSON.stringify(inbox)})`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    request(obj, timeoutMs = 5000) {
      const msg = { ...obj };
      if (msg.id === undefined) msg.id = nextRequestId++;
      const reply = client.next((m) => m.id === msg.id, timeoutMs, `reply to ${JSON.stringify(msg).slice(0, 120)}`);
      client.send(msg);
      return reply;
    },
    closed(timeoutMs = 5000) {
      if (closeInfo) return Promise.resolve(closeInfo);
      return new Promise((resolve, reject) => {
        const w = { resolve };
        w.timer = setTimeout(() => {
          closeWaiters.splice(closeWaiters.indexOf(w), 1);
          reject(new Error(`socket still open after ${timeoutMs} ms`));
        }, timeoutMs);
        closeWaiters.push(w);
      });
    },
    close(code = 1000, reason = '') {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, reason);
    },
    terminate() {
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
    },
  };
  return client;
}

// ---------------------------------------------------------------------------
// Prometheus text

/*
 * Parses Prometheus exposition text into [{ name, labels: {k: v}, value }].
 */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      for (const lm of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}
