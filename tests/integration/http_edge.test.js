// Every static file and every REST route under HEAD, GET and OPTIONS, pipelined
// on keep-alive connections (anonymous and with an admin token), plus clients
// that go away mid-response; the browser-facing headers (nosniff,
// Referrer-Policy, CSP with frame-ancestors 'none'); CORS for /api/v1 from the
// configured origins only; no debug route in /openapi.json nor served without
// --debug-routes. The hub must still answer /healthz and exit clean (the
// harness fails the file on a crash, a non-zero exit or a sanitizer report).

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SOURCE_DIR, applyDemo, http, startHub, startPostgres, startRedis, token } from '../lib/harness.js';
import { rawConnect, rawOnce } from '../lib/rawhttp.js';

const ALLOWED = 'http://app.example:8443';
let hub, admin;

before(async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  hub = await startHub({
    pg, redis,
    args: ['--web-root', path.join(SOURCE_DIR, 'web-demo'), '--cors-origins', `https://other.example, ${ALLOWED}`],
  });
  admin = token(hub, 'demo-admin', { admin: true });
});

/* Every file under web-demo/ (vendor/ included), as the hub serves it. */
function walk(dir, prefix = '') {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name), `${prefix}/${e.name}`) : [`${prefix}/${e.name}`]);
}
const staticFiles = () => ['/', '/retronova.js', ...walk(path.join(SOURCE_DIR, 'web-demo'))];

/* Every (method, path) of /openapi.json, path parameters set to 1. */
async function documentedRoutes() {
  const res = await http(hub, 'GET', '/openapi.json');
  assert.equal(res.status, 200);
  const out = [];
  for (const [p, item] of Object.entries(res.json.paths))
    for (const m of Object.keys(item))
      if (['get', 'post', 'put', 'patch', 'delete'].includes(m)) out.push({ method: m.toUpperCase(), path: p.replace(/\{\w+\}/g, '1') });
  return out;
}

/* Sends reqs pipelined on one connection; resolves their answers in order. */
async function pipeline(reqs) {
  const c = await rawConnect(hub, { timeoutMs: 30000 });
  const text = reqs.map(({ method, path: p, headers = '' }) => `${method} ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`).join('');
  await c.send(text);
  const heads = reqs.map((r, i) => (r.method === 'HEAD' ? i : -1)).filter((i) => i >= 0);
  const res = await c.responses(reqs.length, { heads });
  assert.equal(c.ended, false, 'keep-alive: the connection stays open');
  c.destroy();
  return res;
}

function assertSecurityHeaders(res, where, { csp }) {
  assert.equal(res.headers['x-content-type-options'], 'nosniff', where);
  assert.equal(res.headers['referrer-policy'], 'no-referrer', where);
  if (csp) {
    const policy = res.headers['content-security-policy'] || '';
    assert.match(policy, /frame-ancestors 'none'/, where);
    assert.match(policy, /default-src 'self'/, where);
    assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval/, where);
  }
}

test('HEAD, GET and OPTIONS of every static file, pipelined on one keep-alive connection', async () => {
  const files = staticFiles();
  assert.ok(files.length >= 10, files.join(' '));
  const reqs = files.flatMap((p) => [{ method: 'HEAD', path: p }, { method: 'GET', path: p }, { method: 'OPTIONS', path: p }]);
  const res = await pipeline(reqs);
  for (let i = 0; i < files.length; i++) {
    const [h, g, o] = res.slice(3 * i, 3 * i + 3);
    const where = files[i];
    assert.equal(g.status, 200, where);
    const file = where === '/' ? 'web-demo/index.html' : where === '/retronova.js' ? 'protocol/retronova.js' : `web-demo${where}`;
    assert.equal(g.body.length, fs.statSync(path.join(SOURCE_DIR, file)).size, where);
    assert.equal(h.status, 200, where);
    assert.equal(h.body.length, 0, `${where}: HEAD has no body`);
    assert.equal(h.headers['content-length'], String(g.body.length), `${where}: HEAD gives GET's length`);
    assert.equal(h.headers['content-type'], g.headers['content-type'], where);
    assertSecurityHeaders(g, where, { csp: true });
    assertSecurityHeaders(h, where, { csp: true });
    assert.equal(o.status, 204, where);
    assert.match(o.headers.allow || '', /GET/, where);
  }
});

