// Hubs on three hosts behind HAProxy, the way an operator deploys them. The
// hosts are network namespaces on a bridge (tests/lib/netns.js): "data" runs
// PostgreSQL and Redis, hub1..hub3 one hub each; HAProxy (tests/lib/haproxy.js)
// listens on loopback in the root namespace with /readyz health checks, and
// phones and the cabinet connect through it only.
//
// Mid-game (a reservation playing on arcade 1, a reservation load running on
// arcade 2) the host holding the cabinet is taken away: every process in its
// namespace is killed. Its phones reconnect through HAProxy to the other hubs
// and resume; the arcade is swept offline by its lease and comes back when the
// cabinet reconnects and finishes the game; nothing is lost or double-counted
// (audit 0, every stored event delivered, snapshots equal to the database).
//
// Needs root and `ip netns`; skips with the reason otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { HUB_BIN, applyDemo, http as request, parseMetrics, run, tmpDir, track, waitFor, within } from '../lib/harness.js';
import { createNetwork, netnsSupport } from '../lib/netns.js';
import { haproxySupport, startHaproxy } from '../lib/haproxy.js';
import { cabinet, cabinetKey, grant, nextEvent, queueVersion, reserve } from '../integration/queue_world.js';
import { assertBooksBalance } from '../integration/tickets_world.js';
import { assertAllDelivered, followingPhone, reservationLoad } from './scale_world.js';

const LEASE_MS = 1500;
const PHONES = 18;
const GAME_ARCADE = 1; // the cabinet's arcade: a game is playing there when its host goes
const LOAD_ARCADE = 2; // reservations and cancellations all along (no cabinet: nobody called)
const SOLO = 3; // Neon Racer, on arcades 1 and 2
const HUB_PORT = 8080;
const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer/;

const skip = netnsSupport() || haproxySupport();

function pgBinDir() {
  const dirs = fs.readdirSync('/usr/lib/postgresql').sort((a, b) => Number(a) - Number(b));
  return `/usr/lib/postgresql/${dirs.at(-1)}/bin`;
}

/* One GET straight to a host (not through HAProxy). */
function probe(addr, urlPath, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const req = http.get({ host: addr, port: HUB_PORT, path: urlPath, agent: false, timeout: timeoutMs }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, text: '' }));
  });
}

/* PostgreSQL and Redis on the data host, reachable from the bridge. */
async function startData(host, net) {
  const dir = tmpDir('rn-nspg-');
  const pgUser = process.env.RN_PG_USER || 'rnpg';
  execFileSync('chown', [`${pgUser}:`, dir]);
  fs.chmodSync(dir, 0o700);
  const bin = pgBinDir();
  await run('runuser', ['-u', pgUser, '--', `${bin}/initdb`, '-D', `${dir}/data`, '-U', 'retronova', '--auth=trust',
    '-E', 'UTF8', '--no-locale', '--no-sync']);
  fs.appendFileSync(`${dir}/data/pg_hba.conf`, `host all all ${net.subnet}.0/24 trust\n`);
  const pgLog = fs.openSync(path.join(dir, 'postgres.log'), 'a');
  host.exec('runuser', ['-u', pgUser, '--', `${bin}/postgres`, '-D', `${dir}/data`, '-c', `listen_addresses=${host.addr}`,
    '-c', 'port=5432', '-c', `unix_socket_directories=${dir}`, '-c', 'fsync=off', '-c', 'synchronous_commit=off',
    '-c', 'full_page_writes=off', '-c', 'max_connections=200'], { stdio: ['ignore', pgLog, pgLog] });
  host.exec('redis-server', ['--bind', host.addr, '--port', '6379', '--save', '', '--appendonly', 'no',
    '--protected-mode', 'no'], { stdio: 'ignore' });
  track(`data host ${host.ns}`, async () => host.killAll(), () => host.killAll());

  const admin = `postgresql://retronova@${host.addr}:5432/postgres`;
  await waitFor(async () => (await run(`${bin}/pg_isready`, ['-q', '-d', admin]).then(() => true, () => false)), {
    timeoutMs: 30000,
    what: 'PostgreSQL on the data host',
  });
  await run('psql', ['-X', '-q', '-d', admin, '-c', 'CREATE DATABASE retronova']);
  await waitFor(async () => (await run('redis-cli', ['-h', host.addr, '-p', '6379', 'ping'])).stdout.trim() === 'PONG', {
    what: 'Redis on the data host',
  });
  const url = `postgresql://retronova@${host.addr}:5432/retronova`;
  return {
    pg: {
      url,
      async psql(sql) {
        const { stdout } = await run('psql', ['-X', '-q', '-tA', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql]);
        return stdout.trim();
      },
    },
    redisUrl: `redis://${host.addr}:6379`,
  };
}

