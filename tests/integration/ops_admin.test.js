// Operators edit the catalogue, cabinets read their config, and every admin
// action is in the audit log (issue 10 items 3-5): catalogue edits reach a
// connected cabinet (cabinet_config) and a phone (its arcade view) live; every
// admin action is a row of GET /admin/audit with its before and after, also
// streamed to admin sockets; filters and cursor pagination; bad input changes
// nothing; GET /arcades/{id}/config with the arcade's key, a wrong key (401,
// counted against the cabinet-key limit) and a retired arcade (410).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { applyDemo, connectWs, http, parseMetrics, startHub, startPostgres, startRedis, token, waitFor } from '../lib/harness.js';
import { assertBooksBalance, newUser, newUsers, signature, webhook } from './tickets_world.js';

let hub, pg, redis;

before(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  hub = await startHub({ pg, redis });
});

const ADMIN = 'demo-admin';
const admin = (method, path, body, headers = {}) =>
  http(hub, method, `/api/v1${path}`, { token: token(hub, ADMIN, { admin: true }), body, headers });
const ok = async (promise, status = 200) => {
  const res = await promise;
  assert.equal(res.status, status, res.text);
  return res.json;
};
const auditCount = async () => Number(await pg.psql('SELECT count(*) FROM audit_log'));

// A fresh arcade (with its key, shown once) holding games at slots 1 and 2.
async function newArcade(name) {
  const created = await ok(admin('POST', '/admin/arcades', { name, location: 'Test hall' }), 201);
  const id = created.arcade.id;
  await ok(admin('POST', `/admin/arcades/${id}/games`, { game_id: 2, slot: 1 }), 201);
  await ok(admin('POST', `/admin/arcades/${id}/games`, { game_id: 3, slot: 2 }), 201);
  return { id, key: created.api_key };
}

