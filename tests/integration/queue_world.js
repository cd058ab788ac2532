// Shared set-up of the live-queue suites (queue_*.test.js, multi_process,
// ws_hygiene): a database with the demo data plus carol, tickets for the
// players, cabinet keys, and small phone / cabinet clients over the harness.
// Not a test file itself (ctest runs *.test.js only).
import crypto from 'node:crypto';
import {
  HUB_BIN,
  applyDemo,
  connectWs,
  http,
  run,
  startHub as startHubProcess,
  startPostgres,
  startRedis,
  token,
  waitFor,
} from '../lib/harness.js';

export const ARCADE = 1;
export const GAME_DUO = 1; // Street Brawler: 2 players exactly
export const GAME_SOLO = 3; // Neon Racer: 1 player
export const GAME_ANY = 2; // Galaxy Raiders: 1 or 2 (the only one on arcade 2 with Neon Racer)

/* A user (if missing) with `tickets` more tickets, through the ledger. */
export async function grant(pg, uid, tickets, pseudo = uid.replace(/^demo-/, '')) {
  await pg.psql(`
    INSERT INTO users (firebase_uid, pseudo) VALUES ('${uid}', '${pseudo}')
    ON CONFLICT (firebase_uid) DO NOTHING;
    WITH u AS (UPDATE users SET tickets_balance = tickets_balance + ${tickets}
               WHERE firebase_uid = '${uid}' RETURNING id, tickets_balance)
    INSERT INTO ledger (user_id, delta, balance_after, kind, reason)
    SELECT id, ${tickets}, tickets_balance, 'adjustment', 'test grant' FROM u;`);
}

/* A fresh cabinet API key for an arcade (only its hash is stored). */
export async function cabinetKey(pg, arcadeId) {
  const { stdout } = await run(HUB_BIN, ['cabinet-key', '--database-url', pg.url, String(arcadeId)]);
  return stdout.trim();
}

/*
 * Postgres + Redis with the demo data, carol, 100 tickets each for alice,
 * bob and carol, and a cabinet key per demo arcade.
 */
export async function startWorld() {
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  for (const uid of ['demo-alice', 'demo-bob', 'demo-carol']) await grant(pg, uid, 100);
  const keys = {};
  for (const id of [1, 2, 3]) keys[id] = await cabinetKey(pg, id);
  return { pg, redis, keys };
}

/*
 * The harness's startHub, then waits for /readyz: /healthz answers before the
 * pool has a connection, and a cabinet's key check needs one.
 */
export async function startHub(opts) {
  const hub = await startHubProcess(opts);
  await waitFor(async () => (await http(hub, 'GET', '/readyz', { timeoutMs: 2000 })).status === 200, {
    timeoutMs: 15000,
    what: `hub :${hub.port} ready`,
  });
  return hub;
}

export async function queueVersion(pg, arcadeId = ARCADE) {
  return Number(await pg.psql(`SELECT version FROM arcade_queue WHERE arcade_id = ${arcadeId}`));
}

/* POST /api/v1/reservations as uid. Resolves the response; throws unless 201. */
export async function reserve(hub, uid, { arcade = ARCADE, game = GAME_SOLO, player2 } = {}) {
  const body = { arcade_id: arcade, game_id: game };
  if (player2) body.player2_id = player2;
  const res = await http(hub, 'POST', '/api/v1/reservations', {
    token: token(hub, uid),
    body,
    headers: { 'Idempotency-Key': crypto.randomUUID() },
  });
  if (res.status !== 201) throw new Error(`reserve ${uid}: ${res.status} ${res.text}`);
  return res;
}

/*
 * A player's phone: authenticated, optionally subscribed to arcade:<id>.
 * events(kind) lists the private events received so far (all kinds when
 * omitted), in order; snapshots() the queue pushes. With autoAck every
 * private event is acked as it arrives (`ack` without id: no reply).
 */
export async function phone(hub, uid, { subscribe, autoAck = false, resume } = {}) {
  // Record from before authentication: the hub replays unacked events right
  // behind its auth reply, possibly in the same TCP segment.
  const c = await connectWs(hub);
  c.uid = uid;
  c.seen = []; // every message, in arrival order (the inbox is consumed by next())
  c.ws.on('message', (data) => {
    let m;
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch {
      return;
    }
    c.seen.push(m);
    if (autoAck && m.event_id) c.send({ type: 'ack', event_id: m.event_id });
  });
  c.events = (kind) => c.seen.filter((m) => m.event_id && (!kind || m.type === kind));
  c.snapshots = (arcade = ARCADE) => c.seen.filter((m) => m.type === 'queue' && m.arcade_id === arcade);
  c.lastSnapshot = (arcade = ARCADE) => c.snapshots(arcade).at(-1);
  const auth = await c.request({ type: 'auth', token: token(hub, uid) });
  if (auth.type !== 'ok') throw new Error(`auth: ${JSON.stringify(auth)}`);
  if (resume !== undefined) {
    const r = await c.request({ type: 'resume', since: resume });
    if (r.type !== 'ok') throw new Error(`resume: ${JSON.stringify(r)}`);
  }
  if (subscribe) {
    const r = await c.request({ type: 'subscribe', ch: `arcade:${subscribe}` });
    if (r.type !== 'ok') throw new Error(`subscribe: ${JSON.stringify(r)}`);
  }
  return c;
}

/* A cabinet: authenticated with its API key (auth frame), acking its events. */
export async function cabinet(hub, key, { resume = 0, autoAck = true } = {}) {
  const c = await connectWs(hub);
  c.seen = [];
  c.ws.on('message', (data) => {
    let m;
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch {
      return;
    }
    c.seen.push(m);
    if (autoAck && m.event_id) c.send({ type: 'ack', event_id: m.event_id });
  });
  const reply = await c.request({ type: 'auth', api_key: key });
  if (reply.type !== 'ok' || reply.role !== 'cabinet') throw new Error(`cabinet auth: ${JSON.stringify(reply)}`);
  c.auth = reply;
  if (resume !== null) {
    const r = await c.request({ type: 'resume', since: resume });
    if (r.type !== 'ok') throw new Error(`cabinet resume: ${JSON.stringify(r)}`);
  }
  /* The newest cabinet_queue received (waits for one matching pred). */
  c.queue = (pred = () => true, timeoutMs = 5000) =>
    c.next((m) => m.type === 'cabinet_queue' && pred(m), timeoutMs, 'cabinet_queue');
  return c;
}

/* Waits for the next private event of kind (matching pred) on a phone. */
export function nextEvent(c, kind, pred = () => true, timeoutMs = 5000) {
  return c.next((m) => m.type === kind && !!m.event_id && pred(m), timeoutMs, `${c.uid || 'cabinet'} ${kind}`);
}

/* Waits for a queue snapshot of arcade matching pred. */
export function nextSnapshot(c, pred = () => true, { arcade = ARCADE, timeoutMs = 5000 } = {}) {
  return c.next((m) => m.type === 'queue' && m.arcade_id === arcade && pred(m), timeoutMs, `queue arcade:${arcade}`);
}

export { startRedis };
