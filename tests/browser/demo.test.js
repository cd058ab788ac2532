// The web demo (web-demo/) in Debian's chromium, against a real hub, PostgreSQL
// and Redis with the demo data: the phone page lists the arcades and shows a
// live queue, the cabinet page authenticates with an API key, the admin page
// shows live stats; a reservation goes through both pages end to end; a route
// that fails is shown as an error and breaks nothing else. A screenshot of
// each page is kept (see SHOTS) for a person to look at.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  HUB_BIN, SOURCE_DIR, applyDemo, run, startHub, startPostgres, startRedis, token,
} from '../lib/harness.js';

const CHROMIUM = process.env.RN_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.RN_SCREENSHOT_DIR || path.join(os.tmpdir(), 'rn-browser-screenshots');
const DEMO_ARCADES = ['Retronova Paris Bastille', 'Retronova Lyon Part-Dieu', 'Retronova Bordeaux Quai'];
const WAIT = { timeout: 15000 };

describe('web demo', { skip: !fs.existsSync(CHROMIUM) && `no chromium at ${CHROMIUM}` }, () => {
  let pg, hub, browser;
  let aliceToken, adminToken;

  before(async () => {
    pg = await startPostgres();
    const redis = await startRedis();
    await applyDemo(pg);
    // The pages of this checkout, whatever web root the binary was built with.
    hub = await startHub({ pg, redis, args: ['--web-root', path.join(SOURCE_DIR, 'web-demo')] });
    aliceToken = token(hub, 'demo-alice');
    adminToken = token(hub, 'demo-admin', { admin: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    fs.mkdirSync(SHOTS, { recursive: true });
  });

  // Before the harness stops the hub: no browser socket outlives it.
  after(async () => {
    await browser?.close();
  });

  /*
   * A fresh page (own storage) that records uncaught exceptions and console
   * errors other than failed requests; check() asserts there were none: a
   * page may show an error, never break. prepare(context) runs before the
   * page loads (to route requests).
   */
  async function openPage(t, urlPath, prepare) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    if (prepare) await prepare(context);
    const page = await context.newPage();
    const thrown = [];
    page.on('pageerror', (err) => thrown.push(err.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) thrown.push(m.text());
    });
    t.after(() => context.close());
    await page.goto(`${hub.url}${urlPath}`);
    return { page, check: () => assert.deepEqual(thrown, [], 'the page threw') };
  }

  async function screenshot(t, page, name) {
    const file = path.join(SHOTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    t.diagnostic(`screenshot: ${file}`);
  }

  test('index links to the three pages', async (t) => {
    const { page, check } = await openPage(t, '/');
    for (const href of ['/phone.html', '/cabinet.html', '/admin.html']) {
      assert.equal(await page.locator(`a[href="${href}"]`).count(), 1, href);
    }
    await screenshot(t, page, 'index');
    check();
  });

  test('phone: arcades from the REST API, then the live queue of arcade 1', async (t) => {
    const { page, check } = await openPage(t, `/phone.html?token=${encodeURIComponent(aliceToken)}`);
    await page.locator('#conn', { hasText: 'online' }).waitFor(WAIT);
    assert.equal(await page.locator('#who').textContent(), 'demo-alice');
    assert.ok(!page.url().includes('token='), 'the token is taken out of the address bar');

    const items = page.locator('#arcade-list li[data-arcade-id]');
    await items.nth(2).waitFor(WAIT);
    assert.equal(await items.count(), 3);
    const list = await page.locator('#arcade-list').textContent();
    for (const name of DEMO_ARCADES) assert.ok(list.includes(name), `${name} listed`);
    await page.locator('#balance[data-balance]').waitFor(WAIT);

    await page.locator('li[data-arcade-id="1"] [data-action="watch"]').click();
    const view = page.locator('#queue-view[data-v]');
    await view.waitFor(WAIT);
    assert.equal(await view.getAttribute('data-arcade'), '1');
    const v = await view.getAttribute('data-v');
    assert.match(v, /^\d+$/);
    const text = await view.textContent();
    assert.ok(text.includes(`v${v}`), 'the version is shown');
    assert.ok(text.includes(DEMO_ARCADES[0]));
    assert.match(text, /Waiting \(0\)/);
    await screenshot(t, page, 'phone');
    check();
  });

  test('phone: a failing route shows its error, the rest of the page works', async (t) => {
    // As the hub answers a route it does not have, and as a proxy answers when the hub is away.
    const { page, check } = await openPage(t, `/phone.html?token=${encodeURIComponent(aliceToken)}`, async (context) => {
      await context.route('**/api/v1/arcades', (route) => route.fulfill({
        status: 404, contentType: 'application/json',
        body: JSON.stringify({ error: { code: 'not_found', message: 'no route for /api/v1/arcades' } }),
      }));
      await context.route('**/api/v1/tickets/offers', (route) => route.fulfill({
        status: 502, contentType: 'text/html', body: '<html><body>Bad Gateway</body></html>',
      }));
    });

    const arcades = page.locator('#arcades-error');
    await arcades.waitFor({ state: 'visible', ...WAIT });
    assert.equal(await arcades.textContent(), 'GET /api/v1/arcades: not_found (404): no route for /api/v1/arcades');
    const offers = page.locator('#tickets-error');
    await offers.waitFor({ state: 'visible', ...WAIT });
    assert.match(await offers.textContent(), /^GET \/api\/v1\/tickets\/offers: http_502 \(502\)/);
    assert.equal(await page.locator('#arcade-list li[data-arcade-id]').count(), 0);

    // The rest still works: the balance, and watching an arcade by its number.
    await page.locator('#balance[data-balance]').waitFor(WAIT);
    await page.locator('#watch-id').fill('1');
    await page.locator('#watch-form button').click();
    await page.locator('#queue-view[data-arcade="1"][data-v]').waitFor(WAIT);
    await screenshot(t, page, 'phone-errors');
    check();
  });

  test('cabinet: authenticates with its API key', async (t) => {
    const { stdout } = await run(HUB_BIN, ['cabinet-key', '--database-url', pg.url, '1']);
    const key = stdout.trim();
    assert.match(key, /^rn_1_[0-9a-f]{64}$/);
    const { page, check } = await openPage(t, `/cabinet.html?key=${encodeURIComponent(key)}`);
    const auth = page.locator('#auth-state[data-arcade="1"]');
    await auth.waitFor(WAIT);
    assert.match(await auth.textContent(), /Authenticated as the cabinet of arcade 1/);
    await page.locator('#conn', { hasText: 'online' }).waitFor(WAIT);
    assert.ok(!page.url().includes('key='), 'the key is taken out of the address bar');

    // The keypad echoes what is typed, on screen and from the keyboard.
    for (const k of ['4', '8', '2']) await page.locator(`#keypad [data-key="${k}"]`).click();
    await page.keyboard.type('913');
    assert.equal((await page.locator('#digits').textContent()).trim(), '482913');
    await page.locator('#keypad [data-key="back"]').click();
    assert.equal((await page.locator('#digits').textContent()).trim(), '48291');
    await screenshot(t, page, 'cabinet');
    check();
  });

  test('admin: live stats once a second', async (t) => {
    const { page, check } = await openPage(t, `/admin.html?token=${encodeURIComponent(adminToken)}`);
    await page.locator('#conn', { hasText: 'online' }).waitFor(WAIT);
    await page.locator('#stats-view[data-v]').waitFor(WAIT);
    const admins = page.locator('#stats-view tr[data-kind="admin"] td.num');
    assert.ok(Number(await admins.textContent()) >= 1, 'this dashboard counts as an admin connection');
    await page.locator('#arcades-view tr[data-arcade-id]').nth(2).waitFor(WAIT);
    await screenshot(t, page, 'admin');
    check();
  });

  test('a game end to end: reserve on the phone, unlock on the cabinet, the score on the phone', async (t) => {
    const { stdout } = await run(HUB_BIN, ['cabinet-key', '--database-url', pg.url, '2']);
    const cab = await openPage(t, `/cabinet.html?key=${encodeURIComponent(stdout.trim())}`);
    await cab.page.locator('#version', { hasText: /^v\d+$/ }).waitFor(WAIT); // its first cabinet_queue
    const phone = await openPage(t, `/phone.html?token=${encodeURIComponent(aliceToken)}`);
    await phone.page.locator('#balance[data-balance]').waitFor(WAIT);
    const before = Number(await phone.page.locator('#balance').getAttribute('data-balance'));

    // Neon Racer (game 3: one player, one ticket) on arcade 2, whose cabinet is idle: called at once.
    const arcade = phone.page.locator('li[data-arcade-id="2"]');
    await arcade.locator('select').selectOption('3');
    await arcade.locator('button', { hasText: 'Reserve' }).click();
    const code = phone.page.locator('#turn-code');
    await phone.page.locator('#turn').waitFor({ state: 'visible', ...WAIT });
    assert.match(await code.textContent(), /^\d{6}$/);
    assert.match(await phone.page.locator('#turn-left').textContent(), /^\d+:\d\d$/, 'a countdown');
    await phone.page.locator(`#balance[data-balance="${before - 1}"]`).waitFor(WAIT);
    await screenshot(t, phone.page, 'phone-your-turn');

    // The cabinet shows the called reservation; the player types the code.
    await cab.page.locator('#called-view', { hasText: 'alice' }).waitFor(WAIT);
    assert.match(await cab.page.locator('#called-view .countdown').textContent(), /^\d+:\d\d$/);
    await screenshot(t, cab.page, 'cabinet-called');
    const right = await code.textContent();
    const wrong = right === '000000' ? '111111' : '000000';
    await cab.page.keyboard.type(wrong);
    await cab.page.keyboard.press('Enter');
    const unlockError = cab.page.locator('#unlock-error');
    await unlockError.waitFor({ state: 'visible', ...WAIT });
    assert.match(await unlockError.textContent(), /^unlock: bad_code.*4 attempt\(s\) left/);
    await cab.page.keyboard.type(right);
    await cab.page.keyboard.press('Enter');
    await cab.page.locator('#unlock-result', { hasText: 'Unlocked' }).waitFor(WAIT);
    await phone.page.locator('#turn').waitFor({ state: 'hidden', ...WAIT });

    await cab.page.locator('#started').click();
    await cab.page.locator('#game-result', { hasText: 'game started' }).waitFor(WAIT);
    await cab.page.locator('#score1').fill('4200');
    await cab.page.locator('#over').click();
    await cab.page.locator('#game-result', { hasText: 'game over' }).waitFor(WAIT);
    await phone.page.locator('#last-score', { hasText: '4200' }).waitFor(WAIT);
    await phone.page.locator('#reservations .pill-completed').waitFor(WAIT);
    await screenshot(t, phone.page, 'phone-score');
    cab.check();
    phone.check();
  });

  test('phone: reserve and cancel (refunded), buy tickets; the admin sees the purchase', async (t) => {
    const admin = await openPage(t, `/admin.html?token=${encodeURIComponent(adminToken)}`);
    await admin.page.locator('#conn', { hasText: 'online' }).waitFor(WAIT);
    const { page, check } = await openPage(t, `/phone.html?token=${encodeURIComponent(aliceToken)}`);
    await page.locator('#balance[data-balance]').waitFor(WAIT);
    const before = Number(await page.locator('#balance').getAttribute('data-balance'));

    // Pixel Puzzle (game 4, one ticket) on arcade 3, whose cabinet is offline: it waits.
    const arcade = page.locator('li[data-arcade-id="3"]');
    await arcade.locator('select').selectOption('4');
    await arcade.locator('button', { hasText: 'Reserve' }).click();
    const row = page.locator('#reservations li', { has: page.locator('.pill-waiting') });
    await row.waitFor(WAIT);
    await page.locator(`#balance[data-balance="${before - 1}"]`).waitFor(WAIT);
    await row.filter({ hasText: 'position 1' }).waitFor(WAIT);
    assert.match(await row.textContent(), /ETA .*\(estimate\)/);
    await page.locator('#queue-view[data-arcade="3"] li.mine').waitFor(WAIT); // the page watches it
    await row.locator('button', { hasText: 'Cancel' }).click();
    await page.locator('#reservations .pill-cancelled').waitFor(WAIT);
    await page.locator(`#balance[data-balance="${before}"]`).waitFor(WAIT);

    await page.locator('#offers li[data-offer-id="1"] button', { hasText: 'Buy' }).click();
    await page.locator(`#balance[data-balance="${before + 10}"]`).waitFor(WAIT);
    await page.locator('#log', { hasText: 'purchase' }).waitFor(WAIT);
    await screenshot(t, page, 'phone-cancel-buy');
    await admin.page.locator('#log li', { hasText: 'uid=demo-alice' }).filter({ hasText: 'purchase' }).waitFor(WAIT);
    await admin.page.locator('#stats-view tr[data-kind="player"] td.num', { hasText: /^[1-9]/ }).waitFor(WAIT);
    await screenshot(t, admin.page, 'admin-events');
    check();
    admin.check();
  });

  test('the pages never write markup from data', () => {
    const dir = path.join(SOURCE_DIR, 'web-demo');
    for (const file of fs.readdirSync(dir).filter((f) => /\.(js|html)$/.test(f))) {
      const text = fs.readFileSync(path.join(dir, file), 'utf8');
      assert.doesNotMatch(text, /\.(inner|outer)HTML\s*\+?=|insertAdjacentHTML\(|document\.write(ln)?\(/, file);
    }
  });
});