test('catalogue edits reach the connected cabinet (cabinet_config) and the phone (queue view)', async () => {
  const { id, key } = await newArcade(`Edit hall ${crypto.randomUUID().slice(0, 8)}`);
  const cab = await connectWs(hub, { headers: { Authorization: `ApiKey ${key}` } });
  // The edits made before it connected were pushed too (and replayed, unacked,
  // first); the config of its connection comes last and is the newest.
  const first = await cab.next((m) => m.type === 'cabinet_config' && m.games.length === 2, 10000);
  assert.equal(first.arcade_id, id);
  assert.deepEqual(first.games.map((g) => [g.slot, g.game_id]), [[1, 2], [2, 3]]);
  assert.equal(first.retired, false);
  assert.equal(first.maintenance.active, false);
  assert.equal(typeof first.server_time_ms, 'number');
  assert.ok(Math.abs(first.server_time_ms - Date.now()) < 60000);

  const phone = await connectWs(hub, { token: token(hub, 'demo-alice') });
  assert.equal((await phone.request({ type: 'subscribe', ch: `arcade:${id}` })).type, 'ok');
  const view0 = await phone.next((m) => m.type === 'queue' && m.arcade_id === id, 10000);

  // The arcade renamed: the phone's view and the cabinet's config, both live.
  await ok(admin('PATCH', `/admin/arcades/${id}`, { name: 'Renamed hall' }));
  const view1 = await phone.next((m) => m.type === 'queue' && m.arcade_id === id && m.name === 'Renamed hall', 10000);
  assert.ok(view1.v > view0.v, `v ${view0.v} -> ${view1.v}`);
  const renamed = await cab.next((m) => m.type === 'cabinet_config' && m.name === 'Renamed hall', 10000);
  assert.equal(renamed.location, 'Test hall', 'a field not given is unchanged');

  // Another game in slot 2, then slot 2 emptied.
  await ok(admin('PATCH', `/admin/arcades/${id}/games/2`, { game_id: 4 }));
  const swapped = await cab.next((m) => m.type === 'cabinet_config' && m.games.some((g) => g.slot === 2 && g.game_id === 4), 10000);
  assert.equal(swapped.games.length, 2);
  await ok(admin('DELETE', `/admin/arcades/${id}/games/2`));
  const emptied = await cab.next((m) => m.type === 'cabinet_config' && m.games.length === 1, 10000);
  assert.deepEqual(emptied.games.map((g) => g.slot), [1]);

  // A game's price and maximum duration: every arcade that has it is told.
  const cost = 2 + (Date.now() % 2); // the demo's price is 1; players keep enough tickets
  const game = await ok(admin('PATCH', '/admin/games/2', { ticket_cost: cost, max_duration_s: 240 }));
  assert.equal(game.game.ticket_cost, cost);
  assert.equal(game.game.max_duration_s, 240);
  assert.equal(game.game.name, 'Galaxy Raiders', 'unchanged');
  const priced = await cab.next((m) => m.type === 'cabinet_config' && m.games[0].ticket_cost === cost, 10000);
  assert.equal(priced.games[0].max_duration_s, 240);
  const pub = await ok(http(hub, 'GET', `/api/v1/arcades/${id}`));
  assert.equal(pub.arcade.games[0].ticket_cost, cost, 'the public catalogue shows the new price');
  assert.equal(pub.arcade.name, 'Renamed hall');

  // The pushes are private cabinet events: each has an id the cabinet acks.
  assert.equal(typeof priced.event_id, 'number');
  assert.equal(priced.opening_hours, null, 'open at all hours');

  // An operator's maintenance switch and opening hours change the config too.
  await ok(admin('PUT', `/admin/arcades/${id}/maintenance`, { on: true, message: 'Coin slot jammed' }));
  const down = await cab.next((m) => m.type === 'cabinet_config' && m.maintenance.active, 10000);
  assert.equal(down.maintenance.message, 'Coin slot jammed');
  assert.equal(down.status, 'idle', 'the cabinet\'s own state is unchanged');
  await ok(admin('PUT', `/admin/arcades/${id}/maintenance`, { on: false }));
  const up = await cab.next((m) => m.type === 'cabinet_config' && !m.maintenance.active && m.event_id > down.event_id, 10000);
  assert.equal(up.maintenance.message, null);
  await ok(admin('PUT', `/admin/arcades/${id}/hours`, { opens_at: '10:00', closes_at: '22:30', time_zone: 'Europe/Paris' }));
  const hours = await cab.next((m) => m.type === 'cabinet_config' && m.opening_hours, 10000);
  assert.deepEqual({ ...hours.opening_hours, last_call_min: undefined },
    { opens_at: '10:00', closes_at: '22:30', time_zone: 'Europe/Paris', last_call_min: undefined });
  assert.equal(typeof hours.opening_hours.last_call_min, 'number');
  const viaRest = await ok(http(hub, 'GET', `/api/v1/arcades/${id}/config`, { headers: { 'X-Api-Key': key } }));
  assert.deepEqual((viaRest.config || viaRest).opening_hours, hours.opening_hours, 'GET .../config says the same');
  // A refused change pushes nothing.
  assert.equal((await admin('PUT', `/admin/arcades/${id}/hours`, { opens_at: '10:00' })).status, 422);
  await assert.rejects(cab.next((m) => m.type === 'cabinet_config' && m.event_id > hours.event_id, 1000),
    'no cabinet_config after a 422');
  cab.close();
  phone.close();
});

