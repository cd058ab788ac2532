// The HTTP edge under a hostile client, over raw sockets (tests/lib/rawhttp.js):
// malformed request lines, headers split byte by byte, slow senders, pipelines
// mixing HEAD and GET, abrupt closes (before the headers end, mid-body, while
// the SQL call is in flight, mid-response), oversized URI and headers,
// conflicting Content-Length, chunked bodies (valid, malformed, over the
// limit) and invalid UTF-8. Each asserts the exact status or behaviour; the
// hub must answer /healthz afterwards and exit clean (the harness fails the
// file on a crash, a non-zero exit or a sanitizer report).

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { applyDemo, http, parseMetrics, startHub, startPostgres, startRedis, token, waitFor } from '../lib/harness.js';
import { rawConnect, rawOnce } from '../lib/rawhttp.js';

let hub, pg, alice, admin;
const MAX_BODY = 2048;

before(async () => {
  let redis;
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  hub = await startHub({ pg, redis, args: ['--max-body', String(MAX_BODY)] });
  alice = token(hub, 'demo-alice');
  admin = token(hub, 'demo-admin', { admin: true });
});

const H = 'Host: 127.0.0.1\r\n';
const get = (path, extra = '') => `GET ${path} HTTP/1.1\r\n${H}${extra}\r\n`;
const head = (path, extra = '') => `HEAD ${path} HTTP/1.1\r\n${H}${extra}\r\n`;

async function assertAlive() {
  const res = await http(hub, 'GET', '/healthz');
  assert.equal(res.status, 200);
}

function assertJsonError(res, status, code) {
  assert.equal(res.status, status, res.body.toString());
  assert.match(res.headers['content-type'] || '', /^application\/json/);
  assert.equal(res.json?.error?.code, code, res.body.toString());
  assert.equal(typeof res.json.error.message, 'string');
  assert.equal(res.headers['x-content-type-options'], 'nosniff');
}

test('malformed request lines are refused and the connection closed', async () => {
  for (const line of ['GARBAGE\r\n\r\n', 'GET\r\n\r\n', 'FOO / HTTP/1.1\r\nHost: x\r\n\r\n', '\x00\x01\x02\r\n\r\n']) {
    const c = await rawConnect(hub);
    await c.send(line);
    assert.equal(await c.closed(5000), true, `${JSON.stringify(line)}: the connection stays open`);
    // lws answers 403 to a request line it cannot parse, or nothing at all; never a 2xx
    for (const res of c.parsed()) assert.ok(res.status >= 400, `${JSON.stringify(line)}: ${res.status}`);
    c.destroy();
  }
  await assertAlive();
});

test('a request split byte by byte, and a slow sender, are answered', async () => {
  const c = await rawConnect(hub);
  await c.sendBytewise(get('/healthz'));
  const [res] = await c.responses(1);
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { status: 'ok' });
  // a slow sender on the same keep-alive connection: 20 ms between bytes of the headers
  await c.sendBytewise(get('/readyz'), { gapMs: 20 });
  const [, second] = await c.responses(2);
  assert.equal(second.status, 200);
  c.destroy();
});

test('pipelined HEAD and GET, static and routes, are answered in order on one connection', async () => {
  const c = await rawConnect(hub);
  const reqs = [get('/healthz'), head('/index.html'), get('/style.css'), head('/healthz'),
    get('/api/v1/arcades'), head('/phone.html'), get('/index.html'), get('/nope.html')];
  await c.send(reqs.join(''));
  const heads = [1, 3, 5];
  const res = await c.responses(reqs.length, { heads });
  assert.deepEqual(res.map((r) => r.status), [200, 200, 200, 200, 200, 200, 200, 404]);
  assert.equal(res[1].body.length, 0, 'HEAD has no body');
  assert.ok(Number(res[1].headers['content-length']) > 100, 'HEAD gives the length of the GET');
  assert.equal(res[1].headers['content-length'], res[6].headers['content-length']);
  assert.equal(res[3].body.length, 0);
  assert.equal(res[3].headers['content-length'], String(res[0].body.length));
  assert.ok(Array.isArray(res[4].json?.items) || Array.isArray(res[4].json), res[4].body.toString().slice(0, 200));
  assert.equal(res[7].json?.error?.code, 'not_found');
  assert.equal(c.ended, false, 'keep-alive: still open');
  c.destroy();
  await assertAlive();
});

