// retronova.js after a close 4001: a cabinet key the hub could not check
// (its PostgreSQL was away: reason "unavailable") is retried with backoff
// until the hub can, and the cabinet connects by itself; a key the hub
// refuses stops the client (no retry loop with bad credentials). Run in node
// (ws) against a real hub, PostgreSQL and Redis.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import {
  HUB_BIN, SOURCE_DIR, applyDemo, run, startHub, startPostgres, startRedis, waitFor,
} from '../lib/harness.js';

const { connect } = await import(pathToFileURL(path.join(SOURCE_DIR, 'protocol', 'retronova.js')).href);

let pg, hub, key;

before(async () => {
  pg = await startPostgres();
  const redis = await startRedis();
  await applyDemo(pg);
  hub = await startHub({ pg, redis });
  key = (await run(HUB_BIN, ['cabinet-key', '--database-url', pg.url, '1'])).stdout.trim();
});

/* A cabinet client recording its connects and disconnects. */
function cabinet(apiKey) {
  const seen = { connects: [], disconnects: [] };
  const rn = connect(`${hub.url.replace(/^http/, 'ws')}/ws`, { api_key: apiKey, WebSocket });
  rn.on('connect', (who) => seen.connects.push(who));
  rn.on('disconnect', (d) => seen.disconnects.push(d));
  rn.on('error', () => {});
  return { rn, seen };
}

test('4001 "unavailable" (the database away) is retried; the cabinet connects once it is back', async () => {
  await pg.stop();
  const { rn, seen } = cabinet(key);
  try {
    await waitFor(() => seen.disconnects.some((d) => d.code === 4001 && d.reason === 'unavailable'),
      { timeoutMs: 60000, what: 'a 4001 "unavailable" close while PostgreSQL is stopped' });
    const first = seen.disconnects.find((d) => d.code === 4001);
    assert.equal(first.willRetry, true, 'not the key\'s fault: retried');
    assert.equal(seen.connects.length, 0);
    await pg.start();
    await waitFor(() => seen.connects.length > 0, { timeoutMs: 60000, what: 'the cabinet to connect by itself' });
    assert.equal(seen.connects[0].role, 'cabinet');
    assert.equal(seen.connects[0].arcade_id, 1);
  } finally {
    rn.close();
    if (!pg.running) await pg.start();
  }
});

test('a refused key (4001 "unauthenticated") stops the client', async () => {
  const wrong = key.replace(/[0-9a-f]$/, (c) => (c === '0' ? '1' : '0'));
  const { rn, seen } = cabinet(wrong);
  try {
    await waitFor(() => seen.disconnects.length > 0, { timeoutMs: 20000, what: 'the refusal' });
    assert.equal(seen.disconnects[0].code, 4001);
    assert.notEqual(seen.disconnects[0].reason, 'unavailable');
    assert.equal(seen.disconnects[0].willRetry, false);
    await new Promise((r) => setTimeout(r, 1500)); // past the first backoff: no second attempt
    assert.equal(seen.disconnects.length, 1);
    assert.equal(seen.connects.length, 0);
  } finally {
    rn.close();
  }
});
