// /healthz, /readyz and /metrics while Redis goes away and comes back. A hub
// without Redis still serves and pushes through PostgreSQL (the bus's
// fallback): it stays ready, and says which path its bus takes.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, startRedis, startHub, http, waitFor, parseMetrics } from '../lib/harness.js';

let pg, redis, hub;

before(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  hub = await startHub({ pg, redis });
});

const readyz = () => http(hub, 'GET', '/readyz', { timeoutMs: 2000 });

async function metrics() {
  const res = await http(hub, 'GET', '/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'] || '', /^text\/plain/, 'Prometheus text is text/plain');
  return { text: res.text, samples: parseMetrics(res.text) };
}

const sample = (samples, name, labels = {}) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

test('/healthz answers 200 {"status":"ok"}', async () => {
  const res = await http(hub, 'GET', '/healthz');
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { status: 'ok' });
});

test('/readyz is 200 with Postgres and Redis up', async () => {
  const res = await readyz();
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json, { status: 'ready', postgres: 'up', redis: 'up', bus: 'redis' });
});

/* Waits until /readyz reports redis in state; returns that answer. */
const redisIs = (state, what, timeoutMs = 15000) =>
  waitFor(
    async () => {
      const r = await readyz();
      return r.json?.redis === state && r;
    },
    { timeoutMs, what },
  );

test('/readyz stays 200 on the PostgreSQL path when Redis stops, and is back on Redis when it returns', async () => {
  await redis.stop();
  const down = await redisIs('down', '/readyz to see Redis stopped', 5000);
  assert.equal(down.status, 200, down.text);
  assert.deepEqual(down.json, { status: 'ready', postgres: 'up', redis: 'down', bus: 'postgres' });

  // Liveness does not depend on Redis.
  assert.equal((await http(hub, 'GET', '/healthz')).status, 200);

  await redis.start();
  const up = await redisIs('up', '/readyz to see Redis back');
  assert.equal(up.status, 200, up.text);
  assert.deepEqual(up.json, { status: 'ready', postgres: 'up', redis: 'up', bus: 'redis' });
});

test('a SIGKILLed Redis is noticed and reconnected too', async () => {
  await redis.kill();
  const down = await redisIs('down', '/readyz to see Redis killed', 5000);
  assert.equal(down.status, 200, down.text);
  assert.equal(down.json.bus, 'postgres');
  await redis.start();
  const up = await redisIs('up', '/readyz to see the killed Redis back');
  assert.equal(up.json.bus, 'redis');
});

test('with --bus-pg-fallback 0 a hub needs Redis: /readyz 503 while it is away', async () => {
  const strict = await startHub({ pg, redis, args: ['--bus-pg-fallback', '0'] });
  const get = () => http(strict, 'GET', '/readyz', { timeoutMs: 2000 });
  assert.deepEqual((await get()).json, { status: 'ready', postgres: 'up', redis: 'up', bus: 'redis' });
  await redis.stop();
  const down = await waitFor(
    async () => {
      const r = await get();
      return r.status === 503 && r;
    },
    { timeoutMs: 5000, what: '/readyz 503 without Redis or its fallback' },
  );
  assert.deepEqual(down.json, { status: 'unavailable', postgres: 'up', redis: 'down', bus: 'down' });
  await redis.start();
  await waitFor(async () => (await get()).status === 200, { timeoutMs: 15000, what: '/readyz 200 with Redis back' });
  await strict.stop();
});

test('/metrics is Prometheus text and counts the bus reconnects', async () => {
  const { text, samples } = await metrics();
  const reconnects = sample(samples, 'rn_bus_reconnects_total');
  assert.ok(reconnects, `rn_bus_reconnects_total missing from:\n${text}`);
  assert.ok(reconnects.value >= 1, `rn_bus_reconnects_total is ${reconnects.value}, expected >= 1`);
});

test('/metrics names every family of the contract', async () => {
  const { text, samples } = await metrics();
  for (const name of [
    'rn_connections',
    'rn_ws_messages_in_total',
    'rn_ws_messages_out_total',
    'rn_pg_queries_total',
    'rn_pg_query_seconds_bucket',
    'rn_pg_query_seconds_sum',
    'rn_pg_query_seconds_count',
    'rn_bus_reconnects_total',
  ]) {
    assert.ok(sample(samples, name), `${name} missing from /metrics:\n${text}`);
  }
  assert.ok(samples.some((s) => s.name === 'rn_connections' && 'kind' in s.labels), 'rn_connections has a kind label');
  assert.ok(samples.some((s) => s.name === 'rn_pg_queries_total' && 'status' in s.labels), 'rn_pg_queries_total has a status label');
  const total = (pred) => samples.filter(pred).reduce((n, s) => n + s.value, 0);
  const infs = samples.filter((s) => s.name === 'rn_pg_query_seconds_bucket' && s.labels.le === '+Inf');
  assert.ok(infs.length > 0, 'the histogram has a le="+Inf" bucket');
  assert.equal(
    total((s) => s.name === 'rn_pg_query_seconds_bucket' && s.labels.le === '+Inf'),
    total((s) => s.name === 'rn_pg_query_seconds_count'),
    'the +Inf buckets add up to _count',
  );
  for (const line of text.split('\n').filter((l) => l.startsWith('# TYPE '))) {
    assert.match(line, /^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$/);
  }
});