test('abrupt closes: before the headers end, mid-body, while the query runs, mid-response', async () => {
  for (let i = 0; i < 10; i++) {
    // before the end of the headers
    let c = await rawConnect(hub);
    await c.send(`GET /healthz HTTP/1.1\r\n${H}X-Partial: yes`);
    c.destroy();
    // mid-body
    c = await rawConnect(hub);
    await c.send(`POST /api/v1/auth/register HTTP/1.1\r\n${H}Authorization: Bearer ${alice}\r\n` +
      'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pseudo":');
    c.destroy();
    // while the SQL call is in flight: the answer comes back to a closed connection
    c = await rawConnect(hub);
    await c.send(get('/api/v1/arcades') + get(`/api/v1/users/search?q=al`, `Authorization: Bearer ${alice}\r\n`));
    c.destroy();
    // HEAD of a static file, then gone (the request curl -I used to crash the hub with)
    c = await rawConnect(hub);
    await c.send(head('/index.html'));
    c.destroy();
  }
  // mid-response: many large answers pipelined, the client reads a little and resets
  const c = await rawConnect(hub);
  await c.send(get('/openapi.json').repeat(30));
  await c.responses(1);
  c.sock.resetAndDestroy();
  await assertAlive();
});

test('the client leaves while its query waits in PostgreSQL: the late answer finds the request detached', async () => {
  const waiting = () => pg.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation " +
    "WHERE c.relname = 'arcades' AND NOT l.granted");
  // hold every read of arcades on a lock for a while
  const locked = pg.psql('BEGIN; LOCK TABLE arcades IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(1.5); COMMIT;');
  await waitFor(async () => (await pg.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation " +
    "WHERE c.relname = 'arcades' AND l.granted AND l.mode = 'AccessExclusiveLock'")) === '1', { timeoutMs: 5000, what: 'the lock' });
  const before = (await http(hub, 'GET', '/metrics')).text.match(/rn_http_responses_total\{code="2xx"\} (\d+)/)[1];
  const clients = [];
  for (let i = 0; i < 3; i++) {
    const c = await rawConnect(hub);
    await c.send(get('/api/v1/arcades') + head('/api/v1/arcades'));
    clients.push(c);
  }
  await waitFor(async () => Number(await waiting()) >= 1, { timeoutMs: 5000, what: 'a query waiting on the lock' });
  for (const c of clients) c.destroy(); // gone before any answer
  await locked;
  // the three late answers were produced (and counted) for requests whose connection is gone
  await waitFor(async () => {
    const now = (await http(hub, 'GET', '/metrics')).text.match(/rn_http_responses_total\{code="2xx"\} (\d+)/)[1];
    return Number(now) >= Number(before) + 3 + 1; // + the /metrics call itself
  }, { timeoutMs: 5000, what: 'the late answers' });
  assert.equal((await http(hub, 'GET', '/api/v1/arcades')).status, 200);
});

test('a request answered before its body is read: closed, and the request pipelined behind it never hangs the hub', async () => {
  // lws 4.1 spun its loop forever "discarding" such a body with a request behind it
  const post = `POST /api/v1/auth/register HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\n{}`;
  const c = await rawConnect(hub);
  await c.send(post + post + get('/healthz'));
  const [res] = await c.responses(1);
  assert.equal(res.status, 401);
  assert.equal(res.headers.connection, 'close');
  assert.equal(await c.closed(5000), true);
  c.destroy();
  // a body that is read first keeps the connection alive for the next request
  const d = await rawConnect(hub);
  await d.send(`POST /api/v1/auth/register HTTP/1.1\r\n${H}Authorization: Bearer ${alice}\r\nContent-Length: 2\r\n\r\n`);
  await d.send('{}');
  await d.send(get('/healthz'));
  const answers = await d.responses(2);
  assert.equal(answers[0].status, 400);
  assert.equal(answers[1].status, 200);
  d.destroy();
  await assertAlive();
});

