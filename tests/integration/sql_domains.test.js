// SQL domain files (storage/sql/NN_domain.sql): the migration runner applies
// each one after the migrations whenever its content changed (SHA-256 in
// schema_sql_files), on `migrate` and on start-up, and a second start applies
// nothing; a database newer than the binary is refused before any file runs;
// a file that fails rolls back everything applied with it (one transaction).
// Then a mixed workload of every kind of balance change: each ledger row is
// written by one call of rn_ledger_post, every refund goes through
// rn_reservation_refund, and the audit finds nothing. Last, the rules that
// migration 0017 moved from CHECKs and foreign keys to triggers.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HUB_BIN, SOURCE_DIR, applyDemo, run, startHub, startPostgres, startRedis } from '../lib/harness.js';

const SQL_DIR = path.join(SOURCE_DIR, 'storage', 'sql');
const MIGRATIONS = fs.readdirSync(path.join(SOURCE_DIR, 'storage', 'migrations')).filter((f) => f.endsWith('.sql'));
const FILES = fs
  .readdirSync(SQL_DIR)
  .filter((f) => f.endsWith('.sql'))
  .sort();
const sha256 = (name) => crypto.createHash('sha256').update(fs.readFileSync(path.join(SQL_DIR, name))).digest('hex');

let pg;
let redis;

before(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
});

const migrate = () => run(HUB_BIN, ['migrate', '--database-url', pg.url]);

// name -> {sha256, applied_at, xmin}: xmin changes whenever the row is written.
async function recorded() {
  const out = await pg.psql(
    "SELECT json_object_agg(name, json_build_object('sha256', sha256, 'at', applied_at, 'xmin', xmin::text)) " +
      'FROM schema_sql_files',
  );
  return JSON.parse(out);
}

// A domain file "changed": its recorded hash is not the binary's, and one of
// its functions is not the file's version any more.
async function staleQueueFile() {
  await pg.psql(
    "CREATE OR REPLACE FUNCTION rn_unlock_code() RETURNS text LANGUAGE sql AS $$ SELECT 'stale!'::text $$; " +
      "UPDATE schema_sql_files SET sha256 = repeat('0', 64) WHERE name = '03_queue.sql'",
  );
}

test('a fresh database gets every migration and every domain file; a second run applies nothing', async () => {
  assert.ok(FILES.length >= 5, `domain files: ${FILES}`);
  const first = await migrate();
  assert.match(first.stdout, new RegExp(`applied ${MIGRATIONS.length} migration\\(s\\) and ${FILES.length} SQL domain file\\(s\\)`));
  const rows = await recorded();
  assert.deepEqual(Object.keys(rows).sort(), FILES);
  for (const f of FILES) assert.equal(rows[f].sha256, sha256(f), `${f}: the recorded hash is the file's`);

  const second = await migrate();
  assert.match(second.stdout, /applied 0 migration\(s\) and 0 SQL domain file\(s\)/);
  assert.deepEqual(await recorded(), rows, 'nothing re-applied, nothing rewritten');
});

test('a changed domain file is applied again on start-up, alone; a second start applies nothing', async () => {
  const before = await recorded();
  await staleQueueFile();
  assert.equal(await pg.psql('SELECT rn_unlock_code()'), 'stale!');

  const hub = await startHub({ pg, redis });
  await hub.stop();
  assert.match(await pg.psql('SELECT rn_unlock_code()'), /^[0-9]{6}$/, "03_queue.sql's version is back");
  const after = await recorded();
  assert.equal(after['03_queue.sql'].sha256, sha256('03_queue.sql'));
  assert.notEqual(after['03_queue.sql'].xmin, before['03_queue.sql'].xmin, '03_queue.sql re-applied');
  for (const f of FILES.filter((x) => x !== '03_queue.sql')) {
    assert.deepEqual(after[f], before[f], `${f} unchanged: not applied again`);
  }

  const again = await startHub({ pg, redis });
  await again.stop();
  assert.deepEqual(await recorded(), after, 'the second start applied nothing');
});

test('a database newer than the binary is refused, and no domain file runs against it', async () => {
  await staleQueueFile();
  await pg.psql("INSERT INTO schema_migrations (version, name) VALUES (999999, '999999_future.sql')");
  await assert.rejects(migrate(), /schema is at version 999999 but this binary knows versions up to \d+ only/);
  assert.equal(await pg.psql('SELECT rn_unlock_code()'), 'stale!', 'nothing applied');

  await pg.psql('DELETE FROM schema_migrations WHERE version = 999999');
  const r = await migrate();
  assert.match(r.stdout, /applied 0 migration\(s\) and 1 SQL domain file\(s\)/);
  assert.match(await pg.psql('SELECT rn_unlock_code()'), /^[0-9]{6}$/);
});

