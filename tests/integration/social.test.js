// Players between themselves, over the wire: friend requests pushed live,
// accept / reject / unfriend, the duo reservation that needs a friend, player
// search, one's profile, leaderboards and stats after a real game on a
// cabinet, and the admin's soft delete (refunding waiting reservations) and
// restore (storage/sql/04_social.sql behind hub/api_social.c).
//
// The tests share one world and run in order: carol and dave register and
// become friends, play, and so on.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { applyDemo, http, startPostgres, startRedis, waitFor } from '../lib/harness.js';
import { cabinet, cabinetKey, nextEvent, nextSnapshot, phone, startHub } from './queue_world.js';
import { ADMIN, api, assertBooksBalance, assertError, balanceOf, uniq } from './tickets_world.js';

const GAME_DUO = 1; // Street Brawler, 2 players, 2 tickets: arcades 1 and 3
const GAME_SOLO = 3; // Neon Racer, 1 player, 1 ticket: arcades 1 and 2

let pg, redis, hub;
const carol = { uid: 'social-carol', pseudo: 'carol', phone: '+33 6 12 34 56 78' };
const dave = { uid: 'social-dave', pseudo: 'Dave', phone: '+33 6 98 76 54 32' };
const alice = { uid: 'demo-alice' };
const bob = { uid: 'demo-bob' };
let carolPhone, davePhone, friendshipId, duoId;

before(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  hub = await startHub({ pg, redis });
});

const call = (method, path, user, opts) => api(hub, method, path, user, opts);

async function register(user) {
  const res = await call('POST', '/auth/register', user, {
    body: { pseudo: user.pseudo, first_name: 'First', last_name: 'Last', phone: user.phone },
  });
  assert.equal(res.status, 201, res.text);
}

/*
 * A phone that receives its private events live. The hub answers auth before
 * its Redis SUBSCRIBE to rn:user:<uid> is in place, and an event published
 * in between reaches this socket only at its next resume: wait for it.
 */
async function livePhone(user) {
  const c = await phone(hub, user.uid, { autoAck: true });
  await waitFor(async () => Number((await redis.cli('PUBSUB', 'NUMSUB', `rn:user:${user.uid}`)).split('\n')[1]) > 0,
    { what: `the hub subscribed to rn:user:${user.uid}` });
  return c;
}

/* Tickets through the admin's adjustment (the ledger). */
async function grant(user, delta) {
  const res = await call('PUT', `/admin/users/${user.uid}/tickets`, ADMIN, { body: { delta, reason: 'test grant' } });
  assert.equal(res.status, 200, res.text);
}

function reserve(user, body) {
  return call('POST', '/reservations', user, { body, key: crypto.randomUUID() });
}

/* A registered player with tickets; {uid, pseudo}. */
async function newPlayer(prefix, tickets = 10) {
  const u = { uid: `social-${prefix}-${uniq()}`, pseudo: `${prefix}${uniq()}` };
  await register(u);
  if (tickets) await grant(u, tickets);
  return u;
}

/* a asks b (by pseudo), b accepts: the friendship id. */
async function befriend(a, b) {
  const req = await call('POST', '/friends/request', a, { body: { pseudo: b.pseudo } });
  assert.equal(req.status, 201, req.text);
  const acc = await call('POST', `/friends/accept/${req.json.friendship.id}`, b);
  assert.equal(acc.status, 200, acc.text);
  return req.json.friendship.id;
}

// ---------------------------------------------------------------------------
// Friends