test('an oversized URI gets 414, oversized headers 431, with the JSON error', async () => {
  let res = await rawOnce(hub, get(`/api/v1/arcades?x=${'a'.repeat(3000)}`));
  assertJsonError(res, 414, 'uri_too_long');
  res = await rawOnce(hub, get(`/${'a'.repeat(20000)}`));
  assertJsonError(res, 414, 'uri_too_long');
  // one known header over the limit (lws truncates it, the hub refuses it)
  res = await rawOnce(hub, get('/healthz', `Cookie: ${'c'.repeat(12000)}\r\n`));
  assertJsonError(res, 431, 'headers_too_large');
  // several, each under the limit, together over it
  res = await rawOnce(hub, get('/healthz', `Cookie: ${'c'.repeat(5000)}\r\nUser-Agent: ${'u'.repeat(5000)}\r\n`));
  assertJsonError(res, 431, 'headers_too_large');
  // an overlong token is not looked at
  res = await rawOnce(hub, get('/api/v1/auth/me', `Authorization: Bearer ${'x'.repeat(9000)}\r\n`));
  assertJsonError(res, 431, 'headers_too_large');
  // unknown headers past the whole header buffer: lws 4.1 closes without a status
  const c = await rawConnect(hub);
  await c.send(get('/healthz', `X-Junk: ${'j'.repeat(40000)}\r\n`));
  assert.equal(await c.closed(5000), true);
  assert.deepEqual(c.parsed(), []);
  c.destroy();
  // logged at info level, rate-limited: never one error line per request
  for (let i = 0; i < 20; i++) await rawOnce(hub, get(`/${'a'.repeat(5000)}`));
  const lines = hub.logs().split('\n').filter((l) => l.includes('"http request refused"'));
  assert.ok(lines.length >= 1 && lines.length <= 4, `${lines.length} log lines for 25 refusals`);
  for (const l of lines) assert.equal(JSON.parse(l).level, 'info');
  assert.equal(hub.logs().split('\n').filter((l) => /header data space|exceeds limit/.test(l) && !l.includes('refused')).length, 0);
  // and counted
  const refused = Object.fromEntries(parseMetrics((await http(hub, 'GET', '/metrics')).text)
    .filter((s) => s.name === 'rn_http_refused_total').map((s) => [s.labels.why, s.value]));
  assert.ok(refused.uri_too_long >= 22, JSON.stringify(refused));
  assert.ok(refused.headers_too_large >= 3, JSON.stringify(refused));
  assert.ok(refused.lws_closed >= 1, JSON.stringify(refused));
  await assertAlive();
});

test('conflicting Content-Length: 400 and the connection closed; the bytes after are not a request', async () => {
  const body = '{"pseudo":"x"}';
  const smuggled = get('/healthz');
  const res = await rawOnce(hub,
    `POST /api/v1/auth/register HTTP/1.1\r\n${H}Authorization: Bearer ${alice}\r\n` +
    `Content-Length: 5\r\nContent-Length: ${body.length + smuggled.length}\r\n\r\n${body}${smuggled}`,
    { waitClose: true });
  assertJsonError(res, 400, 'bad_request');
  assert.equal(res.headers.connection, 'close');
  assert.equal(res.closed, true);
  assert.equal(res.extra, 0, 'the smuggled request was answered');
  // Content-Length with Transfer-Encoding, or not a number
  for (const hdrs of ['Content-Length: 4\r\nTransfer-Encoding: chunked\r\n', 'Content-Length: 4x\r\n', 'Content-Length: -1\r\n']) {
    const r = await rawOnce(hub, `POST /api/v1/auth/register HTTP/1.1\r\n${H}${hdrs}\r\nabcd`, { waitClose: true });
    assertJsonError(r, 400, 'bad_request');
    assert.equal(r.closed, true, hdrs);
  }
  // a body over --max-body: 413, closed before it is read
  const big = await rawOnce(hub, `POST /api/v1/auth/register HTTP/1.1\r\n${H}Content-Length: ${MAX_BODY + 1}\r\n\r\n`, { waitClose: true });
  assertJsonError(big, 413, 'too_big');
  assert.equal(big.closed, true);
  await assertAlive();
});

/* A chunked POST /api/v1/auth/register of body split into chunks of size n. */
function chunkedRegister(body, n, tail = '0\r\n\r\n') {
  let out = `POST /api/v1/auth/register HTTP/1.1\r\n${H}Authorization: Bearer ${token(hub, 'chunky')}\r\n` +
    'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
  for (let i = 0; i < body.length; i += n) {
    const part = body.slice(i, i + n);
    out += `${Buffer.byteLength(part).toString(16)}${i === 0 ? ';ext=1' : ''}\r\n${part}\r\n`;
  }
  return out + tail;
}

