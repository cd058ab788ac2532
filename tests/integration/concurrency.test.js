// The books under load: 50 concurrent clients run 2,000+ random operations
// (purchases ok / declined / invalid, promo uses, reservations and their
// cancellations, admin adjustments), replay some Idempotency-Keys, some of
// them while the first request is still running. Afterwards every user's
// balance is what the answers the clients got add up to, `retronova-hub
// audit` reports 0 discrepancies, and no balance is negative. Then the books
// are corrupted on purpose and the audit must fail and name the rows.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { applyDemo, startHub, startPostgres, startRedis } from '../lib/harness.js';
import { ADMIN, api, assertBooksBalance, audit, newUsers, uniq } from './tickets_world.js';

const CLIENTS = 50;
const OPS_PER_CLIENT = 44; // 2,200 operations
const START_TICKETS = 20;
const OFFERS = { 1: 10, 2: 25, 3: 60 };
// Solo-playable games per demo arcade (game 1 needs two players).
const ARCADE_GAMES = { 1: [2, 3, 4], 2: [2, 3], 3: [4] };

let pg, hub;

before(async () => {
  const [p, redis] = await Promise.all([startPostgres(), startRedis()]);
  pg = p;
  await applyDemo(pg);
  hub = await startHub({ pg, redis, args: ['--pg-pool', '8'] });
});

const pick = (xs) => xs[Math.floor(Math.random() * xs.length)];

/*
 * One client: a user doing random operations one after another. Every
 * effect the answers report is recorded once (by purchase, reservation,
 * ledger or key id), so that replays and duplicates count once.
 */
async function client(user, codes, stats) {
  const effects = new Map(); // effect id -> ticket delta
  const waiting = new Map(); // reservation id -> cost
  const sent = []; // keyed requests with their first answer, for replays
  const count = (what) => (stats[what] = (stats[what] || 0) + 1);

  /* Sends a keyed request, remembers its answer for a later replay. */
  async function keyed(method, path, body, asUser = user) {
    const key = crypto.randomUUID();
    const res = await api(hub, method, path, asUser, { body, key });
    if (res.status !== 503) sent.push({ method, path, body, key, asUser, res });
    return res;
  }

  function record(res, kind) {
    count(`${kind} ${res.status}`);
    if (res.status >= 500) throw new Error(`${kind}: ${res.status} ${res.text}`);
    if (kind === 'purchase' && res.status === 201) effects.set(`p${res.json.purchase.id}`, res.json.purchase.tickets);
    if (kind === 'reserve' && res.status === 201) {
      const r = res.json.reservation;
      effects.set(`r${r.id}`, -r.cost);
      if (r.status === 'waiting') waiting.set(r.id, r.cost);
    }
    if (kind === 'adjust' && res.status === 200) effects.set(`a${res.json.ledger_id}`, res.json.delta);
  }

  for (let i = 0; i < OPS_PER_CLIENT; i++) {
    let roll = Math.random();
    if (roll >= 0.7 && roll < 0.85 && !waiting.size) roll = 0.6; // nothing to cancel: reserve
    if (roll < 0.3) {
      const offer = pick([1, 2, 3]);
      const tok = Math.random() < 0.8 ? 'tok_ok' : pick(['tok_declined', 'tok_nope']);
      const body = { offer_id: offer, payment_token: tok };
      const res = Math.random() < 0.85 ? await keyed('POST', '/tickets/purchase', body) : await api(hub, 'POST', '/tickets/purchase', user, { body });
      record(res, 'purchase');
      if (res.status === 201) assert.equal(res.json.purchase.tickets, OFFERS[offer]);
      else assert.equal(res.status, 402, res.text);
    } else if (roll < 0.45) {
      const code = pick(codes);
      const key = Math.random() < 0.5 ? crypto.randomUUID() : undefined;
      const res = await api(hub, 'POST', '/promos/use', user, { body: { code: code.code }, key });
      record(res, 'promo');
      if (res.status === 200) effects.set(`promo ${code.code}`, code.tickets); // once per user and code
      else assert.ok(['promo_already_used', 'promo_exhausted'].includes(res.json.error.code), res.text);
      if (key && res.status !== 503) sent.push({ method: 'POST', path: '/promos/use', body: { code: code.code }, key, asUser: user, res });
    } else if (roll < 0.7) {
      const arcade = pick([1, 2, 3]);
      const res = await keyed('POST', '/reservations', { arcade_id: arcade, game_id: pick(ARCADE_GAMES[arcade]) });
      record(res, 'reserve');
      if (res.status !== 201) {
        assert.ok(['already_queued', 'insufficient_tickets'].includes(res.json?.error?.code), res.text);
      }
    } else if (roll < 0.85) {
      const [id, cost] = [...waiting.entries()][0];
      const res = await api(hub, 'DELETE', `/reservations/${id}`, user);
      record(res, 'cancel');
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.refunded, cost);
      waiting.delete(id);
      effects.set(`c${id}`, cost);
    } else if (roll < 0.92) {
      const delta = pick([-7, -3, -1, 1, 2, 5]);
      const res = await keyed('PUT', `/admin/users/${user.uid}/tickets`, { delta, reason: 'load test' }, ADMIN);
      record(res, 'adjust');
      if (res.status !== 200) assert.equal(res.json.error.code, 'insufficient_tickets', res.text);
    } else if (roll < 0.97 && sent.length) {
      // A replay of an earlier keyed request: the same answer, no new effect.
      const s = pick(sent);
      const [again, twin] = await Promise.all([
        api(hub, s.method, s.path, s.asUser, { body: s.body, key: s.key }),
        Math.random() < 0.3 ? api(hub, s.method, s.path, s.asUser, { body: s.body, key: s.key }) : null,
      ]);
      count('replay');
      for (const r of [again, twin]) {
        if (!r) continue;
        assert.equal(r.status, s.res.status, `${s.method} ${s.path} replay: ${r.text} vs ${s.res.text}`);
        assert.deepEqual(r.json, s.res.json, `${s.method} ${s.path} replay body`);
      }
    } else {
      // Two copies of a new keyed purchase at once: one effect.
      const key = crypto.randomUUID();
      const body = { offer_id: 1, payment_token: 'tok_ok' };
      const pair = await Promise.all([0, 1].map(() => api(hub, 'POST', '/tickets/purchase', user, { body, key })));
      count('double');
      for (const r of pair) {
        if (r.status === 201) record(r, 'purchase');
        else assert.equal(r.json?.error?.code, 'request_in_progress', r.text);
      }
      assert.ok(pair.some((r) => r.status === 201), pair.map((r) => r.text).join(' | '));
    }
  }
  return [...effects.values()].reduce((a, b) => a + b, START_TICKETS);
}