test('carol asks dave, dave is told live and accepts, carol is told: now they can reserve a duo', async () => {
  await register(carol);
  await register(dave);
  await grant(carol, 20);
  carolPhone = await livePhone(carol);
  davePhone = await livePhone(dave);

  const duo = { arcade_id: 1, game_id: GAME_DUO, player2_id: dave.uid };
  assertError(await reserve(carol, duo), 422, 'not_a_friend');

  // By pseudo, any case.
  const req = await call('POST', '/friends/request', carol, { body: { pseudo: 'dAvE' } });
  assert.equal(req.status, 201, req.text);
  friendshipId = req.json.friendship.id;
  assert.equal(req.json.friendship.status, 'pending');
  assert.equal(req.json.friendship.direction, 'outgoing');
  assert.equal(req.json.friendship.pseudo, 'Dave');
  assert.equal(req.json.friendship.uid, undefined, 'no uid before they are friends');

  const pushed = await nextEvent(davePhone, 'friend_request');
  assert.equal(pushed.friendship_id, friendshipId);
  assert.equal(pushed.pseudo, 'carol');
  assert.equal(pushed.uid, undefined);

  assertError(await call('POST', '/friends/request', carol, { body: { uid: dave.uid } }), 409, 'already_requested');
  assertError(await call('POST', '/friends/request', carol, { body: { pseudo: 'nobody-here' } }), 404, 'user_not_found');
  assertError(await call('POST', '/friends/request', carol, { body: { uid: carol.uid } }), 422, 'cannot_befriend_self');
  for (const body of [{}, { pseudo: 'a', uid: 'b' }, { pseudo: 7 }, { uid: '' }]) {
    assertError(await call('POST', '/friends/request', carol, { body }), 400, 'bad_request');
  }

  const incoming = await call('GET', '/friends/requests', dave);
  assert.equal(incoming.status, 200, incoming.text);
  assert.deepEqual(incoming.json.items.map((f) => [f.id, f.direction, f.pseudo]), [[friendshipId, 'incoming', 'carol']]);
  const outgoing = await call('GET', '/friends/requests?direction=outgoing', carol);
  assert.deepEqual(outgoing.json.items.map((f) => [f.id, f.direction, f.pseudo]), [[friendshipId, 'outgoing', 'Dave']]);
  assert.deepEqual((await call('GET', '/friends/requests?direction=incoming', carol)).json.items, []);
  assertError(await call('GET', '/friends/requests?direction=sideways', carol), 400, 'bad_request');

  // Only dave may answer: others' requests are not theirs to see (404), carol
  // cannot accept her own (403).
  assertError(await call('POST', `/friends/accept/${friendshipId}`, bob), 404, 'friendship_not_found');
  assertError(await call('POST', `/friends/reject/${friendshipId}`, alice), 404, 'friendship_not_found');
  assertError(await call('DELETE', `/friends/${friendshipId}`, bob), 404, 'friendship_not_found');
  assertError(await call('POST', `/friends/accept/${friendshipId}`, carol), 403, 'not_addressee');
  assertError(await call('POST', '/friends/accept/999999', dave), 404, 'friendship_not_found');
  assert.equal((await call('POST', '/friends/accept/abc', dave)).status, 404);

  const acc = await call('POST', `/friends/accept/${friendshipId}`, dave);
  assert.equal(acc.status, 200, acc.text);
  assert.equal(acc.json.friendship.status, 'accepted');
  assert.equal(acc.json.friendship.uid, carol.uid);
  const accepted = await nextEvent(carolPhone, 'friend_accepted');
  assert.equal(accepted.friendship_id, friendshipId);
  assert.equal(accepted.uid, dave.uid, 'carol learns the uid a duo reservation needs');
  assert.equal(accepted.pseudo, 'Dave');
  assertError(await call('POST', `/friends/accept/${friendshipId}`, dave), 409, 'already_friends');
  assertError(await call('POST', '/friends/request', dave, { body: { pseudo: 'carol' } }), 409, 'already_friends');

  for (const [me, other] of [[carol, dave], [dave, carol]]) {
    const friends = await call('GET', '/friends', me);
    assert.equal(friends.status, 200, friends.text);
    assert.deepEqual(friends.json.items.map((f) => [f.id, f.uid, f.pseudo]), [[friendshipId, other.uid, other.pseudo]]);
    assert.equal(friends.json.next_cursor, null);
    assert.deepEqual((await call('GET', '/friends/requests', me)).json.items, []);
  }

  const res = await reserve(carol, duo);
  assert.equal(res.status, 201, res.text);
  assert.deepEqual(res.json.reservation.players, ['carol', 'Dave']);
  duoId = res.json.reservation.id;
});

