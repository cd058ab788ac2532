// Abuse limits: token buckets per client IP and per identity, one budget for
// every hub through Redis, a per-process fallback while Redis is down, and
// the client IP from X-Forwarded-For only behind a trusted proxy.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { connectWs, http, parseMetrics, sleep, startRedis, token, waitFor } from '../lib/harness.js';
import { startHub, startWorld } from './queue_world.js';
import { api, assertError, newUser } from './tickets_world.js';

// One hub behind a "proxy" (127.0.0.1 is trusted): each test speaks from its
// own client IP through X-Forwarded-For, so the budgets do not mix.
const LIMITS = {
  HUB_LIMIT_REST_IP: '5/10', // 5 at once, then one every 2 s
  HUB_LIMIT_REST_USER: '4/60',
  HUB_LIMIT_WS_IP: '0', // its own hub below: the cabinet keys count per IP too
  HUB_LIMIT_WS_USER: '2/60',
  HUB_LIMIT_CABINET_KEY: '3/15', // 3 at once, then 1 per 5 s
  HUB_LIMIT_PROMO: '3/60',
  HUB_LIMIT_TOKEN: '3/60',
};

let world, hub;
let nextIp = 1;
const freshIp = () => `10.1.${Math.floor(nextIp / 250)}.${(nextIp++ % 250) + 1}`;
const from = (ip) => ({ 'X-Forwarded-For': ip });

before(async () => {
  world = await startWorld();
  hub = await startHub({ pg: world.pg, redis: world.redis, limits: true, env: LIMITS, args: ['--trusted-proxies', '127.0.0.1'] });
});

async function limitCounts(h, limit) {
  const res = await http(h, 'GET', '/metrics');
  assert.equal(res.status, 200);
  const samples = parseMetrics(res.text).filter((s) => s.name === 'rn_limit_total' && s.labels.limit === limit);
  const get = (result) => samples.find((s) => s.labels.result === result)?.value;
  return { allowed: get('allowed'), refused: get('refused') };
}

async function metric(h, name) {
  const res = await http(h, 'GET', '/metrics');
  return parseMetrics(res.text).find((s) => s.name === name)?.value;
}

/* Requests from ip until the first 429 (returned): the bucket's 5, plus what a slow machine refilled. */
async function drainRest(h, ip) {
  for (let i = 0; ; i++) {
    const res = await http(h, 'GET', '/api/v1/games', { headers: from(ip) });
    if (res.status === 429) {
      assert.ok(i >= 5, `refused after only ${i} requests`);
      return res;
    }
    assert.equal(res.status, 200);
    assert.ok(i < 8, `still allowed after ${i + 1} requests`);
  }
}

function assertLimited(res) {
  assertError(res, 429, 'rate_limited');
  const after = Number(res.headers['retry-after']);
  assert.ok(Number.isInteger(after) && after >= 1, `Retry-After: ${res.headers['retry-after']}`);
  return after;
}

/* A cabinet key of the right shape that is not the arcade's. */
const wrongKey = (key) => key.slice(0, -1) + (key.endsWith('0') ? '1' : '0');

async function wsAuth(h, frame, headers = {}) {
  const c = await connectWs(h, { headers });
  c.send({ id: 1, type: 'auth', ...frame });
  const reply = await c.next((m) => m.id === 1 || m.type === 'error', 10000);
  const info = reply.type === 'ok' ? null : await c.closed(10000);
  return { c, reply, code: info?.code };
}

test('REST per IP: 429 + Retry-After past the bucket, counted, and back after the refill', async () => {
  const ip = freshIp();
  const before = await limitCounts(hub, 'rest_ip');
  const after = assertLimited(await drainRest(hub, ip));
  assert.ok(after <= 2, `Retry-After ${after}`);
  // another client is not affected
  assert.equal((await http(hub, 'GET', '/api/v1/games', { headers: from(freshIp()) })).status, 200);
  // health checks and metrics are never budgeted
  assert.equal((await http(hub, 'GET', '/healthz', { headers: from(ip) })).status, 200);
  const now = await limitCounts(hub, 'rest_ip');
  assert.ok(now.refused >= before.refused + 1, `refused ${before.refused} -> ${now.refused}`);
  assert.ok(now.allowed >= before.allowed + 6, `allowed ${before.allowed} -> ${now.allowed}`);
  await sleep(after * 1000 + 300); // the refill is the thing under test
  assert.equal((await http(hub, 'GET', '/api/v1/games', { headers: from(ip) })).status, 200);
});

