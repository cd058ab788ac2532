// --workers 2: a supervisor and two hub processes on one port. A worker
// killed with kill -9 while phones are connected, subscribed and receiving
// the events of a reservation load is restarted in its slot; its phones
// reconnect to the same port and resume with nothing lost; /metrics names the
// worker that answered; SIGTERM to the supervisor drains every worker and it
// exits 0. A worker that cannot start stops the supervisor (exit 1) after a
// few attempts instead of looping forever.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { HUB_BIN, waitFor, within } from '../lib/harness.js';
import { ARCADE, grant, queueVersion, startHub, startWorld } from '../integration/queue_world.js';
import {
  assertAllDelivered,
  childPids,
  followingPhone,
  reservationLoad,
  whoAnswered,
} from './scale_world.js';

const PHONES = 24;

let world;

before(async () => {
  world = await startWorld();
});

/* Fresh connections until every pid in pids has answered /metrics. */
async function answeredBy(hub, pids, what) {
  const seen = new Map();
  await waitFor(
    async () => {
      const w = await whoAnswered(hub);
      if (w) seen.set(w.pid, w);
      return pids.every((pid) => seen.has(pid));
    },
    { timeoutMs: 30000, intervalMs: 20, what },
  );
  return seen;
}

test('kill -9 of a worker under load: restarted, its phones resume with nothing lost; SIGTERM drains all', async () => {
  const { pg, redis } = world;
  const hub = await startHub({ pg, redis, args: ['--workers', '2'] });
  const workers = await waitFor(() => (childPids(hub.pid).length === 2 ? childPids(hub.pid) : null), {
    what: 'two workers',
  });
  const first = await answeredBy(hub, workers, 'both workers to answer /metrics');
  assert.deepEqual([...new Set([...first.values()].map((w) => w.index))].sort(), [0, 1], 'slots 0 and 1');

  const uids = Array.from({ length: PHONES }, (_, i) => `worker-${i}`);
  for (const uid of uids) await grant(world.pg, uid, 1000);
  const baseline = Number(await pg.psql('SELECT coalesce(max(id), 0) FROM user_events'));
  const phones = await Promise.all(uids.map((uid) => followingPhone(hub, uid)));

  const load = reservationLoad(hub, uids);
  await waitFor(() => load.stats.reserved >= 40, { timeoutMs: 30000, what: 'load to be running' });
  const victim = workers[0];
  const victimIndex = first.get(victim).index;
  process.kill(victim, 'SIGKILL');
  const t0 = Date.now();
  const replaced = await waitFor(
    () => {
      const now = childPids(hub.pid);
      return now.length === 2 && !now.includes(victim) ? now.find((p) => !workers.includes(p)) : null;
    },
    { timeoutMs: 20000, intervalMs: 20, what: 'the killed worker to be replaced' },
  );
  console.log(`# worker ${victim} (slot ${victimIndex}) replaced by ${replaced} after ${Date.now() - t0} ms`);
  const stillThere = workers.find((p) => p !== victim);
  assert.ok(childPids(hub.pid).includes(stillThere), 'the other worker was left alone');
  const reserved = load.stats.reserved;
  await waitFor(() => load.stats.reserved >= reserved + 40, { timeoutMs: 30000, what: 'load to go on after the kill' });
  const stats = await load.stop();

  // the new worker serves, in the dead one's slot, started a second time
  const after = await answeredBy(hub, [replaced, stillThere], 'the new worker to answer /metrics');
  assert.equal(after.get(replaced).index, victimIndex);
  assert.equal(after.get(replaced).starts, 2);

  // every phone that was on the dead worker came back; nothing was lost
  const dropped = phones.filter((p) => p.drops > 0);
  console.log(`# ${stats.reserved} reservations, ${stats.cancelled} cancels, ${stats.retries} retried requests; ` +
    `${dropped.length}/${PHONES} phones were on the killed worker`);
  assert.ok(dropped.length > 0, 'some phones were on the killed worker');
  assert.ok(dropped.length < PHONES, 'some phones were on the other worker');
  await Promise.all(dropped.map((p) => p.reconnecting));
  for (const p of phones) await assertAllDelivered(pg, p, baseline);
  const dbV = await queueVersion(pg, ARCADE);
  for (const p of phones) await waitFor(() => p.lastV() === dbV, { what: `${p.uid}'s snapshot at v${dbV}` });
  assert.equal(await pg.psql("SELECT count(*) FROM reservations WHERE status = 'waiting'"), '0', 'every reservation cancelled once');

  // SIGTERM to the supervisor: every worker drains (4000 to every phone), exit 0
  const live = childPids(hub.pid);
  const closes = Promise.all(phones.map((p) => p.clients.at(-1).closed(15000)));
  const code = await hub.stop({ timeoutMs: 20000 });
  assert.equal(code, 0, `supervisor exit ${JSON.stringify(hub.exitInfo)}\n${hub.tail()}`);
  const codes = (await closes).map((c) => c.code);
  assert.deepEqual([...new Set(codes)], [4000], 'every socket closed with 4000');
  for (const pid of live) assert.ok(!childPids(hub.pid).includes(pid), `worker ${pid} is gone`);
  assert.match(hub.logs(), /"msg":"worker died".*"signal":9/, 'the supervisor logged the death');
});

test('a worker that cannot start: the supervisor gives up and exits 1', async () => {
  // the port is taken by a socket without SO_REUSEPORT: no worker can bind it
  const blocker = net.createServer();
  await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = blocker.address().port;
  const proc = spawn(HUB_BIN, ['serve', '--workers', '2', '--port', String(port), '--database-url', world.pg.url,
    '--redis-url', world.redis.url, '--jwt-hs256-secret', 'x'.repeat(32)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => (log += d));
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const info = await within(exited, 60000);
  if (!info) proc.kill('SIGKILL');
  blocker.close();
  assert.deepEqual(info, { code: 1, signal: null }, log.slice(-3000));
  assert.match(log, /worker keeps failing at start/);
  assert.ok((log.match(/"msg":"worker started"/g) || []).length >= 5, 'it retried before giving up');
});