test('a request to someone who asked you accepts theirs; reject blocks asking again; delete unfriends', async () => {
  const [erin, frank, gus] = [await newPlayer('erin', 0), await newPlayer('frank', 0), await newPlayer('gus', 0)];
  const erinPhone = await livePhone(erin);

  const first = await call('POST', '/friends/request', erin, { body: { uid: frank.uid } });
  assert.equal(first.status, 201, first.text);
  const mutual = await call('POST', '/friends/request', frank, { body: { pseudo: erin.pseudo } });
  assert.equal(mutual.status, 200, mutual.text);
  assert.equal(mutual.json.friendship.id, first.json.friendship.id);
  assert.equal(mutual.json.friendship.status, 'accepted');
  assert.equal((await nextEvent(erinPhone, 'friend_accepted')).uid, frank.uid);

  // gus asks erin; erin rejects: gus is not told, cannot ask again, and no
  // longer sees the request.
  const ask = await call('POST', '/friends/request', gus, { body: { pseudo: erin.pseudo } });
  const askId = ask.json.friendship.id;
  assert.equal((await nextEvent(erinPhone, 'friend_request')).friendship_id, askId);
  assertError(await call('POST', `/friends/reject/${askId}`, gus), 403, 'not_addressee');
  const rej = await call('POST', `/friends/reject/${askId}`, erin);
  assert.equal(rej.status, 200, rej.text);
  assert.equal(rej.json.friendship.status, 'rejected');
  assert.equal((await call('POST', `/friends/reject/${askId}`, erin)).status, 200, 'rejecting twice answers the same');
  assertError(await call('POST', '/friends/request', gus, { body: { pseudo: erin.pseudo } }), 409, 'already_requested');
  assert.deepEqual((await call('GET', '/friends/requests', gus)).json.items, []);
  assert.deepEqual((await call('GET', '/friends/requests', erin)).json.items, []);
  assertError(await call('DELETE', `/friends/${askId}`, gus), 404, 'friendship_not_found');
  // erin changes her mind: asking gus befriends them (gus had asked).
  const back = await call('POST', '/friends/request', erin, { body: { pseudo: gus.pseudo } });
  assert.equal(back.status, 200, back.text);
  assert.equal(back.json.friendship.status, 'accepted');

  // Unfriend: either side, by the friendship id; the other is told.
  const frankPhone = await livePhone(frank);
  const del = await call('DELETE', `/friends/${first.json.friendship.id}`, erin);
  assert.equal(del.status, 200, del.text);
  assert.equal(del.json.was, 'accepted');
  const removed = await nextEvent(frankPhone, 'friend_removed');
  assert.equal(removed.friendship_id, first.json.friendship.id);
  assert.equal(removed.uid, erin.uid);
  assertError(await call('DELETE', `/friends/${first.json.friendship.id}`, frank), 404, 'friendship_not_found');
  assert.deepEqual((await call('GET', '/friends', erin)).json.items.map((f) => f.uid), [gus.uid]);
  // A pending request can be withdrawn by its sender; then asked again.
  const again = await call('POST', '/friends/request', frank, { body: { uid: erin.uid } });
  assert.equal(again.status, 201, again.text);
  assert.equal((await call('DELETE', `/friends/${again.json.friendship.id}`, frank)).json.was, 'pending');
  assert.equal((await call('POST', '/friends/request', frank, { body: { uid: erin.uid } })).status, 201);
});