test('chunked bodies: accepted up to the limit, malformed or over it refused, then closed', async () => {
  const body = JSON.stringify({ pseudo: 'chunky', first_name: 'Chunk', last_name: 'Ed' });
  // valid, with a chunk extension and a trailer, sent byte by byte
  const c = await rawConnect(hub);
  await c.sendBytewise(chunkedRegister(body, 7, '0\r\nX-Trailer: t\r\n\r\n'));
  const [res] = await c.responses(1);
  assert.ok(res.status === 200 || res.status === 201, `${res.status} ${res.body}`);
  assert.match(res.body.toString(), /chunky/);
  // lws cannot hand the bytes after a chunked body back to its parser: closed after the answer
  assert.equal(res.headers.connection, 'close');
  assert.equal(await c.closed(5000), true);
  c.destroy();
  // the same body in one chunk: the registration is there (idempotent re-register or conflict)
  const again = await rawOnce(hub, chunkedRegister(body, body.length));
  assert.ok(again.status < 500, `${again.status} ${again.body}`);

  for (const [what, bytes] of [
    ['a size that is not hex', chunkedRegister(body, 8).replace(/\r\n8;ext=1\r\n/, '\r\nzz\r\n')],
    ['data longer than its size', chunkedRegister(body, 8).replace(/^(.*\r\n\r\n)8;ext=1/s, '$15')],
    ['a bare LF', chunkedRegister(body, 8).replace('\r\n\r\n8;ext=1\r\n', '\r\n\r\n8\n')],
  ]) {
    const r = await rawOnce(hub, bytes, { waitClose: true });
    assertJsonError(r, 400, 'bad_request');
    assert.equal(r.closed, true, what);
  }
  const over = await rawOnce(hub, chunkedRegister(JSON.stringify({ pseudo: 'x'.repeat(MAX_BODY) }), 500), { waitClose: true });
  assertJsonError(over, 413, 'too_big');
  assert.equal(over.closed, true);
  // chunked on GET: lws would parse the chunks as a request
  const onGet = await rawOnce(hub, `GET /healthz HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, { waitClose: true });
  assertJsonError(onGet, 400, 'bad_request');
  assert.equal(onGet.extra, 0);
  await assertAlive();
});

test('invalid UTF-8 in a path, a query value or a used header: 400 before any query', async () => {
  const auth = `Authorization: Bearer ${alice}\r\n`;
  const before = hub.logs().split('\n').filter((l) => /"level":"error"/.test(l)).length;
  for (const [what, req] of [
    ['query value', get('/api/v1/users/search?q=%ff%fe', auth)],
    ['query overlong', get('/api/v1/users/search?q=%c0%af', auth)],
    ['query surrogate', get('/api/v1/users/search?q=%ed%a0%80', auth)],
    ['path', get('/api/v1/arcades/%ff', auth)],
    ['raw path byte', get('/api/v1/arcades/\xff\xfe', auth)],
    ['Idempotency-Key', `POST /api/v1/promos/use HTTP/1.1\r\n${H}${auth}Idempotency-Key: k\xff\xfe\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"code":"XX"}`],
    ['Authorization', get('/api/v1/auth/me', 'Authorization: Bearer \xff\xfe\xfd\r\n')],
  ]) {
    const res = await rawOnce(hub, req);
    assertJsonError(res, 400, 'bad_request');
    assert.match(res.json.error.message, /UTF-8/, what);
  }
  // valid UTF-8 goes through
  const ok = await rawOnce(hub, get('/api/v1/users/search?q=%c3%a9t%c3%a9', auth));
  assert.equal(ok.status, 200, ok.body.toString());
  const after = hub.logs().split('\n').filter((l) => /"level":"error"/.test(l)).length;
  assert.equal(after, before, 'no error logged: nothing reached PostgreSQL');
});

test('after all of it the hub answers /healthz on a fresh connection', async () => {
  await assertAlive();
  const res = await rawOnce(hub, get('/healthz'));
  assert.equal(res.status, 200);
});
