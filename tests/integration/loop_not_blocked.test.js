// One event loop, never blocked: while a 1 s query runs through the async
// Postgres pool, WebSocket pings (protocol-level and app-level) are answered
// at once.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, startRedis, startHub, connectWs, http, token } from '../lib/harness.js';

const MAX_RTT_MS = 50;
const EVERY_MS = 20;

let hub, client;

before(async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  hub = await startHub({ pg, redis, debugRoutes: true });
  client = await connectWs(hub, { token: token(hub, 'demo-alice') });
});

function summary(rtts) {
  const s = [...rtts].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return `n=${s.length} p50=${q(0.5)?.toFixed(2)} p99=${q(0.99)?.toFixed(2)} max=${s[s.length - 1]?.toFixed(2)} ms`;
}

test('WebSocket ping frames are answered in < 50 ms while GET /api/v1/debug/sleep?ms=1000 runs', async () => {
  const ws = client.ws;
  const sent = new Map(); // payload -> send time (ms, hrtime)
  const rtts = [];
  let seq = 0;
  const onPong = (data) => {
    const t = sent.get(data.toString());
    if (t === undefined) return;
    sent.delete(data.toString());
    rtts.push(performance.now() - t);
  };
  ws.on('pong', onPong);

  const t0 = performance.now();
  let sleepDone = false;
  const sleeping = http(hub, 'GET', '/api/v1/debug/sleep?ms=1000', { timeoutMs: 10000 }).finally(() => {
    sleepDone = true;
  });
  const timer = setInterval(() => {
    if (sleepDone) return;
    const payload = `p${seq++}`;
    sent.set(payload, performance.now());
    ws.ping(payload);
  }, EVERY_MS);

  let res;
  try {
    res = await sleeping;
  } finally {
    clearInterval(timer);
  }
  const took = performance.now() - t0;
  // Let the last pings come back, then count the ones that never did.
  const grace = performance.now();
  while (sent.size && performance.now() - grace < 500) await new Promise((r) => setTimeout(r, 10));
  ws.off('pong', onPong);

  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json, { slept_ms: 1000 });
  assert.ok(took >= 950, `the query took ${took.toFixed(0)} ms: did it sleep at all?`);
  assert.equal(sent.size, 0, `${sent.size} pings were never answered`);
  assert.ok(rtts.length >= 20, `only ${rtts.length} round trips measured during the query`);
  const slow = rtts.filter((r) => r >= MAX_RTT_MS);
  assert.deepEqual(slow, [], `ping round trips >= ${MAX_RTT_MS} ms (${summary(rtts)})`);
  console.log(`ws ping during a 1 s query: ${summary(rtts)}`);
});

test('app-level {"type":"ping"} is answered with pong in < 50 ms while a query runs', async () => {
  const sleeping = http(hub, 'GET', '/api/v1/debug/sleep?ms=1000', { timeoutMs: 10000 });
  const rtts = [];
  const t0 = performance.now();
  while (performance.now() - t0 < 700) {
    const t = performance.now();
    const reply = await client.request({ type: 'ping' }, 2000);
    rtts.push(performance.now() - t);
    assert.equal(reply.type, 'pong', JSON.stringify(reply));
    await new Promise((r) => setTimeout(r, EVERY_MS));
  }
  const res = await sleeping;
  assert.equal(res.status, 200, res.text);
  assert.ok(rtts.length >= 10, `only ${rtts.length} app pings measured`);
  const slow = rtts.filter((r) => r >= MAX_RTT_MS);
  assert.deepEqual(slow, [], `app ping round trips >= ${MAX_RTT_MS} ms (${summary(rtts)})`);
});

test('a pong echoes the id of its ping', async () => {
  const reply = await client.request({ type: 'ping', id: 4242 });
  assert.deepEqual(reply, { id: 4242, type: 'pong' });
});
