// Redis Cluster (issue 12, point 3): two hubs on a 3-master / 3-replica
// cluster of Debian's redis-server (REDIS_URL=redis-cluster://...), phones on
// hub B, reservations through hub A. Every change reaches hub B's phones by
// sharded pub/sub (SPUBLISH on the master owning the channel's slot, never a
// plain PUBLISH). Then the master serving the busiest channel (the arcade's
// queue) is killed with kill -9 mid-run: its replica is promoted, both hubs
// follow (the bus comes back up, the channels are subscribed on the new
// master), delivery resumes through the cluster, and nothing is lost: every
// stored event delivered, snapshots at the database's version.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { parseMetrics, http, startRedisCluster, waitFor } from '../lib/harness.js';
import { ARCADE, grant, queueVersion, startHub, startWorld } from '../integration/queue_world.js';
import { assertAllDelivered, dbEventIds, followingPhone, reservationLoad } from './scale_world.js';

const PHONES = 12;
const BUSY = `rn:arcade:${ARCADE}`; // every reservation changes this queue
// each phone acks every event, in bursts after a catch-up: above the default inbound limit (50/s, close 4008)
const args = ['--msg-rate', '1000'];

let world;
let cluster;

before(async () => {
  [world, cluster] = await Promise.all([startWorld(), startRedisCluster({ masters: 3, replicas: 1 })]);
});

async function metric(hub, name) {
  const res = await http(hub, 'GET', '/metrics', { timeoutMs: 3000 });
  return parseMetrics(res.text).find((s) => s.name === name)?.value;
}