test('retiring: a game leaves the catalogue, an arcade with a live queue is refused, an empty one retires', async () => {
  const g = await ok(admin('POST', '/admin/games', { name: `Retro ${crypto.randomUUID().slice(0, 8)}`, ticket_cost: 1 }), 201);
  const { id, key } = await newArcade(`Retire hall ${crypto.randomUUID().slice(0, 8)}`);
  await ok(admin('POST', `/admin/arcades/${id}/games`, { game_id: g.game.id, slot: 3 }), 201);
  await ok(admin('DELETE', `/admin/games/${g.game.id}`));
  const games = await ok(http(hub, 'GET', '/api/v1/games'));
  assert.ok(!games.items.some((x) => x.id === g.game.id), 'a retired game is not listed');
  const booked = await http(hub, 'POST', '/api/v1/reservations', {
    token: token(hub, 'demo-alice'),
    body: { arcade_id: id, game_id: g.game.id },
    headers: { 'Idempotency-Key': crypto.randomUUID() },
  });
  assert.ok(booked.status >= 400 && booked.status < 500, `a retired game cannot be booked: ${booked.status}`);
  // retiring again changes nothing and writes no audit row
  const n = await auditCount();
  await ok(admin('DELETE', `/admin/games/${g.game.id}`));
  assert.equal(await auditCount(), n);

  // A live reservation (called at the connected cabinet) blocks the
  // arcade's retirement and its slot's removal; nothing changes.
  const cab = await connectWs(hub, { headers: { Authorization: `ApiKey ${key}` } });
  await cab.next((m) => m.type === 'cabinet_config', 10000);
  const alice = await connectWs(hub, { token: token(hub, 'demo-alice') });
  const res = await ok(http(hub, 'POST', '/api/v1/reservations', {
    token: token(hub, 'demo-alice'),
    body: { arcade_id: id, game_id: 2 },
    headers: { 'Idempotency-Key': crypto.randomUUID() },
  }), 201);
  const turn = await alice.next((m) => m.type === 'your_turn' && m.reservation_id === res.reservation.id, 10000);
  const refused = await admin('DELETE', `/admin/arcades/${id}`);
  assert.equal(refused.status, 409, refused.text);
  assert.equal(refused.json.error.code, 'arcade_has_reservations');
  assert.deepEqual(refused.json.error.reservation_ids, [res.reservation.id]);
  const slotBusy = await admin('DELETE', `/admin/arcades/${id}/games/1`);
  assert.equal(slotBusy.status, 409);
  assert.equal(slotBusy.json.error.code, 'slot_in_use');
  assert.equal(await auditCount(), n, 'refusals write nothing');
  assert.equal((await cab.request({ type: 'unlock', code: turn.code })).type, 'ok');
  assert.equal((await cab.request({ type: 'game_over', reservation_id: res.reservation.id, scores: [500] })).type, 'ok');
  alice.close();

  // Empty now: retired, its cabinet disconnected, its key refused.
  await ok(admin('DELETE', `/admin/arcades/${id}`));
  assert.equal((await cab.closed(10000)).code, 4001);
  assert.equal((await http(hub, 'GET', `/api/v1/arcades/${id}`)).status, 404);
  assert.equal((await admin('PATCH', `/admin/arcades/${id}`, { name: 'x' })).status, 404);
  const cfg = await http(hub, 'GET', `/api/v1/arcades/${id}/config`, { headers: { 'X-Api-Key': key } });
  assert.equal(cfg.status, 410, cfg.text);
  assert.equal(cfg.json.error.code, 'arcade_retired');
});

test('bad edits: a clear error, nothing changed, nothing audited', async () => {
  const before = await pg.psql("SELECT row_to_json(g)::text FROM games g WHERE id = 4");
  const n = await auditCount();
  const cases = [
    ['PATCH', '/admin/games/4', {}, 400, 'empty_patch'],
    ['PATCH', '/admin/games/4', { colour: 'red' }, 400, 'unknown_field'],
    ['PATCH', '/admin/games/4', { ticket_cost: 'ten' }, 400, 'bad_request'],
    ['PATCH', '/admin/games/4', { ticket_cost: 0 }, 422, 'invalid_ticket_cost'],
    ['PATCH', '/admin/games/4', { min_players: 2, max_players: 1 }, 422, 'invalid_players'],
    ['PATCH', '/admin/games/4', { max_duration_s: 5 }, 422, 'invalid_max_duration'],
    ['PATCH', '/admin/games/4', { name: 'Street Brawler' }, 409, 'game_name_taken'],
    ['PATCH', '/admin/games/999999', { name: 'x' }, 404, 'game_not_found'],
    ['PATCH', '/admin/games/abc', { name: 'x' }, 404, 'game_not_found'],
    ['PATCH', '/admin/arcades/1', { name: '' }, 422, 'invalid_name'],
    ['PATCH', '/admin/arcades/999999', { name: 'x' }, 404, 'arcade_not_found'],
    ['PATCH', '/admin/arcades/1/games/1', { game_id: 3 }, 409, 'game_already_on_arcade'],
    ['PATCH', '/admin/arcades/1/games/9', { game_id: 3 }, 404, 'slot_not_found'],
    ['PATCH', '/admin/arcades/1/games/1', { game: 3 }, 400, 'bad_request'],
    ['PATCH', '/admin/offers/1', { currency: 'euro' }, 422, 'invalid_currency'],
    ['PATCH', '/admin/offers/999999', { name: 'x' }, 404, 'offer_not_found'],
    ['POST', '/admin/offers', { name: 'no tickets', price_cents: 100 }, 422, 'invalid_tickets'],
    ['PATCH', '/admin/promo-codes/999999', { tickets: 1 }, 404, 'promo_code_not_found'],
    ['DELETE', '/admin/offers/999999', undefined, 404, 'offer_not_found'],
  ];
  for (const [method, path, body, status, code] of cases) {
    const res = await admin(method, path, body);
    assert.equal(res.status, status, `${method} ${path} ${JSON.stringify(body)}: ${res.text}`);
    assert.equal(res.json.error.code, code, `${method} ${path}: ${res.text}`);
  }
  const notJson = await admin('PATCH', '/admin/games/4', '{nope');
  assert.equal(notJson.status, 400);
  const player = await http(hub, 'PATCH', '/api/v1/admin/games/4', { token: token(hub, 'demo-alice'), body: { ticket_cost: 9 } });
  assert.equal(player.status, 403);
  assert.equal(await pg.psql("SELECT row_to_json(g)::text FROM games g WHERE id = 4"), before);
  assert.equal(await auditCount(), n);
});

