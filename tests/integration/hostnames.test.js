// DATABASE_URL and REDIS_URL take host names, resolved off the loop (issue 7, item 9).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startPostgres, startRedis, startHub, http, waitFor, HUB_BIN } from '../lib/harness.js';

let pg, redis;

before(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
});

const pgByName = () => `postgresql://retronova@localhost:${pg.port}/retronova`;
const redisByName = () => `redis://localhost:${redis.port}`;

test('postgresql://localhost:PORT and redis://localhost:PORT work (resolved by the hub)', async () => {
  const hub = await startHub({ args: ['--database-url', pgByName(), '--redis-url', redisByName()] });
  const ready = await waitFor(
    async () => {
      const r = await http(hub, 'GET', '/readyz');
      return r.status === 200 && r;
    },
    { timeoutMs: 15000, what: '/readyz 200 with host names' },
  );
  assert.deepEqual(ready.json, { status: 'ready', postgres: 'up', redis: 'up', bus: 'redis' });
  // A route that queries PostgreSQL through the pool.
  const games = await http(hub, 'GET', '/api/v1/games');
  assert.equal(games.status, 200, games.text);
  // The pool and the bus resolved the name themselves (libpq and hiredis got addresses).
  assert.match(hub.logs(), /pg_pool: host localhost resolved to [0-9a-f.:,]*127\.0\.0\.1/);
  assert.match(hub.logs(), /Redis host localhost resolved to [0-9a-f.:,]*127\.0\.0\.1/);

  // Every reconnect resolves again: Redis restarts and the bus comes back by name.
  await redis.stop();
  await waitFor(async () => (await http(hub, 'GET', '/readyz')).json?.redis === 'down', { timeoutMs: 10000, what: 'Redis down' });
  await redis.start();
  await waitFor(async () => (await http(hub, 'GET', '/readyz')).json?.redis === 'up', { timeoutMs: 15000, what: 'Redis up again' });
  assert.equal(await hub.stop(), 0);
});

test('a Redis name that does not resolve: clear error, readiness says redis down (the bus on PostgreSQL), /healthz answers, clean stop', async () => {
  const hub = await startHub({ pg, args: ['--redis-url', 'redis://no-such-host.invalid:6379'] });
  assert.equal((await http(hub, 'GET', '/healthz')).status, 200);
  const r = await waitFor(
    async () => {
      const x = await http(hub, 'GET', '/readyz', { timeoutMs: 2000 });
      return x.json?.bus === 'postgres' && x;
    },
    { timeoutMs: 10000, what: 'the bus on PostgreSQL' },
  );
  assert.equal(r.status, 200, 'it serves and pushes through PostgreSQL');
  assert.deepEqual(r.json, { status: 'ready', postgres: 'up', redis: 'down', bus: 'postgres' });
  await waitFor(() => /cannot resolve Redis host no-such-host\.invalid/.test(hub.logs()), {
    timeoutMs: 10000,
    what: 'the resolution error in the log',
  });
  // The loop keeps serving while it retries: many requests, each answered at once.
  for (let i = 0; i < 20; i++) assert.equal((await http(hub, 'GET', '/healthz', { timeoutMs: 2000 })).status, 200);
  const lines = hub.logs().split('\n').filter((l) => l.includes('cannot resolve Redis host'));
  assert.equal(lines.length, 1, 'logged once, not at every retry');
  assert.equal(await hub.stop({ timeoutMs: 10000 }), 0);
});

test('a PostgreSQL name that does not resolve at start-up: clear error, 503 readiness, /healthz answers, clean stop', async () => {
  // Start-up waits for PostgreSQL (issue 8): the hub serves /healthz, says in /readyz what it
  // waits for, logs why, and keeps retrying, never hanging its loop.
  const hub = await startHub({
    redis,
    waitPg: false,
    args: ['--database-url', 'postgresql://retronova@no-such-host.invalid:5432/retronova'],
  });
  assert.equal((await http(hub, 'GET', '/healthz', { timeoutMs: 2000 })).status, 200);
  const r = await http(hub, 'GET', '/readyz', { timeoutMs: 2000 });
  assert.equal(r.status, 503);
  assert.equal(r.json.postgres, 'down');
  assert.equal(r.json.migrations, 'pending');
  await waitFor(() => /no-such-host\.invalid/.test(hub.logs()), {
    timeoutMs: 15000,
    what: 'the resolution error, naming the host, in the log',
  });
  for (let i = 0; i < 10; i++) assert.equal((await http(hub, 'GET', '/healthz', { timeoutMs: 2000 })).status, 200);
  assert.equal(await hub.stop({ timeoutMs: 15000 }), 0);
});

test('--help no longer asks for IP addresses', async () => {
  const help = spawnSync(HUB_BIN, ['--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /DATABASE_URL\s+PostgreSQL URI \(a host name is resolved off the loop/);
  assert.match(help.stdout, /REDIS_URL\s+Redis URL: redis:\/\/HOST:PORT/);
});
