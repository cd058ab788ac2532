// The demo as people use it, in Debian's chromium, against `make run`
// (scripts/run.sh with the suite's own PostgreSQL and Redis): the links it
// prints open every page signed in; a new player signs up; alice buys
// tickets, uses WELCOME10, books a duo with bob picked from her friends,
// watches her position move, gets the code; the cabinet screen unlocks, plays
// and ends with two scores; alice sees the result and her best; the
// operations console shows the game live and the purchase, promo use,
// reservations and scores in its stream. Then `make run` is restarted: the
// cabinet (same key, kept in var/) and the phones recover with no manual
// step. And the cabinet's Enter key cannot send a game over twice. Last, the
// operator at work, from the console's buttons and dialogs: a void reaches
// alice's phone (voided, refunded) and the stream; maintenance reaches the
// phone (a warning before booking) and the cabinet ("Out of order"); a stuck
// game is ended (the cabinet is free again); a price edit and opening hours
// reach the cabinet's attract screen (its cabinet_config).

import { describe, test as nodeTest, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  HUB_BIN, SOURCE_DIR, freePort, http, startPostgres, startRedis, tmpDir, token, track, waitFor, watch,
} from '../lib/harness.js';
import {
  HAVE_CHROMIUM, CHROMIUM, PHONE, WAIT, launch, openPage, screenshots, assertAccessible,
} from './browser.js';

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/;

/*
 * scripts/run.sh against pg and redis, on port, with its state in varDir.
 * Resolves { links, keys, proc, output(), stop() } once the hub answers.
 */
