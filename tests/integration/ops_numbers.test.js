// Issue 10 items 6-8: GET /admin/stats (exact numbers after a scripted day),
// /admin/reports in JSON and CSV (sums equal the ledger), the deployment seen
// from a hub without sockets (gauges on Redis), and the player API's gaps
// (scores filters, my-stats among friends, search by name, public profile,
// balance with history, ledger, export, self delete).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cleanup, connectWs, http, token } from '../lib/harness.js';
import { ARCADE, GAME_SOLO, grant, phone, reserve, startHub, startWorld } from './queue_world.js';

const ADMIN = 'demo-admin';
let world;
let hub;

const call = (h, method, path, uid, { admin = false, headers = {}, body } = {}) =>
  http(h, method, `/api/v1${path}`, { token: uid ? token(h, uid, { admin }) : undefined, headers, body });
const asAdmin = (h, path, headers) => call(h, 'GET', path, ADMIN, { admin: true, headers });

function assertError(res, status, code) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.json?.error?.code, code, res.text);
}

/* RFC 4180: rows of fields; quoted fields may hold commas, CRLF and doubled quotes. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
      i++;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
    i++;
  }
  assert.equal(field, '', 'the CSV ends with CRLF');
  return rows;
}

/* A succeeded purchase of an offer, credited through the ledger. */
async function purchase(pg, uid, offer) {
  await world.pg.psql(`
    WITH p AS (INSERT INTO purchases (user_id, offer_id, tickets, price_cents, currency, provider, status)
               SELECT u.id, o.id, o.tickets, o.price_cents, o.currency, 'test', 'succeeded'
               FROM users u, ticket_offers o WHERE u.firebase_uid = '${uid}' AND o.id = ${offer}
               RETURNING id, user_id, tickets)
    SELECT rn_ledger_post(p.user_id, p.tickets, 'purchase', p_purchase_id => p.id) FROM p`);
}

/* A finished reservation (no ledger: a game of the past, ended 5 s ago), with its timings in seconds. */
async function pastGame(uid, { arcade = ARCADE, game = GAME_SOLO, status = 'completed', wait = 60, length = 120, score } = {}) {
  const id = await world.pg.psql(`
    INSERT INTO reservations (arcade_id, game_id, user_id, status, unlock_code, cost, created_at,
                              called_at, started_at, ended_at)
    SELECT ${arcade}, ${game}, u.id, '${status}', '123456', 1, t.created,
           t.created + interval '${wait} seconds',
           CASE WHEN '${status}' = 'completed' THEN t.created + interval '${wait} seconds' END,
           CASE WHEN '${status}' = 'completed' THEN t.created + interval '${wait + length} seconds' END
    FROM users u, (SELECT now() - interval '${wait + length + 5} seconds' AS created) t
    WHERE u.firebase_uid = '${uid}' RETURNING id`);
  if (score !== undefined) {
    await world.pg.psql(`INSERT INTO scores (reservation_id, user_id, score)
                         SELECT ${id}, u.id, ${score} FROM users u WHERE u.firebase_uid = '${uid}'`);
  }
  return Number(id);
}

before(async () => {
  world = await startWorld();
  hub = await startHub({ pg: world.pg, redis: world.redis });
});
after(cleanup);

describe('GET /admin/stats', () => {
  test('exact numbers after a scripted set of purchases, reservations and games', async () => {
    const base = (await asAdmin(hub, '/admin/stats')).json;
    assert.equal(base.today.tickets_sold, 0);
    await purchase(world.pg, 'demo-alice', 1); // 10 tickets, 500 cents
    await purchase(world.pg, 'demo-bob', 2); // 25 tickets, 1000 cents
    const r1 = (await reserve(hub, 'demo-alice')).json; // 1 ticket, waiting
    await reserve(hub, 'demo-bob'); // 1 ticket, waiting
    const cancel = await call(hub, 'DELETE', `/reservations/${r1.reservation.id}`, 'demo-alice');
    assert.equal(cancel.status, 200, cancel.text); // refunded
    await pastGame('demo-alice', { wait: 60, length: 120 });
    await pastGame('demo-bob', { wait: 60, length: 180 });
    await pastGame('demo-carol', { status: 'expired', wait: 30 });

    const res = await asAdmin(hub, '/admin/stats');
    assert.equal(res.status, 200, res.text);
    const s = res.json;
    // the scripted day began up to ~4 min ago: right after 00:00 UTC part of it is yesterday's
    const now = new Date();
    const periods = now.getUTCHours() === 0 && now.getUTCMinutes() < 10 ? ['7d', '30d'] : ['today', '7d', '30d'];
    for (const p of periods) {
      assert.equal(s[p].tickets_sold, 35, p);
      assert.equal(s[p].revenue_cents, 1500, p);
      assert.equal(s[p].purchases, 2, p);
      assert.equal(s[p].tickets_spent, 1, p); // two bookings, one refunded
      assert.equal(s[p].games_played, 2, p);
    }
    assert.deepEqual(s.reservations, { waiting: 1, called: 0, playing: 0, completed: 2, cancelled: 1, expired: 1, voided: 0 });
    const float = Number(await world.pg.psql('SELECT sum(tickets_balance) FROM users'));
    assert.equal(s.ticket_float, float);
    assert.equal(s.ticket_float, base.ticket_float + 35 - 1);
    assert.equal(s.no_show_rate, 0.3333);
    assert.equal(s.avg_wait_s, 50);
    assert.equal(s.avg_game_s, 150);
    assert.equal(s.players_online, 0);
  });

  test('admin only', async () => {
    assertError(await call(hub, 'GET', '/admin/stats', 'demo-alice'), 403, 'forbidden');
    assert.equal((await call(hub, 'GET', '/admin/stats', null)).status, 401);
  });
});