/* calls of a command on one node (INFO commandstats), 0 if never called */
async function calls(port, cmd) {
  const text = await cluster.cli(port, 'INFO', 'commandstats');
  const m = text.match(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`));
  return m ? Number(m[1]) : 0;
}

async function total(ports, cmd) {
  let n = 0;
  for (const port of ports) n += await calls(port, cmd);
  return n;
}

test('two hubs on a Redis Cluster: sharded pub/sub, a master killed mid-run, nothing lost', async () => {
  const { pg } = world;
  const redis = { url: cluster.url };
  const [hubA, hubB] = await Promise.all([startHub({ pg, redis, args }), startHub({ pg, redis, args })]);
  for (const h of [hubA, hubB]) {
    await waitFor(async () => (await metric(h, 'rn_bus_up')) === 1, { timeoutMs: 20000, what: `bus up on :${h.port}` });
  }

  const uids = Array.from({ length: PHONES }, (_, i) => `cluster-${i}`);
  for (const uid of uids) await grant(pg, uid, 1000);
  const baseline = Number(await pg.psql('SELECT coalesce(max(id), 0) FROM user_events'));
  const phones = await Promise.all(uids.map((uid) => followingPhone(hubB, uid)));
  // each private event's first arrival on hub B, against its commit time (at_ms)
  const arrivals = new Map();
  const closes = [];
  for (const p of phones) {
    p.clients[0].ws.on('close', (code) => closes.push(code));
    p.clients[0].ws.on('message', (data) => {
      const t = Date.now();
      const m = JSON.parse(data.toString('utf8'));
      if (m.event_id && m.at_ms && !arrivals.has(m.event_id)) arrivals.set(m.event_id, { at: m.at_ms, t });
    });
  }
  const load = reservationLoad(hubA, uids);
  await waitFor(() => load.stats.reserved >= 20, { timeoutMs: 30000, what: 'load to be running' });

  // Sharded pub/sub only: SPUBLISH on the masters, no plain PUBLISH anywhere; hub B's
  // channels (the arcade's queue among them) are shard channels of the master owning them.
  const masters = await cluster.masters();
  assert.equal(masters.length, 3, 'three masters');
  const victim = await cluster.ownerOf(BUSY);
  const ports = cluster.nodes.map((n) => n.port);
  assert.ok((await total(ports, 'spublish')) > 0, 'SPUBLISH was used');
  assert.equal(await total(ports, 'publish'), 0, 'no plain PUBLISH');
  assert.ok((await cluster.cli(victim, 'PUBSUB', 'SHARDCHANNELS')).split('\n').includes(BUSY),
    `${BUSY} is a shard channel of its master :${victim}`);
  const withChannels = [];
  for (const m of masters) if ((await cluster.cli(m.port, 'PUBSUB', 'SHARDCHANNELS')) !== '') withChannels.push(m.port);
  console.log(`# masters ${masters.map((m) => m.port).join(', ')}; shard channels on ${withChannels.join(', ')}; ` +
    `${BUSY} on :${victim}`);

  // kill -9 the master of the busy channel, mid-run
  const before = load.stats.reserved;
  const victimNode = cluster.nodes.find((n) => n.port === victim);
  const t0 = Date.now();
  await victimNode.kill();
  await waitFor(async () => {
    const owner = await cluster.ownerOf(BUSY);
    return owner !== null && owner !== victim;
  }, { timeoutMs: 20000, intervalMs: 100, what: 'a replica promoted for the busy slot' });
  const promoted = await cluster.ownerOf(BUSY);
  const tPromoted = Date.now() - t0;
  for (const h of [hubA, hubB]) {
    await waitFor(async () => (await metric(h, 'rn_bus_up')) === 1, { timeoutMs: 20000, intervalMs: 50, what: `bus up again on :${h.port}` });
  }
  const tUp = Date.now() - t0;
  console.log(`# killed :${victim}; :${promoted} promoted after ${tPromoted} ms; both hubs' bus up after ${tUp} ms`);
  const tKill = t0;

  // the load goes on, and the busy channel is carried by the promoted master now
  const spubBefore = await calls(promoted, 'spublish');
  await waitFor(() => load.stats.reserved >= before + 20, { timeoutMs: 30000, what: 'load to go on after the kill' });
  await waitFor(async () => (await calls(promoted, 'spublish')) > spubBefore, { timeoutMs: 10000, what: 'SPUBLISH on the promoted master' });
  assert.ok((await cluster.cli(promoted, 'PUBSUB', 'SHARDCHANNELS')).split('\n').includes(BUSY),
    `${BUSY} re-subscribed on :${promoted}`);
  const stats = await load.stop();
  console.log(`# ${stats.reserved} reservations, ${stats.cancelled} cancels, ${stats.retries} retried requests`);

  // nothing lost: every stored event reached its phone, every snapshot the database's version
  for (const p of phones) await assertAllDelivered(pg, p, baseline);
  const dbV = await queueVersion(pg, ARCADE);
  for (const p of phones) await waitFor(() => p.lastV() === dbV, { what: `${p.uid}'s snapshot at v${dbV}` });
  assert.equal(phones.filter((p) => p.drops > 0).length, 0, `no phone lost its socket (hub B stayed up): ${closes}`);

  // commit -> hub B phone during the failover (kill to bus up): the dead shard's channels
  // went through the PostgreSQL fallback, the others through the cluster
  const during = [...arrivals.values()].filter((a) => a.at >= tKill && a.at <= tKill + tUp).map((a) => a.t - a.at);
  const sorted = during.sort((a, b) => a - b);
  const p99 = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)];
  console.log(`# during the failover (${tUp} ms): ${sorted.length} private events, commit -> hub B phone ` +
    `p50 ${sorted[Math.floor(sorted.length / 2)]} ms, p99 ${p99} ms, max ${sorted.at(-1)} ms`);
  assert.ok(sorted.length >= 10, `${sorted.length} events committed during the failover`);
  assert.ok(p99 < 1000, `p99 ${p99} ms during the failover`);
  assert.equal(await total(cluster.nodes.filter((n) => n.port !== victim).map((n) => n.port), 'publish'), 0, 'still no plain PUBLISH');
  for (const h of [hubA, hubB]) assert.match(h.logs(), /Redis Cluster: lost master/, `hub :${h.port} saw the master go`);
  for (const h of [hubA, hubB]) assert.equal(await h.stop(), 0, `hub :${h.port} exits 0`);
});

/*
 * Moves one slot from its master to another by hand (CLUSTER SETSLOT, its
 * keys with MIGRATE), as a resharding does.
 */