test('REST per user: the same user from many IPs shares one budget', async () => {
  const user = await newUser(world.pg);
  const codes = [];
  for (let i = 0; i < 5; i++) codes.push((await api(hub, 'GET', '/auth/me', user, { headers: from(freshIp()) })).status);
  assert.deepEqual(codes.slice(0, 4), [200, 200, 200, 200]);
  assertLimited(await api(hub, 'GET', '/auth/me', user, { headers: from(freshIp()) }));
  // another user is not affected
  assert.equal((await api(hub, 'GET', '/auth/me', await newUser(world.pg), { headers: from(freshIp()) })).status, 200);
  assert.ok((await limitCounts(hub, 'rest_user')).refused >= 1);
});

test('failed token verifications per IP: 401 three times, then 429 (REST) and 4008 (WebSocket)', async () => {
  const ip = freshIp();
  const bad = token(hub, 'demo-alice', { secret: 'not-the-secret' });
  for (let i = 0; i < 3; i++) {
    const res = await http(hub, 'GET', '/api/v1/auth/me', { token: bad, headers: from(ip) });
    assertError(res, 401, 'unauthenticated');
  }
  assertLimited(await http(hub, 'GET', '/api/v1/auth/me', { token: bad, headers: from(ip) }));
  const ws = await wsAuth(hub, { token: bad }, from(ip));
  assert.equal(ws.reply.code, 'rate_limited', JSON.stringify(ws.reply));
  assert.equal(ws.code, 4008);
  // a good token from that IP still works: only failures are counted
  assert.equal((await api(hub, 'GET', '/games', 'demo-alice', { headers: from(ip) })).status, 200);
  assert.ok((await limitCounts(hub, 'token_fail')).refused >= 2);
});

test('WebSocket connections per IP: the fourth new socket is closed 4008', async () => {
  const h = await startHub({ pg: world.pg, redis: world.redis, limits: true, env: { HUB_LIMIT_WS_IP: '3/60' } });
  const open = [];
  for (let i = 0; i < 3; i++) open.push(await connectWs(h, { token: token(h, `ws-ip-${i}`) }));
  const c = await connectWs(h);
  const err = await c.next((m) => m.type === 'error', 10000);
  assert.equal(err.code, 'rate_limited');
  assert.equal((await c.closed(10000)).code, 4008);
  for (const o of open) assert.ok(o.isOpen, 'the sockets within the budget stay open');
  for (const o of open) o.close();
  assert.deepEqual(await limitCounts(h, 'ws_ip'), { allowed: 3, refused: 1 });
  await h.stop();
});

test('WebSocket authentications per user: the third is closed 4008, other users are not', async () => {
  const uid = `ws-user-${Date.now()}`;
  const a = await wsAuth(hub, { token: token(hub, uid) }, from(freshIp()));
  const b = await wsAuth(hub, { token: token(hub, uid) }, from(freshIp()));
  assert.equal(a.reply.type, 'ok');
  assert.equal(b.reply.type, 'ok');
  const c = await wsAuth(hub, { token: token(hub, uid) }, from(freshIp()));
  assert.equal(c.reply.code, 'rate_limited', JSON.stringify(c.reply));
  assert.equal(c.code, 4008);
  assert.equal((await wsAuth(hub, { token: token(hub, `${uid}-other`) }, from(freshIp()))).reply.type, 'ok');
  a.c.close();
  b.c.close();
});