describe('GET /admin/reports', () => {
  test('CSV parses, quotes what it must, and sums to the ledger', async () => {
    await world.pg.psql(`INSERT INTO arcades (id, name, status) VALUES (77, 'Hall "A", north', 'offline');
                         INSERT INTO arcade_games (arcade_id, slot, game_id) VALUES (77, 1, ${GAME_SOLO})`);
    await pastGame('demo-alice', { arcade: 77 });
    const today = new Date().toISOString().slice(0, 10);
    const yesterday = new Date(Date.now() - 86400000).toISOString().slice(0, 10);
    const res = await asAdmin(hub, `/admin/reports/plays?from=${yesterday}&to=${today}`, { Accept: 'text/csv' });
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers['content-type'], /^text\/csv/);
    const rows = parseCsv(res.text);
    assert.deepEqual(rows[0], ['day', 'arcade_id', 'arcade', 'game_id', 'game', 'games', 'duo_games', 'players', 'tickets', 'avg_game_s']);
    const hall = rows.find((r) => r[1] === '77');
    assert.equal(hall[2], 'Hall "A", north');
    assert.ok([today, yesterday].includes(hall[0]), hall[0]);
    const games = rows.slice(1).reduce((n, r) => n + Number(r[5]), 0);
    assert.equal(games, Number(await world.pg.psql(`SELECT count(*) FROM reservations WHERE status = 'completed'`)));

    const rev = await asAdmin(hub, `/admin/reports/revenue?from=${yesterday}&to=${today}`, { Accept: 'text/csv' });
    const revRows = parseCsv(rev.text);
    const net = revRows[0].indexOf('tickets_net');
    const sum = revRows.slice(1).reduce((n, r) => n + Number(r[net]), 0);
    const ledger = Number(await world.pg.psql(`SELECT -sum(delta) FROM ledger WHERE kind IN ('reservation', 'refund')`));
    assert.equal(sum, ledger);
    assert.ok(sum > 0);

    const json = await asAdmin(hub, `/admin/reports/queues?arcade_id=${ARCADE}`);
    assert.equal(json.status, 200, json.text);
    assert.ok(json.json.items.every((r) => r.arcade_id === ARCADE));
    assert.equal(json.json.totals.reservations, json.json.items.reduce((n, r) => n + r.reservations, 0));
    assert.equal(json.json.totals.reservations,
      Number(await world.pg.psql(`SELECT count(*) FROM reservations WHERE arcade_id = ${ARCADE}`)));
  });

  test('bad input is refused', async () => {
    assertError(await asAdmin(hub, '/admin/reports/money'), 404, 'unknown_report');
    assertError(await asAdmin(hub, '/admin/reports/plays?from=2026-02-30'), 400, 'bad_request');
    assertError(await asAdmin(hub, '/admin/reports/plays?from=yesterday'), 400, 'bad_request');
    assertError(await asAdmin(hub, '/admin/reports/plays?from=2026-03-02&to=2026-03-01'), 422, 'invalid_range');
    assertError(await asAdmin(hub, '/admin/reports/plays?from=2020-01-01&to=2026-01-01'), 422, 'invalid_range');
    assertError(await asAdmin(hub, '/admin/reports/plays?arcade_id=x'), 400, 'bad_request');
    assertError(await call(hub, 'GET', '/admin/reports/plays', 'demo-alice'), 403, 'forbidden');
  });
});

