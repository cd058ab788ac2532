// Tickets over the wire: profiles, purchases through the sandbox provider
// (ok, declined, timeout), Idempotency-Key replays, the `balance` push and
// its resume/ack, privacy, the admin routes and the cabinet keys they make.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { applyDemo, connectWs, http, sleep, startHub, startPostgres, startRedis, token } from '../lib/harness.js';
import { ADMIN, api, assertBooksBalance, assertError, balanceOf, newUser, uniq } from './tickets_world.js';

const PAYMENT_TIMEOUT_MS = 2000;

let pg, hub;

before(async () => {
  const [p, redis] = await Promise.all([startPostgres(), startRedis()]);
  pg = p;
  await applyDemo(pg);
  hub = await startHub({ pg, redis, args: ['--payment-timeout-ms', String(PAYMENT_TIMEOUT_MS)] });
});

const purchase = (user, body, key) => api(hub, 'POST', '/tickets/purchase', user, { body, key });

async function ledgerRows(user, kind) {
  return Number(
    await pg.psql(`SELECT count(*) FROM ledger l JOIN users u ON u.id = l.user_id
                   WHERE u.firebase_uid = '${user.uid}' AND l.kind = '${kind}'`),
  );
}

// ---------------------------------------------------------------------------
// Profiles

test('register: profile from the token, me with balance; taken pseudo and second register 409', async () => {
  const uid = `reg-${uniq()}`;
  const pseudo = `Carol${uniq()}`;
  assertError(await api(hub, 'GET', '/auth/me', uid), 404, 'not_registered');
  const body = { pseudo, first_name: 'Carol', last_name: 'Dupont', phone: '+33 6 11 22 33 44' };
  const res = await api(hub, 'POST', '/auth/register', uid, { body });
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.user.uid, uid);
  assert.equal(res.json.user.pseudo, pseudo);
  assert.equal(res.json.user.phone, '+33611223344');
  assert.equal(res.json.user.tickets_balance, 0);

  const me = await api(hub, 'GET', '/auth/me', uid);
  assert.equal(me.status, 200, me.text);
  assert.deepEqual(me.json.user, res.json.user);
  assert.equal((await api(hub, 'GET', '/tickets/balance', uid)).json.balance, 0);

  assertError(await api(hub, 'POST', '/auth/register', uid, { body: { ...body, pseudo: `x${uniq()}` } }), 409,
    'already_registered');
  const other = `reg-${uniq()}`;
  const taken = await api(hub, 'POST', '/auth/register', other, {
    body: { pseudo: pseudo.toUpperCase(), first_name: 'A', last_name: 'B' },
  });
  assertError(taken, 409, 'pseudo_taken');
  assertError(await api(hub, 'POST', '/auth/register', other, {
    body: { pseudo: `q${uniq()}`, first_name: 'A', last_name: 'B', phone: '+33611223344' },
  }), 409, 'phone_taken');
  assertError(await api(hub, 'POST', '/auth/register', other, {
    body: { pseudo: 'a b', first_name: 'A', last_name: 'B' },
  }), 422, 'invalid_pseudo');
  assertError(await api(hub, 'POST', '/auth/register', other, { body: { pseudo: 7 } }), 400, 'bad_request');
  assertError(await api(hub, 'POST', '/auth/register', null, { body }), 401, 'unauthenticated');
  assertError(await api(hub, 'GET', '/auth/me', other), 404, 'not_registered');
});

test('offers are public', async () => {
  const res = await api(hub, 'GET', '/tickets/offers', null);
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json.items.map((o) => [o.id, o.tickets, o.price_cents]), [[1, 10, 500], [2, 25, 1000], [3, 60, 2000]]);
});

// ---------------------------------------------------------------------------
// Purchases

