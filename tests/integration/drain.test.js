// SIGTERM drains: every socket is closed with 4000, the process exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, startRedis, startHub, connectWs, token } from '../lib/harness.js';

test('SIGTERM closes every socket with 4000 and exits 0 within a few seconds', async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  const hub = await startHub({ pg, redis });
  const alice = await connectWs(hub, { token: token(hub, 'demo-alice') });
  const bob = await connectWs(hub, { headers: { Authorization: `Bearer ${token(hub, 'demo-bob')}` } });
  assert.deepEqual(await bob.request({ type: 'ping', id: 1 }), { id: 1, type: 'pong' });

  const t0 = Date.now();
  const closes = Promise.all([alice.closed(8000), bob.closed(8000)]);
  const code = await hub.stop({ timeoutMs: 8000 });
  const took = Date.now() - t0;
  const [a, b] = await closes;

  assert.equal(a.code, 4000, `alice: ${JSON.stringify(a)}`);
  assert.equal(b.code, 4000, `bob: ${JSON.stringify(b)}`);
  assert.equal(code, 0, `exit ${JSON.stringify(hub.exitInfo)}\n${hub.tail()}`);
  // Both sockets close at once, so the hub has nothing to wait for: well under
  // the default --drain-timeout-ms (5000).
  assert.ok(took < 3000, `exited ${took} ms after SIGTERM although every socket closed at once`);
});

test('SIGTERM with no sockets at all exits 0 at once', async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  const hub = await startHub({ pg, redis });
  const t0 = Date.now();
  const code = await hub.stop({ timeoutMs: 8000 });
  assert.equal(code, 0, `exit ${JSON.stringify(hub.exitInfo)}\n${hub.tail()}`);
  assert.ok(Date.now() - t0 < 3000, `exited ${Date.now() - t0} ms after SIGTERM`);
});