test('every admin action is in /admin/audit with before and after, and on the admin stream', async () => {
  const stream = await connectWs(hub, { token: token(hub, ADMIN, { admin: true }) });
  const streamed = [];
  stream.ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    if (m.type === 'admin_event' && m.event.kind === 'audit') streamed.push(m.event.entry);
  });
  const baseline = Number(await pg.psql('SELECT coalesce(max(id), 0) FROM audit_log'));
  const since = new Date(Date.now() - 60000).toISOString();
  const tag = crypto.randomUUID().slice(0, 8);

  const game = (await ok(admin('POST', '/admin/games', { name: `Audit ${tag}`, ticket_cost: 2 }), 201)).game;
  await ok(admin('PATCH', `/admin/games/${game.id}`, { ticket_cost: 3 }));
  const arcade = await ok(admin('POST', '/admin/arcades', { name: `Audit hall ${tag}` }), 201);
  const aid = arcade.arcade.id;
  await ok(admin('POST', `/admin/arcades/${aid}/games`, { game_id: game.id, slot: 1 }), 201);
  await ok(admin('PATCH', `/admin/arcades/${aid}/games/1`, { game_id: 4 }));
  await ok(admin('DELETE', `/admin/arcades/${aid}/games/1`));
  await ok(admin('PATCH', `/admin/arcades/${aid}`, { location: 'Upstairs' }));
  await ok(admin('POST', `/admin/arcades/${aid}/rotate-key`));
  await ok(admin('DELETE', `/admin/arcades/${aid}`));
  await ok(admin('DELETE', `/admin/games/${game.id}`));
  const offer = (await ok(admin('POST', '/admin/offers', { name: `Pack ${tag}`, tickets: 5, price_cents: 300 }), 201)).offer;
  await ok(admin('PATCH', `/admin/offers/${offer.id}`, { price_cents: 250 }));
  await ok(admin('DELETE', `/admin/offers/${offer.id}`));
  const promo = (await ok(admin('POST', '/admin/promo-codes', { code: `A${tag}`.toUpperCase(), tickets: 5 }), 201)).promo_code;
  await ok(admin('PATCH', `/admin/promo-codes/${promo.id}`, { max_uses: 10 }));
  await ok(admin('DELETE', `/admin/promo-codes/${promo.id}`));
  await ok(admin('PUT', '/admin/users/demo-bob/tickets', { delta: 3, reason: 'audit test' }));
  await ok(admin('DELETE', '/admin/users/demo-bob'));
  await ok(admin('POST', '/admin/users/demo-bob/restore'));

  const expected = [
    ['game.create', 'game', String(game.id)],
    ['game.update', 'game', String(game.id)],
    ['arcade.create', 'arcade', String(aid)],
    ['slot.create', 'slot', `${aid}/1`],
    ['slot.update', 'slot', `${aid}/1`],
    ['slot.delete', 'slot', `${aid}/1`],
    ['arcade.update', 'arcade', String(aid)],
    ['arcade.rotate_key', 'arcade', String(aid)],
    ['arcade.retire', 'arcade', String(aid)],
    ['game.retire', 'game', String(game.id)],
    ['offer.create', 'offer', String(offer.id)],
    ['offer.update', 'offer', String(offer.id)],
    ['offer.deactivate', 'offer', String(offer.id)],
    ['promo_code.create', 'promo_code', String(promo.id)],
    ['promo_code.update', 'promo_code', String(promo.id)],
    ['promo_code.deactivate', 'promo_code', String(promo.id)],
    ['tickets.adjust', 'user', 'demo-bob'],
    ['user.delete', 'user', 'demo-bob'],
    ['user.restore', 'user', 'demo-bob'],
  ];
  const page = await ok(admin('GET', `/admin/audit?actor=${ADMIN}&from=${encodeURIComponent(since)}&limit=100`));
  const rows = page.items.filter((r) => r.id > baseline).reverse(); // oldest first
  assert.deepEqual(rows.map((r) => [r.action, r.target_type, r.target_id]), expected);
  for (const r of rows) {
    assert.equal(r.actor, ADMIN);
    assert.equal(typeof r.at_ms, 'number');
  }
  const by = (action) => rows.find((r) => r.action === action);
  assert.deepEqual([by('game.update').before.ticket_cost, by('game.update').after.ticket_cost], [2, 3]);
  assert.equal(by('game.create').before, null);
  assert.equal(by('slot.delete').after, null);
  assert.deepEqual([by('slot.update').before.game_id, by('slot.update').after.game_id], [game.id, 4]);
  assert.deepEqual([by('arcade.update').before.location, by('arcade.update').after.location], ['', 'Upstairs']);
  assert.equal(by('arcade.retire').before.deleted_at, null);
  assert.ok(by('arcade.retire').after.deleted_at);
  assert.deepEqual([by('promo_code.update').before.max_uses, by('promo_code.update').after.max_uses], [null, 10]);
  assert.deepEqual([by('promo_code.deactivate').before.active, by('promo_code.deactivate').after.active], [true, false]);
  const adj = by('tickets.adjust');
  assert.equal(adj.after.balance - adj.before.balance, 3);
  assert.equal(adj.after.reason, 'audit test');
  assert.equal(by('user.delete').before.deleted_at, null);
  assert.ok(by('user.restore').before.deleted_at);
  assert.ok(!JSON.stringify(rows).includes(arcade.api_key), 'no key in the log');

  // The same rows, streamed live, in order.
  const lastId = rows[rows.length - 1].id;
  await stream.next((m) => m.type === 'admin_event' && m.event.kind === 'audit' && m.event.entry.id === lastId, 10000);
  const mine = streamed.filter((e) => rows.some((r) => r.id === e.id));
  assert.deepEqual(mine.map((e) => e.id), rows.map((r) => r.id));
  stream.close();
});

