// What the browser suites share: Debian's chromium through playwright-core,
// pages opened under the Content-Security-Policy the hub's static pages are
// meant to carry (added here to each document, so a page that needs inline
// code or another origin fails now), a check that a page neither threw nor
// broke that policy, screenshots at phone and desktop size, and axe-core.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { SOURCE_DIR } from '../lib/harness.js';

export const CHROMIUM = process.env.RN_CHROMIUM || '/usr/bin/chromium';
export const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
export const SHOTS = process.env.RN_SCREENSHOT_DIR || path.join(SOURCE_DIR, 'build-test', 'screenshots');
export const WAIT = { timeout: 20000 };
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 900 };
export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self' ws: wss:; frame-ancestors 'none'";

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export async function launch() {
  fs.mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
      // A document answered through route.fulfill (to add the CSP) counts as
      // from a public address, and Local Network Access would then refuse its
      // socket to 127.0.0.1.
      '--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests'],
  });
}

/*
 * A fresh context (own sessionStorage) and page at url. Records uncaught
 * exceptions, console errors (a CSP violation is one) other than failed loads
 * and sockets that could not connect (a hub restart makes those); check()
 * asserts there were none. opts: viewport, csp (default the policy above; a
 * string to use another), prepare(context) and watch(page) before the page loads.
 */
export async function openPage(t, browser, url, { viewport = DESKTOP, csp = CSP, prepare, watch } = {}) {
  const context = await browser.newContext({ viewport });
  if (csp) {
    await context.route('**/*', async (route) => {
      if (route.request().resourceType() !== 'document') return route.continue();
      const response = await route.fetch();
      return route.fulfill({ response, headers: { ...response.headers(), 'content-security-policy': csp } });
    });
  }
  if (prepare) await prepare(context);
  const page = await context.newPage();
  const thrown = [];
  page.on('pageerror', (err) => thrown.push(err.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|WebSocket connection to/.test(m.text())) thrown.push(m.text());
  });
  t?.after(() => context.close().catch(() => {})); // null t: the page lives until the browser closes
  if (watch) watch(page);
  await page.goto(url);
  return { page, context, check: () => assert.deepEqual(thrown, [], 'the page threw or broke its CSP') };
}

/* name-phone.png and name-desktop.png (full page); the viewport is put back. */
export async function screenshots(t, page, name) {
  const was = page.viewportSize();
  for (const [label, size] of [['phone', PHONE], ['desktop', DESKTOP]]) {
    await page.setViewportSize(size);
    await page.evaluate(() => window.scrollTo(0, 0)); // sticky headers at the top of the picture
    await page.waitForTimeout(150); // a resize re-lays out (charts redraw on 'resize')
    const file = path.join(SHOTS, `${name}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    t.diagnostic(`screenshot: ${file}`);
  }
  await page.setViewportSize(was);
}

/* axe-core on the page as it is: resolves the serious and critical violations, described. */
export async function axeViolations(page) {
  await page.evaluate(`${AXE}\n;0`); // DevTools evaluation: not subject to the page's CSP
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export async function assertAccessible(page, what) {
  const bad = await axeViolations(page);
  assert.deepEqual(bad, [], `${what}: axe-core serious/critical violations`);
}
