// Firebase keys fetched live over HTTPS (issue 7, item 8). The test serves the
// key document itself on loopback, under a CA it makes, and rotates it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startPostgres, startRedis, startHub, http, connectWs, waitFor, tmpDir, parseMetrics } from '../lib/harness.js';

const PROJECT = 'rn-test-project';
const REFETCH_MS = 4000;
let pg, redis, dir, server, port, hub;
const keys = {}; // name -> { key (private PEM), cert (PEM) }
const served = { mode: 'ok', doc: {}, maxAge: 2, hits: 0 };

const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
const file = (name) => fs.readFileSync(path.join(dir, name), 'utf8');

function makePki() {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=rn test CA');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '2', '-extfile', 'ext.cnf');
  for (const k of ['k1', 'k2', 'k3', 'k4']) {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${k}.key`, '-out', `${k}.pem`, '-days', '2', '-subj', `/CN=${k}`);
    keys[k] = { key: file(`${k}.key`), cert: file(`${k}.pem`) };
  }
}

function listen(p = 0) {
  server = https.createServer({ key: file('srv.key'), cert: file('srv.pem') }, (req, res) => {
    served.hits++;
    if (served.mode === 'huge') {
      // A valid-looking document past the hub's 256 KiB cap.
      const body = JSON.stringify({ k2: served.doc.k2, pad: 'x'.repeat(300 * 1024) });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (served.mode === '500') {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end('backend error');
      return;
    }
    const body = JSON.stringify(served.doc);
    res.writeHead(200, {
      'Content-Type': 'application/json; charset=UTF-8',
      'Cache-Control': `public, max-age=${served.maxAge}, must-revalidate, no-transform`,
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  });
  return new Promise((resolve) => server.listen(p, '127.0.0.1', () => resolve(server.address().port)));
}

function closeServer() {
  return new Promise((resolve) => {
    server.close(resolve);
    server.closeAllConnections();
  });
}

const b64url = (x) => Buffer.from(x).toString('base64url');

/* A Firebase-shaped ID token signed with keys[signer], naming kid. */
function idToken(uid, kid, signer = kid) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: 'RS256', kid, typ: 'JWT' }));
  const body = b64url(
    JSON.stringify({ iss: `https://securetoken.google.com/${PROJECT}`, aud: PROJECT, sub: uid, iat: now, exp: now + 3600, auth_time: now }),
  );
  const sig = crypto.sign('sha256', Buffer.from(`${head}.${body}`), keys[signer].key);
  return `${head}.${body}.${b64url(sig)}`;
}

/* The auth reply of a fresh WebSocket for tok: {type:'ok',...} or {type:'error',...}. */
async function wsAuth(tok) {
  const c = await connectWs(hub);
  try {
    return await c.request({ type: 'auth', token: tok }, 15000);
  } finally {
    c.terminate();
  }
}

async function fbMetrics(h = hub) {
  const res = await http(h, 'GET', '/metrics');
  const get = (name) => parseMetrics(res.text).find((s) => s.name === name)?.value;
  return {
    age: get('rn_firebase_key_age_seconds'),
    keys: get('rn_firebase_keys'),
    fetches: get('rn_firebase_key_fetches_total'),
    failures: get('rn_firebase_key_refresh_failures_total'),
    kidRefetches: get('rn_firebase_key_kid_refetches_total'),
  };
}

const hubArgs = (extra = []) => [
  '--firebase-project', PROJECT,
  '--firebase-keys-url', `https://127.0.0.1:${port}/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com`,
  '--firebase-refetch-ms', String(REFETCH_MS),
  ...extra,
];

before(async () => {
  dir = tmpDir('rn-fbkeys-');
  makePki();
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  port = await listen();
});

after(async () => {
  if (server.listening) await closeServer();
});

test('/readyz is 503 until a key document is loaded, then 200; /metrics shows it', async () => {
  served.mode = '500';
  served.doc = { k1: keys.k1.cert };
  hub = await startHub({ pg, redis, args: hubArgs(['--firebase-ca-file', path.join(dir, 'ca.pem')]) });
  await waitFor(() => served.hits >= 1, { what: 'the first fetch' });
  const r = await http(hub, 'GET', '/readyz');
  assert.equal(r.status, 503);
  assert.deepEqual(r.json, { status: 'unavailable', postgres: r.json.postgres, redis: r.json.redis, bus: r.json.bus, firebase_keys: 'none' });
  await waitFor(async () => (await fbMetrics()).failures >= 1, { what: 'a counted failure' });
  assert.equal((await fbMetrics()).age, -1, 'no keys yet: age -1');
  assert.match(hub.logs(), /firebase keys refresh failed.*HTTP status 500/);

  served.mode = 'ok';
  const ready = await waitFor(
    async () => {
      const x = await http(hub, 'GET', '/readyz');
      return x.status === 200 && x;
    },
    { timeoutMs: 20000, what: '/readyz 200 once the keys load (retry with backoff)' },
  );
  assert.deepEqual(ready.json, { status: 'ready', postgres: 'up', redis: 'up', bus: 'redis', firebase_keys: 'loaded' });
  const m = await fbMetrics();
  assert.equal(m.keys, 1);
  assert.ok(m.age >= 0 && m.age < 10, `key age ${m.age}`);
});

test('a token signed with a served key is accepted; a forged one is not', async () => {
  const ok = await wsAuth(idToken('fb-alice', 'k1'));
  assert.equal(ok.type, 'ok', JSON.stringify(ok));
  assert.equal(ok.uid, 'fb-alice');
  const forged = await wsAuth(idToken('fb-alice', 'k1', 'k2'));
  assert.equal(forged.type, 'error');
  assert.match(forged.message, /bad_signature/);
  // REST verifies with the same keys.
  const me = await http(hub, 'GET', '/api/v1/auth/me', { token: idToken('fb-alice', 'k1', 'k2') });
  assert.equal(me.status, 401);
});

