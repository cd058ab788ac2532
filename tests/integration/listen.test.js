// --listen binds exactly the address it is given (issue 7, item 2).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import { spawn, spawnSync } from 'node:child_process';
import { startPostgres, startRedis, startHub, http, waitFor, freePort, HUB_BIN } from '../lib/harness.js';

let pg, redis;

before(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
});

/* Resolves 'open' when host:port accepts a TCP connection, else the error code. */
function probe(host, port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (what) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(what);
    };
    const timer = setTimeout(() => done('timeout'), 3000);
    sock.once('connect', () => done('open'));
    sock.once('error', (err) => done(err.code));
  });
}

test('--listen 127.0.0.2 answers there and refuses 127.0.0.1 on the same port', async () => {
  const hub = await startHub({ pg, redis, host: '127.0.0.2' });
  assert.equal((await http(hub, 'GET', '/healthz')).status, 200);
  assert.equal(await probe('127.0.0.2', hub.port), 'open');
  assert.equal(await probe('127.0.0.1', hub.port), 'ECONNREFUSED');
  assert.equal(await probe('::1', hub.port), 'ECONNREFUSED', 'no IPv6 socket either');
  assert.match(hub.logs(), /"msg":"listening","listen":"127\.0\.0\.2"/);
  assert.equal(await hub.stop(), 0);
});

test('HUB_LISTEN alone binds that address; --help documents it', async () => {
  const port = await freePort();
  const proc = spawn(HUB_BIN, ['serve'], {
    env: { ...process.env, HUB_LISTEN: '127.0.0.2', HUB_PORT: String(port), DATABASE_URL: pg.url, REDIS_URL: redis.url },
    stdio: 'ignore',
  });
  const exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  try {
    await waitFor(async () => (await probe('127.0.0.2', port)) === 'open', { timeoutMs: 30000, what: 'HUB_LISTEN hub' });
    assert.equal(await probe('127.0.0.1', port), 'ECONNREFUSED');
  } finally {
    proc.kill('SIGTERM');
  }
  assert.equal(await exited, 0);
  const help = spawnSync(HUB_BIN, ['--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /--listen\s+HUB_LISTEN\s+IPv4 or IPv6 address/);
});

const hasIpv6Loopback = Object.values(os.networkInterfaces())
  .flat()
  .some((i) => i && i.family === 'IPv6' && i.address === '::1');

test('an IPv6 literal (::1) works and binds IPv6 only', { skip: !hasIpv6Loopback && 'no ::1 here' }, async () => {
  const hub = await startHub({ pg, redis, host: '::1' });
  const res = await http(hub, 'GET', '/healthz');
  assert.equal(res.status, 200);
  assert.equal(await probe('::1', hub.port), 'open');
  assert.equal(await probe('127.0.0.1', hub.port), 'ECONNREFUSED');
  assert.equal(await hub.stop(), 0);
});

test('a bad address is a clear error and a non-zero exit, before anything starts', async () => {
  for (const bad of ['localhost', 'lo', '999.1.1.1', '127.0.0.1:80', '']) {
    const res = spawnSync(HUB_BIN, ['serve', '--listen', bad, '--database-url', pg.url], {
      encoding: 'utf8',
      timeout: 10000,
    });
    assert.equal(res.status, 2, `--listen '${bad}': ${JSON.stringify(res)}`);
    assert.match(res.stderr, /--listen .*not an IPv4 or IPv6 address/);
  }
});