test('tok_ok: credited once, `balance` pushed (resume, event_id, ack), admin stream sees it; replays', async () => {
  const user = await newUser(pg, 5);
  const admin = await connectWs(hub, { token: token(hub, 'demo-admin', { admin: true }) });
  const key = crypto.randomUUID();
  const body = { offer_id: 2, payment_token: 'tok_ok' };
  const res = await purchase(user, body, key);
  assert.equal(res.status, 201, res.text);
  assert.equal(res.json.purchase.status, 'succeeded');
  assert.equal(res.json.purchase.tickets, 25);
  assert.equal(res.json.balance, 30);
  assert.ok(!res.text.includes('tok_ok'), 'the payment token is not echoed');
  assert.equal(await balanceOf(pg, user), 30);
  assert.equal(await ledgerRows(user, 'purchase'), 1);
  const row = await pg.psql(`SELECT delta || ' ' || balance_after || ' ' || purchase_id FROM ledger
                             WHERE kind = 'purchase' AND purchase_id = ${res.json.purchase.id}`);
  assert.equal(row, `25 30 ${res.json.purchase.id}`);

  // The phone connects afterwards: resume replays the committed event.
  const phone = await connectWs(hub, { token: token(hub, user.uid) });
  const ok = await phone.request({ type: 'resume', since: 0 });
  assert.equal(ok.type, 'ok', JSON.stringify(ok));
  const ev = await phone.next((m) => m.type === 'balance');
  assert.ok(Number.isInteger(ev.event_id) && ev.event_id > 0, JSON.stringify(ev));
  assert.equal(ev.balance, 30);
  assert.equal(ev.delta, 25);
  assert.equal(ev.reason, 'purchase');
  const acked = await phone.request({ type: 'ack', event_id: ev.event_id });
  assert.equal(acked.type, 'ok', JSON.stringify(acked));
  assert.ok(await pg.psql(`SELECT acked_at IS NOT NULL FROM user_events WHERE id = ${ev.event_id}`) === 't');

  const live = await admin.next((m) => m.type === 'admin_event' && m.event?.kind === 'purchase' &&
    m.event.id === res.json.purchase.id);
  assert.equal(live.event.uid, user.uid);
  assert.equal(live.event.status, 'succeeded');

  // Replay: same key and body -> the same answer, nothing more credited.
  const again = await purchase(user, body, key);
  assert.equal(again.status, 201);
  assert.deepEqual(again.json, res.json);
  assert.equal(await balanceOf(pg, user), 30);
  assert.equal(await ledgerRows(user, 'purchase'), 1);
  assert.equal(await pg.psql(`SELECT count(*) FROM purchases p JOIN users u ON u.id = p.user_id
                              WHERE u.firebase_uid = '${user.uid}'`), '1');
  // Same key, another body -> 422, nothing happens.
  assertError(await purchase(user, { offer_id: 3, payment_token: 'tok_ok' }, key), 422, 'idempotency_key_reused');
  assert.equal(await balanceOf(pg, user), 30);
  // Keys are scoped to the user: another user may use the same key.
  const other = await newUser(pg, 0);
  assert.equal((await purchase(other, body, key)).status, 201);
  assert.equal(await balanceOf(pg, other), 25);
  phone.close();
  admin.close();
});

test('the same key sent 10 times at once: one purchase, one credit', async () => {
  const user = await newUser(pg, 0);
  const key = crypto.randomUUID();
  const body = { offer_id: 1, payment_token: 'tok_ok' };
  const all = await Promise.all(Array.from({ length: 10 }, () => purchase(user, body, key)));
  const statuses = all.map((r) => r.status);
  assert.ok(statuses.includes(201), statuses.join(','));
  for (const r of all) {
    if (r.status !== 201) assertError(r, 409, 'request_in_progress');
  }
  assert.equal(await balanceOf(pg, user), 10);
  assert.equal(await ledgerRows(user, 'purchase'), 1);
  const final = await purchase(user, body, key);
  assert.equal(final.status, 201);
  assert.equal(final.json.balance, 10);
});

