// TLS: with --tls-cert/--tls-key the one port speaks https and wss only; a large
// answer written at once reaches a reader that waits (lws_write keeps the rest).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import https from 'node:https';
import path from 'node:path';
import WebSocket from 'ws';
import {
  HUB_BIN, SUBPROTOCOL, freePort, http, startPostgres, startRedis, tmpDir, token, waitFor, within,
} from '../lib/harness.js';

function get(port, urlPath) {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: urlPath, rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      })
      .on('error', reject);
  });
}

test('https and wss on the one port; plain http is refused', async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  const dir = tmpDir('rn-tls-');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  const port = await freePort();
  const secret = 'tls-test-secret';
  const proc = spawn(HUB_BIN, ['serve', '--listen', '127.0.0.1', '--port', String(port),
    '--database-url', pg.url, '--redis-url', redis.url, '--jwt-hs256-secret', secret,
    '--tls-cert', cert, '--tls-key', key, '--debug-routes'], { stdio: 'ignore' });
  const exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  try {
    await waitFor(async () => (await get(port, '/healthz').catch(() => ({}))).status === 200,
      { timeoutMs: 20000, what: 'https /healthz' });
    // /healthz answers before the migrations ran (issue 8): ready follows
    await waitFor(async () => JSON.parse((await get(port, '/readyz')).body).status === 'ready',
      { timeoutMs: 20000, what: 'https /readyz ready' });
    await assert.rejects(http({ port }, 'GET', '/healthz', { timeoutMs: 2000 }), 'plain http is not served');

    // an 8 MB answer given from a query (written at once, outside lws's callbacks), to a reader
    // that waits before reading: over TLS, lws_write keeps what the socket does not take
    const big = await new Promise((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/api/v1/debug/sleep?ms=1&pad=8000000', rejectUnauthorized: false }, (res) => {
          res.pause();
          setTimeout(() => {
            const chunks = [];
            res.on('data', (d) => chunks.push(d));
            res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
            res.resume();
          }, 500);
        })
        .on('error', reject);
    });
    assert.equal(big.status, 200);
    assert.equal(JSON.parse(big.body.toString()).pad.length, 8000000);
    assert.equal((await get(port, '/healthz')).status, 200);

    const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, [SUBPROTOCOL], {
      rejectUnauthorized: false,
      headers: { Authorization: `Bearer ${token({ secret }, 'demo-alice')}` },
    });
    const hello = await new Promise((resolve, reject) => {
      ws.once('message', (d) => resolve(JSON.parse(d)));
      ws.once('error', reject);
    });
    assert.equal(hello.type, 'ok');
    assert.equal(hello.uid, 'demo-alice');
    const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
    proc.kill('SIGTERM');
    assert.equal(await within(closed, 5000), 4000, 'drained over TLS too');
    assert.equal(await within(exited, 8000), 0);
  } finally {
    proc.kill('SIGKILL');
  }
});
