// Signed payment webhooks: a valid event credits a pending purchase exactly
// once; bad signatures, stale or future timestamps and repeated event ids
// change nothing; events out of order follow the documented rule (a success
// credits a purchase not yet credited, a failure never undoes a success).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { applyDemo, connectWs, startHub, startPostgres, startRedis, token } from '../lib/harness.js';
import { api, assertBooksBalance, assertError, balanceOf, newUser, signature, webhook } from './tickets_world.js';

const SECRET = crypto.randomBytes(16).toString('hex');
const PAYMENT_TIMEOUT_MS = 3000;

let pg, redis, hub;

before(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  hub = await startHub({
    pg,
    redis,
    args: ['--payment-webhook-secret', SECRET, '--payment-timeout-ms', String(PAYMENT_TIMEOUT_MS)],
  });
});

/* A pending purchase of offer 1 (10 tickets) made by the hub's own first transaction. */
async function pendingPurchase(user) {
  const answer = JSON.parse(await pg.psql(`SELECT rn_purchase_begin('${user.uid}', NULL, 'h', 1, 'sandbox')`));
  assert.equal(answer.status, 202, JSON.stringify(answer));
  return answer.charge.purchase_id;
}

const event = (type, purchaseId, id = `evt_${crypto.randomUUID()}`) =>
  JSON.stringify({ id, type, data: { purchase_id: purchaseId, payment_id: `pay_${purchaseId}` } });

const purchaseState = (id) => pg.psql(`SELECT status FROM purchases WHERE id = ${id}`);
const seenEvents = () => pg.psql('SELECT count(*) FROM webhook_events').then(Number);

test('a valid signed payment.succeeded credits a pending purchase once; the repeat changes nothing', async () => {
  const user = await newUser(pg, 2);
  const id = await pendingPurchase(user);
  const body = event('payment.succeeded', id, `evt_ok_${id}`);
  const res = await webhook(hub, body, signature(SECRET, body));
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json, { received: true, purchase_id: id, status: 'succeeded', effect: 'credited' });
  assert.equal(await balanceOf(pg, user), 12);
  assert.equal(await pg.psql(`SELECT provider_ref FROM purchases WHERE id = ${id}`), `pay_${id}`);

  // The same event again (a provider retry): deduplicated by its id.
  const before = await seenEvents();
  const again = await webhook(hub, body, signature(SECRET, body));
  assert.equal(again.status, 200, again.text);
  assert.equal(again.json.effect, 'duplicate');
  // Another event id for the same success: no second credit.
  const other = event('payment.succeeded', id);
  const third = await webhook(hub, other, signature(SECRET, other));
  assert.equal(third.status, 200, third.text);
  assert.equal(third.json.effect, 'none');
  assert.equal(await seenEvents(), before + 1);
  assert.equal(await balanceOf(pg, user), 12);
  assert.equal(await pg.psql(`SELECT count(*) FROM ledger WHERE kind = 'purchase' AND purchase_id = ${id}`), '1');

  // The user was told, through the private lane.
  const phone = await connectWs(hub, { token: token(hub, user.uid) });
  await phone.request({ type: 'resume', since: 0 });
  const ev = await phone.next((m) => m.type === 'balance' && m.reason === 'purchase');
  assert.equal(ev.balance, 12);
  phone.close();
});

test('bad signatures, stale or future timestamps, a missing header: 400, nothing changes', async () => {
  const user = await newUser(pg, 0);
  const id = await pendingPurchase(user);
  const body = event('payment.succeeded', id);
  // Margins of 30 s around the 300 s tolerance: the hub reads its own clock
  // (tests/unit/test_payments.c checks the exact edges).
  const now = Math.floor(Date.now() / 1000);
  const before = await seenEvents();
  const cases = [
    ['wrong secret', body, signature('not-the-secret', body)],
    ['tampered body', body.replace(`"purchase_id":${id}`, `"purchase_id":${id} `), signature(SECRET, body)],
    ['stale timestamp', body, signature(SECRET, body, now - 330)],
    ['future timestamp', body, signature(SECRET, body, now + 330)],
    ['signature for another timestamp', body, signature(SECRET, body, now).replace(`t=${now}`, `t=${now - 1}`)],
    ['malformed header', body, 'v1=abc'],
    ['no v1', body, `t=${now}`],
    ['missing header', body, undefined],
  ];
  for (const [what, b, sig] of cases) {
    const res = await webhook(hub, b, sig);
    assert.equal(res.status, 400, `${what}: ${res.text}`);
    assert.equal(res.json.error.code, 'invalid_signature', what);
  }
  assert.equal(await purchaseState(id), 'pending');
  assert.equal(await balanceOf(pg, user), 0);
  assert.equal(await seenEvents(), before);
  // Within the tolerance and with several v1 (a rotated secret): accepted.
  const rotated = `${signature('old-secret', body, now - 270)},${signature(SECRET, body, now - 270).split(',')[1]}`;
  const ok = await webhook(hub, body, rotated);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(await balanceOf(pg, user), 10);
});