test('tok_declined: 402 payment_declined, nothing credited, the 402 is what the key replays', async () => {
  const user = await newUser(pg, 7);
  const key = crypto.randomUUID();
  const body = { offer_id: 1, payment_token: 'tok_declined' };
  const res = await purchase(user, body, key);
  assertError(res, 402, 'payment_declined');
  assert.match(res.json.error.message, /declined/);
  assert.equal(await balanceOf(pg, user), 7);
  assert.equal(await ledgerRows(user, 'purchase'), 0);
  const status = await pg.psql(`SELECT status || ' ' || failure FROM purchases WHERE id = ${res.json.error.purchase_id}`);
  assert.equal(status, 'failed payment_declined');
  const again = await purchase(user, body, key);
  assert.equal(again.status, 402);
  assert.deepEqual(again.json, res.json);
  assertError(await purchase(user, { offer_id: 1, payment_token: 'tok_nonsense' }), 402, 'payment_invalid');
  assertError(await purchase(user, { offer_id: 999, payment_token: 'tok_ok' }), 404, 'offer_not_found');
  assertError(await purchase(user, { offer_id: 'one', payment_token: 'tok_ok' }), 400, 'bad_request');
  assertError(await purchase(user, { offer_id: 1 }), 400, 'bad_request');
  assert.equal(await balanceOf(pg, user), 7);
  assert.equal(await pg.psql(`SELECT count(*) FROM purchases p JOIN users u ON u.id = p.user_id
                              WHERE u.firebase_uid = '${user.uid}' AND p.status = 'pending'`), '0');
});

test(`tok_timeout: fails cleanly after --payment-timeout-ms (${PAYMENT_TIMEOUT_MS} ms); the loop stays responsive`, async () => {
  const user = await newUser(pg, 3);
  const t0 = Date.now();
  const pending = purchase(user, { offer_id: 1, payment_token: 'tok_timeout' }, crypto.randomUUID());
  // While the charge waits, the hub answers at once.
  const phone = await connectWs(hub, { token: token(hub, user.uid) });
  const lags = [];
  while (Date.now() - t0 < PAYMENT_TIMEOUT_MS - 300) {
    const s = Date.now();
    assert.equal((await http(hub, 'GET', '/healthz')).status, 200);
    assert.equal((await phone.request({ type: 'ping' })).type, 'pong');
    assert.equal((await api(hub, 'GET', '/tickets/balance', user)).json.balance, 3);
    lags.push(Date.now() - s);
    await sleep(50); // stay under the socket's message rate
  }
  assert.ok(lags.length >= 3, `only ${lags.length} rounds`);
  assert.ok(Math.max(...lags) < 800, `slow answers while a payment waits: ${lags.join(',')} ms`);
  assert.equal(await pg.psql(`SELECT string_agg(p.status, ',') FROM purchases p JOIN users u ON u.id = p.user_id
                              WHERE u.firebase_uid = '${user.uid}'`), 'pending');
  const res = await pending;
  const took = Date.now() - t0;
  assertError(res, 402, 'payment_timeout');
  assert.ok(took >= PAYMENT_TIMEOUT_MS - 50, `failed after ${took} ms, before the timeout`);
  assert.ok(took < PAYMENT_TIMEOUT_MS + 2000, `failed only after ${took} ms`);
  assert.equal(await balanceOf(pg, user), 3);
  assert.equal(await pg.psql(`SELECT status || ' ' || failure FROM purchases WHERE id = ${res.json.error.purchase_id}`),
    'failed payment_timeout');
  phone.close();
});

// ---------------------------------------------------------------------------
// Privacy

