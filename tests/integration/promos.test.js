// Promo codes under concurrency: a global limit is never passed, a user's
// single use holds against a burst, and each refusal has its own error code.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { applyDemo, startHub, startPostgres, startRedis } from '../lib/harness.js';
import { ADMIN, api, assertBooksBalance, assertError, balanceOf, newUser, newUsers, uniq } from './tickets_world.js';

let pg, hub;

before(async () => {
  const [p, redis] = await Promise.all([startPostgres(), startRedis()]);
  pg = p;
  await applyDemo(pg);
  hub = await startHub({ pg, redis, args: ['--pg-pool', '8'] });
});

const code = (prefix) => `${prefix}${uniq()}`.toUpperCase();
const use = (user, c, key) => api(hub, 'POST', '/promos/use', user, { body: { code: c }, key });

async function createCode(body) {
  const res = await api(hub, 'POST', '/admin/promo-codes', ADMIN, { body });
  assert.equal(res.status, 201, res.text);
  return res.json.promo_code;
}

async function counts(c) {
  const [uses, rows, ledger] = (await pg.psql(`
    SELECT c.uses || ' ' || (SELECT count(*) FROM promo_uses u WHERE u.promo_id = c.id) || ' ' ||
           (SELECT count(*) FROM ledger l JOIN promo_uses u ON u.id = l.promo_use_id
             WHERE u.promo_id = c.id AND l.kind = 'promo')
    FROM promo_codes c WHERE c.code = '${c}'`)).split(' ').map(Number);
  return { uses, rows, ledger };
}

test('a code with a global limit of 10, used by 50 users at once: exactly 10 uses', async () => {
  const c = await createCode({ code: code('LIMIT'), tickets: 3, max_uses: 10 });
  const users = await newUsers(pg, 50);
  const all = await Promise.all(users.map((u) => use(u, c.code.toLowerCase())));
  const ok = all.filter((r) => r.status === 200);
  assert.equal(ok.length, 10, all.map((r) => r.status).join(','));
  for (const r of all) {
    if (r.status !== 200) assertError(r, 409, 'promo_exhausted');
    else assert.deepEqual([r.json.code, r.json.tickets, r.json.balance], [c.code, 3, 3]);
  }
  assert.deepEqual(await counts(c.code), { uses: 10, rows: 10, ledger: 10 });
  const credited = await Promise.all(users.map((u) => balanceOf(pg, u)));
  assert.equal(credited.filter((b) => b === 3).length, 10);
  assert.equal(credited.filter((b) => b === 0).length, 40);
  const listed = (await api(hub, 'GET', '/admin/promo-codes?limit=100', ADMIN)).json.items.find((x) => x.code === c.code);
  assert.equal(listed.uses, 10);
  assert.equal(listed.use_count, 10);
});

test('one user, 10 concurrent uses of a per-user code: one credit', async () => {
  const c = await createCode({ code: code('ONCE'), tickets: 5 });
  const user = await newUser(pg, 1);
  const all = await Promise.all(Array.from({ length: 10 }, () => use(user, c.code, crypto.randomUUID())));
  assert.equal(all.filter((r) => r.status === 200).length, 1, all.map((r) => r.status).join(','));
  for (const r of all) if (r.status !== 200) assertError(r, 409, 'promo_already_used');
  assert.equal(await balanceOf(pg, user), 6);
  assert.deepEqual(await counts(c.code), { uses: 1, rows: 1, ledger: 1 });
  const history = await api(hub, 'GET', '/promos/history', user);
  assert.equal(history.status, 200, history.text);
  assert.deepEqual(history.json.items.map((h) => [h.code, h.tickets]), [[c.code, 5]]);
});

test('an Idempotency-Key replays the first answer: the same 200, not promo_already_used', async () => {
  const c = await createCode({ code: code('REPLAY'), tickets: 4 });
  const user = await newUser(pg, 0);
  const key = crypto.randomUUID();
  const first = await use(user, c.code, key);
  assert.equal(first.status, 200, first.text);
  const again = await use(user, c.code, key);
  assert.equal(again.status, 200, again.text);
  assert.deepEqual(again.json, first.json);
  assertError(await use(user, `${c.code}X`, key), 422, 'idempotency_key_reused');
  assertError(await use(user, c.code), 409, 'promo_already_used');
  assert.equal(await balanceOf(pg, user), 4);
});

test('refusals: unknown 404, expired / not yet valid 422, inactive 422, exhausted 409, already used 409', async () => {
  const user = await newUser(pg, 0);
  const day = 24 * 3600 * 1000;
  const iso = (ms) => new Date(Date.now() + ms).toISOString();
  const expired = await createCode({ code: code('OLD'), tickets: 1, valid_from: iso(-2 * day), valid_until: iso(-day) });
  const future = await createCode({ code: code('SOON'), tickets: 1, valid_from: iso(day) });
  const inactive = await createCode({ code: code('OFF'), tickets: 1, active: false });
  const single = await createCode({ code: code('SINGLE'), tickets: 2, max_uses: 1 });
  const other = await newUser(pg, 0);

  assertError(await use(user, 'NO-SUCH-CODE'), 404, 'promo_not_found');
  assertError(await use(user, expired.code), 422, 'promo_expired');
  assertError(await use(user, future.code), 422, 'promo_expired');
  assertError(await use(user, inactive.code), 422, 'promo_inactive');
  assert.equal((await use(other, ` ${single.code.toLowerCase()} `)).status, 200, 'matched case-insensitively, trimmed');
  assertError(await use(user, single.code), 409, 'promo_exhausted');
  assertError(await use(other, single.code), 409, 'promo_already_used');
  assertError(await api(hub, 'POST', '/promos/use', user, { body: { code: 12 } }), 400, 'bad_request');
  assertError(await api(hub, 'POST', '/promos/use', user, { body: 'nope' }), 400, 'bad_json');
  assert.equal(await balanceOf(pg, user), 0);
  assert.equal(await balanceOf(pg, other), 2);

  // Admin validation of codes.
  assertError(await api(hub, 'POST', '/admin/promo-codes', ADMIN, { body: { code: single.code, tickets: 1 } }), 409, 'promo_code_taken');
  assertError(await api(hub, 'POST', '/admin/promo-codes', ADMIN, { body: { code: 'A B', tickets: 1 } }), 422, 'invalid_code');
  assertError(await api(hub, 'POST', '/admin/promo-codes', ADMIN, { body: { code: code('T'), tickets: 0 } }), 422, 'invalid_tickets');
  assertError(await api(hub, 'POST', '/admin/promo-codes', ADMIN, { body: { code: code('T'), tickets: '1' } }), 400, 'bad_request');
  assertError(await api(hub, 'POST', '/admin/promo-codes', ADMIN, {
    body: { code: code('T'), tickets: 1, valid_from: iso(day), valid_until: iso(-day) },
  }), 422, 'invalid_window');
  assertError(await api(hub, 'POST', '/admin/promo-codes', ADMIN, { body: { code: code('T'), tickets: 1, valid_until: 'soon' } }), 400, 'bad_request');
});

test('the books balance', async () => {
  await assertBooksBalance(pg);
});