test('rotation: the document is refreshed per max-age=2 and the new key works without a restart', async () => {
  const before = await fbMetrics();
  served.doc = { k2: keys.k2.cert };
  const hits = served.hits;
  // Two refreshes on the max-age timer alone, with no token asking for them.
  await waitFor(() => served.hits >= hits + 2, { timeoutMs: 15000, what: 'two refreshes at max-age=2' });
  const m = await fbMetrics();
  assert.equal(m.kidRefetches, before.kidRefetches, 'no unknown kid was involved');
  assert.ok(m.fetches >= before.fetches + 2);
  const ok = await wsAuth(idToken('fb-bob', 'k2'));
  assert.equal(ok.type, 'ok', JSON.stringify(ok));
  assert.equal((await fbMetrics()).kidRefetches, before.kidRefetches, 'k2 was already loaded');
});

test('an outage of the endpoint (oversized answer, 500s, closed port) leaves the old keys working', async () => {
  const base0 = await fbMetrics();
  served.mode = 'huge';
  await waitFor(async () => (await fbMetrics()).failures >= base0.failures + 1, { timeoutMs: 15000, what: 'an oversized answer refused' });
  assert.match(hub.logs(), /firebase keys refresh failed.*larger than/);
  assert.equal((await wsAuth(idToken('fb-bob', 'k2'))).type, 'ok', 'old key kept past an oversized answer');

  const base = await fbMetrics();
  served.mode = '500';
  await waitFor(async () => (await fbMetrics()).failures >= base.failures + 2, { timeoutMs: 15000, what: 'two failed refreshes' });
  assert.equal((await wsAuth(idToken('fb-bob', 'k2'))).type, 'ok', 'old key kept through 500s');

  await closeServer();
  const mid = await fbMetrics();
  await waitFor(async () => (await fbMetrics()).failures >= mid.failures + 1, { timeoutMs: 20000, what: 'a refused connection counted' });
  assert.match(hub.logs(), /firebase keys refresh failed.*cannot connect to 127\.0\.0\.1/);
  assert.equal((await wsAuth(idToken('fb-bob', 'k2'))).type, 'ok', 'old key kept while the port is closed');
  const m = await fbMetrics();
  assert.equal(m.keys, 1);
  assert.ok(m.age > 1, `the keys in use grow old (${m.age} s)`);
  assert.equal((await http(hub, 'GET', '/readyz')).status, 200, 'keys loaded once: still ready');

  served.mode = 'ok';
  served.maxAge = 3600; // from here on only unknown kids trigger fetches
  await listen(port);
  const back = await fbMetrics();
  await waitFor(async () => (await fbMetrics()).fetches > back.fetches, { timeoutMs: 70000, what: 'a good fetch after the outage' });
});

test('an unknown kid refetches at most once per interval, and is accepted after the refetch that finds it', async () => {
  await new Promise((r) => setTimeout(r, REFETCH_MS)); // let any earlier refetch interval pass
  const hits = served.hits;
  const t0 = Date.now();
  for (let i = 0; i < 6; i++) {
    const r = await wsAuth(idToken('fb-eve', 'k3'));
    assert.equal(r.type, 'error');
    assert.match(r.message, /unknown_kid/);
  }
  const elapsed = Date.now() - t0;
  const fetched = served.hits - hits;
  assert.ok(fetched >= 1, 'an unknown kid refetches');
  assert.ok(fetched <= 1 + Math.floor(elapsed / REFETCH_MS), `${fetched} fetches in ${elapsed} ms`);

  // Google rotates k3 in: once the interval has passed, the first token with
  // that kid waits for the refetch it starts and is accepted.
  served.doc = { k2: keys.k2.cert, k3: keys.k3.cert };
  await new Promise((r) => setTimeout(r, REFETCH_MS + 200));
  const before = served.hits;
  const ok = await wsAuth(idToken('fb-eve', 'k3'));
  assert.equal(ok.type, 'ok', JSON.stringify(ok));
  assert.equal(served.hits, before + 1, 'exactly one refetch');
  assert.equal((await fbMetrics()).keys, 2);

  // REST waits the same way: k4 rotated in, the first request signed with it is
  // answered after the one refetch it starts (not 401), body and all.
  served.doc = { k3: keys.k3.cert, k4: keys.k4.cert };
  await new Promise((r) => setTimeout(r, REFETCH_MS + 200));
  const before4 = served.hits;
  const me = await http(hub, 'GET', '/api/v1/auth/me', { token: idToken('fb-eve', 'k4') });
  assert.notEqual(me.status, 401, me.text);
  assert.equal(me.status, 404, me.text); // authenticated: no profile yet
  assert.equal(me.json.error.code, 'not_registered');
  assert.equal(served.hits, before4 + 1, 'exactly one refetch for REST');
  // an unknown kid that the refetch does not bring is still refused
  const forged = await http(hub, 'POST', '/api/v1/auth/register', { token: idToken('fb-eve', 'k1', 'k1'), body: { pseudo: 'eve' } });
  assert.equal(forged.status, 401, forged.text);
});

test('a server certificate the hub does not trust is refused and logged', async () => {
  const other = await startHub({ pg, redis, args: hubArgs() }); // system CAs only
  await waitFor(() => /firebase keys refresh failed.*certificate.*refused/.test(other.logs()), {
    timeoutMs: 10000,
    what: 'the certificate error',
  });
  const r = await http(other, 'GET', '/readyz');
  assert.equal(r.status, 503);
  assert.equal(r.json.firebase_keys, 'none');
  assert.equal(await other.stop(), 0);
  assert.equal(await hub.stop(), 0);
});