test('friends list pages with limit and cursor', async () => {
  const hubby = await newPlayer('hub', 0);
  const others = [];
  for (let i = 0; i < 3; i++) {
    const o = await newPlayer('pal', 0);
    await befriend(o, hubby);
    others.push(o);
  }
  const page1 = await call('GET', '/friends?limit=2', hubby);
  assert.equal(page1.status, 200, page1.text);
  assert.deepEqual(page1.json.items.map((f) => f.uid), [others[2].uid, others[1].uid], 'newest first');
  assert.ok(page1.json.next_cursor);
  const page2 = await call('GET', `/friends?limit=2&cursor=${page1.json.next_cursor}`, hubby);
  assert.deepEqual(page2.json.items.map((f) => f.uid), [others[0].uid]);
  assert.equal(page2.json.next_cursor, null);
  assertError(await call('GET', '/friends?limit=0', hubby), 400, 'bad_request');
  assertError(await call('GET', '/friends?cursor=x', hubby), 400, 'bad_request');
});

// ---------------------------------------------------------------------------
// Users

test('search: pseudo prefix in any case, pseudo and relation only, never a phone or a name', async () => {
  const res = await call('GET', '/users/search?q=DA', carol);
  assert.equal(res.status, 200, res.text);
  const found = res.json.items.find((u) => u.pseudo === 'Dave');
  assert.deepEqual(found, { pseudo: 'Dave', relation: 'friend', friendship_id: friendshipId, uid: dave.uid });
  for (const digits of ['612345678', '698765432', '+336']) assert.ok(!res.text.includes(digits), res.text);
  assert.ok(!/phone|first_name|last_name|balance/.test(res.text), res.text);

  const byAlice = await call('GET', '/users/search?q=car', alice);
  const c = byAlice.json.items.find((u) => u.pseudo === 'carol');
  assert.deepEqual(c, { pseudo: 'carol', relation: 'none' }, 'a stranger sees the pseudo only');
  assert.ok(!(await call('GET', '/users/search?q=car', carol)).json.items.some((u) => u.pseudo === 'carol'),
    'not oneself');
  const odd = await call('GET', '/users/search?q=%C3%A9t', carol); // no pseudo has an é
  assert.deepEqual(odd.json.items, [], odd.text);

  // Pages of at most 20, by pseudo.
  const many = [];
  for (let i = 0; i < 3; i++) many.push(await newPlayer('zeta', 0));
  const p1 = await call('GET', '/users/search?q=ZETA&limit=2', carol);
  assert.deepEqual(p1.json.items.map((u) => u.pseudo), many.map((u) => u.pseudo).sort().slice(0, 2));
  const p2 = await call('GET', `/users/search?q=zeta&limit=2&cursor=${encodeURIComponent(p1.json.next_cursor)}`, carol);
  assert.deepEqual(p2.json.items.map((u) => u.pseudo), many.map((u) => u.pseudo).sort().slice(2));
  assert.equal(p2.json.next_cursor, null);

  assertError(await call('GET', '/users/search?q=d', carol), 400, 'bad_request');
  assertError(await call('GET', '/users/search', carol), 400, 'bad_request');
  assertError(await call('GET', '/users/search?q=da&limit=21', carol), 400, 'bad_request');
  assert.equal((await http(hub, 'GET', '/api/v1/users/search?q=da')).status, 401);
});