describe('deployment', () => {
  test('a hub with no sockets counts the players of another process', async () => {
    const other = await startHub({ pg: world.pg, redis: world.redis });
    const player = await phone(hub, 'demo-alice');
    // the dashboard on `other` sees both processes in its stats push
    const dash = await connectWs(other);
    const auth = await dash.request({ type: 'auth', token: token(other, ADMIN, { admin: true }) });
    assert.equal(auth.type, 'ok', JSON.stringify(auth));
    const push = await dash.next(
      (m) => m.type === 'stats' && m.deployment?.total?.processes === 2 && m.deployment.total.connections.player === 1,
      15000, 'a stats push with both processes');
    assert.equal(push.deployment.processes.length, 2);
    for (const p of push.deployment.processes) {
      assert.equal(typeof p.pid, 'number');
      assert.equal(typeof p.started_at_ms, 'number');
      assert.equal(typeof p.messages_per_s, 'number');
    }
    dash.close();
    const s = await asAdmin(other, '/admin/stats');
    assert.equal(s.status, 200, s.text);
    assert.equal(s.json.players_online, 1);
    assert.equal(s.json.processes, 2);

    // a process killed without a goodbye drops out of the others' view within seconds
    const watcher = await connectWs(hub);
    const wauth = await watcher.request({ type: 'auth', token: token(hub, ADMIN, { admin: true }) });
    assert.equal(wauth.type, 'ok', JSON.stringify(wauth));
    await watcher.next((m) => m.type === 'stats' && m.deployment?.total?.processes === 2, 15000, 'two processes');
    await other.kill();
    const alone = await watcher.next((m) => m.type === 'stats' && m.deployment?.total?.processes === 1, 15000,
      'the killed process gone');
    assert.equal(alone.deployment.processes[0].pid, alone.pid);
    watcher.close();
    player.close();
  });
});

