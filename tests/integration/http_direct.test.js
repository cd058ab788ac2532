// The REST answer path (hub/net/http.c, sendv.h): an answer that comes from
// a query is written at once, status line, headers and body in one
// sendmsg(), and lws keeps only what a full socket did not take. Over raw
// sockets: a client that stops reading a large answer gets all of it, in
// order, once it reads again, and its keep-alive connection then serves the
// requests pipelined behind it; Connection: close closes only after the whole
// answer; HEAD has no body; a client that leaves mid-answer costs nothing
// (the harness fails the file on a crash or a sanitizer report). And the
// connection's memory of the last token it verified: only the same bytes
// skip the verification, and only until the token expires.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { http, parseMetrics, sleep, startHub, startPostgres, startRedis, token, waitFor } from '../lib/harness.js';
import { rawConnect } from '../lib/rawhttp.js';

let hub;
const PAD = 8_000_000; // twice what one send() to a loopback reader that does not read takes
const H = 'Host: 127.0.0.1\r\n';
const big = (pad = PAD, extra = '') => `GET /api/v1/debug/sleep?ms=1&pad=${pad} HTTP/1.1\r\n${H}${extra}\r\n`;

before(async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  hub = await startHub({ pg, redis, debugRoutes: true });
});

async function partials() {
  const res = await http(hub, 'GET', '/metrics');
  return parseMetrics(res.text).find((m) => m.name === 'rn_http_writes_partial_total').value;
}

function assertPadded(res, pad = PAD) {
  assert.equal(res.status, 200);
  assert.equal(res.body.length, Number(res.headers['content-length']));
  assert.equal(res.json?.slept_ms, 1);
  assert.equal(res.json.pad.length, pad);
  assert.match(res.json.pad, /^x+$/);
}

test('a client that stops reading a large answer gets all of it later, then the requests pipelined behind it', async () => {
  const before = await partials();
  const c = await rawConnect(hub);
  c.sock.pause(); // reads nothing: the hub's first write cannot take the whole answer
  await c.send(big() + `GET /healthz HTTP/1.1\r\n${H}\r\n` + big(1000));
  await waitFor(async () => (await partials()) > before, { timeoutMs: 10000, what: 'a partial write' });
  // lws holds the rest; the loop is free meanwhile
  assert.equal((await http(hub, 'GET', '/healthz')).status, 200);
  c.sock.resume();
  const [first, second, third] = await c.responses(3, { ms: 20000 });
  assertPadded(first);
  assert.equal(second.status, 200);
  assert.deepEqual(second.json, { status: 'ok' });
  assertPadded(third, 1000);
  assert.equal(c.ended, false, 'keep-alive: still open');
  c.destroy();
});

test('Connection: close after a partial answer: the whole answer, then the close', async () => {
  const before = await partials();
  const c = await rawConnect(hub);
  c.sock.pause();
  await c.send(big(PAD, 'Connection: close\r\n'));
  await waitFor(async () => (await partials()) > before, { timeoutMs: 10000, what: 'a partial write' });
  c.sock.resume();
  const [res] = await c.responses(1, { ms: 20000 });
  assertPadded(res);
  assert.equal(await c.closed(5000), true, 'closed after the answer');
  c.destroy();
  // small, no partial write: answered, then closed
  const d = await rawConnect(hub);
  await d.send(big(10, 'Connection: close\r\n'));
  assertPadded((await d.responses(1))[0], 10);
  assert.equal(await d.closed(5000), true);
  d.destroy();
});

test('HEAD of an answer from a query: its length, no body; the connection goes on', async () => {
  const c = await rawConnect(hub);
  await c.send(`HEAD /api/v1/debug/sleep?ms=1&pad=5000 HTTP/1.1\r\n${H}\r\n` + big(20));
  const [head, get] = await c.responses(2, { heads: [0] });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal(Number(head.headers['content-length']), JSON.stringify({ slept_ms: 1, pad: 'x'.repeat(5000) }).length);
  assertPadded(get, 20);
  c.destroy();
});

test('clients that leave in the middle of a large answer cost nothing', async () => {
  const before = await partials();
  const clients = [];
  for (let i = 0; i < 5; i++) {
    const c = await rawConnect(hub);
    c.sock.pause();
    await c.send(big() + big());
    clients.push(c);
  }
  await waitFor(async () => (await partials()) >= before + 5, { timeoutMs: 10000, what: 'five partial writes' });
  for (const c of clients) c.sock.resetAndDestroy();
  const c = await rawConnect(hub);
  await c.send(big(100));
  assertPadded((await c.responses(1))[0], 100);
  c.destroy();
});

test('a keep-alive connection verifies a token once: other bytes are verified, an expired one is refused', async () => {
  const now = Math.floor(Date.now() / 1000);
  const admin = token(hub, 'memo-admin', { admin: true });
  const player = token(hub, 'memo-player');
  const flip = (t) => t.slice(0, -2) + (t.at(-2) === 'A' ? 'B' : 'A') + t.at(-1); // same length, bad signature
  const soon = token(hub, 'memo-admin', { admin: true, iat: now - 100, exp: now - 58 }); // the 60 s leeway ends in ~2 s
  const audit = (tok) => `GET /api/v1/admin/audit?limit=1 HTTP/1.1\r\n${H}Authorization: Bearer ${tok}\r\n\r\n`;
  const c = await rawConnect(hub);
  const ask = async (tok, n) => {
    await c.send(audit(tok));
    return (await c.responses(n))[n - 1];
  };
  assert.equal((await ask(admin, 1)).status, 200);
  assert.equal((await ask(player, 2)).status, 403, 'another token is not the remembered identity');
  assert.equal((await ask(admin, 3)).status, 200);
  const bad = await ask(flip(admin), 4);
  assert.equal(bad.status, 401, 'same length, other bytes: verified, and refused');
  assert.equal((await ask(soon, 5)).status, 200);
  await sleep(3000);
  const late = await ask(soon, 6);
  assert.equal(late.status, 401, 'the remembered token expired');
  assert.equal(c.ended, false);
  c.destroy();
});