async function makeRun({ pg, redis, port, varDir }) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('HUB_') || k.startsWith('RN_')) delete env[k];
  Object.assign(env, {
    DATABASE_URL: pg.url, REDIS_URL: redis.url, RN_SKIP_DEPS: '1', RN_SKIP_BUILD: '1', RN_HUB_BIN: HUB_BIN,
    RN_VAR_DIR: varDir, HUB_PORT: String(port), HUB_LISTEN: '127.0.0.1', HUB_WEB_ROOT: path.join(SOURCE_DIR, 'web-demo'),
    UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
  });
  const proc = spawn('bash', [path.join(SOURCE_DIR, 'scripts', 'run.sh')], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  watch('pid', proc.pid);
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  let done = false;
  exited.then(() => { done = true; });
  track(`run.sh ${proc.pid}`, async () => { if (!done) { process.kill(-proc.pid, 'SIGTERM'); await exited; } },
    () => { if (!done) process.kill(-proc.pid, 'SIGKILL'); });
  const hub = { port, url: `http://127.0.0.1:${port}` };
  await waitFor(async () => {
    if (done) throw new Error(`run.sh exited early:\n${out}`);
    if (!/^token demo-admin /m.test(out)) return false;
    try { return (await http(hub, 'GET', '/healthz', { timeoutMs: 1000 })).status === 200; } catch { return false; }
  }, { timeoutMs: 90000, intervalMs: 100, what: 'make run to serve' }).catch((err) => {
    throw new Error(`${err.message}\n${out.slice(-4000)}`);
  });
  const links = Object.fromEntries([...out.matchAll(/^link (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
  const keys = Object.fromEntries([...out.matchAll(/^cabinet (\d+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
  return {
    links, keys, proc, url: hub.url, output: () => out,
    async stop() { // Ctrl-C: run.sh stops the hub, which drains its sockets
      if (!done) process.kill(proc.pid, 'SIGINT');
      const info = await exited;
      assert.equal(info.code, 0, `run.sh exit ${JSON.stringify(info)}\n${out.slice(-3000)}`);
      assert.doesNotMatch(out, SANITIZER_RE, 'sanitizer report');
    },
  };
}

/*
 * What a failed step leaves for whoever reads the CI log: each open page's
 * phase, its error and unlock lines and the newest lines of its event log,
 * and the hub's newest log lines. A story step that times out says only
 * which locator it waited for; this says what the pages showed instead.
 */
async function diagnose(t, pages, run) {
  for (const [name, p] of Object.entries(pages)) {
    if (!p?.page || p.page.isClosed()) continue;
    const seen = await p.page.evaluate(() => ({
      url: location.pathname,
      phase: document.body.dataset.phase,
      unlock: document.querySelector('#unlock-result')?.textContent,
      errors: [...document.querySelectorAll('.error:not([hidden]), [role="alert"]:not([hidden])')]
        .map((e) => e.textContent.trim()).filter(Boolean),
      log: [...document.querySelectorAll('#log li')].slice(0, 15).map((li) => li.textContent),
    })).catch((err) => ({ unreadable: err.message }));
    t.diagnostic(`${name}: ${JSON.stringify(seen)}`);
  }
  // The hub's own log lines (JSON), not the links and tokens run.sh prints
  // first; one diagnostic per line (TAP escapes a newline inside one).
  const hubLog = run ? run.output().split('\n').filter((l) => l.startsWith('{')).slice(-30) : [];
  for (const line of hubLog) t.diagnostic(`hub: ${line}`);
}

/*
 * The unlock code a called player's phone shows. The spot turns "called" with
 * the REST answer or the reservation event; the code comes with your_turn,
 * which may arrive after (until then the phone shows a placeholder).
 */
async function turnCode(page) {
  const code = page.locator('#spot[data-status="called"] #turn-code', { hasText: /^\d{6}$/ });
  await code.waitFor(WAIT);
  return code.textContent();
}

/* Types digits on the cabinet's physical keyboard, then Enter. */
async function typeCode(cab, code) {
  await cab.keyboard.type(code);
  await cab.keyboard.press('Enter');
}

describe('the demo, as people use it', { skip: !HAVE_CHROMIUM && `no chromium at ${CHROMIUM}` }, () => {
  let pg, redis, run, browser, port, varDir;
  const frames = []; // game_over frames the cabinet page sent: [reservation_id]
  let alice, bob, carol, cab, admin, dave, daveReservation;

  // Every step of the story: on failure, diagnose() before the error.
  const test = (name, fn) => nodeTest(name, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      await diagnose(t, { cabinet: cab, admin, alice, bob, carol }, run);
      throw err;
    }
  });

  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    port = await freePort();
    varDir = tmpDir('rn-run-');
    run = await makeRun({ pg, redis, port, varDir });
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    if (run) await run.stop();
  });

  test('make run prints links that open each page signed in; the index shows them', async (t) => {
    for (const who of ['index', 'alice', 'bob', 'new', 'admin', 'cabinet1', 'cabinet2', 'cabinet3']) {
      assert.ok(run.links[who], `link ${who}`);
      assert.ok(!run.links[who].includes('?'), 'credentials never in a query string');
    }
    assert.match(run.links.alice, /\/phone\.html#token=ey/);
    assert.match(run.links.cabinet1, /\/cabinet\.html#key=rn_1_[0-9a-f]{64}$/);
    assert.match(run.output(), /WELCOME10/);
    const { page, check } = await openPage(t, browser, run.links.index);
    await page.locator('#demo').waitFor({ state: 'visible', ...WAIT });
    assert.equal(new URL(page.url()).hash, '', 'the credentials leave the address bar');
    const texts = await page.locator('#demo-links a').allTextContents();
    assert.deepEqual(texts, ['Alice’s phone', 'Bob’s phone', 'A new player (sign-up)', 'Operations console',
      'Cabinet screen, arcade 1', 'Cabinet screen, arcade 2', 'Cabinet screen, arcade 3']);
    assert.equal(await page.locator('a[data-who="alice"]').getAttribute('href'), new URL(run.links.alice).pathname + new URL(run.links.alice).hash);
    // Anyone else gets the page without credentials.
    const anon = await openPage(t, browser, `${run.url}/`);
    await anon.page.locator('#nodemo').waitFor({ state: 'visible', ...WAIT });
    assert.equal(await anon.page.locator('#demo-links a').count(), 0);
    check();
    anon.check();
  });

  test('the console, the cabinet and three phones open from their links', async () => {
    // These pages live through the whole story (until the browser closes).
    admin = await openPage(null, browser, run.links.admin);
    cab = await openPage(null, browser, run.links.cabinet1, {
      watch: (page) => page.on('websocket', (ws) => ws.on('framesent', (f) => {
        try {
          const m = JSON.parse(f.payload);
          if (m.type === 'game_over') frames.push(m.reservation_id);
        } catch { /* not JSON */ }
      })),
    });
    alice = await openPage(null, browser, run.links.alice, { viewport: PHONE });
    bob = await openPage(null, browser, run.links.bob, { viewport: PHONE });
    carol = await openPage(null, browser, run.links.new, { viewport: PHONE });
    for (const p of [admin, cab, alice, bob]) await p.page.locator('#conn', { hasText: 'live' }).waitFor(WAIT);
    assert.equal(new URL(alice.page.url()).hash, '');
    await cab.page.locator('body[data-phase="attract"] #attract-title', { hasText: 'RETRONOVA' }).waitFor(WAIT);
    await cab.page.locator('#arcade-name', { hasText: 'Retronova Paris Bastille' }).waitFor(WAIT);
    await admin.page.locator('#board article[data-arcade-id="1"][data-status="idle"]').waitFor(WAIT);
    await alice.page.locator('button.choice[data-arcade-id="1"]', { hasText: 'free now' }).waitFor(WAIT);
  });

  test('a new player signs up, hears "not enough tickets" with the way out, and is given tickets', async () => {
    const p = carol.page;
    await p.locator('#signup').waitFor({ state: 'visible', ...WAIT });
    await p.locator('#su-pseudo').fill('alice');
    await p.locator('#su-first').fill('Carol');
    await p.locator('#su-last').fill('Dupont');
    await p.locator('#signup-go').click();
    await p.locator('#signup-error', { hasText: 'This player name is taken' }).waitFor(WAIT);
    await p.locator('#su-pseudo').fill('carol');
    await p.locator('#signup-go').click();
    await p.locator('#view-play', { hasText: 'Where do you play?' }).waitFor(WAIT);
    await p.locator('#conn', { hasText: 'live' }).waitFor(WAIT);
    await p.locator('#balance[data-balance="0"]').waitFor(WAIT);

    await p.locator('button.choice[data-arcade-id="1"]').click();
    await p.locator('button.choice[data-game-id="3"]').click(); // Neon Racer, solo, 1 ticket
    await p.locator('#reserve-go').click();
    const err = p.locator('#reserve-error');
    await err.filter({ hasText: 'Not enough tickets for this game.' }).waitFor(WAIT);
    await err.getByRole('button', { name: 'Buy tickets' }).click();
    await p.locator('#view-tickets').waitFor({ state: 'visible', ...WAIT });

    // The operator gives her 3 tickets, after confirming.
    const a = admin.page;
    await a.locator('#adj-uid').fill(run.output().match(/^token (demo-new-\w+) /m)[1]);
    await a.locator('#adj-delta').fill('3');
    await a.locator('#adj-reason').fill('welcome');
    await a.locator('#adjust-form button').click();
    await a.locator('#confirm', { hasText: 'Give 3 ticket(s) to demo-new-' }).waitFor(WAIT);
    await a.locator('#confirm-ok').click();
    await a.locator('#adjust-ok', { hasText: 'now has 3 tickets' }).waitFor(WAIT);
    await p.locator('#balance[data-balance="3"]').waitFor(WAIT);
    await a.locator('#log li', { hasText: /demo-admin adjusted demo-new-\w+'s tickets by \+3/ }).waitFor(WAIT);
  });

  let carolCode;
  test('carol is called at once; dave (a player on the REST API) queues behind her', async () => {
    const p = carol.page;
    await p.locator('.tab[data-tab="play"]').click(); // back where she was: Neon Racer, ready to book
    await p.locator('#reserve-go', { hasText: 'Reserve · 1 ticket' }).click();
    await p.locator('#spot[data-status="called"] #spot-title', { hasText: 'Your turn!' }).waitFor(WAIT);
    carolCode = await turnCode(p);
    assert.match(carolCode, /^\d{6}$/);
    assert.match(await p.locator('#turn-left').textContent(), /^\d:\d\d$/);
    assert.match(await p.locator('#announce').textContent(), /Your turn at Retronova Paris Bastille!/);
    await cab.page.locator('body[data-phase="called"] #called-players', { hasText: 'carol' }).waitFor(WAIT);

    dave = token(null, 'demo-dave', { secret: fs.readFileSync(path.join(varDir, 'secret'), 'utf8').trim() });
    const hub = { port };
    const ok = async (method, url, body, status = 200) => {
      const res = await http(hub, method, url, { token: dave, body, headers: { 'Idempotency-Key': crypto.randomUUID() } });
      assert.equal(res.status, status, `${method} ${url}: ${JSON.stringify(res.json ?? res.text)}`);
      return res.json;
    };
    await ok('POST', '/api/v1/auth/register', { pseudo: 'dave', first_name: 'Dave', last_name: 'Rest' }, 201);
    await ok('POST', '/api/v1/promos/use', { code: 'WELCOME10' });
    const r = await ok('POST', '/api/v1/reservations', { arcade_id: 1, game_id: 2 }, 201);
    daveReservation = (r.reservation || r).id;
    assert.ok(daveReservation > 0);
  });

  test('alice buys tickets, uses WELCOME10 (once), books a duo with bob and moves up the queue', async () => {
    const p = alice.page;
    await p.locator('#balance[data-balance="20"]').waitFor(WAIT);
    await p.locator('.tab[data-tab="tickets"]').click();
    await p.locator('#offers li[data-offer-id="1"] button').click();
    await p.locator('#balance[data-balance="30"]').waitFor(WAIT);
    await p.locator('#promo-code').fill('welcome10');
    await p.locator('#promo-go').click();
    await p.locator('#promo-ok', { hasText: 'WELCOME10: 10 free tickets added' }).waitFor(WAIT);
    await p.locator('#balance[data-balance="40"]').waitFor(WAIT);
    await p.locator('#promo-code').fill('WELCOME10');
    await p.locator('#promo-go').click();
    await p.locator('#promo-error', { hasText: 'You have already used this code.' }).waitFor(WAIT);
    await p.locator('#promo-code').fill('NOPE99');
    await p.locator('#promo-go').click();
    await p.locator('#promo-error', { hasText: 'This code does not exist.' }).waitFor(WAIT);

    await p.locator('.tab[data-tab="play"]').click();
    await p.locator('button.choice[data-arcade-id="1"]', { hasText: '1 player group waiting' }).click();
    await p.locator('button.choice[data-game-id="1"]').click(); // Street Brawler: two players, 2 tickets
    await p.getByLabel('Me and bob').check();
    await p.locator('#reserve-go').click();
    await p.locator('#spot[data-status="waiting"] #position', { hasText: '#2' }).waitFor(WAIT);
    await p.locator('#eta', { hasText: /Your turn in .* \(estimate\)/ }).waitFor(WAIT);
    await p.locator('#balance[data-balance="38"]').waitFor(WAIT);
    await bob.page.locator('#spot[data-status="waiting"] #position', { hasText: '#2' }).waitFor(WAIT);

    // dave gives up his place: alice moves up.
    const res = await http({ port }, 'DELETE', `/api/v1/reservations/${daveReservation}`, { token: dave });
    assert.equal(res.status, 200);
    await p.locator('#spot[data-status="waiting"] #position', { hasText: '#1' }).waitFor(WAIT);
    await bob.page.locator('#spot[data-status="waiting"] #position', { hasText: '#1' }).waitFor(WAIT);
  });

  test('the cabinet plays carol\'s game; Enter on the next code unlocks and sends nothing else', async (t) => {
    const c = cab.page;
    await typeCode(c, carolCode === '000000' ? '111111' : '000000');
    await c.locator('#unlock-result', { hasText: 'Wrong code: check your phone. 4 tries left.' }).waitFor(WAIT);
    await typeCode(c, carolCode);
    await c.locator('body[data-phase="playing"] #playing-players', { hasText: 'carol' }).waitFor(WAIT);
    await carol.page.locator('#spot[data-status="playing"]').waitFor(WAIT);
    await c.locator('#elapsed', { hasText: /^0:0[1-9]|^0:[1-5]\d/ }).waitFor(WAIT); // time runs
    await c.locator('#score1').fill('700');
    await c.locator('#over').click(); // focus on the button: the old trap
    await c.locator('#game-result', { hasText: 'Score 700' }).waitFor(WAIT);
    await screenshots(t, c, 'cabinet-game-over');
    await carol.page.locator('#spot-title', { hasText: 'Game over' }).waitFor(WAIT);
    assert.equal(frames.length, 1);

    // alice and bob are called; the code typed on the keyboard, then Enter.
    const p = alice.page;
    await p.locator('#spot[data-status="called"] #spot-title', { hasText: 'Your turn!' }).waitFor(WAIT);
    const code = await turnCode(p);
    await bob.page.locator('#spot[data-status="called"] #turn-code', { hasText: code }).waitFor(WAIT);
    await screenshots(t, p, 'phone-your-turn');
    await c.locator('body[data-phase="called"] #called-players', { hasText: 'alice & bob' }).waitFor(WAIT);
    await screenshots(t, c, 'cabinet-called');
    await typeCode(c, code);
    await c.locator('body[data-phase="playing"] #playing-players', { hasText: 'alice & bob' }).waitFor(WAIT);
    assert.equal(frames.length, 1, 'Enter unlocked, and sent no game over');
    assert.deepEqual(await c.locator('#score-fields label').allTextContents(), ["alice's score", "bob's score"]);
    assert.equal(await c.locator('#score1').inputValue(), '', 'a new reservation gets empty score fields');
    assert.equal(await c.locator('#score2').inputValue(), '');
    await p.locator('#spot[data-status="playing"]').waitFor(WAIT);
    await screenshots(t, c, 'cabinet-playing');
  });

  test('the duo ends with two scores: alice sees she won and her best; the console saw it all', async (t) => {
    const board = admin.page.locator('#board article[data-arcade-id="1"]');
    await board.locator('.now-playing', { hasText: 'alice & bob · Street Brawler' }).waitFor(WAIT);
    await board.locator('.queue-length', { hasText: 'empty' }).waitFor(WAIT);
    await screenshots(t, admin.page, 'admin-live');

    const c = cab.page;
    await c.locator('#score1').fill('9100');
    await c.locator('#score2').fill('1500');
    await c.keyboard.press('Enter'); // in a score field: submits
    await c.keyboard.press('Enter'); // while the first is in flight
    await c.keyboard.press('Enter');
    await c.locator('#game-result', { hasText: 'alice wins!' }).waitFor(WAIT);
    assert.equal(frames.length, 2, `one game over per reservation, whatever Enter does (${frames})`);
    assert.notEqual(frames[0], frames[1]);

    const p = alice.page;
    await p.locator('#spot[data-status="result"] #spot-title', { hasText: 'You won!' }).waitFor(WAIT);
    const result = await p.locator('#spot').textContent();
    assert.match(result, /alice \(you\)9,100 winner/);
    assert.match(result, /bob1,500/);
    await p.locator('#best', { hasText: 'New personal best: 9,100!' }).waitFor(WAIT);
    await bob.page.locator('#spot-title', { hasText: 'alice wins' }).waitFor(WAIT);
    await screenshots(t, p, 'phone-result');

    await p.locator('.tab[data-tab="history"]').click();
    await p.locator('#history li', { hasText: 'alice 9,100 · bob 1,500 · alice won' }).waitFor(WAIT);
    await p.locator('#stats', { hasText: 'Street Brawler' }).waitFor(WAIT);
    await screenshots(t, p, 'phone-history-after');

    const log = admin.page.locator('#log');
    for (const line of [/demo-alice bought 10 tickets for €5\.00/, /demo-alice used a promo code: \+10 tickets/,
      /Street Brawler at Retronova Paris Bastille: demo-alice booked/,
      /Game over, Street Brawler at Retronova Paris Bastille: alice 9,100 · bob 1,500 \(alice wins\)/]) {
      await log.locator('li', { hasText: line }).first().waitFor(WAIT);
    }
    // A booked duo is one line, not one per player.
    assert.equal(await log.locator('li', { hasText: /Street Brawler at Retronova Paris Bastille: demo-alice booked/ }).count(), 1);
    // Filters: only scores.
    for (const box of ['money', 'queue', 'ops']) await admin.page.locator(`#filters input[value="${box}"]`).uncheck();
    assert.equal(await log.locator('li:visible').count(), 2);
    for (const text of await log.locator('li:visible').allTextContents()) assert.match(text, /score/);
    for (const box of ['money', 'queue', 'ops']) await admin.page.locator(`#filters input[value="${box}"]`).check();
    assert.equal(await admin.page.locator('#kpi-revenue').textContent(), '€5.00');
    await screenshots(t, admin.page, 'admin-stream');
    for (const p2 of [admin, cab, alice, bob, carol]) p2.check();
  });

  test('booking at an offline arcade warns first', async () => {
    const b = bob.page;
    await b.locator('#spot button', { hasText: 'Play again' }).click();
    await b.locator('#spot').waitFor({ state: 'hidden', ...WAIT });
    await b.locator('.tab[data-tab="play"]').click();
    await b.locator('button.choice[data-arcade-id="3"]', { hasText: 'offline right now' }).click();
    await b.locator('button.choice[data-game-id="4"]').click();
    await b.locator('#reserve-warning', { hasText: 'This arcade is offline right now.' }).waitFor(WAIT);
    assert.match(await b.locator('#reserve-go').textContent(), /^Reserve anyway/);
    await b.locator('#reserve-go').click();
    await b.locator('#spot[data-status="waiting"]', { hasText: 'The arcade is offline: your place is kept.' }).waitFor(WAIT);
  });

  test('make run restarts: same cabinet key, the cabinet and phones recover by themselves', async () => {
    const keys = run.keys;
    await run.stop();
    await cab.page.locator('#banner', { hasText: 'reconnecting by itself' }).waitFor({ state: 'visible', ...WAIT });
    await bob.page.locator('#banner', { hasText: 'Reconnecting — your place is kept.' }).waitFor({ state: 'visible', ...WAIT });
    run = await makeRun({ pg, redis, port, varDir });
    assert.deepEqual(run.keys, keys, 'the demo cabinet keys are kept across restarts');
    for (const p of [cab, alice, bob, admin]) await p.page.locator('#conn', { hasText: 'live' }).waitFor({ timeout: 40000 });
    await cab.page.locator('#banner').waitFor({ state: 'hidden', ...WAIT });
    await bob.page.locator('#banner').waitFor({ state: 'hidden', ...WAIT });
    await bob.page.locator('#spot[data-status="waiting"]').waitFor(WAIT);
    await admin.page.locator('#board article[data-arcade-id="1"][data-status="idle"]').waitFor(WAIT);
    await cab.page.locator('body[data-phase="attract"]').waitFor(WAIT);
    for (const p of [admin, cab, alice, bob]) p.check();
  });
  test('an admin void from the console reaches alice\'s phone: voided, refunded; the stream says so', async (t) => {
    const p = alice.page;
    const again = p.locator('#spot[data-status="result"] button', { hasText: 'Play again' });
    if (await again.count()) await again.click();
    await p.locator('.tab[data-tab="play"]').click();
    await p.locator('button.choice[data-arcade-id="1"]', { hasText: 'free now' }).click();
    await p.locator('button.choice[data-game-id="3"]').click(); // Neon Racer, solo, 1 ticket
    const before = Number(await p.locator('#balance').getAttribute('data-balance'));
    await p.locator('#reserve-go', { hasText: 'Reserve · 1 ticket' }).click();
    await p.locator('#spot[data-status="called"] #spot-title', { hasText: 'Your turn!' }).waitFor(WAIT);
    await p.locator(`#balance[data-balance="${before - 1}"]`).waitFor(WAIT);
    const rid = await p.locator('#spot').getAttribute('data-reservation-id');

    const a = admin.page;
    const card = a.locator('#board article[data-arcade-id="1"]');
    await card.locator('.called', { hasText: 'alice' }).waitFor(WAIT);
    await card.locator(`.called button[data-void="${rid}"]`).click();
    await a.locator('#confirm-text', { hasText: `Void reservation #${rid} of alice (Neon Racer) at Retronova Paris Bastille?` }).waitFor(WAIT);
    await a.locator('#confirm-ok').click(); // no reason yet: said in the dialog, which stays open
    await a.locator('#confirm-error', { hasText: 'Give a reason' }).waitFor(WAIT);
    await assertAccessible(a, 'console with the void dialog open');
    await screenshots(t, a, 'admin-void-dialog');
    await a.locator('#dlg-reason').fill('cabinet froze');
    await a.locator('#confirm-ok').click();
    await a.locator('#confirm').waitFor({ state: 'hidden', ...WAIT });
    await a.locator('#board-action-ok', { hasText: `Reservation #${rid} voided (it was called), tickets refunded.` }).waitFor(WAIT);

    await p.locator('#spot[data-status="voided"] #spot-title', { hasText: 'Reservation voided' }).waitFor(WAIT);
    assert.equal(await p.locator('#notice-why').textContent(), 'Retronova staff voided it: “cabinet froze”.');
    assert.equal(await p.locator('#notice-refund').textContent(), 'Your tickets were refunded (+1 ticket).');
    await p.locator(`#balance[data-balance="${before}"]`).waitFor(WAIT);
    await screenshots(t, p, 'phone-voided');
    await a.locator('#log li', { hasText: `demo-admin voided #${rid} at Retronova Paris Bastille (it was called): “cabinet froze”, tickets refunded` }).waitFor(WAIT);
    await a.locator('#log li', { hasText: `#${rid} Neon Racer at Retronova Paris Bastille: demo-alice was voided` }).waitFor(WAIT);
    await card.locator('.called', { hasText: 'nobody' }).waitFor(WAIT);

    // The same reservation again, by number: plain words next to the form.
    await a.locator('#void-id').fill(rid);
    await a.locator('#void-reason').fill('twice');
    await a.locator('#void-form button').click();
    await a.locator('#confirm-ok').click();
    await a.locator('#void-error', { hasText: `Nothing to void: reservation ${rid} is voided already.` }).waitFor(WAIT);
    await p.locator('#spot button', { hasText: 'OK' }).click();
    await p.locator('#spot').waitFor({ state: 'hidden', ...WAIT });
    for (const x of [admin, alice]) x.check();
  });

  test('maintenance from the console: the phone warns before booking, the cabinet is "Out of order"', async (t) => {
    const a = admin.page;
    const card = a.locator('#board article[data-arcade-id="1"]');
    await card.locator('button[data-maintenance-switch="on"]').click();
    await a.locator('#confirm-text', { hasText: 'Put Retronova Paris Bastille out of order?' }).waitFor(WAIT);
    await a.locator('#dlg-message').fill('back at 3 pm');
    await assertAccessible(a, 'console with the maintenance dialog open');
    await screenshots(t, a, 'admin-maintenance-dialog');
    await a.locator('#confirm-ok').click();
    await card.locator('.maintenance', { hasText: 'on: “back at 3 pm”' }).waitFor(WAIT);
    await a.locator('#board article[data-arcade-id="1"][data-maintenance="true"]').waitFor(WAIT);
    await a.locator('#log li', { hasText: 'demo-admin put Retronova Paris Bastille out of order (“back at 3 pm”)' }).waitFor(WAIT);
    await cab.page.locator('#attract-line', { hasText: 'Out of order: back at 3 pm' }).waitFor(WAIT);
    await screenshots(t, cab.page, 'cabinet-out-of-order');

    const p = alice.page;
    await p.locator('button.choice[data-arcade-id="1"]', { hasText: 'in maintenance' }).click();
    await p.locator('button.choice[data-game-id="3"]').click();
    await p.locator('#reserve-warning', { hasText: 'This arcade is in maintenance (“back at 3 pm”): no booking until it is back.' }).waitFor(WAIT);
    assert.equal(await p.locator('#reserve-go').isDisabled(), true);
    assert.equal(await p.locator('#reserve-go').textContent(), 'Closed for maintenance');
    await screenshots(t, p, 'phone-maintenance');

    await card.locator('button[data-maintenance-switch="off"]').click();
    await a.locator('#confirm-text', { hasText: 'Put Retronova Paris Bastille back in service?' }).waitFor(WAIT);
    await a.locator('#confirm-ok').click();
    await cab.page.locator('#attract-line', { hasText: 'Book a game on your phone' }).waitFor(WAIT);
    await p.locator('#reserve-go:not([disabled])', { hasText: 'Reserve · 1 ticket' }).waitFor(WAIT);
    await p.locator('#reserve-warning').waitFor({ state: 'detached', ...WAIT });
    for (const x of [admin, alice, cab]) x.check();
  });

  test('a stuck game ended from the console: the cabinet is free again, alice is told', async (t) => {
    const p = alice.page;
    await p.locator('.tab[data-tab="play"]').click();
    await p.locator('#reserve-go', { hasText: 'Reserve · 1 ticket' }).click(); // still on Neon Racer
    const code = await turnCode(p);
    const rid = await p.locator('#spot').getAttribute('data-reservation-id');
    const c = cab.page;
    await c.locator('body[data-phase="called"] #called-players', { hasText: 'alice' }).waitFor(WAIT);
    await typeCode(c, code);
    await c.locator('body[data-phase="playing"] #playing-players', { hasText: 'alice' }).waitFor(WAIT);
    await p.locator('#spot[data-status="playing"]').waitFor(WAIT);

    const a = admin.page;
    const playing = a.locator('#board article[data-arcade-id="1"] .now-playing');
    await playing.locator(`button[data-void="${rid}"]`, { hasText: 'End game…' }).click();
    await a.locator('#confirm-text', { hasText: `End the game of alice (Neon Racer) at Retronova Paris Bastille now? Their reservation #${rid} is voided` }).waitFor(WAIT);
    await a.locator('#dlg-reason').fill('stuck on the title screen');
    await a.locator('#dlg-refund').uncheck();
    await a.locator('#confirm-ok').click();
    await a.locator('#board-action-ok', { hasText: `Reservation #${rid} voided (it was playing), no refund.` }).waitFor(WAIT);
    await playing.filter({ hasText: 'nobody' }).waitFor(WAIT);
    await c.locator('body[data-phase="attract"]').waitFor(WAIT);
    await p.locator('#spot[data-status="voided"] #notice-why', { hasText: 'Retronova staff voided it: “stuck on the title screen”.' }).waitFor(WAIT);
    assert.equal(await p.locator('#notice-refund').textContent(), 'No refund for this one.');
    await a.locator('#log li', { hasText: `demo-admin voided #${rid} at Retronova Paris Bastille (it was playing): “stuck on the title screen”, no refund` }).waitFor(WAIT);
    await p.locator('#spot button', { hasText: 'OK' }).click();
    for (const x of [admin, alice, cab]) x.check();
  });

  test('a price edit and opening hours from the console reach the cabinet\'s attract screen', async (t) => {
    const a = admin.page;
    const c = cab.page;
    await c.locator('#attract-games li[data-game-id="3"]', { hasText: '1 ticket · 1 player' }).waitFor(WAIT);
    await a.locator('#edit-kind').selectOption('games');
    await a.locator('#edit-id option[value="3"]').waitFor({ state: 'attached', ...WAIT });
    await a.locator('#edit-id').selectOption('3');
    await a.locator('#edit-field').selectOption('ticket_cost');
    await a.locator('#edit-value').fill('two');
    await a.locator('#edit-save').click();
    await a.locator('#edit-error', { hasText: 'Type a whole number (e.g. 2).' }).waitFor(WAIT);
    await a.locator('#edit-value').fill('2');
    await a.locator('#edit-save').click();
    await a.locator('#confirm-text', { hasText: 'Set the ticket cost of game 3 (Neon Racer) to 2?' }).waitFor(WAIT);
    await a.locator('#confirm-ok').click();
    await a.locator('#edit-ok', { hasText: 'Saved: the ticket cost of game 3 is now 2.' }).waitFor(WAIT);
    await c.locator('#attract-games li[data-game-id="3"]', { hasText: '2 tickets · 1 player' }).waitFor(WAIT);
    await a.locator('#log li', { hasText: 'game.update game 3 (ticket_cost 1 → 2)' }).waitFor(WAIT);

    // Opening hours from the console: the cabinet shows them, and their removal.
    await a.locator('#hours-arcade').selectOption('1');
    await a.locator('#hours-open').fill('00:00');
    await a.locator('#hours-form button').click();
    await a.locator('#hours-error', { hasText: 'Give both times, or neither (open at all hours).' }).waitFor(WAIT);
    await a.locator('#hours-close').fill('23:59');
    await a.locator('#hours-tz').fill('UTC');
    await a.locator('#hours-last').fill('0');
    await a.locator('#hours-form button').click();
    await a.locator('#confirm-text', { hasText: 'Set the hours of Retronova Paris Bastille to 00:00–23:59?' }).waitFor(WAIT);
    await a.locator('#confirm-ok').click();
    await a.locator('#hours-ok', { hasText: 'Retronova Paris Bastille: open 00:00–23:59 (UTC)' }).waitFor(WAIT);
    await c.locator('#arcade-hours', { hasText: /^Open 00:00–23:59$/ }).waitFor(WAIT);
    await a.locator('#log li', { hasText: 'demo-admin set the opening hours of Retronova Paris Bastille: 00:00–23:59 (UTC)' }).waitFor(WAIT);
    await screenshots(t, c, 'cabinet-attract-config');
    await a.locator('#hours-open').fill('');
    await a.locator('#hours-close').fill('');
    await a.locator('#hours-form button').click();
    await a.locator('#confirm-ok').click();
    await a.locator('#hours-ok', { hasText: 'Retronova Paris Bastille: open at all hours' }).waitFor(WAIT);
    await c.locator('#arcade-hours', { hasText: /^$/ }).waitFor({ state: 'attached', ...WAIT });
    assert.equal(await c.locator('#arcade-hours').textContent(), '');
    await screenshots(t, a, 'admin-actions');
    for (const x of [admin, cab]) x.check();
  });
});