test('profile: one\'s own, changed member by member; taken pseudo or phone 409', async () => {
  const me = await call('GET', '/users/profile', carol);
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.user.uid, carol.uid);
  assert.equal(me.json.user.phone, '+33612345678');

  const put = await call('PUT', '/users/profile', carol, { body: { first_name: ' Caroline ', phone: '+33 6 00 00 00 01' } });
  assert.equal(put.status, 200, put.text);
  assert.equal(put.json.user.first_name, 'Caroline');
  assert.equal(put.json.user.last_name, 'Last', 'members not given stay');
  assert.equal(put.json.user.phone, '+33600000001');
  assert.equal(put.json.user.pseudo, 'carol');

  assertError(await call('PUT', '/users/profile', carol, { body: { pseudo: 'DAVE' } }), 409, 'pseudo_taken');
  assertError(await call('PUT', '/users/profile', carol, { body: { phone: dave.phone } }), 409, 'phone_taken');
  assertError(await call('PUT', '/users/profile', carol, { body: { pseudo: 'x' } }), 422, 'invalid_pseudo');
  assertError(await call('PUT', '/users/profile', carol, { body: { phone: '12' } }), 422, 'invalid_phone');
  assertError(await call('PUT', '/users/profile', carol, { body: { last_name: '  ' } }), 422, 'invalid_name');
  assertError(await call('PUT', '/users/profile', carol, { body: { first_name: 5 } }), 400, 'bad_request');
  assertError(await call('PUT', '/users/profile', carol, { body: '[1]' }), 400, 'bad_json');

  const renamed = await call('PUT', '/users/profile', carol, { body: { pseudo: 'Carol', phone: null } });
  assert.equal(renamed.status, 200, renamed.text);
  assert.equal(renamed.json.user.pseudo, 'Carol', 'her own pseudo in another case');
  assert.equal(renamed.json.user.phone, null, 'phone null removes it');
  carol.pseudo = 'Carol';
  assertError(await call('GET', '/users/profile', 'social-nobody'), 404, 'not_registered');
});

// ---------------------------------------------------------------------------
// Scores

test('a game on the cabinet, then the leaderboard (pseudo only, friends only) and my-stats', async () => {
  const key = await cabinetKey(pg, 1);
  const cab = await cabinet(hub, key);
  const turn = await nextEvent(carolPhone, 'your_turn', (m) => m.reservation_id === duoId);
  assert.equal((await cab.request({ type: 'unlock', code: turn.code })).type, 'ok');
  const over = await cab.request({ type: 'game_over', reservation_id: duoId, scores: [1200, 3400] });
  assert.equal(over.type, 'ok', JSON.stringify(over));
  assert.equal(over.winner, 'Dave');
  await nextEvent(davePhone, 'score', (m) => m.reservation_id === duoId);

  // Alice plays too, alone, on the same cabinet (Neon Racer): another game's board.
  await grant(alice, 5);
  const solo = (await reserve(alice, { arcade_id: 1, game_id: GAME_SOLO })).json.reservation;
  const alicePhone = await phone(hub, alice.uid, { autoAck: true, resume: 0 });
  const aTurn = await nextEvent(alicePhone, 'your_turn', (m) => m.reservation_id === solo.id);
  assert.equal((await cab.request({ type: 'unlock', code: aTurn.code })).type, 'ok');
  assert.equal((await cab.request({ type: 'game_over', reservation_id: solo.id, scores: [999999] })).type, 'ok');

  const board = await http(hub, 'GET', `/api/v1/scores?game_id=${GAME_DUO}`); // public
  assert.equal(board.status, 200, board.text);
  assert.equal(board.json.game, 'Street Brawler');
  assert.deepEqual(board.json.items.map((i) => [i.rank, i.pseudo, i.score, i.you]),
    [[1, 'Dave', 3400, false], [2, 'Carol', 1200, false]]);
  assert.ok(!board.text.includes('social-'), 'no uid on a leaderboard');

  const mine = await call('GET', `/scores?game_id=${GAME_DUO}&arcade_id=1&period=day&friends=1`, carol);
  assert.equal(mine.status, 200, mine.text);
  assert.deepEqual(mine.json.items.map((i) => [i.pseudo, i.you]), [['Dave', false], ['Carol', true]]);
  const alices = await call('GET', `/scores?game_id=${GAME_DUO}&friends=1`, alice);
  assert.deepEqual(alices.json.items, [], 'alice is friends with bob only');
  assert.deepEqual((await call('GET', `/scores?game_id=${GAME_DUO}&arcade_id=3`, carol)).json.items, []);
  const paged = await call('GET', `/scores?game_id=${GAME_DUO}&limit=1`, carol);
  assert.deepEqual(paged.json.items.map((i) => i.pseudo), ['Dave']);
  const rest = await call('GET', `/scores?game_id=${GAME_DUO}&limit=1&cursor=${paged.json.next_cursor}`, carol);
  assert.deepEqual(rest.json.items.map((i) => [i.rank, i.pseudo]), [[2, 'Carol']]);
  const far = await call('GET', `/scores?game_id=${GAME_DUO}&cursor=9007199254740992`, carol);
  assert.deepEqual([far.status, far.json.items, far.json.next_cursor], [200, [], null], far.text);
  const solos = await call('GET', `/scores?game_id=${GAME_SOLO}&period=week`, alice);
  assert.deepEqual(solos.json.items.map((i) => [i.pseudo, i.score, i.you]), [['alice', 999999, true]]);

  assertError(await call('GET', '/scores', carol), 400, 'bad_request');
  assertError(await call('GET', `/scores?game_id=${GAME_DUO}&period=year`, carol), 400, 'bad_request');
  assertError(await call('GET', '/scores?game_id=999999', carol), 404, 'game_not_found');
  assertError(await call('GET', `/scores?game_id=${GAME_DUO}&arcade_id=999999`, carol), 404, 'arcade_not_found');
  assert.equal((await http(hub, 'GET', `/api/v1/scores?game_id=${GAME_DUO}&friends=1`)).status, 401);

  const stats = await call('GET', '/scores/my-stats', carol);
  assert.equal(stats.status, 200, stats.text);
  assert.deepEqual(
    { ...stats.json, games: undefined },
    { games_played: 1, solo_games: 0, wins: 0, losses: 1, ties: 0, tickets_spent: 2, games: undefined },
  );
  assert.deepEqual(stats.json.games.map((g) => [g.game_id, g.game, g.best_score, g.games_played]),
    [[GAME_DUO, 'Street Brawler', 1200, 1]]);
  const daves = (await call('GET', '/scores/my-stats', dave)).json;
  assert.equal(daves.wins, 1);
  assert.equal(daves.tickets_spent, 0, 'player 2 pays nothing');
  assertError(await call('GET', '/scores/my-stats', 'social-nobody'), 404, 'not_registered');
  cab.close();
});

