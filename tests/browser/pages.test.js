// Every page of web-demo/ on its own, in Debian's chromium against a real hub,
// PostgreSQL and Redis with the demo data: each renders under the static
// pages' Content-Security-Policy without an error, passes axe-core with no
// serious or critical violation, and is photographed at phone (390x844) and
// desktop size (build-test/screenshots/). /docs renders /openapi.json from the
// vendored Swagger UI. A route that fails shows a plain error and breaks
// nothing else. The sources hold no inline code, no markup from data and no
// other origin.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  HUB_BIN, SOURCE_DIR, applyDemo, http, run, startHub, startPostgres, startRedis, token,
} from '../lib/harness.js';

const listOf = (json) => (Array.isArray(json) ? json : json.items || json.offers || []);
import {
  HAVE_CHROMIUM, CHROMIUM, PHONE, WAIT, launch, openPage, screenshots, assertAccessible,
} from './browser.js';

const WEB = path.join(SOURCE_DIR, 'web-demo');

describe('web pages', { skip: !HAVE_CHROMIUM && `no chromium at ${CHROMIUM}` }, () => {
  let pg, hub, browser, alice, admin, newbie, key1;

  before(async () => {
    pg = await startPostgres();
    const redis = await startRedis();
    await applyDemo(pg);
    hub = await startHub({ pg, redis, args: ['--web-root', WEB] });
    alice = token(hub, 'demo-alice');
    admin = token(hub, 'demo-admin', { admin: true });
    newbie = token(hub, 'demo-new-pages');
    key1 = (await run(HUB_BIN, ['cabinet-key', '--database-url', pg.url, '1'])).stdout.trim();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
  });

  test('index: signed-in links only when opened through the printed link', async (t) => {
    const frag = `alice=${alice}&admin=${admin}&cabinet1=${key1}`;
    const { page, check } = await openPage(t, browser, `${hub.url}/#${frag}`);
    await page.locator('#demo-links a[data-who="cabinet1"]').waitFor(WAIT);
    assert.equal(new URL(page.url()).hash, '');
    await page.reload(); // the tab keeps them (sessionStorage), the address does not
    await page.locator('#demo-links a[data-who="alice"]').waitFor(WAIT);
    await assertAccessible(page, 'index');
    await screenshots(t, page, 'index');
    check();
  });

  test('phone: every tab, at phone size', async (t) => {
    const { page, check } = await openPage(t, browser, `${hub.url}/phone.html#token=${alice}`, { viewport: PHONE });
    await page.locator('#conn', { hasText: 'live' }).waitFor(WAIT);
    await page.locator('button.choice[data-arcade-id="3"]').waitFor(WAIT);
    assert.equal(await page.locator('button.choice').count(), 3);
    // Touch targets: 44 px at least, at 320 px wide too.
    await page.setViewportSize({ width: 320, height: 700 });
    for (const b of await page.locator('button:visible, .tab').all()) {
      const box = await b.boundingBox();
      assert.ok(box.height >= 44, `${await b.textContent()} is ${box.height} px tall`);
    }
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `nothing wider than 320 px (${overflow})`);
    await page.setViewportSize(PHONE);
    await assertAccessible(page, 'phone play');
    await screenshots(t, page, 'phone-play');
    await page.locator('button.choice[data-arcade-id="1"]').click();
    await page.locator('button.choice[data-game-id="2"]').click();
    await page.getByLabel('Me and bob').waitFor(WAIT);
    await assertAccessible(page, 'phone reserve');
    await screenshots(t, page, 'phone-reserve');
    for (const tab of ['tickets', 'friends', 'history']) {
      await page.locator(`.tab[data-tab="${tab}"]`).click();
      await page.locator(`#view-${tab}`).waitFor({ state: 'visible', ...WAIT });
      await page.waitForTimeout(300); // its lists load
      await assertAccessible(page, `phone ${tab}`);
      await screenshots(t, page, `phone-${tab}`);
    }
    await page.locator('.tab[data-tab="friends"]').click();
    await page.locator('#friends li', { hasText: 'bob' }).waitFor(WAIT);
    await page.locator('#search-q').fill('bo');
    await page.locator('#search-go').click();
    await page.locator('#search-results li', { hasText: 'your friend' }).waitFor(WAIT);
    await page.locator('#events summary').click();
    await page.locator('#log').waitFor({ state: 'visible', ...WAIT });
    check();
  });

  test('phone: sign-up when the token has no profile', async (t) => {
    const { page, check } = await openPage(t, browser, `${hub.url}/phone.html#token=${newbie}`, { viewport: PHONE });
    await page.locator('#signup').waitFor({ state: 'visible', ...WAIT });
    await page.locator('#su-pseudo').fill('x');
    await page.locator('#su-first').fill('Dan');
    await page.locator('#su-last').fill('Page');
    await page.locator('#signup-go').click();
    await page.locator('#signup-error', { hasText: 'Player names are 3 to 32' }).waitFor(WAIT);
    await assertAccessible(page, 'sign-up');
    await screenshots(t, page, 'phone-signup');
    await page.locator('#su-pseudo').fill('dan_page');
    await page.locator('#signup-go').click();
    await page.locator('#view-play', { hasText: 'Where do you play?' }).waitFor(WAIT);
    check();
  });

  test('phone: a failing route is said in plain words, the rest works', async (t) => {
    const { page, check } = await openPage(t, browser, `${hub.url}/phone.html#token=${alice}`, {
      viewport: PHONE,
      prepare: (context) => context.route('**/api/v1/tickets/offers', (route) => route.fulfill({
        status: 502, contentType: 'text/html', body: '<html><body>Bad Gateway</body></html>',
      })),
    });
    await page.locator('button.choice[data-arcade-id="1"]').waitFor(WAIT);
    await page.locator('.tab[data-tab="tickets"]').click();
    await page.locator('#tickets-error', { hasText: 'Bad Gateway.' }).waitFor(WAIT);
    await page.locator('#balance[data-balance]').waitFor(WAIT);
    check();
  });

  test('cabinet: the attract screen and its keypad', async (t) => {
    const { page, check } = await openPage(t, browser, `${hub.url}/cabinet.html#key=${key1}`);
    await page.locator('#conn', { hasText: 'live' }).waitFor(WAIT);
    await page.locator('#arcade-name', { hasText: 'Retronova Paris Bastille' }).waitFor(WAIT);
    assert.equal(new URL(page.url()).hash, '');
    // Nobody called: the keyboard types nothing anywhere.
    await page.keyboard.type('123');
    await page.keyboard.press('Enter');
    assert.equal(await page.locator('body').getAttribute('data-phase'), 'attract');
    await assertAccessible(page, 'cabinet');
    await screenshots(t, page, 'cabinet-attract');
    check();
  });

  test('admin: the console with its board, charts and actions', async (t) => {
    const { page, check } = await openPage(t, browser, `${hub.url}/admin.html#token=${admin}`);
    await page.locator('#conn', { hasText: 'live' }).waitFor(WAIT);
    await page.locator('#board article[data-arcade-id="3"]').waitFor(WAIT);
    await page.locator('#freshness', { hasText: 'live' }).waitFor(WAIT);
    await page.locator('#kpi-process', { hasText: /^pid \d+$/ }).waitFor(WAIT);
    assert.equal(await page.locator('.charts canvas').count() >= 4, true, 'four charts drawn');
    // The deployment's processes (stats.deployment): this hub alone, live.
    const row = page.locator('#deploy-rows tr[data-pid]', { hasText: 'this console' });
    await row.waitFor(WAIT);
    assert.equal(await page.locator('#deploy-rows tr[data-pid]').count(), 1);
    assert.equal(await row.getAttribute('data-pid'), String(hub.proc.pid));
    await row.locator('td', { hasText: /^now$|^\d s ago$/ }).waitFor(WAIT);
    await page.locator('#deploy-count', { hasText: '1 process' }).waitFor(WAIT);
    // The catalogue edit form lists what it edits; a retire can be declined.
    await page.locator('#edit-id option[value="3"]').waitFor({ state: 'attached', ...WAIT });
    await page.locator('#edit-kind').selectOption('promo-codes');
    await page.locator('#edit-id option', { hasText: 'WELCOME10' }).waitFor({ state: 'attached', ...WAIT });
    await page.locator('#edit-retire').click();
    await page.locator('#confirm', { hasText: /Retire promo code \d+ \(WELCOME10\)\?/ }).waitFor(WAIT);
    await page.keyboard.press('Escape'); // Escape declines like Cancel
    await page.locator('#confirm').waitFor({ state: 'hidden', ...WAIT });
    assert.equal(await page.locator('#edit-ok').isHidden(), true);
    // A new promo code from its form; the same code again is refused in plain words.
    const code = `PAGES${Date.now() % 100000}`;
    await page.locator('#promo-code').fill(code);
    await page.locator('#promo-tickets').fill('5');
    await page.locator('#promo-form button').click();
    await page.locator('#confirm-text', { hasText: `Create the promo code ${code}: 5 ticket(s) per player, no limit?` }).waitFor(WAIT);
    await page.locator('#confirm-ok').click();
    await page.locator('#promo-ok', { hasText: `Promo code ${code} created (5 tickets).` }).waitFor(WAIT);
    await page.locator('#edit-id option', { hasText: code }).waitFor({ state: 'attached', ...WAIT });
    await page.locator('#promo-form button').click();
    await page.locator('#confirm-ok').click();
    await page.locator('#promo-error', { hasText: 'Another promo code already has this name.' }).waitFor(WAIT);
    // A new ticket offer, its price typed in euros.
    await page.locator('#offer-name').fill('Party pack');
    await page.locator('#offer-tickets').fill('40');
    await page.locator('#offer-price').fill('15.5');
    await page.locator('#offer-form button').click();
    await page.locator('#confirm-text', { hasText: 'Sell “Party pack”: 40 ticket(s) for €15.50?' }).waitFor(WAIT);
    await page.locator('#confirm-ok').click();
    await page.locator('#offer-ok', { hasText: /^Offer \d+ on sale: Party pack, 40 tickets for €15\.50\.$/ }).waitFor(WAIT);
    const offers = (await http(hub, 'GET', '/api/v1/tickets/offers')).json;
    assert.ok(listOf(offers).some((o) => o.name === 'Party pack' && o.price_cents === 1550), 'on sale');
    // A player's account: deleted, deleted again (said plainly), restored.
    await page.locator('#user-uid').fill('demo-bob');
    for (const [button, said] of [['#user-delete', 'demo-bob is deleted'], ['#user-delete', null], ['#user-restore', 'demo-bob is back.']]) {
      await page.locator(button).click();
      await page.locator('#confirm-ok').click();
      if (said) await page.locator('#user-ok', { hasText: said }).waitFor(WAIT);
      else await page.locator('#user-error', { hasText: 'This account is deleted already' }).waitFor(WAIT);
    }
    await page.locator('#log li', { hasText: 'demo-admin restored demo-bob' }).waitFor(WAIT);
    // A slot: emptying an empty one is refused; add, replace, empty.
    await page.locator('#slot-arcade').selectOption('3');
    await page.locator('#slot-n').fill('9');
    await page.locator('#slot-empty').click();
    await page.locator('#confirm-ok').click();
    await page.locator('#slot-error', { hasText: 'This arcade has no such slot.' }).waitFor(WAIT);
    await page.locator('#slot-game').selectOption('1');
    await page.locator('#slot-add').click();
    await page.locator('#confirm-ok').click();
    await page.locator('#slot-error', { hasText: 'This game is already on that arcade.' }).waitFor(WAIT);
    for (const [button, game, said] of [['#slot-add', '2', 'Galaxy Raiders is on Retronova Bordeaux Quai, slot 9.'],
      ['#slot-replace', '3', 'Slot 9 of Retronova Bordeaux Quai now holds Neon Racer.'],
      ['#slot-empty', '3', 'Slot 9 of Retronova Bordeaux Quai is empty.']]) {
      await page.locator('#slot-game').selectOption(game);
      await page.locator(button).click();
      await page.locator('#confirm-ok').click();
      await page.locator('#slot-ok', { hasText: said }).waitFor(WAIT);
    }
    // A confirmation can be declined: nothing happens.
    await page.locator('#rot-arcade').selectOption('2');
    await page.locator('#rotate-form button').click();
    await page.locator('#confirm', { hasText: 'Rotate the API key of Retronova Lyon Part-Dieu?' }).waitFor(WAIT);
    await page.locator('#confirm-cancel').click();
    assert.equal(await page.locator('#rotate-ok').isHidden(), true);
    await page.waitForTimeout(2500); // a few stats pushes on the charts
    await assertAccessible(page, 'admin');
    await screenshots(t, page, 'admin');
    check();
  });

  test('/docs renders /openapi.json from the vendored Swagger UI', async (t) => {
    // Swagger UI's needs beyond the pages' policy: none for scripts; it sets
    // style attributes from script only.
    const { page, check } = await openPage(t, browser, `${hub.url}/docs`);
    await page.locator('.swagger-ui .info .title', { hasText: 'Retronova Hub REST API' }).waitFor(WAIT);
    await page.locator('.opblock-summary-path', { hasText: '/api/v1/reservations' }).first().waitFor(WAIT);
    const external = await page.evaluate(() => performance.getEntriesByType('resource')
      .map((r) => r.name).filter((u) => !u.startsWith(location.origin)));
    assert.deepEqual(external, [], 'nothing from another origin');
    await screenshots(t, page, 'docs');
    check();
  });

  test('the sources: no inline code, no markup from data, no other origin', () => {
    for (const file of fs.readdirSync(WEB).filter((f) => /\.(js|html|css)$/.test(f))) {
      const text = fs.readFileSync(path.join(WEB, file), 'utf8');
      assert.doesNotMatch(text, /\.(inner|outer)HTML\s*\+?=|insertAdjacentHTML\(|document\.write(ln)?\(/, file);
      if (file.endsWith('.html')) {
        assert.doesNotMatch(text, /<script(?![^>]*\ssrc=)[^>]*>/i, `${file}: inline <script>`);
        assert.doesNotMatch(text, /<style/i, `${file}: <style>`);
        assert.doesNotMatch(text, /\son[a-z]+\s*=/i, `${file}: on*= handler`);
        assert.doesNotMatch(text, /\sstyle\s*=/i, `${file}: style attribute`);
        assert.doesNotMatch(text, /\s(src|href)\s*=\s*"(https?:)?\/\//i, `${file}: another origin`);
      }
    }
  });
});
