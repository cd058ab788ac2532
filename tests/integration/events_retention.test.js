// Retention of the private inbox: rn_events_expire (storage/sql/01_common.sql)
// deletes events acked more than a keep ago, in bounded batches, never an
// unacked one, one sweeper at a time; the readers of user_events keep their
// answers (rn_call_due of a called reservation, rn_audit); and the hub's
// periodic sweep (hub/engine/events_expire.c) runs it batch after batch,
// counts what it deleted and logs it. Events are made "old" by writing
// created_at / acked_at in the past.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { http, parseMetrics, run, waitFor } from '../lib/harness.js';
import { ARCADE, GAME_SOLO, cabinet, nextEvent, phone, reserve, startHub, startWorld } from './queue_world.js';

let world;

before(async () => {
  world = await startWorld();
});

const psql = (sql) => world.pg.psql(sql);
const ago = (hours) => (hours == null ? 'NULL' : `now() - make_interval(secs => ${hours} * 3600)`);

/* One event written straight into the inbox: for user uid or cabinet arcade, created and acked hours ago. */
async function event({ uid, arcade, created, acked }) {
  const to = uid ? `rn_user_id('${uid}'), NULL` : `NULL, ${arcade}`;
  return Number(
    await psql(`INSERT INTO user_events (user_id, arcade_id, kind, payload, created_at, acked_at)
                VALUES (${to}, 'retention_test', '{}', ${ago(created)}, ${ago(acked)}) RETURNING id`),
  );
}

/* One rn_events_expire call keeping an hour: {deleted, upto}. */
async function expire(limit, after = null) {
  const out = await psql(`SELECT deleted || '|' || coalesce(upto::text, '')
                            FROM rn_events_expire(interval '1 hour', ${limit}, ${after ? `'${after}'` : 'NULL'})`);
  const [deleted, upto] = out.split('|');
  return { deleted: Number(deleted), upto: upto || null };
}

async function existing(ids) {
  const out = await psql(`SELECT string_agg(id::text, ',' ORDER BY id) FROM user_events WHERE id IN (${ids.join(',')})`);
  return out ? out.split(',').map(Number) : [];
}

const audit = async () => Number(await psql('SELECT count(*) FROM rn_audit()'));

test('acked old events go, a batch at a time; unacked, recent and lately acked ones stay', async () => {
  const oldest = await event({ uid: 'demo-alice', created: 5, acked: 4.9 });
  const older = await event({ arcade: ARCADE, created: 4, acked: 3.99 });
  const old = await event({ uid: 'demo-bob', created: 3, acked: 2.9 });
  const unacked = await event({ uid: 'demo-alice', created: 24 * 30 }); // a month away: still owed
  const unackedCabinet = await event({ arcade: ARCADE, created: 24 * 30 });
  const recent = await event({ uid: 'demo-bob', created: 0.5, acked: 0.4 });
  const lateAck = await event({ uid: 'demo-alice', created: 3, acked: 0.2 }); // acked 12 min ago
  const all = [oldest, older, old, unacked, unackedCabinet, recent, lateAck];
  const stay = [unacked, unackedCabinet, recent, lateAck];

  const first = await expire(2);
  assert.equal(first.deleted, 2, 'p_limit bounds one call');
  assert.deepEqual(await existing([oldest, older, old]), [old], 'the oldest first');
  const second = await expire(2, first.upto);
  assert.equal(second.deleted, 1, 'the next batch goes on from where the first stopped');
  assert.ok(second.upto > first.upto, `upto moves forward (${first.upto} -> ${second.upto})`);
  assert.deepEqual(await expire(2, second.upto), { deleted: 0, upto: null }, 'a batch with nothing left');
  assert.deepEqual(await expire(100), { deleted: 0, upto: null }, 'from the oldest again: nothing more');
  assert.deepEqual(await existing(all), stay.sort((a, b) => a - b));
  assert.equal(await audit(), 0, 'rn_audit finds nothing');
});

test('a keep under an hour or a limit out of range is refused and deletes nothing', async () => {
  const id = await event({ uid: 'demo-carol', created: 2, acked: 2 });
  const call = (keep, limit) => psql(`SELECT * FROM rn_events_expire(interval '${keep}', ${limit})`);
  await assert.rejects(call('59 minutes', 10), /kept at least 1 hour/);
  await assert.rejects(psql('SELECT * FROM rn_events_expire(NULL, 10)'), /kept at least 1 hour/);
  await assert.rejects(call('2 hours', 0), /p_limit must be 1\.\.100000/);
  await assert.rejects(call('2 hours', 100001), /p_limit must be 1\.\.100000/);
  assert.deepEqual(await existing([id]), [id]);
  assert.equal((await expire(10)).deleted, 1);
});