test('HEAD, GET and OPTIONS of every route, with and without a token, never crash nor 500', async () => {
  const routes = await documentedRoutes();
  assert.ok(routes.length >= 25);
  const paths = [...new Set(routes.map((r) => r.path))];
  for (const headers of ['', `Authorization: Bearer ${admin}\r\n`]) {
    // the routes with a body, one connection each (an answer given before the body is read closes it)
    for (const r of routes.filter((x) => x.method !== 'GET')) {
      const body = r.method === 'DELETE' ? '' : '{}';
      const res = await rawOnce(hub, `${r.method} ${r.path} HTTP/1.1\r\nHost: x\r\n${headers}Content-Length: ${body.length}\r\n\r\n${body}`);
      const where = `${r.method} ${r.path}${headers ? ' (admin)' : ''}`;
      assert.ok(res.status < 500 || res.status === 503, `${where}: ${res.status} ${res.body}`);
      assert.equal(typeof res.json?.error?.code === 'string' || res.status < 400, true, `${where}: JSON error`);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', where);
    }
    // HEAD, GET and OPTIONS of every path, pipelined on one keep-alive connection
    const reqs = paths.flatMap((p) => ['HEAD', 'GET', 'OPTIONS'].map((method) => ({ method, path: p, headers })));
    const res = await pipeline(reqs);
    res.forEach((r, i) => {
      const where = `${reqs[i].method} ${reqs[i].path}${headers ? ' (admin)' : ''}`;
      assert.ok(r.status < 500 || r.status === 503, `${where}: ${r.status} ${r.body}`);
      assert.equal(r.headers['x-content-type-options'], 'nosniff', where);
      if (reqs[i].method === 'OPTIONS') {
        assert.equal(r.status, 204, where);
        assert.match(r.headers.allow, /OPTIONS/, where);
      } else if (reqs[i].method === 'HEAD') {
        assert.equal(r.body.length, 0, where);
        const g = res[i + 1]; // the GET of the same path, sent right after
        if (g.status === r.status && !/metrics|readyz/.test(reqs[i].path))
          assert.equal(r.headers['content-length'], g.headers['content-length'], where);
      } else if (r.status >= 400) {
        assert.equal(typeof r.json?.error?.code, 'string', `${where}: JSON error`);
      }
    });
  }
  const res = await http(hub, 'PATCH', '/healthz');
  assert.equal(res.status, 405);
  assert.match(res.headers.allow, /GET, OPTIONS, HEAD|GET.*HEAD/);
});

test('clients that go away mid-response, in the middle of pipelines of HEAD and GET', async () => {
  const files = staticFiles();
  for (let i = 0; i < 15; i++) {
    const c = await rawConnect(hub);
    const reqs = files.map((p, j) => `${j % 2 ? 'HEAD' : 'GET'} ${p} HTTP/1.1\r\nHost: x\r\n\r\n`).join('') +
      'GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(5);
    await c.send(reqs);
    if (i % 3) await c.responses(1 + (i % files.length), { heads: files.map((_, j) => (j % 2 ? j : -1)) });
    if (i % 2) c.sock.resetAndDestroy();
    else c.destroy();
  }
  const res = await http(hub, 'GET', '/healthz');
  assert.equal(res.status, 200);
});

test('API JSON answers carry nosniff and Referrer-Policy; HTML has a CSP that forbids framing', async () => {
  const api = await http(hub, 'GET', '/api/v1/arcades');
  assert.equal(api.status, 200);
  assertSecurityHeaders(api, '/api/v1/arcades', { csp: false });
  for (const page of ['/admin.html', '/phone.html', '/cabinet.html', '/']) {
    const res = await http(hub, 'GET', page);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/html/);
    assertSecurityHeaders(res, page, { csp: true });
    // the pages must work under the policy: no inline script or style
    assert.doesNotMatch(res.text, /<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=/i, page);
  }
});

test('CORS: preflight from an allowed origin; other origins and other paths get no CORS headers', async () => {
  const preflight = (origin, p = '/api/v1/auth/me') => http(hub, 'OPTIONS', p, {
    headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
  });
  let res = await preflight(ALLOWED);
  assert.equal(res.status, 204);
  assert.equal(res.headers['access-control-allow-origin'], ALLOWED);
  assert.match(res.headers.vary, /Origin/);
  for (const m of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']) assert.match(res.headers['access-control-allow-methods'], new RegExp(m));
  for (const h of ['Authorization', 'Content-Type', 'Idempotency-Key']) assert.match(res.headers['access-control-allow-headers'], new RegExp(h));
  assert.ok(Number(res.headers['access-control-max-age']) > 0);

  res = await preflight('https://evil.example');
  assert.equal(res.status, 204);
  assert.equal(res.headers['access-control-allow-origin'], undefined);
  assert.equal(res.headers['access-control-allow-methods'], undefined);
  res = await preflight(`${ALLOWED}.evil.example`);
  assert.equal(res.headers['access-control-allow-origin'], undefined, 'prefix of an allowed origin');
  res = await preflight(ALLOWED, '/healthz');
  assert.equal(res.headers['access-control-allow-origin'], undefined, 'outside /api/v1');
  res = await preflight(ALLOWED, '/api/v1/no-such-route');
  assert.equal(res.status, 404);

  // actual answers: the exact origin, Vary, and what a client reads (Retry-After)
  res = await http(hub, 'GET', '/api/v1/auth/me', { token: admin, headers: { Origin: ALLOWED } });
  assert.equal(res.headers['access-control-allow-origin'], ALLOWED);
  assert.match(res.headers['access-control-expose-headers'], /Retry-After/);
  assert.match(res.headers.vary, /Origin/);
  res = await http(hub, 'GET', '/api/v1/arcades', { headers: { Origin: 'https://evil.example' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers['access-control-allow-origin'], undefined);
  res = await http(hub, 'GET', '/api/v1/arcades');
  assert.equal(res.headers['access-control-allow-origin'], undefined);
});

test('no debug route in /openapi.json, and none served without --debug-routes', async () => {
  const res = await http(hub, 'GET', '/openapi.json');
  assert.equal(res.text.includes('/debug'), false);
  const sleep = await http(hub, 'GET', '/api/v1/debug/sleep?ms=1');
  assert.equal(sleep.status, 404);
  assert.equal(sleep.json?.error?.code, 'not_found');
  const alive = await http(hub, 'GET', '/healthz');
  assert.equal(alive.status, 200);
});