test('audit filters and cursor pagination', async () => {
  const tag = crypto.randomUUID().slice(0, 8);
  const created = [];
  for (let i = 0; i < 5; i++) {
    created.push((await ok(admin('POST', '/admin/offers', { name: `Page ${tag} ${i}`, tickets: 1 + i, price_cents: 100 }), 201)).offer.id);
  }
  await ok(admin('PATCH', `/admin/offers/${created[0]}`, { tickets: 42 }));

  // by target: the one offer's two rows, newest first
  const one = await ok(admin('GET', `/admin/audit?target_type=offer&target_id=${created[0]}`));
  assert.deepEqual(one.items.map((r) => r.action), ['offer.update', 'offer.create']);
  assert.equal(one.next_cursor, null);

  // by action, two per page: every row once, in id order, then no cursor
  const seen = [];
  let cursor = '';
  for (let pages = 0; pages < 100; pages++) {
    const p = await ok(admin('GET', `/admin/audit?action=offer.create&limit=2${cursor ? `&cursor=${cursor}` : ''}`));
    assert.ok(p.items.length <= 2);
    seen.push(...p.items);
    if (!p.next_cursor) break;
    cursor = p.next_cursor;
  }
  const ids = seen.map((r) => r.id);
  assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first');
  assert.equal(new Set(ids).size, ids.length, 'no row twice');
  assert.ok(seen.every((r) => r.action === 'offer.create'));
  for (const id of created) assert.ok(seen.some((r) => r.target_id === String(id)), `offer ${id}`);

  // time window: nothing before the epoch, nothing after tomorrow
  const none = await ok(admin('GET', '/admin/audit?to=1970-01-02T00:00:00Z'));
  assert.deepEqual(none.items, []);
  const future = await ok(admin('GET', `/admin/audit?from=${new Date(Date.now() + 86400000).toISOString()}`));
  assert.deepEqual(future.items, []);
  const other = await ok(admin('GET', '/admin/audit?actor=nobody-at-all'));
  assert.deepEqual(other.items, []);

  const bad = await admin('GET', '/admin/audit?from=yesterday-ish');
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.json.error.code, 'invalid_time');
  assert.equal((await admin('GET', '/admin/audit?limit=0')).status, 400);
  assert.equal((await admin('GET', `/admin/audit?actor=${'x'.repeat(200)}`)).status, 400);
  assert.equal((await http(hub, 'GET', '/api/v1/admin/audit', { token: token(hub, 'demo-alice') })).status, 403);
});