test('a domain file that fails rolls back the files applied before it: one transaction', async () => {
  await staleQueueFile();
  // 05_admin.sql cannot apply: its rn_promo_json returns jsonb, this one text.
  await pg.psql(
    'DROP FUNCTION rn_promo_json(promo_codes); ' +
      "CREATE FUNCTION rn_promo_json(c promo_codes) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$; " +
      "UPDATE schema_sql_files SET sha256 = repeat('0', 64) WHERE name = '05_admin.sql'",
  );
  const before = await recorded();
  await assert.rejects(migrate(), /SQL domain file 05_admin\.sql failed, everything rolled back: .*return type/);
  assert.equal(await pg.psql('SELECT rn_unlock_code()'), 'stale!', '03_queue.sql, applied before, rolled back');
  assert.deepEqual(await recorded(), before, 'no hash recorded');

  await pg.psql('DROP FUNCTION rn_promo_json(promo_codes)');
  const r = await migrate();
  assert.match(r.stdout, /applied 0 migration\(s\) and 2 SQL domain file\(s\)/);
  assert.match(await pg.psql('SELECT rn_unlock_code()'), /^[0-9]{6}$/);
});

// Every kind of balance change, in one transaction with function call counts
// on: adjustment, promo, purchase, reserve + cancel, reserve + no-show expiry
// with refund, a duo reserve cancelled by the admin's delete of its booker.
const WORKLOAD = `
BEGIN;
SET LOCAL track_functions = 'all';
CREATE TEMP TABLE t0 AS SELECT coalesce(max(id), 0) AS ledger_id FROM ledger;
CREATE TEMP TABLE ans (n serial, step text, a jsonb);
INSERT INTO ans (step, a) SELECT 'register', rn_register('sqld-carol', false, 'carol_sqld', 'Carol', 'Sql', NULL);
INSERT INTO ans (step, a) SELECT 'adjust', rn_admin_adjust_tickets('demo-admin', NULL, NULL, 'sqld-carol', 30, 'test grant');
INSERT INTO ans (step, a) SELECT 'promo', rn_promo_use('sqld-carol', NULL, 'h1', 'WELCOME10');
INSERT INTO ans (step, a) SELECT 'purchase_begin', rn_purchase_begin('sqld-carol', NULL, 'h2', 1, 'sandbox');
INSERT INTO ans (step, a) SELECT 'purchase', rn_purchase_settle(
    (SELECT (a -> 'charge' ->> 'purchase_id')::bigint FROM ans WHERE step = 'purchase_begin'), true, 'ref-1', NULL, NULL);
INSERT INTO ans (step, a) SELECT 'reserve', rn_reserve('sqld-carol', 2, 3, NULL, NULL, NULL, 120);
INSERT INTO ans (step, a) SELECT 'cancel', rn_cancel('sqld-carol',
    (SELECT (a -> 'body' -> 'reservation' ->> 'id')::bigint FROM ans WHERE step = 'reserve'));
INSERT INTO ans (step, a) SELECT 'reserve2', rn_reserve('sqld-carol', 2, 3, NULL, NULL, NULL, 120);
INSERT INTO ans (step, a) SELECT 'online', rn_cabinet_online(2, 120);
UPDATE reservations SET deadline = now() - interval '1 second'
 WHERE id = (SELECT (a -> 'body' -> 'reservation' ->> 'id')::bigint FROM ans WHERE step = 'reserve2');
INSERT INTO ans (step, a) SELECT 'expire', rn_expire(2,
    (SELECT (a -> 'body' -> 'reservation' ->> 'id')::bigint FROM ans WHERE step = 'reserve2'), 120, true);
INSERT INTO ans (step, a) SELECT 'duo', rn_reserve('demo-alice', 1, 2, 'demo-bob', NULL, NULL, 120);
INSERT INTO ans (step, a) SELECT 'delete', rn_admin_user_delete('demo-admin', 'demo-alice');
SELECT json_build_object(
    'status', (SELECT json_object_agg(step, (a ->> 'status')::int) FROM ans),
    'expire', (SELECT a -> 'body' FROM ans WHERE step = 'expire'),
    'balance_events', (SELECT json_agg(e -> 'payload' ORDER BY (e ->> 'id')::bigint)
                         FROM ans, jsonb_array_elements(a -> 'events') e
                        WHERE e ->> 'kind' = 'balance'),
    'ledger', (SELECT json_agg(kind ORDER BY id) FROM ledger WHERE id > (SELECT ledger_id FROM t0)),
    'calls', (SELECT json_object_agg(funcname, calls) FROM pg_stat_xact_user_functions
               WHERE funcname IN ('rn_ledger_post', 'rn_reservation_refund')),
    'audit', (SELECT count(*) FROM rn_audit()));
COMMIT;
`;