test('wrong cabinet keys per IP: past the limit 4008 at once, without a query; a right key after the refill', async () => {
  const ip = freshIp();
  const bad = wrongKey(world.keys[2]);
  for (let i = 0; i < 3; i++) {
    const r = await wsAuth(hub, { api_key: bad }, from(ip));
    assert.equal(r.code, 4001, `attempt ${i + 1}: ${JSON.stringify(r.reply)}`);
  }
  // On a slow machine a token may have come back meanwhile: spend it (at most a couple).
  for (let i = 0; ; i++) {
    const r = await wsAuth(hub, { api_key: bad }, from(ip));
    if (r.code === 4008) break;
    assert.ok(i < 3 && r.code === 4001, `attempt ${i + 4}: ${r.code} ${JSON.stringify(r.reply)}`);
  }
  const before = await limitCounts(hub, 'cabinet_key_fail');
  // Hold the key lookup's table: a query made now would wait 3 s for the lock.
  let released = false;
  const locked = world.pg
    .psql('BEGIN; LOCK TABLE arcades IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;')
    .then(() => (released = true));
  await waitFor(
    async () =>
      (await world.pg.psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation " +
          "WHERE c.relname = 'arcades' AND l.mode = 'AccessExclusiveLock' AND l.granted",
      )) === '1',
    { timeoutMs: 5000, what: 'the lock on arcades' },
  );
  let retryS = 0;
  for (const key of [bad, world.keys[2]]) {
    const r = await wsAuth(hub, { api_key: key }, from(ip));
    assert.equal(r.reply.code, 'rate_limited', JSON.stringify(r.reply));
    assert.equal(r.code, 4008);
    assert.equal(released, false, 'answered while the lookup table was locked: no query was made');
    retryS = Number(/retry in (\d+) s/.exec(r.reply.message)?.[1]);
  }
  const now = await limitCounts(hub, 'cabinet_key_fail');
  assert.equal(now.refused, before.refused + 2);
  assert.equal(now.allowed, before.allowed, 'no attempt got through to the database');
  await locked;
  // one token back every 5 s: the right key gets in when the refusal said, and gives it back
  assert.ok(retryS >= 1 && retryS <= 5, `retry in ${retryS} s`);
  await sleep(retryS * 1000 + 300);
  const ok = await wsAuth(hub, { api_key: world.keys[2] }, from(ip));
  assert.equal(ok.reply.role, 'cabinet', JSON.stringify(ok.reply));
  ok.c.close();
});

test('wrong promo codes per user: past the limit even the real code is refused with 429', async () => {
  const user = await newUser(world.pg);
  for (let i = 0; i < 3; i++) {
    const res = await api(hub, 'POST', '/promos/use', user, { body: { code: `NOPE${i}` }, headers: from(freshIp()) });
    assert.equal(res.status, 404, res.text);
  }
  assertLimited(await api(hub, 'POST', '/promos/use', user, { body: { code: 'WELCOME10' }, headers: from(freshIp()) }));
  const uses = await world.pg.psql(
    `SELECT count(*) FROM promo_uses u JOIN users x ON x.id = u.user_id WHERE x.firebase_uid = '${user.uid}'`,
  );
  assert.equal(uses, '0');
  // a user with a clean record: the right code works, and costs no budget
  const other = await newUser(world.pg);
  const ok = await api(hub, 'POST', '/promos/use', other, { body: { code: 'WELCOME10' }, headers: from(freshIp()) });
  assert.equal(ok.status, 200, ok.text);
  assert.ok((await limitCounts(hub, 'promo_fail')).refused >= 1);
});

test('X-Forwarded-For: the right-most untrusted entry behind a trusted proxy; invalid -> the peer', async () => {
  const ip = freshIp();
  await drainRest(hub, ip);
  const [prepended, hop] = await Promise.all([
    // a client cannot escape by prepending addresses: the proxy appended the real one
    http(hub, 'GET', '/api/v1/games', { headers: from(`${freshIp()}, ${ip}`) }),
    // a trusted hop on the right is skipped
    http(hub, 'GET', '/api/v1/games', { headers: from(`${ip}, 127.0.0.1`) }),
  ]);
  assertLimited(prepended);
  assertLimited(hop);
  // garbage: the peer (127.0.0.1) is the client, with a budget of its own
  assert.equal((await http(hub, 'GET', '/api/v1/games', { headers: from('not-an-ip') })).status, 200);
});

