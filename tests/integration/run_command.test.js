// `make run` end to end: scripts/run.sh starts Postgres and Redis under
// RN_VAR_DIR, loads the demo, prints tokens and cabinet keys, serves; SIGINT
// stops all of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  SOURCE_DIR, HUB_BIN, SERVICES, tmpDir, freePort, portOpen, waitFor, http, connectWs, track, within, watch,
} from '../lib/harness.js';

test('scripts/run.sh serves the demo and SIGINT leaves nothing running', { timeout: 180000 }, async () => {
  const varDir = tmpDir('rn-run-');
  watch('pg', path.join(varDir, 'pg'));
  watch('redis', path.join(varDir, 'redis'));
  const [hubPort, pgPort, redisPort] = [await freePort(), await freePort(), await freePort()];
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith('HUB_') || k === 'DATABASE_URL' || k === 'REDIS_URL') delete env[k];
  }
  Object.assign(env, {
    RN_VAR_DIR: varDir,
    HUB_PORT: String(hubPort),
    RN_PG_PORT: String(pgPort),
    RN_REDIS_PORT: String(redisPort),
    RN_SKIP_DEPS: '1',
    RN_SKIP_BUILD: '1',
    RN_HUB_BIN: HUB_BIN,
  });

  const child = spawn('bash', [path.join(SOURCE_DIR, 'scripts', 'run.sh')], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  let exitInfo = null;
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve((exitInfo = { code, signal }))),
  );
  const stopServices = () => {
    for (const args of [['redis-stop', path.join(varDir, 'redis')], ['pg-stop', path.join(varDir, 'pg')]]) {
      try {
        execFileSync('bash', [SERVICES, ...args], { stdio: 'ignore', timeout: 60000 });
      } catch {
        /* best effort */
      }
    }
  };
  track(
    'scripts/run.sh',
    async () => {
      if (!exitInfo) {
        child.kill('SIGTERM');
        await within(exited, 20000);
      }
      stopServices();
    },
    () => {
      if (!exitInfo) child.kill('SIGKILL');
      stopServices();
    },
  );
  const hub = { port: hubPort };
  const explain = () => `run.sh ${JSON.stringify(exitInfo)}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;

  await waitFor(
    async () => {
      if (exitInfo) throw new Error(`run.sh exited early: ${explain()}`);
      return (await http(hub, 'GET', '/readyz', { timeoutMs: 2000 })).status === 200;
    },
    { timeoutMs: 60000, intervalMs: 200, what: `/readyz 200 from run.sh's hub on :${hubPort}` },
  ).catch((err) => {
    throw new Error(`${err.message}\n${explain()}`);
  });

  // The parseable lines.
  const tokens = Object.fromEntries([...stdout.matchAll(/^token (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
  const cabinets = Object.fromEntries([...stdout.matchAll(/^cabinet (\d+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
  for (const uid of ['demo-alice', 'demo-bob', 'demo-admin']) {
    assert.match(tokens[uid] || '', /^[\w-]+\.[\w-]+\.[\w-]+$/, `token line for ${uid}\n${explain()}`);
  }
  for (const id of ['1', '2', '3']) {
    assert.match(cabinets[id] || '', new RegExp(`^rn_${id}_[0-9a-f]{64}$`), `cabinet line for arcade ${id}\n${explain()}`);
  }
  assert.match(stdout, new RegExp(`^url phone http://127\\.0\\.0\\.1:${hubPort}/phone\\.html$`, 'm'));
  assert.match(stdout, new RegExp(`^url admin http://127\\.0\\.0\\.1:${hubPort}/admin\\.html$`, 'm'));
  assert.ok(fs.statSync(path.join(varDir, 'secret')).size > 0, 'the secret is kept in RN_VAR_DIR/secret');

  // Alice's token works; a forged one does not.
  const alice = await connectWs(hub, { token: tokens['demo-alice'] });
  assert.equal(alice.auth.uid, 'demo-alice');
  assert.equal(alice.auth.role, 'player');
  const admin = await connectWs(hub, { token: tokens['demo-admin'] });
  assert.equal(admin.auth.role, 'admin');
  const bad = await connectWs(hub);
  bad.send({ type: 'auth', id: 1, token: `${tokens['demo-alice']}x` });
  assert.equal((await bad.closed(5000)).code, 4001);

  // Ctrl-C: the hub, Postgres and Redis all go.
  assert.ok(await portOpen(pgPort), 'Postgres listens before SIGINT');
  assert.ok(await portOpen(redisPort), 'Redis listens before SIGINT');
  child.kill('SIGINT');
  const info = await within(exited, 30000);
  assert.ok(info, `run.sh still running 30 s after SIGINT\n${explain()}`);
  const aliceClose = await alice.closed(1000);
  assert.equal(aliceClose.code, 4000, 'sockets are drained with 4000');
  for (const [what, port] of [['hub', hubPort], ['Postgres', pgPort], ['Redis', redisPort]]) {
    assert.equal(await portOpen(port), false, `${what} still listens on ${port} after SIGINT\n${explain()}`);
  }
  assert.ok(!fs.existsSync(path.join(varDir, 'pg', 'data', 'postmaster.pid')), 'no postmaster.pid left');
  assert.ok(!fs.existsSync(path.join(varDir, 'redis', 'redis.pid')), 'no redis.pid left');
});