describe('player API', () => {
  test('scores filters, my-stats among friends, public profile', async () => {
    const g = 4; // Pixel Puzzle: nobody else scores there
    await pastGame('demo-alice', { game: g, score: 500 });
    await pastGame('demo-alice', { game: g, score: 300 });
    await pastGame('demo-bob', { game: g, score: 800 });
    await pastGame('demo-carol', { game: g, score: 900 }); // not alice's friend
    const today = new Date().toISOString().slice(0, 10);
    const yesterday = new Date(Date.now() - 86400000).toISOString().slice(0, 10);
    const all = await call(hub, 'GET', `/scores?game_id=${g}&from=${yesterday}&to=${today}`, null);
    assert.equal(all.status, 200, all.text);
    assert.deepEqual(all.json.items.map((i) => i.score), [900, 800, 500]);
    const old = await call(hub, 'GET', `/scores?game_id=${g}&from=2020-01-01&to=2020-01-31`, null);
    assert.deepEqual(old.json.items, []);
    const friends = await call(hub, 'GET', `/scores?game_id=${g}&friends=true`, 'demo-alice');
    assert.deepEqual(friends.json.items.map((i) => i.pseudo), ['bob', 'alice']);
    assertError(await call(hub, 'GET', `/scores?game_id=${g}&to=2026-13-01`, null), 400, 'bad_request');

    const mine = await call(hub, 'GET', '/scores/my-stats', 'demo-alice');
    const puzzle = mine.json.games.find((x) => x.game_id === g);
    assert.equal(puzzle.best_score, 500);
    assert.equal(Number(puzzle.average_score), 400);
    assert.equal(puzzle.games_played, 2);
    assert.equal(puzzle.friends_rank, 2); // behind bob, carol is no friend
    assert.equal(puzzle.friends_ranked, 2);

    const bob = await call(hub, 'GET', '/users/bob', 'demo-alice');
    assert.equal(bob.status, 200, bob.text);
    assert.equal(bob.json.relation, 'friend');
    assert.equal(bob.json.uid, 'demo-bob');
    assert.ok(bob.json.stats.games_played >= 1);
    assert.equal(bob.json.first_name, undefined);
    const carol = await call(hub, 'GET', '/users/carol', 'demo-alice');
    assert.equal(carol.json.relation, 'none');
    assert.equal(carol.json.uid, undefined);
    assertError(await call(hub, 'GET', '/users/demo-carol', 'demo-alice'), 404, 'user_not_found'); // a stranger's uid
    assertError(await call(hub, 'GET', '/users/nobody', 'demo-alice'), 404, 'user_not_found');
    assert.equal((await call(hub, 'GET', `/users/${'x'.repeat(200)}`, 'demo-alice')).status, 404);
    assertError(await call(hub, 'GET', '/users/bob', 'demo-nobody'), 404, 'not_registered');
  });

  test('search by pseudo or name, caller excluded, paginated', async () => {
    await world.pg.psql(`UPDATE users SET first_name = 'Zed', last_name = 'Zorro' WHERE firebase_uid IN ('demo-carol', 'demo-bob');
                         UPDATE users SET first_name = 'Zed' WHERE firebase_uid = 'demo-alice'`);
    const p1 = await call(hub, 'GET', '/users/search?q=zed&limit=1', 'demo-alice');
    assert.equal(p1.status, 200, p1.text);
    assert.deepEqual(p1.json.items.map((i) => i.pseudo), ['bob']);
    assert.ok(p1.json.next_cursor);
    const p2 = await call(hub, 'GET', `/users/search?q=zed&limit=1&cursor=${p1.json.next_cursor}`, 'demo-alice');
    assert.deepEqual(p2.json.items.map((i) => i.pseudo), ['carol']);
    assert.equal(p2.json.next_cursor, null);
    const full = await call(hub, 'GET', '/users/search?q=zed%20zor', 'demo-alice');
    assert.deepEqual(full.json.items.map((i) => i.pseudo), ['bob', 'carol']);
    assert.ok(full.json.items.every((i) => i.first_name === undefined && i.last_name === undefined));
    const wild = await call(hub, 'GET', '/users/search?q=%25%25', 'demo-alice');
    assert.deepEqual(wild.json.items, []);
  });

  test('balance with recent rows, ledger pages, others\' rows not visible', async () => {
    await grant(world.pg, 'demo-dave', 7, 'dave');
    await grant(world.pg, 'demo-dave', 3);
    const bal = await call(hub, 'GET', '/tickets/balance', 'demo-dave');
    assert.equal(bal.status, 200, bal.text);
    assert.equal(bal.json.balance, 10);
    assert.deepEqual(bal.json.recent.map((r) => r.delta), [3, 7]);
    const p1 = await call(hub, 'GET', '/tickets/ledger?limit=1', 'demo-dave');
    assert.deepEqual(p1.json.items.map((r) => [r.delta, r.balance_after]), [[3, 10]]);
    const p2 = await call(hub, 'GET', `/tickets/ledger?limit=1&cursor=${p1.json.next_cursor}`, 'demo-dave');
    assert.deepEqual(p2.json.items.map((r) => r.delta), [7]);
    assert.equal(p2.json.next_cursor, null);
    assertError(await call(hub, 'GET', '/tickets/ledger?limit=0', 'demo-dave'), 400, 'bad_request');
    assertError(await call(hub, 'GET', '/tickets/ledger', 'demo-nobody'), 404, 'not_registered');
  });

  test('export, then self delete: waiting reservation refunded, sockets closed', async () => {
    await grant(world.pg, 'demo-erin', 5, 'erin');
    const res = (await reserve(hub, 'demo-erin')).json;
    const other = await startHub({ pg: world.pg, redis: world.redis });
    const sock = await phone(other, 'demo-erin');
    const exp = await call(hub, 'GET', '/users/profile/export', 'demo-erin');
    assert.equal(exp.status, 200, exp.text);
    assert.equal(exp.json.user.uid, 'demo-erin');
    assert.deepEqual(exp.json.reservations.map((r) => r.id), [res.reservation.id]);
    assert.deepEqual(exp.json.ledger.map((r) => r.delta), [5, -1]);

    // called on a cabinet: refused, nothing changes
    const called = await world.pg.psql(`
      INSERT INTO reservations (arcade_id, game_id, user_id, status, unlock_code, cost, called_at, deadline)
      SELECT 3, 4, id, 'called', '123456', 1, now(), now() + interval '1 hour' FROM users
      WHERE firebase_uid = 'demo-erin' RETURNING id`);
    const refused = await call(hub, 'DELETE', '/users/profile', 'demo-erin');
    assertError(refused, 409, 'has_active_reservations');
    assert.deepEqual(refused.json.error.reservation_ids, [Number(called)]);
    assert.equal(await world.pg.psql(`SELECT status FROM reservations WHERE id = ${res.reservation.id}`), 'waiting');
    await world.pg.psql(`UPDATE reservations SET status = 'expired' WHERE id = ${called}`);

    const del = await call(hub, 'DELETE', '/users/profile', 'demo-erin');
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.json.cancelled_reservations, [res.reservation.id]);
    const closed = await sock.closed(10000);
    assert.equal(closed.code, 4003);
    assert.equal(Number(await world.pg.psql(`SELECT tickets_balance FROM users WHERE firebase_uid = 'demo-erin'`)), 5);
    assert.equal(await world.pg.psql(`SELECT status FROM reservations WHERE id = ${res.reservation.id}`), 'cancelled');
    const again = await call(hub, 'GET', '/users/profile', 'demo-erin');
    assert.ok(again.status === 403 || again.status === 404, again.text);
    const restore = await call(hub, 'POST', '/admin/users/demo-erin/restore', ADMIN, { admin: true });
    assert.equal(restore.status, 200, restore.text);
  });
});