test('X-Forwarded-For from an untrusted peer is ignored', async () => {
  const plain = await startHub({ pg: world.pg, redis: world.redis, limits: true, env: { HUB_LIMIT_REST_IP: '3/60' } });
  for (let i = 0; i < 3; i++) {
    const res = await http(plain, 'GET', '/api/v1/games', { headers: from(freshIp()) });
    assert.equal(res.status, 200);
  }
  assertLimited(await http(plain, 'GET', '/api/v1/games', { headers: from(freshIp()) }));
  await plain.stop();
});

test('two hubs share one budget: wrong keys spread over both are cut off at the limit, not twice it', async () => {
  const env = { HUB_LIMIT_CABINET_KEY: '4/600' };
  const [a, b] = await Promise.all([
    startHub({ pg: world.pg, redis: world.redis, limits: true, env }),
    startHub({ pg: world.pg, redis: world.redis, limits: true, env }),
  ]);
  const bad = wrongKey(world.keys[3]);
  const codes = [];
  for (let i = 0; i < 8; i++) codes.push((await wsAuth(i % 2 ? b : a, { api_key: bad })).code);
  assert.deepEqual(codes, [4001, 4001, 4001, 4001, 4008, 4008, 4008, 4008]);
  const [ca, cb] = [await limitCounts(a, 'cabinet_key_fail'), await limitCounts(b, 'cabinet_key_fail')];
  assert.equal(ca.allowed + cb.allowed, 4);
  assert.equal(ca.refused + cb.refused, 4);
  await Promise.all([a.stop(), b.stop()]);
});

test('Redis down: each process still limits on its own, and the shared budget is back with Redis', async () => {
  const redis = await startRedis();
  const env = { HUB_LIMIT_TOKEN: '2/600' };
  const h = await startHub({ pg: world.pg, redis, limits: true, env });
  await waitFor(async () => (await metric(h, 'rn_bus_up')) === 1, { what: 'bus up' });
  await redis.stop();
  await waitFor(async () => (await metric(h, 'rn_bus_up')) === 0, { what: 'bus down' });
  const bad = token(h, 'demo-alice', { secret: 'not-the-secret' });
  const local = await metric(h, 'rn_limit_local_total');
  assertError(await http(h, 'GET', '/api/v1/auth/me', { token: bad }), 401, 'unauthenticated');
  assertError(await http(h, 'GET', '/api/v1/auth/me', { token: bad }), 401, 'unauthenticated');
  assertLimited(await http(h, 'GET', '/api/v1/auth/me', { token: bad }));
  assert.ok((await metric(h, 'rn_limit_local_total')) >= local + 3, 'decided locally');
  await redis.start();
  await waitFor(async () => (await metric(h, 'rn_bus_up')) === 1, { timeoutMs: 20000, what: 'bus up again' });
  const shared = await metric(h, 'rn_limit_local_total');
  // Redis's bucket (fresh after the restart) decides again
  assertError(await http(h, 'GET', '/api/v1/auth/me', { token: bad }), 401, 'unauthenticated');
  assert.equal(await metric(h, 'rn_limit_local_total'), shared, 'decided by Redis');
  assert.ok(Number(await redis.cli('EXISTS', 'rn:{rl}:token_fail:127.0.0.1')) === 1, 'the bucket lives in Redis');
  const ttl = Number(await redis.cli('PTTL', 'rn:{rl}:token_fail:127.0.0.1'));
  assert.ok(ttl > 0 && ttl <= 601000, `the bucket expires (PTTL ${ttl})`);
  await h.stop();
});

