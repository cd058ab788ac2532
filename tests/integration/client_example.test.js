// The client example of protocol/README.md works as printed: the ```js block
// is run by node (ws for the socket, retronova.js from protocol/) against a
// real hub with the demo data, as demo-alice, and must book a reservation and
// see its position and the queue snapshot arrive on the socket.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { SOURCE_DIR, applyDemo, startHub, startPostgres, startRedis, token, track, waitFor } from '../lib/harness.js';

let hub;

before(async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  hub = await startHub({ pg, redis });
});

test('the example of protocol/README.md books and follows a game', async () => {
  const readme = fs.readFileSync(path.join(SOURCE_DIR, 'protocol', 'README.md'), 'utf8');
  const block = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'a ```js block');
  const client = pathToFileURL(path.join(SOURCE_DIR, 'protocol', 'retronova.js')).href;
  // Next to tests/node_modules, so that `import 'ws'` resolves as in a project.
  const file = path.join(SOURCE_DIR, 'tests', `.client-example-${process.pid}.mjs`);
  fs.writeFileSync(file, block.replace("'./retronova.js'", `'${client}'`));
  track(`rm ${file}`, async () => fs.rmSync(file, { force: true }), () => fs.rmSync(file, { force: true }));

  const proc = spawn(process.execPath, [file], {
    env: { ...process.env, HUB: hub.url, TOKEN: token(hub, 'demo-alice') }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  try {
    await waitFor(() => /^booked #\d+ with 20 tickets$/m.test(out) && /^position 1, about \d+ s$/m.test(out) &&
      /^Retronova Paris Bastille: offline, 1 waiting$/m.test(out), { timeoutMs: 20000, what: 'the example\'s output' })
      .catch((err) => { throw new Error(`${err.message}\n${out}`); });
  } finally {
    proc.kill();
    await exited;
  }
  assert.doesNotMatch(out, /Error/);
});