test('no token: 401 everywhere; a history holds only its owner\'s purchases', async () => {
  for (const [method, path] of [
    ['GET', '/auth/me'], ['GET', '/tickets/balance'], ['GET', '/tickets/purchase-history'],
    ['POST', '/tickets/purchase'], ['POST', '/promos/use'], ['GET', '/promos/history'],
  ]) {
    const res = await api(hub, method, path, null, { body: method === 'POST' ? {} : undefined });
    assertError(res, 401, 'unauthenticated');
  }
  const [a, b] = [await newUser(pg), await newUser(pg)];
  const mine = [];
  for (let i = 0; i < 3; i++) mine.push((await purchase(a, { offer_id: 1, payment_token: 'tok_ok' })).json.purchase.id);
  const theirs = (await purchase(b, { offer_id: 1, payment_token: 'tok_ok' })).json.purchase.id;
  // Paginate a's history two at a time.
  const seen = [];
  let cursor = null;
  for (let page = 0; page < 5; page++) {
    const res = await api(hub, 'GET', `/tickets/purchase-history?limit=2${cursor ? `&cursor=${cursor}` : ''}`, a);
    assert.equal(res.status, 200, res.text);
    seen.push(...res.json.items.map((p) => p.id));
    cursor = res.json.next_cursor;
    if (!cursor) break;
  }
  assert.deepEqual(seen, [...mine].reverse());
  assert.ok(!seen.includes(theirs));
  assertError(await api(hub, 'GET', '/tickets/purchase-history?limit=0', a), 400, 'bad_request');
  assertError(await api(hub, 'GET', '/tickets/purchase-history?cursor=x', a), 400, 'bad_request');
  assert.equal((await api(hub, 'GET', '/tickets/balance', a)).json.balance, 30);
  assert.equal((await api(hub, 'GET', '/tickets/balance', b)).json.balance, 10);
});

// ---------------------------------------------------------------------------
// Admin

test('admin routes: 401 anonymous, 403 for a player, served for an admin', async () => {
  const routes = [
    ['POST', '/admin/promo-codes', { code: `ADM${uniq()}`.replace(/x/g, 'X'), tickets: 2 }, 201],
    ['GET', '/admin/promo-codes', undefined, 200],
    ['PUT', '/admin/users/demo-bob/tickets', { delta: 1, reason: 'admin test' }, 200],
    ['POST', '/admin/games', { name: `Game ${uniq()}`, ticket_cost: 2 }, 201],
    ['POST', '/admin/arcades', { name: `Arcade ${uniq()}` }, 201],
    ['POST', '/admin/arcades/2/games', { game_id: 4, slot: 9 }, 201],
    ['POST', '/admin/arcades/3/rotate-key', {}, 200],
  ];
  for (const [method, path, body, ok] of routes) {
    assertError(await api(hub, method, path, null, { body }), 401, 'unauthenticated');
    assertError(await api(hub, method, path, 'demo-alice', { body }), 403, 'forbidden');
    const res = await api(hub, method, path, ADMIN, { body });
    assert.equal(res.status, ok, `${method} ${path}: ${res.text}`);
  }
  const list = await api(hub, 'GET', '/admin/promo-codes', ADMIN);
  const welcome = list.json.items.find((c) => c.code === 'WELCOME10');
  assert.equal(typeof welcome.use_count, 'number');
  assert.equal(welcome.use_count, welcome.uses);
});

test('admin adjustment: an `adjustment` ledger row with reason and actor, pushed; below zero 409', async () => {
  const user = await newUser(pg, 4);
  const key = crypto.randomUUID();
  const res = await api(hub, 'PUT', `/admin/users/${user.uid}/tickets`, ADMIN,
    { body: { delta: -3, reason: 'refund of a broken game' }, key });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.balance, 1);
  const row = await pg.psql(`SELECT delta || '|' || balance_after || '|' || reason || '|' || actor_uid FROM ledger
                             WHERE id = ${res.json.ledger_id} AND kind = 'adjustment'`);
  assert.equal(row, `-3|1|refund of a broken game|demo-admin`);
  // Replayed, not applied twice.
  const again = await api(hub, 'PUT', `/admin/users/${user.uid}/tickets`, ADMIN,
    { body: { delta: -3, reason: 'refund of a broken game' }, key });
  assert.deepEqual(again.json, res.json);
  assert.equal(await balanceOf(pg, user), 1);
  const below = await api(hub, 'PUT', `/admin/users/${user.uid}/tickets`, ADMIN, { body: { delta: -2, reason: 'too much' } });
  assertError(below, 409, 'insufficient_tickets');
  assert.equal(await balanceOf(pg, user), 1);
  assert.equal((await api(hub, 'PUT', `/admin/users/${user.uid}/tickets`, ADMIN, { body: { delta: -1, reason: 'to zero' } })).json.balance, 0);
  assertError(await api(hub, 'PUT', '/admin/users/nobody-here/tickets', ADMIN, { body: { delta: 1, reason: 'x' } }), 404, 'user_not_found');
  assertError(await api(hub, 'PUT', `/admin/users/${user.uid}/tickets`, ADMIN, { body: { delta: 0, reason: 'x' } }), 422, 'invalid_delta');
  assertError(await api(hub, 'PUT', `/admin/users/${user.uid}/tickets`, ADMIN, { body: { delta: 1 } }), 400, 'bad_request');
  const phone = await connectWs(hub, { token: token(hub, user.uid) });
  await phone.request({ type: 'resume', since: 0 });
  const ev = await phone.next((m) => m.type === 'balance' && m.reason === 'adjustment' && m.delta === -3);
  assert.equal(ev.balance, 1);
  phone.close();
});

