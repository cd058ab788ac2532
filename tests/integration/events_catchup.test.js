// A phone is caught up as soon as its private channel is live: events
// committed before its subscription was confirmed (which Redis could not
// have delivered to it) are pushed without the phone asking for a resume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyDemo, connectWs, startHub, startPostgres, startRedis, token, waitFor } from '../lib/harness.js';

test('unacked events reach a newly connected phone without a resume', async () => {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  const hub = await startHub({ pg, redis });
  await pg.psql(`
    INSERT INTO users (firebase_uid, pseudo) VALUES ('catchup-1', 'catchup');
    SELECT rn_user_event(rn_user_id('catchup-1'), 'balance', '{"balance": 7}');`);
  const c = await connectWs(hub, { token: token(hub, 'catchup-1') });
  const pushed = await c.next((m) => m.type === 'balance', 5000);
  assert.equal(pushed.balance, 7);
  assert.ok(pushed.event_id > 0);
  // and once: a resume now replays it to nobody (already sent on this socket)
  assert.equal((await c.request({ type: 'resume', since: 0 })).type, 'ok');
  await waitFor(async () => true, { timeoutMs: 300 });
  assert.equal(c.inbox.filter((m) => m.type === 'balance').length, 0, 'not sent twice');
});