test(`${CLIENTS} clients, ${CLIENTS * OPS_PER_CLIENT} random operations: exactly once, and the books balance`, async () => {
  const probe = await api(hub, 'POST', '/reservations', null, { body: {} });
  assert.equal(probe.status, 401, 'the reservations route is served');
  const users = await newUsers(pg, CLIENTS, START_TICKETS, 'load');
  const codes = [];
  for (const [prefix, tickets, max] of [['LOADFIVE', 3, 5], ['LOADTEN', 2, 10], ['LOADALL', 1, null]]) {
    const c = `${prefix}${uniq()}`.toUpperCase();
    const res = await api(hub, 'POST', '/admin/promo-codes', ADMIN, { body: { code: c, tickets, max_uses: max } });
    assert.equal(res.status, 201, res.text);
    codes.push({ code: c, tickets });
  }
  const stats = {};
  const t0 = Date.now();
  const expected = await Promise.all(users.map((u) => client(u, codes, stats)));
  const took = Date.now() - t0;
  const ops = Object.values(stats).reduce((a, b) => a + b, 0);
  console.log(`# ${ops} answered operations in ${took} ms: ${JSON.stringify(stats)}`);
  assert.ok(ops >= 2000, `only ${ops} operations`);
  assert.ok(stats['reserve 201'] > 0 && stats['cancel 200'] > 0 && stats['purchase 201'] > 0 && stats.replay > 0);

  // Every balance is what that user's answers add up to.
  const actual = await pg.psql(`SELECT string_agg(firebase_uid || '=' || tickets_balance, ',')
                                FROM users WHERE firebase_uid LIKE 'load-%'`);
  const byUid = Object.fromEntries(actual.split(',').map((kv) => kv.split('=')));
  users.forEach((u, i) => assert.equal(Number(byUid[u.uid]), expected[i], `balance of ${u.uid}`));

  // Limits held; nothing left pending.
  for (const [c, max] of [[codes[0].code, 5], [codes[1].code, 10]]) {
    const uses = Number(await pg.psql(`SELECT count(*) FROM promo_uses u JOIN promo_codes c ON c.id = u.promo_id WHERE c.code = '${c}'`));
    assert.ok(uses <= max, `${c}: ${uses} uses > ${max}`);
  }
  assert.equal(await pg.psql("SELECT count(*) FROM purchases WHERE status = 'pending'"), '0');
  await assertBooksBalance(pg);
});

test('audit fails on corrupted books and names the rows', async () => {
  const victim = await pg.psql("SELECT id || ' ' || firebase_uid FROM users WHERE firebase_uid LIKE 'load-%' ORDER BY id LIMIT 1");
  const [id, uid] = victim.split(' ');
  await pg.psql(`UPDATE users SET tickets_balance = tickets_balance + 1 WHERE id = ${id}`);
  const purchase = await pg.psql("SELECT id FROM purchases WHERE status = 'succeeded' ORDER BY id LIMIT 1");
  await pg.psql(`UPDATE purchases SET status = 'failed' WHERE id = ${purchase}`);

  const r = await audit(pg);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`^balance: user ${id} \\(${uid}\\): tickets_balance \\d+ but sum\\(ledger.delta\\) \\d+$`, 'm'));
  assert.match(r.stdout, new RegExp(`^purchase: purchase ${purchase} \\(.*failed.*\\): 1 purchase ledger row`, 'm'));
  assert.match(r.stdout, /^2 discrepancies$/m);

  await pg.psql(`UPDATE users SET tickets_balance = tickets_balance - 1 WHERE id = ${id}`);
  await pg.psql(`UPDATE purchases SET status = 'succeeded' WHERE id = ${purchase}`);
  assert.equal((await audit(pg)).code, 0);
});