test('every balance change is one ledger row written by rn_ledger_post; the audit finds nothing', async () => {
  await applyDemo(pg);
  const { stdout } = await run('psql', ['-X', '-q', '-tA', '-v', 'ON_ERROR_STOP=1', '-d', pg.url], { input: WORKLOAD });
  const r = JSON.parse(stdout.trim().split('\n').pop());
  assert.deepEqual(r.status, {
    register: 201, adjust: 200, promo: 200, purchase_begin: 202, purchase: 201, reserve: 201,
    cancel: 200, reserve2: 201, online: 200, expire: 200, duo: 201, delete: 200,
  });
  assert.equal(r.expire.refunded, true);
  assert.deepEqual(r.ledger, [
    'adjustment', 'promo', 'purchase', 'reservation', 'refund', 'reservation', 'refund', 'reservation', 'refund',
  ]);
  assert.deepEqual(r.calls, { rn_ledger_post: r.ledger.length, rn_reservation_refund: 3 },
    'one rn_ledger_post call per ledger row; the three refunds through rn_reservation_refund');
  // each change told its user, the reservation's named as before
  assert.deepEqual(r.balance_events.map((p) => [p.reason, p.delta]), [
    ['adjustment', 30], ['promo', 10], ['purchase', 10], ['reservation', -1], ['refund', 1],
    ['reservation', -1], ['refund', 1], ['reservation', -1], ['refund', 1],
  ]);
  for (const p of r.balance_events.filter((x) => ['reservation', 'refund'].includes(x.reason))) {
    assert.equal(typeof p.reservation_id, 'number', JSON.stringify(p));
  }
  assert.equal(r.audit, 0);
  const audit = await run(HUB_BIN, ['audit', '--database-url', pg.url]);
  assert.match(audit.stdout, /^0 discrepancies$/m);
});

// Migration 0017 moved the ledger's and reservations' cross-column CHECKs into
// triggers and dropped the foreign keys from the rows a reservation writes:
// the same rows are refused, the parents cannot be deleted, and an orphan
// written by hand is in the audit.
test('the rules that replaced CHECKs and keys refuse the same rows; the audit reports orphans', async () => {
  await applyDemo(pg);
  const bob = "(SELECT id FROM users WHERE firebase_uid = 'demo-bob')";
  const ledger = (kind, delta, extra = '') =>
    pg.psql(`INSERT INTO ledger (user_id, delta, balance_after, kind${extra ? ', reason' : ''})
             VALUES (${bob}, ${delta}, 100, '${kind}'${extra ? `, '${extra}'` : ''})`);
  await assert.rejects(ledger('purchase', 5), /violates rule "ledger_refs" \(kind purchase\)/);
  await assert.rejects(ledger('reservation', -1), /ledger_refs/, 'a debit names its reservation');
  await assert.rejects(ledger('refund', 1), /ledger_refs/);
  await assert.rejects(ledger('promo', 1), /ledger_refs/);
  await assert.rejects(ledger('adjustment', 1), /ledger_refs/, 'an adjustment needs a reason');
  await assert.rejects(ledger('adjustment', 0, 'zero'), /rn_ticket_delta/, 'the domains still hold');
  const reservation = (cols, vals) =>
    pg.psql(`INSERT INTO reservations (arcade_id, game_id, user_id, unlock_code, cost, ${cols})
             VALUES (1, 1, ${bob}, '123456', 1, ${vals})`);
  await assert.rejects(reservation('player2_id', bob), /reservations_player2_other/);
  await assert.rejects(reservation('status', "'called'"), /reservations_called_deadline/);
  for (const t of ['users', 'arcades', 'games', 'reservations']) {
    await assert.rejects(pg.psql(`DELETE FROM ${t} WHERE false`), new RegExp(`rows of ${t} are never deleted`));
  }
  assert.equal(await pg.psql('SELECT count(*) FROM rn_audit()'), '0', 'nothing was written');

  const { stdout } = await run('psql', ['-X', '-q', '-tA', '-v', 'ON_ERROR_STOP=1', '-d', pg.url], {
    input: `BEGIN;
INSERT INTO user_events (user_id, kind) VALUES (987654321, 'test');
INSERT INTO reservations (arcade_id, game_id, user_id, unlock_code, cost)
VALUES (1, 987654322, ${bob}, '123456', 1);
SELECT json_agg(detail ORDER BY detail) FROM rn_audit() WHERE kind = 'orphan';
ROLLBACK;
`,
  });
  const orphans = JSON.parse(stdout.trim().split('\n').pop());
  assert.equal(orphans.length, 2, stdout);
  assert.match(orphans[0], /^event \d+: no user 987654321$/);
  assert.match(orphans[1], /^reservation \d+: no game 987654322$/);
});