test('GET /arcades/{id}/config: the right key, a missing or wrong one (401), another arcade\'s', async () => {
  const { id, key } = await newArcade(`Config hall ${crypto.randomUUID().slice(0, 8)}`);
  const good = await ok(http(hub, 'GET', `/api/v1/arcades/${id}/config`, { headers: { 'X-Api-Key': key } }));
  assert.equal(good.config.arcade_id, id);
  assert.deepEqual(good.config.games.map((g) => g.slot), [1, 2]);
  assert.ok(good.config.limits.unlock_max_failures > 0);
  assert.equal(good.config.maintenance.active, false);
  assert.ok(Math.abs(good.config.server_time_ms - Date.now()) < 60000);

  const missing = await http(hub, 'GET', `/api/v1/arcades/${id}/config`);
  assert.equal(missing.status, 401);
  assert.equal(missing.json.error.code, 'missing_api_key');
  const wrong = key.slice(0, -4) + (key.endsWith('0000') ? '1111' : '0000');
  const bad = await http(hub, 'GET', `/api/v1/arcades/${id}/config`, { headers: { 'X-Api-Key': wrong } });
  assert.equal(bad.status, 401);
  assert.equal(bad.json.error.code, 'invalid_api_key');
  const other = await http(hub, 'GET', '/api/v1/arcades/1/config', { headers: { 'X-Api-Key': key } });
  assert.equal(other.status, 401, "one arcade's key is not another's");
  const junk = await http(hub, 'GET', `/api/v1/arcades/${id}/config`, { headers: { 'X-Api-Key': 'junk' } });
  assert.equal(junk.status, 401);
});

test('wrong config keys count against the cabinet-key limit (shared with the socket)', async () => {
  const limited = await startHub({ pg, redis, limits: true, env: { HUB_LIMIT_CABINET_KEY: '2/600' } });
  try {
    const { id, key } = await newArcade(`Limit hall ${crypto.randomUUID().slice(0, 8)}`);
    const get = (k) => http(limited, 'GET', `/api/v1/arcades/${id}/config`, { headers: { 'X-Api-Key': k } });
    const metrics = async () => {
      const samples = parseMetrics((await http(limited, 'GET', '/metrics')).text)
        .filter((s) => s.name === 'rn_limit_total' && s.labels.limit === 'cabinet_key_fail');
      const v = (r) => samples.find((s) => s.labels.result === r)?.value ?? 0;
      return { allowed: v('allowed'), refused: v('refused') };
    };
    // a right key gives its token back: any number of them
    for (let i = 0; i < 4; i++) assert.equal((await get(key)).status, 200);
    const m0 = await metrics();
    const wrong = key.slice(0, -4) + (key.endsWith('0000') ? '1111' : '0000');
    assert.equal((await get(wrong)).status, 401);
    assert.equal((await get(wrong)).status, 401);
    const cut = await get(key);
    assert.equal(cut.status, 429, `past the limit even the right key waits: ${cut.text}`);
    assert.equal(cut.json.error.code, 'rate_limited');
    const m1 = await metrics();
    assert.equal(m1.allowed - m0.allowed, 2);
    assert.equal(m1.refused - m0.refused, 1);
    // the socket shares the budget: a cabinet from the same IP is cut off too
    const ws = await connectWs(limited, {});
    const reply = await ws.request({ type: 'auth', api_key: key });
    assert.equal(reply.code, 'rate_limited', JSON.stringify(reply));
  } finally {
    await limited.stop();
  }
});

