// The async Postgres pool across a Postgres restart: queries fail fast with
// 503 db_unavailable while it is down, and work again once it is back.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, startRedis, startHub, http, waitFor } from '../lib/harness.js';

let pg, redis, hub;

before(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  hub = await startHub({ pg, redis, debugRoutes: true });
});

const readyz = () => http(hub, 'GET', '/readyz', { timeoutMs: 2000 });
const sleepQuery = (ms, timeoutMs = 10000) => http(hub, 'GET', `/api/v1/debug/sleep?ms=${ms}`, { timeoutMs });

function assertUnavailable(res) {
  assert.equal(res.status, 503, `expected 503, got ${res.status}: ${res.text}`);
  assert.equal(res.json?.error?.code, 'db_unavailable', res.text);
  assert.equal(typeof res.json.error.message, 'string');
  assert.ok(res.json.error.message.length > 0, 'the error says what happened');
}

test('a query works with Postgres up', async () => {
  const res = await sleepQuery(10);
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json, { slept_ms: 10 });
  assert.equal((await readyz()).status, 200);
});

test('a query in flight when Postgres shuts down answers 503 db_unavailable at once', async () => {
  const inflight = sleepQuery(5000);
  await waitFor(
    async () => Number(await pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(%' AND pid <> pg_backend_pid()")) > 0,
    { timeoutMs: 5000, what: 'the pg_sleep query to reach Postgres' },
  );
  const t0 = Date.now();
  await pg.stop();
  const res = await inflight;
  assertUnavailable(res);
  assert.ok(Date.now() - t0 < 2000, `answered ${Date.now() - t0} ms after the shutdown began`);
});

test('while Postgres is down: 503 db_unavailable in under 2 s, /readyz 503 naming postgres', async () => {
  if (pg.running) await pg.stop();
  for (let i = 0; i < 3; i++) {
    const t0 = Date.now();
    const res = await sleepQuery(10, 5000);
    const took = Date.now() - t0;
    assertUnavailable(res);
    assert.ok(took < 2000, `query ${i} took ${took} ms with Postgres down`);
  }
  const ready = await waitFor(
    async () => {
      const r = await readyz();
      return r.status === 503 && r;
    },
    { timeoutMs: 5000, what: '/readyz 503 with Postgres down' },
  );
  assert.deepEqual(ready.json, { status: 'unavailable', postgres: 'down', redis: 'up', bus: 'redis' });
  assert.equal((await http(hub, 'GET', '/healthz')).status, 200, 'liveness does not depend on Postgres');
});

test('after Postgres is back: /readyz 200 and the next query succeeds', async () => {
  await pg.start();
  await waitFor(async () => (await readyz()).status === 200, {
    timeoutMs: 15000,
    what: '/readyz 200 after Postgres restarted',
  });
  const res = await sleepQuery(10);
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json, { slept_ms: 10 });
});

test('pg_ctl restart (fast) under a live hub: the pool recovers by itself', async () => {
  await pg.restart();
  const answers = [];
  await waitFor(
    async () => {
      const r = await sleepQuery(1, 3000);
      answers.push(r);
      return r.status === 200;
    },
    { timeoutMs: 15000, what: 'a query to succeed after pg_ctl restart' },
  );
  // Meanwhile, only 503 db_unavailable is acceptable.
  for (const r of answers.slice(0, -1)) assertUnavailable(r);
  assert.equal((await readyz()).status, 200);
});