test('while one sweeper runs, another deletes nothing', async () => {
  const id = await event({ uid: 'demo-carol', created: 2, acked: 2 });
  // another hub's batch: its transaction holds the sweepers' lock for 3 s
  const holder = run('psql', ['-X', '-q', '-d', world.pg.url, '-c', 'SELECT pg_advisory_xact_lock(1701, 1), pg_sleep(3)']);
  await waitFor(
    async () =>
      (await psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1701 AND objid = 1 AND granted")) === '1',
    { what: 'the other sweeper holds the lock' },
  );
  assert.deepEqual(await expire(10), { deleted: 0, upto: null });
  assert.deepEqual(await existing([id]), [id]);
  await holder;
  assert.equal((await expire(10)).deleted, 1, 'once it is done, the next call sweeps');
});

test("a called reservation's due time is the same after the retention (its acked your_turn)", async () => {
  const hub = await startHub({ pg: world.pg, redis: world.redis });
  const alice = await phone(hub, 'demo-alice', { autoAck: true });
  const cab = await cabinet(hub, world.keys[ARCADE]);
  const r = (await reserve(hub, 'demo-alice', { game: GAME_SOLO })).json.reservation;
  const turn = await nextEvent(alice, 'your_turn', (m) => m.reservation_id === r.id);
  await cab.queue((m) => m.called?.reservation_id === r.id);
  await waitFor(async () => (await psql(`SELECT acked_at IS NOT NULL FROM user_events WHERE id = ${turn.event_id}`)) === 't', {
    what: 'the your_turn ack stored',
  });
  const due = () => psql(`SELECT rn_call_due(r) FROM reservations r WHERE id = ${r.id}`);
  const sweep = async () => {
    for (let b = await expire(10000); b.deleted === 10000; b = await expire(10000, b.upto));
  };

  const fresh = await due();
  await sweep();
  assert.deepEqual(await existing([turn.event_id]), [turn.event_id], 'a call younger than the keep keeps its your_turn');
  assert.equal(await due(), fresh);

  // the same call three hours ago: its your_turn is now older than the keep
  await psql(`UPDATE reservations SET called_at = called_at - interval '3 hours', deadline = deadline - interval '3 hours'
               WHERE id = ${r.id};
              UPDATE user_events SET created_at = created_at - interval '3 hours', acked_at = acked_at - interval '3 hours'
               WHERE id = ${turn.event_id}`);
  const before = await due();
  await sweep();
  assert.deepEqual(await existing([turn.event_id]), [], 'the old your_turn went');
  assert.equal(await due(), before, 'rn_call_due gives the same time without it');
  assert.equal(await audit(), 0);
  alice.terminate();
  cab.terminate();
  await hub.stop();
});

test("the hub's sweep deletes expired events batch after batch, counts and logs them", async () => {
  const BULK = 25000; // 3 batches of the hub's 10,000
  await psql(`INSERT INTO user_events (user_id, kind, payload, created_at, acked_at)
              SELECT rn_user_id('demo-carol'), 'retention_bulk', '{}', t, t + interval '1 second'
                FROM (SELECT now() - interval '3 hours' + g * interval '1 ms' AS t
                        FROM generate_series(1, ${BULK}) g) s`);
  const unacked = await event({ uid: 'demo-carol', created: 4 });
  const recent = await event({ uid: 'demo-carol', created: 0.5, acked: 0.5 });
  const bulkLeft = async () => Number(await psql("SELECT count(*) FROM user_events WHERE kind = 'retention_bulk'"));
  assert.equal(await bulkLeft(), BULK);

  const hub = await startHub({
    pg: world.pg,
    redis: world.redis,
    args: ['--events-keep-hours', '1', '--events-expire-sweep-ms', '100'],
  });
  const expired = async () =>
    parseMetrics((await http(hub, 'GET', '/metrics')).text).find((s) => s.name === 'rn_events_expired_total').value;
  await waitFor(async () => (await expired()) >= BULK, { timeoutMs: 30000, what: 'rn_events_expired_total >= 25000' });
  assert.equal(await bulkLeft(), 0, 'every expired row went');
  const lines = hub
    .logs()
    .split('\n')
    .filter((l) => l.includes('"events expired"'))
    .map((l) => JSON.parse(l));
  const big = lines.find((l) => l.events >= BULK);
  assert.ok(big, `a sweep logged its ${BULK} events: ${JSON.stringify(lines)}`);
  assert.ok(big.batches >= 3, `in batches of 10,000 at most (${big.batches})`);
  assert.equal(big.keep_hours, 1);
  assert.deepEqual(await existing([unacked, recent]), [unacked, recent].sort((a, b) => a - b), 'unacked and recent stay');

  // acked at last, an hour and more ago: a later sweep from the oldest row takes it too
  await psql(`UPDATE user_events SET acked_at = created_at + interval '1 second' WHERE id = ${unacked}`);
  await waitFor(async () => (await existing([unacked])).length === 0, {
    timeoutMs: 30000,
    what: 'the lately acked event expired',
  });
  assert.deepEqual(await existing([recent]), [recent]);
  assert.equal(await audit(), 0);
  await hub.stop();
});