test('a payment webhook that changes a purchase is audited once, as webhook:<provider>', async () => {
  const secret = crypto.randomBytes(16).toString('hex');
  const payHub = await startHub({ pg, redis, args: ['--payment-webhook-secret', secret] });
  try {
    const user = await newUser(pg, 0);
    const begun = JSON.parse(await pg.psql(`SELECT rn_purchase_begin('${user.uid}', NULL, 'h', 1, 'sandbox')`));
    assert.equal(begun.status, 202, JSON.stringify(begun));
    const id = begun.charge.purchase_id;
    const body = JSON.stringify({ id: `evt_${id}`, type: 'payment.succeeded', data: { purchase_id: id, payment_id: `pay_${id}` } });
    for (let i = 0; i < 2; i++) {
      const res = await webhook(payHub, body, signature(secret, body));
      assert.equal(res.status, 200, res.text); // the second is a duplicate: no row
    }
    const log = await ok(admin('GET', `/admin/audit?target_type=purchase&target_id=${id}`));
    assert.equal(log.items.length, 1, JSON.stringify(log.items));
    const [row] = log.items;
    assert.equal(row.actor, 'webhook:sandbox');
    assert.equal(row.action, 'purchase.succeeded');
    assert.equal(row.before.status, 'pending');
    assert.equal(row.after.status, 'succeeded');
    assert.equal(row.after.tickets, 10);
  } finally {
    await payHub.stop();
  }
});

test('catalogue edits racing reservations: no deadlock, no error, the books balance', async () => {
  const { id, key } = await newArcade(`Race hall ${crypto.randomUUID().slice(0, 8)}`);
  const cab = await connectWs(hub, { headers: { Authorization: `ApiKey ${key}` } });
  await cab.next((m) => m.type === 'cabinet_config', 10000);
  const players = await newUsers(pg, 16, 50, 'race');
  const book = async (user) => {
    const res = await http(hub, 'POST', '/api/v1/reservations', {
      token: token(hub, user.uid),
      body: { arcade_id: id, game_id: 3 },
      headers: { 'Idempotency-Key': crypto.randomUUID() },
    });
    assert.equal(res.status, 201, res.text);
    const gone = await http(hub, 'DELETE', `/api/v1/reservations/${res.json.reservation.id}`, { token: token(hub, user.uid) });
    // the first one is called at once (the cabinet is idle): no longer cancellable
    assert.ok(gone.status === 200 || gone.json?.error?.code === 'not_cancellable' || gone.status === 409, gone.text);
  };
  const edits = [];
  for (let i = 0; i < 16; i++) {
    edits.push(admin('PATCH', '/admin/games/3', { ticket_cost: 1 + (i % 2), description: `race ${i}` }));
    edits.push(admin('PATCH', `/admin/arcades/${id}`, { location: `Hall ${i}` }));
  }
  const results = await Promise.all([...players.map(book), ...edits]);
  for (const res of results.filter(Boolean)) assert.equal(res.status, 200, res.text);
  await assertBooksBalance(pg);
  const rows = await ok(admin('GET', `/admin/audit?target_type=arcade&target_id=${id}&action=arcade.update&limit=100`));
  assert.equal(rows.items.length, 16, 'each edit audited once');
  cab.close();
});

test('a game edit queued behind a reservation on the same arcade does not deadlock with it', async () => {
  const { id, key } = await newArcade(`Lock hall ${crypto.randomUUID().slice(0, 8)}`);
  const cab = await connectWs(hub, { headers: { Authorization: `ApiKey ${key}` } });
  await cab.next((m) => m.type === 'cabinet_config', 10000);
  const [player] = await newUsers(pg, 1, 10, 'lock');
  const waiting = () =>
    pg.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()").then(Number);
  // Someone holds the arcade's row: the reservation queues for it, then the edit.
  const held = pg.psql(`BEGIN; SELECT 1 FROM arcades WHERE id = ${id} FOR UPDATE; SELECT pg_sleep(4); COMMIT;`);
  await waitFor(async () => Number(await pg.psql(
    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(4)%' AND state = 'active' AND pid <> pg_backend_pid()")) === 1,
  { timeoutMs: 10000, what: 'the arcade held' });
  const booked = http(hub, 'POST', '/api/v1/reservations', {
    token: token(hub, player.uid),
    body: { arcade_id: id, game_id: 3 },
    headers: { 'Idempotency-Key': crypto.randomUUID() },
  });
  await waitFor(async () => (await waiting()) >= 1, { timeoutMs: 10000, what: 'the reservation waiting' });
  const edited = admin('PATCH', '/admin/games/3', { description: 'edited behind a reservation' });
  await waitFor(async () => (await waiting()) >= 2, { timeoutMs: 10000, what: 'the edit waiting' });
  await held;
  // Locking the game row before the arcades, the edit would block the
  // reservation's INSERT (it key-shares the game) while waiting for its arcade.
  const [res, edit] = await Promise.all([booked, edited]);
  assert.equal(res.status, 201, res.text);
  assert.equal(edit.status, 200, edit.text);
  cab.close();
});