test('admin arcade: the key is shown once and authenticates the cabinet; rotate-key revokes it', async () => {
  const res = await api(hub, 'POST', '/admin/arcades', ADMIN, { body: { name: `Arcade ${uniq()}`, location: 'Lille' } });
  assert.equal(res.status, 201, res.text);
  const { arcade, api_key: key } = res.json;
  assert.match(key, new RegExp(`^rn_${arcade.id}_[0-9a-f]{64}$`));
  const stored = await pg.psql(`SELECT api_key_hash FROM arcades WHERE id = ${arcade.id}`);
  assert.equal(stored, crypto.createHash('sha256').update(key).digest('hex'));
  assert.ok(!(await pg.psql(`SELECT row_to_json(a)::text FROM arcades a WHERE id = ${arcade.id}`)).includes(key));

  const added = await api(hub, 'POST', `/admin/arcades/${arcade.id}/games`, ADMIN, { body: { game_id: 3, slot: 1 } });
  assert.equal(added.status, 201, added.text);
  assertError(await api(hub, 'POST', `/admin/arcades/${arcade.id}/games`, ADMIN, { body: { game_id: 4, slot: 1 } }), 409, 'slot_taken');
  assertError(await api(hub, 'POST', `/admin/arcades/${arcade.id}/games`, ADMIN, { body: { game_id: 999, slot: 2 } }), 404, 'game_not_found');
  assertError(await api(hub, 'POST', '/admin/arcades/999999/games', ADMIN, { body: { game_id: 1, slot: 2 } }), 404, 'arcade_not_found');

  const cab = await connectWs(hub);
  const ok = await cab.request({ type: 'auth', api_key: key });
  assert.equal(ok.type, 'ok', JSON.stringify(ok));
  assert.equal(ok.role, 'cabinet');
  assert.equal(ok.arcade_id, arcade.id);

  // the cabinet connected with the old key is closed by the rotation
  const rotated = await api(hub, 'POST', `/admin/arcades/${arcade.id}/rotate-key`, ADMIN);
  assert.equal(rotated.status, 200, rotated.text);
  const revoked = await cab.closed(5000);
  assert.equal(revoked.code, 4001, JSON.stringify(revoked));
  const newKey = rotated.json.api_key;
  assert.notEqual(newKey, key);
  const old = await connectWs(hub);
  const refused = await old.request({ type: 'auth', api_key: key });
  assert.equal(refused.type, 'error', JSON.stringify(refused));
  assert.equal((await old.closed()).code, 4001);
  const fresh = await connectWs(hub);
  assert.equal((await fresh.request({ type: 'auth', api_key: newKey })).role, 'cabinet');
  fresh.close();
  assertError(await api(hub, 'POST', '/admin/arcades/999999/rotate-key', ADMIN), 404, 'arcade_not_found');
  assertError(await api(hub, 'POST', '/admin/arcades', ADMIN, { body: { name: '' } }), 422, 'invalid_name');
});

test('the books balance', async () => {
  await assertBooksBalance(pg);
});