test('Redis frozen (SIGSTOP): no request waits on it for more than about a second', async () => {
  const redis = await startRedis();
  const h = await startHub({ pg: world.pg, redis, limits: true, env: { HUB_LIMIT_TOKEN: '2/600' } });
  await waitFor(async () => (await metric(h, 'rn_bus_up')) === 1, { what: 'bus up' });
  const pid = Number(fs.readFileSync(path.join(redis.dir, 'redis.pid'), 'utf8'));
  const bad = token(h, 'demo-alice', { secret: 'not-the-secret' });
  process.kill(pid, 'SIGSTOP');
  try {
    const t0 = Date.now();
    // the bus notices a frozen Redis only after three missed pings (3 s or more)
    assertError(await http(h, 'GET', '/api/v1/auth/me', { token: bad }), 401, 'unauthenticated');
    const took = Date.now() - t0;
    assert.ok(took < 2500, `answered after ${took} ms`);
    assert.ok((await metric(h, 'rn_limit_local_total')) >= 1, 'decided locally');
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  await h.stop();
});

test('every limit recovers after its refill (REST 429 / WebSocket 4008, then allowed again)', async () => {
  // one token every 2 s everywhere; the user and per-IP socket budgets a little larger, so
  // that the promo and cabinet attempts (which also count there) hit their own limit first
  const env = {
    HUB_LIMIT_REST_IP: '2/4',
    HUB_LIMIT_REST_USER: '3/6',
    HUB_LIMIT_WS_IP: '3/6',
    HUB_LIMIT_WS_USER: '2/4',
    HUB_LIMIT_CABINET_KEY: '2/4',
    HUB_LIMIT_PROMO: '2/4',
    HUB_LIMIT_TOKEN: '2/4',
  };
  const h = await startHub({ pg: world.pg, redis: world.redis, limits: true, env, args: ['--trusted-proxies', '127.0.0.1'] });
  const restUser = await newUser(world.pg);
  const promoUser = await newUser(world.pg);
  const wsUid = `refill-${Date.now()}`;
  const ips = { rest: freshIp(), token: freshIp(), ws: freshIp(), cabinet: freshIp() };
  const bad = token(h, 'demo-alice', { secret: 'not-the-secret' });
  const badKey = wrongKey(world.keys[1]);
  const wsStatus = async (frame, ip) => {
    const r = await wsAuth(h, frame, from(ip));
    if (r.reply.type === 'ok') r.c.close();
    return r.reply.type === 'ok' ? 'ok' : r.reply.code === 'rate_limited' ? 429 : r.code;
  };
  // Each attempt, as a status: 429 when its limit refused it.
  const attempts = {
    rest_ip: async () => (await http(h, 'GET', '/api/v1/games', { headers: from(ips.rest) })).status,
    rest_user: async () => (await api(h, 'GET', '/auth/me', restUser, { headers: from(freshIp()) })).status,
    token_fail: async () => (await http(h, 'GET', '/api/v1/auth/me', { token: bad, headers: from(ips.token) })).status,
    promo_fail: async () =>
      (await api(h, 'POST', '/promos/use', promoUser, { body: { code: 'NOPE' }, headers: from(freshIp()) })).status,
    ws_ip: () => wsStatus({ token: token(h, `refill-ip-${Date.now()}-${Math.random()}`) }, ips.ws),
    ws_user: () => wsStatus({ token: token(h, wsUid) }, freshIp()),
    cabinet_key_fail: () => wsStatus({ api_key: badKey }, ips.cabinet),
  };
  const expected = { rest_ip: 200, rest_user: 200, token_fail: 401, promo_fail: 404, ws_ip: 'ok', ws_user: 'ok', cabinet_key_fail: 4001 };
  for (const [name, attempt] of Object.entries(attempts)) {
    let n = 0;
    for (;;) {
      const status = await attempt();
      if (status === 429) break;
      assert.equal(status, expected[name], `${name}: attempt ${n + 1}`);
      assert.ok(++n <= 5, `${name}: never refused`);
    }
  }
  const refused = await Promise.all(Object.keys(attempts).map(async (l) => (await limitCounts(h, l)).refused));
  assert.ok(refused.every((r) => r >= 1), `each limit counted a refusal: ${refused}`);
  await sleep(2500); // a token comes back every 2 s: the refill is the thing under test
  for (const [name, attempt] of Object.entries(attempts)) assert.equal(await attempt(), expected[name], `${name} after the refill`);
  await h.stop();
});
