// Prepared statements in the PostgreSQL pool (--pg-prepared, storage/pg_pool.h):
// a statement is prepared once per connection and run by name after; a
// PostgreSQL restart gives fresh sessions that prepare again; a function
// re-created under a prepared statement (as another hub version's start-up
// re-applies storage/sql) is re-planned, and one whose result type changed
// (DROP + CREATE) is prepared again by the pool, the call still answered; a
// DISCARD ALL sent through the pool makes its connection prepare again.
// --pg-prepared off prepares nothing and answers the same.
//
// One connection per hub (--pg-pool 1): the calls of a test meet the session
// that prepared their statement.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { http, parseMetrics, startHub, startPostgres, startRedis, waitFor } from '../lib/harness.js';
import { api, newUser } from './tickets_world.js';

let pg, redis, hub, plain, user;

before(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  hub = await startHub({ pg, redis, debugRoutes: true, args: ['--pg-pool', '1'] });
  plain = await startHub({ pg, redis, args: ['--pg-pool', '1', '--pg-prepared', 'off'] });
  user = await newUser(pg, 0, 'prep');
});

async function prepares(h) {
  const res = await http(h, 'GET', '/metrics');
  assert.equal(res.status, 200);
  const m = parseMetrics(res.text).find((s) => s.name === 'rn_pg_prepares_total');
  assert.ok(m, 'rn_pg_prepares_total is exported');
  return m.value;
}

/* GET /users/profile (rn_profile_get): the pseudo it answers. */
async function pseudo(h) {
  const res = await api(h, 'GET', '/users/profile', user);
  assert.equal(res.status, 200, res.text);
  return res.json.user.pseudo;
}

test('a statement is prepared once per connection, not once per call', async () => {
  assert.equal(await pseudo(hub), user.pseudo);
  const before = await prepares(hub);
  assert.ok(before >= 1, 'the call prepared its statement');
  for (let i = 0; i < 20; i++) assert.equal(await pseudo(hub), user.pseudo);
  // Background work (sweeps) may prepare its own few statements meanwhile; 20 calls prepare none.
  const grown = (await prepares(hub)) - before;
  assert.ok(grown < 5, `20 calls of a prepared statement prepared ${grown} statements`);
});

test('--pg-prepared off: nothing prepared, the same answers', async () => {
  for (let i = 0; i < 5; i++) assert.equal(await pseudo(plain), user.pseudo);
  assert.equal(await prepares(plain), 0);
});

test('a function re-created between two calls: the prepared statement runs the new body', async () => {
  assert.equal(await pseudo(hub), user.pseudo);
  const def = await pg.psql("SELECT pg_get_functiondef('rn_profile_get(text)'::regprocedure)");
  assert.match(def, /CREATE OR REPLACE FUNCTION/);
  try {
    await pg.psql(`CREATE OR REPLACE FUNCTION rn_profile_get(p_uid text) RETURNS jsonb
                   LANGUAGE sql STABLE AS $$ SELECT rn_answer(200, '{"user": {"pseudo": "replaced"}}') $$`);
    assert.equal(await pseudo(hub), 'replaced', 'the new body, not a plan of the old one');
    assert.equal(await pseudo(plain), 'replaced');

    // DROP + CREATE returning json instead of jsonb: the prepared statement's
    // result type changes ("cached plan must not change result type"); the
    // pool prepares it again and the call is answered.
    const before = await prepares(hub);
    await pg.psql(`DROP FUNCTION rn_profile_get(text);
                   CREATE FUNCTION rn_profile_get(p_uid text) RETURNS json
                   LANGUAGE sql STABLE AS $$ SELECT rn_answer(200, '{"user": {"pseudo": "as json"}}')::json $$`);
    assert.equal(await pseudo(hub), 'as json');
    assert.ok((await prepares(hub)) > before, 'prepared again after the result type changed');
    assert.equal(await pseudo(plain), 'as json');
  } finally {
    await pg.psql(`DROP FUNCTION rn_profile_get(text); ${def}`);
  }
  assert.equal(await pseudo(hub), user.pseudo, 'the original function again');
  assert.equal(await pseudo(plain), user.pseudo);
});

test('DISCARD ALL through the pool: the connection prepares its statements again', async () => {
  assert.equal(await pseudo(hub), user.pseudo);
  const before = await prepares(hub);
  const res = await http(hub, 'POST', '/api/v1/debug/discard');
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json, { discarded: true });
  assert.equal(await pseudo(hub), user.pseudo);
  assert.ok((await prepares(hub)) > before, 'prepared again after the DISCARD');
});

test('across a PostgreSQL restart: the new session prepares again and answers', async () => {
  assert.equal(await pseudo(hub), user.pseudo);
  const before = await prepares(hub);
  await pg.restart();
  await waitFor(
    async () => (await api(hub, 'GET', '/users/profile', user, { timeoutMs: 3000 })).status === 200,
    { timeoutMs: 15000, what: 'the prepared hub to answer after the restart' },
  );
  assert.equal(await pseudo(hub), user.pseudo);
  assert.ok((await prepares(hub)) > before, 'the statement was prepared again on the new connection');
  await waitFor(
    async () => (await api(plain, 'GET', '/users/profile', user, { timeoutMs: 3000 })).status === 200,
    { timeoutMs: 15000, what: 'the unprepared hub to answer after the restart' },
  );
  assert.equal(await prepares(plain), 0);
});
