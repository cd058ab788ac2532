// GET /openapi.json: protocol/openapi.json, served by the hub, describes every
// REST route the hub registers. The binary lists its routes itself
// (`retronova-hub routes`), so a route added without its documentation, or
// documentation of a route that does not exist, fails here.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startPostgres, startRedis, startHub, http, run, HUB_BIN, SOURCE_DIR } from '../lib/harness.js';

let hub;

before(async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  hub = await startHub({ pg, redis });
});

/*
 * The hub's own route table, from `retronova-hub routes`: one
 * "METHOD PATTERN ACCESS [debug]" line per route. Debug routes (test builds
 * only) are for the suites, not for clients, so they are left out.
 */
async function registeredRoutes() {
  const { stdout } = await run(HUB_BIN, ['routes']);
  const routes = [];
  for (const line of stdout.split('\n').filter(Boolean)) {
    const m = /^([A-Z]+) (\/\S*) (public|user|admin)( debug)?$/.exec(line);
    assert.ok(m, `retronova-hub routes: unexpected line ${JSON.stringify(line)}`);
    if (!m[4]) routes.push({ method: m[1].toLowerCase(), path: m[2], access: m[3] });
  }
  return routes;
}

test('retronova-hub routes needs no database, and refuses arguments', async () => {
  const { stdout } = await run(HUB_BIN, ['routes'], { env: { DATABASE_URL: '', REDIS_URL: '' } });
  assert.match(stdout, /^GET \/healthz public$/m);
  await assert.rejects(run(HUB_BIN, ['routes', 'extra']), /exit 2/);
});

let spec;
async function getSpec() {
  if (spec) return spec;
  const res = await http(hub, 'GET', '/openapi.json');
  assert.equal(res.status, 200, res.text.slice(0, 500));
  assert.match(res.headers['content-type'] || '', /^application\/json/);
  spec = JSON.parse(res.text); // throws (fails the test) when it is not JSON
  return spec;
}

test('GET /openapi.json is 200, JSON, OpenAPI 3.0.x, and the same as protocol/openapi.json', async () => {
  const doc = await getSpec();
  assert.match(String(doc.openapi), /^3\.0\.\d+$/);
  assert.equal(typeof doc.info?.title, 'string');
  assert.equal(typeof doc.paths, 'object');
  const file = JSON.parse(fs.readFileSync(path.join(SOURCE_DIR, 'protocol', 'openapi.json'), 'utf8'));
  assert.deepEqual(doc, file);
});

test('every route the binary serves is documented, with its access rule', async () => {
  const doc = await getSpec();
  const routes = await registeredRoutes();
  assert.ok(routes.length >= 25, `only ${routes.length} routes listed`);
  const missing = [];
  for (const r of routes) {
    const operation = doc.paths[r.path]?.[r.method];
    if (!operation) {
      missing.push(`${r.method.toUpperCase()} ${r.path}`);
      continue;
    }
    const where = `${r.method.toUpperCase()} ${r.path}`;
    assert.equal(operation['x-access'], r.access, `${where}: x-access`);
    const security = operation.security ?? doc.security ?? [];
    const anonymous = security.length === 0 || security.some((s) => Object.keys(s).length === 0);
    const bearer = security.some((s) => 'bearerAuth' in s);
    if (r.access === 'public') assert.ok(anonymous, `${where}: public, so callable without a token`);
    else assert.ok(bearer && !anonymous, `${where}: needs the bearerAuth security`);
    if (r.access !== 'public') assert.ok(operation.responses['401'], `${where}: documents 401`);
    if (r.access === 'admin') assert.ok(operation.responses['403'], `${where}: documents 403`);
    // path parameters are declared
    for (const [, name] of r.path.matchAll(/\{(\w+)\}/g)) {
      const params = (operation.parameters || []).map((p) =>
        p.$ref ? doc.components.parameters[p.$ref.split('/').pop()] : p);
      assert.ok(params.some((p) => p.in === 'path' && p.name === name), `${where}: path parameter ${name}`);
    }
  }
  assert.deepEqual(missing, [], `routes missing from protocol/openapi.json:\n${missing.join('\n')}`);

  // and nothing documented that the hub does not serve
  const served = new Set(routes.map((r) => `${r.method} ${r.path}`));
  const extra = [];
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const method of Object.keys(item)) {
      if (['get', 'put', 'post', 'delete', 'patch', 'head', 'options'].includes(method) && !served.has(`${method} ${p}`))
        extra.push(`${method.toUpperCase()} ${p}`);
    }
  }
  assert.deepEqual(extra, [], `documented but not registered:\n${extra.join('\n')}`);
});

test('ticket-moving requests take an Idempotency-Key; errors use the error envelope', async () => {
  const doc = await getSpec();
  const resolve = (o) => {
    while (o && o.$ref) {
      const [, , kind, name] = o.$ref.split('/');
      o = doc.components[kind][name];
    }
    return o;
  };
  for (const [method, p] of [
    ['post', '/api/v1/reservations'],
    ['post', '/api/v1/tickets/purchase'],
    ['post', '/api/v1/promos/use'],
    ['put', '/api/v1/admin/users/{id}/tickets'],
  ]) {
    const params = (doc.paths[p][method].parameters || []).map(resolve);
    assert.ok(params.some((x) => x.in === 'header' && x.name === 'Idempotency-Key'), `${method} ${p}: Idempotency-Key`);
  }
  const error = resolve(doc.components.schemas.Error);
  assert.deepEqual(error.required, ['error']);
  assert.deepEqual([...error.properties.error.required].sort(), ['code', 'message']);
  // every $ref points at something
  const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) || [];
  for (const r of new Set(refs)) {
    const target = JSON.parse(`{${r}}`).$ref;
    assert.ok(resolve({ $ref: target }), `dangling ${target}`);
  }
});

test('the hub answers an unknown route with the documented error envelope', async () => {
  const res = await http(hub, 'GET', '/api/v1/no-such-route');
  assert.equal(res.status, 404);
  assert.equal(res.json?.error?.code, 'not_found');
  assert.equal(typeof res.json.error.message, 'string');
});