async function moveSlot(slot, fromPort, toPort) {
  const [fromId, toId] = [await cluster.cli(fromPort, 'CLUSTER', 'MYID'), await cluster.cli(toPort, 'CLUSTER', 'MYID')];
  await cluster.cli(toPort, 'CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId);
  await cluster.cli(fromPort, 'CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId);
  for (;;) {
    const keys = (await cluster.cli(fromPort, 'CLUSTER', 'GETKEYSINSLOT', String(slot), '100')).split('\n').filter(Boolean);
    if (!keys.length) break;
    await cluster.cli(fromPort, 'MIGRATE', '127.0.0.1', String(toPort), '', '0', '5000', 'KEYS', ...keys);
  }
  for (const m of await cluster.masters()) await cluster.cli(m.port, 'CLUSTER', 'SETSLOT', String(slot), 'NODE', toId);
}

test('a slot moved under load (resharding): its channels follow, rate-limit buckets share one slot', async () => {
  const { pg } = world;
  const redis = { url: cluster.url };
  // hub A with the abuse limits on (high enough for the load): its EVALSHA names two keys
  const env = { HUB_LIMIT_REST_IP: '1000000/60', HUB_LIMIT_REST_USER: '1000000/60' };
  const [hubA, hubB] = await Promise.all([startHub({ pg, redis, args, limits: true, env }), startHub({ pg, redis, args })]);
  for (const h of [hubA, hubB]) {
    await waitFor(async () => (await metric(h, 'rn_bus_up')) === 1, { timeoutMs: 20000, what: `bus up on :${h.port}` });
  }
  const local0 = (await metric(hubA, 'rn_limit_local_total')) ?? 0; // before the bus was up
  const uids = Array.from({ length: PHONES }, (_, i) => `reshard-${i}`);
  for (const uid of uids) await grant(pg, uid, 1000);
  const baseline = Number(await pg.psql('SELECT coalesce(max(id), 0) FROM user_events'));
  const phones = await Promise.all(uids.map((uid) => followingPhone(hubB, uid)));
  const load = reservationLoad(hubA, uids);
  await waitFor(() => load.stats.reserved >= 20, { timeoutMs: 30000, what: 'load to be running' });

  const from = await cluster.ownerOf(BUSY);
  const to = (await cluster.masters()).find((m) => m.port !== from).port;
  const slot = Number(await cluster.cli(from, 'CLUSTER', 'KEYSLOT', BUSY));
  const t0 = Date.now();
  await moveSlot(slot, from, to);
  await waitFor(async () => (await cluster.cli(to, 'PUBSUB', 'SHARDCHANNELS')).split('\n').includes(BUSY),
    { timeoutMs: 15000, intervalMs: 50, what: `${BUSY} subscribed on :${to}` });
  console.log(`# slot ${slot} (${BUSY}) moved :${from} -> :${to}; subscribed there after ${Date.now() - t0} ms`);
  assert.ok(!(await cluster.cli(from, 'PUBSUB', 'SHARDCHANNELS')).split('\n').includes(BUSY), `${BUSY} left :${from}`);
  const reserved = load.stats.reserved;
  const spub = await calls(to, 'spublish');
  await waitFor(() => load.stats.reserved >= reserved + 20, { timeoutMs: 30000, what: 'load to go on after the move' });
  assert.ok((await calls(to, 'spublish')) > spub, 'SPUBLISH on the new owner');
  await load.stop();

  for (const p of phones) await assertAllDelivered(pg, p, baseline);
  const dbV = await queueVersion(pg, ARCADE);
  for (const p of phones) await waitFor(() => p.lastV() === dbV, { what: `${p.uid}'s snapshot at v${dbV}` });
  assert.match(hubB.logs(), new RegExp(`channel ${BUSY} left 127.0.0.1:${from}`), 'hub B saw the sunsubscribe');

  // the rate limit's buckets (two keys per REST request) live together on the {rl} slot's master
  const rl = await cluster.ownerOf('rn:{rl}:rest_ip:127.0.0.1');
  assert.equal(await cluster.cli(rl, 'EXISTS', 'rn:{rl}:rest_ip:127.0.0.1'), '1', 'the IP bucket is in the cluster');
  assert.ok(Number(await cluster.cli(rl, 'EXISTS', `rn:{rl}:rest_user:${uids[0]}`)) === 1, 'the user bucket next to it');
  assert.equal((await metric(hubA, 'rn_limit_local_total')) ?? 0, local0, 'every limit decided by Redis');
  assert.doesNotMatch(hubA.logs(), /rate limit script failed/);
  for (const h of [hubA, hubB]) assert.equal(await h.stop(), 0, `hub :${h.port} exits 0`);
});

test('a frozen master (SIGSTOP: no reset, no answer): found by its missed PINGs, its replica takes over, nothing lost', async () => {
  const { pg } = world;
  const redis = { url: cluster.url };
  const [hubA, hubB] = await Promise.all([startHub({ pg, redis, args }), startHub({ pg, redis, args })]);
  for (const h of [hubA, hubB]) {
    await waitFor(async () => (await metric(h, 'rn_bus_up')) === 1, { timeoutMs: 20000, what: `bus up on :${h.port}` });
  }
  const uids = Array.from({ length: PHONES }, (_, i) => `frozen-${i}`);
  for (const uid of uids) await grant(pg, uid, 1000);
  const baseline = Number(await pg.psql('SELECT coalesce(max(id), 0) FROM user_events'));
  const phones = await Promise.all(uids.map((uid) => followingPhone(hubB, uid)));
  const load = reservationLoad(hubA, uids);
  await waitFor(() => load.stats.reserved >= 20, { timeoutMs: 30000, what: 'load to be running' });

  // a master that still has a replica (the first test's promoted one has none)
  const victim = (await cluster.masters()).find((m) => m.replicas > 0);
  assert.ok(victim, 'a master with a replica');
  const slot = victim.slots[0][0];
  const node = cluster.nodes.find((n) => n.port === victim.port);
  const t0 = Date.now();
  let tLost;
  node.freeze();
  try {
    const owner = async () => (await cluster.masters()).find((m) => m.slots.some(([a, b]) => slot >= a && slot <= b));
    await waitFor(async () => (await owner())?.port !== victim.port && (await owner()) !== undefined,
      { timeoutMs: 20000, intervalMs: 100, what: `a replica promoted for slot ${slot}` });
    const promoted = (await owner()).port;
    const tPromoted = Date.now() - t0;
    // no reset comes from a stopped process: three PINGs unanswered (~3 s) say it is gone
    // (or its map says first that it is no longer a master)
    const lost = new RegExp(`lost master 127.0.0.1:${victim.port}|127.0.0.1:${victim.port} is no longer a master`);
    for (const h of [hubA, hubB]) {
      await waitFor(() => lost.test(h.logs()), { timeoutMs: 15000, what: `hub :${h.port} to give up on the frozen master` });
    }
    tLost = Date.now() - t0;
    for (const h of [hubA, hubB]) {
      await waitFor(async () => (await metric(h, 'rn_bus_up')) === 1, { timeoutMs: 20000, intervalMs: 50, what: `bus up again on :${h.port}` });
    }
    console.log(`# froze :${victim.port}; :${promoted} promoted after ${tPromoted} ms; both hubs gave up on it ` +
      `after ${tLost} ms; bus up after ${Date.now() - t0} ms`);
  } finally {
    node.thaw(); // it comes back as a replica of the promoted one
  }
  const reserved = load.stats.reserved;
  await waitFor(() => load.stats.reserved >= reserved + 20, { timeoutMs: 30000, what: 'load to go on after the freeze' });
  await load.stop();
  // nothing lost: every stored event reached its phone
  for (const p of phones) {
    const want = await dbEventIds(pg, p.uid, baseline);
    const missing = () => want.filter((id) => !p.received().has(id));
    await waitFor(() => missing().length === 0, { timeoutMs: 30000, what: `${p.uid}: all ${want.length} events` })
      .catch((err) => {
        throw new Error(`${err.message}: missing ${missing()}; drops ${p.drops}, ${p.clients.length} connections`);
      });
  }
  // Delivery is at least once (PROTOCOL.md section 6): the SPUBLISHes the frozen master swallowed
  // go by the fallback, and the catch-up when the bus is back can repeat them (while their acks
  // are still on the way) beyond the socket's last 32 ids. Only those: events committed during
  // the freeze, or just before it (still unanswered when it came), none earlier.
  const repeats = phones.flatMap((p) => p.clients.flatMap((c) => {
    const byId = new Map();
    for (const m of c.seen) if (m.event_id) byId.set(m.event_id, { n: (byId.get(m.event_id)?.n ?? 0) + 1, at: m.at_ms });
    return [...byId.values()].filter((e) => e.n > 1);
  }));
  console.log(`# ${repeats.length} events came twice on one socket (committed around the freeze)`);
  for (const e of repeats) {
    assert.ok(e.at >= t0 - 1000 && e.at <= t0 + tLost + 1000, `a repeat committed ${e.at - t0} ms after the freeze`);
  }
  const dbV = await queueVersion(pg, ARCADE);
  for (const p of phones) await waitFor(() => p.lastV() === dbV, { what: `${p.uid}'s snapshot at v${dbV}` });
  for (const h of [hubA, hubB]) assert.equal(await h.stop(), 0, `hub :${h.port} exits 0`);
});