test('out of order: failed after succeeded is ignored; succeeded after failed credits once', async () => {
  const user = await newUser(pg, 0);
  const a = await pendingPurchase(user);
  let b = event('payment.succeeded', a);
  assert.equal((await webhook(hub, b, signature(SECRET, b))).json.effect, 'credited');
  b = event('payment.failed', a);
  const late = await webhook(hub, b, signature(SECRET, b));
  assert.equal(late.status, 200, late.text);
  assert.equal(late.json.effect, 'none');
  assert.equal(await purchaseState(a), 'succeeded');
  assert.equal(await balanceOf(pg, user), 10);

  const c = await pendingPurchase(user);
  b = event('payment.failed', c);
  assert.equal((await webhook(hub, b, signature(SECRET, b))).json.effect, 'failed');
  assert.equal(await purchaseState(c), 'failed');
  b = event('payment.succeeded', c);
  assert.equal((await webhook(hub, b, signature(SECRET, b))).json.effect, 'credited');
  assert.equal(await purchaseState(c), 'succeeded');
  assert.equal(await balanceOf(pg, user), 20);

  b = event('payment.succeeded', 99999999);
  assertError(await webhook(hub, b, signature(SECRET, b)), 404, 'purchase_not_found');
  b = JSON.stringify({ id: `evt_${crypto.randomUUID()}`, type: 'customer.created', data: {} });
  const other = await webhook(hub, b, signature(SECRET, b));
  assert.equal(other.status, 200, other.text);
  assert.equal(other.json.effect, 'ignored');
  b = JSON.stringify({ type: 'payment.succeeded', data: { purchase_id: a } });
  assertError(await webhook(hub, b, signature(SECRET, b)), 400, 'bad_request');
});

test('a webhook completes a purchase whose charge is still waiting; the client gets the success', async () => {
  const user = await newUser(pg, 1);
  const key = crypto.randomUUID();
  const t0 = Date.now();
  const pending = api(hub, 'POST', '/tickets/purchase', user, { body: { offer_id: 1, payment_token: 'tok_timeout' }, key });
  let id;
  for (let i = 0; i < 100 && !id; i++) {
    id = Number(await pg.psql(`SELECT p.id FROM purchases p JOIN users u ON u.id = p.user_id
                               WHERE u.firebase_uid = '${user.uid}' AND p.status = 'pending'`)) || undefined;
    if (!id) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(id, 'the purchase is pending while the provider is silent');
  const body = event('payment.succeeded', id);
  assert.equal((await webhook(hub, body, signature(SECRET, body))).json.effect, 'credited');
  const res = await pending; // the hub stops waiting at the timeout, finds it settled
  assert.ok(Date.now() - t0 >= PAYMENT_TIMEOUT_MS - 50);
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.purchase.status, 'succeeded');
  assert.equal(await balanceOf(pg, user), 11);
  const replay = await api(hub, 'POST', '/tickets/purchase', user, { body: { offer_id: 1, payment_token: 'tok_timeout' }, key });
  assert.deepEqual(replay.json, res.json);
  assert.equal(await balanceOf(pg, user), 11);
});

test('without a configured secret the route answers 503', async () => {
  const bare = await startHub({ pg, redis });
  const body = event('payment.succeeded', 1);
  const res = await webhook(bare, body, signature(SECRET, body));
  assertError(res, 503, 'webhooks_disabled');
  await bare.stop();
});

test('the books balance', async () => {
  await assertBooksBalance(pg);
});
