// Shared pieces of the scale suites (workers, hosts behind HAProxy): phones
// that follow the service when their socket dies (reconnect, resume,
// re-subscribe) and remember everything they received, and a load of
// reservations and cancellations that retries through lost answers with the
// same Idempotency-Key, as a real client does. Not a test file itself.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { http, parseMetrics, sleep, token, track, waitFor } from '../lib/harness.js';
import { ARCADE, GAME_SOLO, phone } from '../integration/queue_world.js';

/* The pids whose parent is ppid (from /proc; no children file on this kernel). */
export function childPids(ppid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return out.sort((a, b) => a - b);
}

/* GET /metrics on a fresh connection: { pid, index, starts } of the worker that answered. */
export async function whoAnswered(target) {
  const res = await http(target, 'GET', '/metrics', { timeoutMs: 3000 });
  if (res.status !== 200) return null;
  const samples = parseMetrics(res.text);
  const info = samples.find((s) => s.name === 'rn_worker_info');
  const starts = samples.find((s) => s.name === 'rn_worker_starts');
  return info && { pid: Number(info.labels.pid), index: Number(info.labels.index), starts: starts?.value };
}

/*
 * A phone that follows the service: subscribed to the arcade, acking every
 * private event; when its socket closes for any reason but a drain it
 * reconnects to target (retrying until it can), sends resume {since: 0} (the
 * hub replays every event not acked yet) and subscribes again. It records
 * each connection's private event ids (no duplicates allowed within one) and
 * every queue snapshot.
 */
export async function followingPhone(target, uid, { arcade = ARCADE } = {}) {
  const p = { uid, clients: [], drops: 0, drainCloses: 0, stopped: false };
  // phone() records every message of a socket in c.seen, from before auth
  p.conns = () => p.clients.map((c) => c.seen.filter((m) => m.event_id).map((m) => m.event_id));
  p.received = () => new Set(p.conns().flat());
  p.snapshots = () => p.clients.flatMap((c) => c.seen.filter((m) => m.type === 'queue' && m.arcade_id === arcade));
  p.lastV = () => Math.max(0, ...p.snapshots().map((m) => m.v));

  async function open(resume) {
    for (let attempt = 0; ; attempt++) {
      try {
        const c = await phone(target, uid, { subscribe: arcade, autoAck: true, resume });
        p.clients.push(c);
        c.ws.once('close', (code) => {
          if (code === 4000) p.drainCloses++;
          if (p.stopped || code === 4000) return;
          p.drops++;
          p.reconnecting = open(0);
        });
        return c;
      } catch (err) {
        if (p.stopped || attempt > 200) throw err;
        await sleep(100);
      }
    }
  }
  // stop following before the service goes away at cleanup
  track(`following phone ${uid}`, async () => {
    p.stopped = true;
  });
  await open(undefined);
  return p;
}

/* Every id appears once per connection (a replay across connections is allowed). */
export function assertNoDuplicatesPerConnection(p) {
  for (const ids of p.conns()) assert.equal(new Set(ids).size, ids.length, `${p.uid}: a duplicate on one socket`);
}

/*
 * Waits until the phone has received every event the database holds for its
 * user after `after`; on timeout names the missing rows (kind, created,
 * acked) and the phone's connections.
 */
export async function assertAllDelivered(pg, p, after = 0, timeoutMs = 30000) {
  const want = await dbEventIds(pg, p.uid, after);
  assert.ok(want.length > 0, `${p.uid} has events`);
  const missing = () => want.filter((id) => !p.received().has(id));
  try {
    await waitFor(() => missing().length === 0, { timeoutMs, what: `${p.uid}: all ${want.length} events` });
  } catch (err) {
    const rows = await pg.psql(`SELECT id, kind, created_at, acked_at FROM user_events WHERE id IN (${missing().join(',')})`);
    const conns = p.conns().map((ids) => `${ids.length} [${ids[0]}..${ids.at(-1)}]`);
    throw new Error(`${err.message}\nmissing: ${rows}\ndrops ${p.drops}, connections: ${conns.join(' | ')}`);
  }
  assertNoDuplicatesPerConnection(p);
}

/* The user's event ids in the database after `after`. */
export async function dbEventIds(pg, uid, after = 0) {
  return (await pg.psql(`SELECT id FROM user_events WHERE user_id = rn_user_id('${uid}') AND id > ${after} ORDER BY id`))
    .split('\n')
    .filter(Boolean)
    .map(Number);
}

/* An HTTP request repeated through connection errors and 502/503 until it is answered. */
async function persist(target, method, path, opts, what) {
  let last;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const res = await http(target, method, path, { timeoutMs: 5000, ...opts });
      if (res.status !== 502 && res.status !== 503 && res.status !== 504) return { res, retries: attempt };
      last = new Error(`${res.status} ${res.text}`);
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`${what}: never answered: ${last?.message}`);
}

/*
 * Each user reserves a solo game on the arcade, then cancels it, over and
 * over until stop() is called. A lost answer is retried with the same
 * Idempotency-Key (the reservation) or as the same cancel (a second cancel
 * answers 409, which then counts as done). Resolves the counts on stop().
 */
export function reservationLoad(target, uids, { arcade = ARCADE, game = GAME_SOLO, pauseMs = 20 } = {}) {
  const stats = { reserved: 0, cancelled: 0, retries: 0 };
  let stopping = false;
  async function loop(uid) {
    while (!stopping) {
      const key = crypto.randomUUID();
      const tok = token(target, uid);
      const r = await persist(target, 'POST', '/api/v1/reservations', {
        token: tok,
        body: { arcade_id: arcade, game_id: game },
        headers: { 'Idempotency-Key': key },
      }, `reserve ${uid}`);
      stats.retries += r.retries;
      assert.equal(r.res.status, 201, `reserve ${uid}: ${r.res.text}`);
      stats.reserved++;
      await sleep(pauseMs);
      const id = r.res.json.reservation.id;
      const c = await persist(target, 'DELETE', `/api/v1/reservations/${id}`, { token: tok }, `cancel ${uid}`);
      stats.retries += c.retries;
      assert.ok(c.res.status === 200 || (c.retries > 0 && c.res.status === 409), `cancel ${uid}: ${c.res.status} ${c.res.text}`);
      stats.cancelled++;
      await sleep(pauseMs);
    }
  }
  const running = Promise.all(uids.map(loop));
  return {
    stats,
    async stop() {
      stopping = true;
      await running;
      return stats;
    },
  };
}