// ---------------------------------------------------------------------------
// Admin: deleted users

test('admin soft delete: waiting reservations refunded in the same transaction, token refused, restore', async () => {
  const gina = await newPlayer('gina', 10);
  await befriend(carol, gina);
  const watcher = await phone(hub, `social-watcher-${uniq()}`, { subscribe: 2 });

  // gina waits on arcade 2 (its cabinet is offline); one active reservation per player
  // (issue 10), so carol cannot also take her as player 2 on arcade 3.
  const solo = await reserve(gina, { arcade_id: 2, game_id: GAME_SOLO });
  assert.equal(solo.status, 201, solo.text);
  assertError(await reserve(carol, { arcade_id: 3, game_id: GAME_DUO, player2_id: gina.uid }), 409, 'already_queued');
  await nextSnapshot(watcher, (m) => m.waiting.some((w) => w.reservation_id === solo.json.reservation.id), { arcade: 2 });
  const carolBefore = await balanceOf(pg, carol);
  assert.equal(await balanceOf(pg, gina), 9);

  // Players may not.
  assert.equal((await call('DELETE', `/admin/users/${gina.uid}`, carol)).status, 403);
  assert.equal((await call('GET', '/admin/users/deleted', carol)).status, 403);
  assert.equal((await call('POST', `/admin/users/${gina.uid}/restore`, carol)).status, 403);

  const del = await call('DELETE', `/admin/users/${gina.uid}`, ADMIN);
  assert.equal(del.status, 200, del.text);
  assert.deepEqual(del.json.cancelled_reservations, [solo.json.reservation.id]);
  assert.equal(await balanceOf(pg, gina), 10, 'gina refunded');
  assert.equal(await balanceOf(pg, carol), carolBefore, 'carol paid nothing');
  await nextSnapshot(watcher, (m) => !m.waiting.some((w) => w.reservation_id === solo.json.reservation.id), { arcade: 2 });

  // Her token is refused (403 account_deleted, before any query); nobody finds or lists her.
  assertError(await call('GET', '/users/profile', gina), 403, 'account_deleted');
  assertError(await call('GET', '/auth/me', gina), 403, 'account_deleted');
  assertError(await call('GET', '/friends', gina), 403, 'account_deleted');
  assertError(await reserve(gina, { arcade_id: 2, game_id: GAME_SOLO }), 403, 'account_deleted');
  assert.deepEqual((await call('GET', `/users/search?q=${gina.pseudo}`, carol)).json.items, []);
  assert.ok(!(await call('GET', '/friends', carol)).json.items.some((f) => f.uid === gina.uid));
  assertError(await reserve(carol, { arcade_id: 3, game_id: GAME_DUO, player2_id: gina.uid }), 422, 'not_a_friend');
  assertError(await call('POST', '/friends/request', carol, { body: { uid: gina.uid } }), 404, 'user_not_found');

  const listed = await call('GET', '/admin/users/deleted', ADMIN);
  assert.equal(listed.status, 200, listed.text);
  assert.equal(listed.json.items.find((u) => u.uid === gina.uid)?.pseudo, gina.pseudo);
  assertError(await call('DELETE', `/admin/users/${gina.uid}`, ADMIN), 409, 'already_deleted');
  assertError(await call('DELETE', '/admin/users/no-such-user', ADMIN), 404, 'user_not_found');
  assertError(await call('DELETE', `/admin/users/${ADMIN.uid}`, ADMIN), 422, 'cannot_delete_self');

  const restored = await call('POST', `/admin/users/${gina.uid}/restore`, ADMIN);
  assert.equal(restored.status, 200, restored.text);
  assert.equal(restored.json.user.tickets_balance, 10);
  assertError(await call('POST', `/admin/users/${gina.uid}/restore`, ADMIN), 409, 'not_deleted');
  assert.equal((await call('GET', '/users/profile', gina)).status, 200);
  assert.ok((await call('GET', '/friends', carol)).json.items.some((f) => f.uid === gina.uid), 'friends again');
  assert.ok(!(await call('GET', '/admin/users/deleted', ADMIN)).json.items.some((u) => u.uid === gina.uid));
});

test('admin delete of a player called on a cabinet: 409 has_active_reservations, nothing changed', async () => {
  const key = await cabinetKey(pg, 2);
  const cab = await cabinet(hub, key);
  const hal = await newPlayer('hal', 5);
  const res = await reserve(hal, { arcade_id: 2, game_id: GAME_SOLO });
  assert.equal(res.status, 201, res.text);
  const id = res.json.reservation.id;
  await cab.queue((m) => m.called?.reservation_id === id);
  const del = await call('DELETE', `/admin/users/${hal.uid}`, ADMIN);
  assertError(del, 409, 'has_active_reservations');
  assert.deepEqual(del.json.error.reservation_ids, [id]);
  assert.equal((await call('GET', '/users/profile', hal)).status, 200, 'not deleted');
  assert.equal(await balanceOf(pg, hal), 4);
  cab.close();
});

test('the books balance: tickets_balance = sum(ledger.delta) for every user', async () => {
  const n = await pg.psql(`SELECT count(*) FROM users
    WHERE tickets_balance <> (SELECT coalesce(sum(delta), 0) FROM ledger l WHERE l.user_id = users.id)`);
  assert.equal(n, '0');
  await assertBooksBalance(pg);
});
