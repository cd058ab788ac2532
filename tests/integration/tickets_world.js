// Shared helpers of the ticket suites (tickets, webhook, promos, concurrency):
// users made with SQL (tickets granted through the ledger), REST calls as a
// user, signed webhooks, and the audit command. Not a test file itself (ctest
// runs *.test.js only).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { HUB_BIN, http, token } from '../lib/harness.js';

let seq = 0;
export const uniq = () => `${process.pid}x${++seq}`;

/* A registered user (SQL), with `tickets` tickets granted through the ledger; {uid, pseudo}. */
export async function newUser(pg, tickets = 0, prefix = 'tix') {
  const u = { uid: `${prefix}-${uniq()}`, pseudo: `${prefix}${uniq()}` };
  await pg.psql(`
    WITH u AS (INSERT INTO users (firebase_uid, pseudo, first_name, last_name, tickets_balance)
               VALUES ('${u.uid}', '${u.pseudo}', 'T', 'User', ${tickets})
               RETURNING id, tickets_balance)
    INSERT INTO ledger (user_id, delta, balance_after, kind, reason)
    SELECT id, tickets_balance, tickets_balance, 'adjustment', 'test grant' FROM u
    WHERE tickets_balance > 0`);
  return u;
}

/* Many users in one statement (same shape as newUser). */
export async function newUsers(pg, n, tickets = 0, prefix = 'tix') {
  const users = Array.from({ length: n }, () => {
    const id = uniq();
    return { uid: `${prefix}-${id}`, pseudo: `${prefix}${id}` };
  });
  const values = users.map((u) => `('${u.uid}', '${u.pseudo}', 'T', 'User', ${tickets})`).join(', ');
  await pg.psql(`
    WITH u AS (INSERT INTO users (firebase_uid, pseudo, first_name, last_name, tickets_balance)
               VALUES ${values} RETURNING id, tickets_balance)
    INSERT INTO ledger (user_id, delta, balance_after, kind, reason)
    SELECT id, tickets_balance, tickets_balance, 'adjustment', 'test grant' FROM u
    WHERE tickets_balance > 0`);
  return users;
}

/*
 * api(hub, method, path, user, {body, key, headers}): one REST call under
 * /api/v1 as user (an {uid} or a uid string; admin when user.admin; none when
 * null), with an Idempotency-Key when key is given.
 */
export function api(hub, method, path, user, { body, key, headers = {}, timeoutMs } = {}) {
  const uid = typeof user === 'string' ? user : user?.uid;
  const hdrs = { ...headers };
  if (key) hdrs['Idempotency-Key'] = key;
  return http(hub, method, `/api/v1${path}`, {
    body,
    headers: hdrs,
    timeoutMs,
    token: uid ? token(hub, uid, { admin: !!user?.admin }) : undefined,
  });
}

export const ADMIN = { uid: 'demo-admin', admin: true };

/* Asserts an error answer: status and code, with a message. */
export function assertError(res, status, code) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.json?.error?.code, code, res.text);
  assert.equal(typeof res.json.error.message, 'string', res.text);
}

export async function balanceOf(pg, user) {
  return Number(await pg.psql(`SELECT tickets_balance FROM users WHERE firebase_uid = '${user.uid ?? user}'`));
}

/* "t=<ts>,v1=<hex HMAC-SHA256(secret, '<ts>.<body>')>" */
export function signature(secret, body, ts = Math.floor(Date.now() / 1000)) {
  const v1 = crypto.createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex');
  return `t=${ts},v1=${v1}`;
}

/* POST /api/v1/payments/webhook with the raw body text and a signature header (or none). */
export function webhook(hub, body, sig) {
  const headers = { 'Content-Type': 'application/json' };
  if (sig) headers['Retronova-Signature'] = sig;
  return http(hub, 'POST', '/api/v1/payments/webhook', { body, headers });
}

/* retronova-hub audit: resolves {code, stdout, stderr} whatever the exit code. */
export function audit(pg) {
  return new Promise((resolve) => {
    execFile(HUB_BIN, ['audit', '--database-url', pg.url], { timeout: 60000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/* Asserts the books balance: audit exits 0 with "0 discrepancies", no negative balance. */
export async function assertBooksBalance(pg) {
  const r = await audit(pg);
  assert.equal(r.code, 0, `audit failed:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /^0 discrepancies$/m);
  assert.equal(await pg.psql('SELECT count(*) FROM users WHERE tickets_balance < 0'), '0');
}