function hubEnv() {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('HUB_') || k === 'DATABASE_URL' || k === 'REDIS_URL') delete env[k];
  env.UBSAN_OPTIONS ||= 'print_stacktrace=1:halt_on_error=1';
  env.ASAN_OPTIONS ||= 'detect_leaks=1';
  return env;
}

/* One hub on a host, listening on the host's address. */
function startHub(host, data, secret) {
  const proc = host.exec(HUB_BIN, ['serve', '--listen', host.addr, '--port', String(HUB_PORT), '--database-url',
    data.pg.url, '--redis-url', data.redisUrl, '--jwt-hs256-secret', secret, '--cabinet-lease-ms', String(LEASE_MS),
    '--offline-grace-ms', '1000'], { env: hubEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  const hub = { host, proc, log: '' };
  proc.stderr.on('data', (d) => {
    hub.log += d;
    if (hub.log.length > 400000) hub.log = hub.log.slice(-200000);
  });
  hub.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  hub.stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const info = await within(hub.exited, 15000);
    if (!info) proc.kill('SIGKILL');
    return info;
  };
  track(`hub on ${host.ns}`, async () => {
    await hub.stop();
  }, () => proc.kill('SIGKILL'));
  return hub;
}

async function connectionsOn(hub) {
  const res = await probe(hub.host.addr, '/metrics');
  if (res.status !== 200) return null;
  const out = {};
  for (const s of parseMetrics(res.text)) if (s.name === 'rn_connections') out[s.labels.kind] = s.value;
  return out;
}

test('a whole host taken away mid-game behind HAProxy: phones resume elsewhere, the arcade recovers, nothing lost', { skip: skip || false, timeout: 360000 }, async () => {
  const net = createNetwork();
  const dataHost = net.addHost('data');
  const hubHosts = [1, 2, 3].map((i) => net.addHost(`hub${i}`));
  const data = await startData(dataHost, net);
  const { pg } = data;
  await applyDemo(pg);
  const uids = Array.from({ length: PHONES }, (_, i) => `host-${i}`);
  for (const uid of [...uids, 'demo-alice']) await grant(pg, uid, 1000);
  const key = await cabinetKey(pg, GAME_ARCADE);

  const secret = crypto.randomBytes(24).toString('hex');
  const hubs = hubHosts.map((h) => startHub(h, data, secret));
  await Promise.all(hubs.map((h) =>
    waitFor(async () => (await probe(h.host.addr, '/readyz')).status === 200, { timeoutMs: 60000, what: `${h.host.name} ready` })));
  const hp = await startHaproxy(hubHosts.map((h) => ({ name: h.name, addr: h.addr, port: HUB_PORT })));
  await hp.waitStatus({ hub1: 'UP', hub2: 'UP', hub3: 'UP' });
  const target = { port: hp.port, secret }; // what the harness's clients need: HAProxy's port and the token secret

  // phones (subscribed to the game's arcade) and the cabinet, all through HAProxy
  const phones = await Promise.all([...uids, 'demo-alice'].map((uid) => followingPhone(target, uid, { arcade: GAME_ARCADE })));
  const alice = phones.at(-1);
  let cab = await cabinet(target, key);
  const where = await Promise.all(hubs.map(connectionsOn));
  const victimIndex = where.findIndex((c) => c?.cabinet === 1);
  assert.ok(victimIndex >= 0, `the cabinet is on one hub: ${JSON.stringify(where)}`);
  const victim = hubs[victimIndex];
  assert.ok(where[victimIndex].player > 0, `phones on the cabinet's host too: ${JSON.stringify(where)}`);
  console.log(`# connections per host before: ${JSON.stringify(where)}; taking ${victim.host.name} away`);

  // mid-game: alice's reservation is playing on arcade 1; the load runs on arcade 2
  const baseline = 0;
  const load = reservationLoad(target, uids, { arcade: LOAD_ARCADE, game: SOLO, pauseMs: 30 });
  const mine = (await reserve(target, 'demo-alice', { arcade: GAME_ARCADE, game: SOLO })).json.reservation;
  const turn = await nextEvent(alice.clients.at(-1), 'your_turn', (m) => m.reservation_id === mine.id, 15000);
  await cab.queue((m) => m.called?.reservation_id === mine.id, 15000);
  assert.equal((await cab.request({ type: 'unlock', code: turn.code })).type, 'ok');
  assert.equal(await pg.psql(`SELECT status FROM reservations WHERE id = ${mine.id}`), 'playing');
  await waitFor(() => load.stats.reserved >= 30, { timeoutMs: 60000, what: 'the load to run' });

  // the host goes: every process in its namespace, without a word
  const vBefore = await queueVersion(pg, GAME_ARCADE);
  const t0 = Date.now();
  victim.host.killAll();
  await victim.exited;
  await cab.closed(15000);
  const offline = await waitFor(async () => (await pg.psql(`SELECT status FROM arcades WHERE id = ${GAME_ARCADE}`)) === 'offline', {
    timeoutMs: 8 * LEASE_MS + 10000,
    what: 'the arcade swept offline by its lease',
  }).then(() => Date.now() - t0);
  const survivor = phones.find((p) => p.drops === 0);
  await waitFor(() => survivor.snapshots().some((m) => m.v > vBefore && m.status === 'offline'), {
    timeoutMs: 10000,
    what: 'a phone to see the arcade offline',
  });
  await hp.waitStatus({ [victim.host.name]: 'DOWN' });
  const dropped = phones.filter((p) => p.drops > 0);
  console.log(`# swept offline ${offline} ms after the kill; ${dropped.length}/${phones.length} phones were on that host`);
  assert.ok(dropped.length > 0, 'some phones lost their hub');
  await Promise.all(dropped.map((p) => p.reconnecting));
  const reserved = load.stats.reserved;
  await waitFor(() => load.stats.reserved >= reserved + 30, { timeoutMs: 60000, what: 'the load to go on on two hosts' });

  // the cabinet comes back through HAProxy (to another host) and finishes the game
  cab = await cabinet(target, key);
  await waitFor(async () => (await pg.psql(`SELECT status FROM arcades WHERE id = ${GAME_ARCADE}`)) !== 'offline', {
    timeoutMs: 15000,
    what: 'the arcade back online',
  });
  const over = await cab.request({ type: 'game_over', reservation_id: mine.id, scores: [4242] }, 15000);
  assert.equal(over.type, 'ok', JSON.stringify(over));
  await nextEvent(alice.clients.at(-1), 'score', (m) => m.reservation_id === mine.id, 15000).catch(() => null);
  const stats = await load.stop();
  console.log(`# load: ${stats.reserved} reservations, ${stats.cancelled} cancels, ${stats.retries} retried requests`);
  assert.equal(await pg.psql(`SELECT status FROM reservations WHERE id = ${mine.id}`), 'completed');

  // nothing lost: every stored event reached its phone (resume after a reconnect)
  for (const p of phones) await assertAllDelivered(pg, p, baseline);
  let swept = 0;
  for (const h of hubs.filter((x) => x !== victim)) {
    const res = await probe(h.host.addr, '/metrics');
    swept += parseMetrics(res.text).find((x) => x.name === 'rn_unacked_sweep_events_total')?.value || 0;
  }
  console.log(`# every stored event delivered; the unacked sweep handed on ${swept} events unacked after 5 s (e.g. committed by the dead hub, never published)`);
  assert.ok(alice.received().has(turn.event_id));
  // nothing double-counted: every load reservation cancelled once, the books balance
  assert.equal(await pg.psql(`SELECT count(*) FROM reservations WHERE status NOT IN ('cancelled', 'completed')`), '0');
  assert.equal(Number(await pg.psql("SELECT count(*) FROM reservations WHERE status = 'cancelled'")), stats.cancelled);
  await assertBooksBalance(pg);
  // snapshots equal the database, through HAProxy and on every phone
  for (const arcade of [GAME_ARCADE, LOAD_ARCADE]) {
    const dbV = await queueVersion(pg, arcade);
    const rest = await request(target, 'GET', `/api/v1/arcades/${arcade}/queue`);
    assert.equal(rest.status, 200, rest.text);
    assert.equal(rest.json.v, dbV, `arcade ${arcade}: REST view is the database's`);
  }
  const dbV = await queueVersion(pg, GAME_ARCADE);
  for (const p of phones) await waitFor(() => p.lastV() === dbV, { what: `${p.uid}'s snapshot at v${dbV}` });

  // the survivors drain cleanly; nobody printed a sanitizer report
  for (const p of phones) p.stopped = true;
  for (const h of hubs.filter((x) => x !== victim)) {
    const info = await h.stop();
    assert.deepEqual(info, { code: 0, signal: null }, `${h.host.name}:\n${h.log.slice(-3000)}`);
  }
  for (const h of hubs) assert.ok(!SANITIZER_RE.test(h.log), `${h.host.name} printed a sanitizer report:\n${h.log.slice(-3000)}`);
});
