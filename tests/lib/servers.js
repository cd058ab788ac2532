// servers: the processes a suite runs against and their lifetime. A private
// PostgreSQL and Redis on free loopback ports in fresh temp dirs (through
// scripts/services.sh), a Redis Cluster of such nodes, free ports, temp dirs,
// running a program, and the registry that tears everything down.
//
// Everything started here (and by hub.js / clients.js, which register here
// too) is torn down, newest first, by one node:test `after` hook at the root
// of the test file; as a last resort synchronously when the process exits or
// is interrupted, and by a watchdog when it is SIGKILLed. Temp dirs are
// removed afterwards.

import { after } from 'node:test';
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './assert.js';

export const SOURCE_DIR =
  process.env.RN_SOURCE_DIR ||
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SERVICES = path.join(SOURCE_DIR, 'scripts', 'services.sh');

// ---------------------------------------------------------------------------
// Resource registry and cleanup

const resources = []; // { name, stop: async () => void, stopSync: () => void }
export const problems = []; // messages that make cleanup() fail the file

export function register(name, stop, stopSync) {
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
// Ports, temp dirs, programs

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

/*
 * A Redis Cluster of Debian's redis-server on loopback: `masters` masters
 * with `replicas` replicas each, every node in its own temp dir (stopped
 * like startRedis's, by services.sh redis-stop DIR), a short
 * cluster-node-timeout so that a replica takes over about a second after its
 * master died. Resolves once every node says cluster_state:ok, knows every
 * node, and every replica is in sync. Returns { url (redis-cluster://...),
 * nodes: [{ port, dir, pid, kill(), freeze(), thaw(), cli(...args) }],
 * cli(port, ...args), ownerOf(key) (the port of the master serving key, as a
 * live node sees it), masters() (with each one's live replicas) }.
 */
export async function startRedisCluster({ masters = 3, replicas = 1, nodeTimeoutMs = 1000 } = {}) {
  const cli = async (port, ...args) =>
    (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args])).stdout.trim();
  const nodes = [];
  for (let i = 0; i < masters * (1 + replicas); i++) {
    const dir = tmpDir('rn-redis-cluster-');
    watch('redis', dir);
    const [port, busPort] = [await freePort(), await freePort()];
    await run('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--daemonize', 'yes',
      '--pidfile', path.join(dir, 'redis.pid'), '--logfile', path.join(dir, 'redis.log'), '--dir', dir,
      '--save', '', '--appendonly', 'no', '--cluster-enabled', 'yes', '--cluster-port', String(busPort),
      '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(nodeTimeoutMs)]);
    const node = {
      port,
      dir,
      get pid() {
        return redisPid(dir);
      },
      cli: (...args) => cli(port, ...args),
      /* SIGSTOP (a frozen host: no reset, no answer) / SIGCONT. */
      frozen: false,
      freeze() {
        process.kill(redisPid(dir), 'SIGSTOP');
        node.frozen = true;
      },
      thaw() {
        process.kill(redisPid(dir), 'SIGCONT');
        node.frozen = false;
      },
      /* SIGKILL; resolves once the process is gone. */
      async kill() {
        const pid = redisPid(dir);
        process.kill(pid, 'SIGKILL');
        await waitFor(() => !processAlive(pid), { timeoutMs: 5000, what: `redis ${pid} to die` });
        fs.rmSync(path.join(dir, 'redis.pid'), { force: true });
      },
    };
    register(`redis cluster node ${dir}`, () => services('redis-stop', dir), () => servicesSync('redis-stop', dir));
    nodes.push(node);
  }
  for (const n of nodes) await waitFor(() => n.cli('PING').then((r) => r === 'PONG'), { what: `redis :${n.port}` });
  await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`),
    '--cluster-replicas', String(replicas), '--cluster-yes']);
  const all = nodes.length;
  await waitFor(
    async () => {
      for (const n of nodes) {
        const info = await n.cli('CLUSTER', 'INFO');
        if (!/cluster_state:ok/.test(info) || !info.includes(`cluster_known_nodes:${all}`)) return false;
        const repl = await n.cli('INFO', 'replication');
        if (/role:slave/.test(repl) && !/master_link_status:up/.test(repl)) return false;
      }
      return true;
    },
    { timeoutMs: 30000, intervalMs: 100, what: 'the cluster to be ok on every node, replicas in sync' },
  );
  const live = () => nodes.find((n) => n.pid && processAlive(n.pid) && !n.frozen);
  /*
   * [{ port, slots: [[from, to], ...], replicas }] of the masters a live
   * (not frozen) node knows, failed ones left out; replicas counts the
   * replicas not marked failing.
   */
  const mastersNow = async () => {
    const node = nodes.find((n) => n.pid && processAlive(n.pid) && !n.frozen);
    const lines = (await node.cli('CLUSTER', 'NODES')).split('\n').map((l) => l.split(' '));
    const ok = (f) => !f[2].includes('fail');
    return lines.filter((f) => f[2].includes('master') && ok(f)).map((f) => ({
      port: Number(f[1].split('@')[0].split(':').pop()),
      slots: f.slice(8).filter((s) => /^\d/.test(s)).map((s) => s.split('-').map(Number)).map(([a, b]) => [a, b ?? a]),
      replicas: lines.filter((r) => r[2].includes('slave') && ok(r) && r[3] === f[0]).length,
    }));
  };
  return {
    url: `redis-cluster://${nodes.slice(0, 3).map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    nodes,
    cli,
    masters: mastersNow,
    async ownerOf(key) {
      const slot = Number(await live().cli('CLUSTER', 'KEYSLOT', key));
      const m = (await mastersNow()).find((x) => x.slots.some(([a, b]) => slot >= a && slot <= b));
      return m ? m.port : null;
    },
  };
}
