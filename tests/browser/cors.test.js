// CORS in a real browser: two tiny web apps on other origins (node http
// servers on other loopback ports) call the hub's REST API with fetch() and a
// bearer token. The hub runs with --cors-origins naming only the first: its
// calls work (a preflighted GET with Authorization, a POST with JSON and an
// Idempotency-Key, reading Retry-After-style exposed headers), while the
// second origin's calls are blocked by Chromium. Also: the hub's own pages
// cannot be framed by another origin (CSP frame-ancestors 'none').

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { applyDemo, freePort, startHub, startPostgres, startRedis, token, track } from '../lib/harness.js';

const CHROMIUM = process.env.RN_CHROMIUM || '/usr/bin/chromium';

/* A one-page web app on 127.0.0.1:port; its page may frame a URL given as ?frame=. */
async function startApp() {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    const frame = new URL(req.url, 'http://x').searchParams.get('frame');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>app</title>${frame ? `<iframe id="f" src="${frame}"></iframe>` : ''}`);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  track(`app :${port}`, () => new Promise((resolve) => server.close(resolve)), () => server.close());
  return { port, origin: `http://127.0.0.1:${port}` };
}

/* Runs in the page: GET /api/v1/auth/me and POST /api/v1/promos/use with the token. */
async function callHub({ hubUrl, tok }) {
  const out = {};
  try {
    const me = await fetch(`${hubUrl}/api/v1/auth/me`, { headers: { Authorization: `Bearer ${tok}` } });
    out.me = { status: me.status, body: await me.json() };
  } catch (err) {
    out.me = { blocked: err.name };
  }
  try {
    const promo = await fetch(`${hubUrl}/api/v1/promos/use`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json', 'Idempotency-Key': 'cors-1' },
      body: JSON.stringify({ code: 'NO-SUCH-CODE' }),
    });
    out.promo = { status: promo.status, body: await promo.json() };
  } catch (err) {
    out.promo = { blocked: err.name };
  }
  return out;
}

describe('CORS from another origin', { skip: !fs.existsSync(CHROMIUM) && `no chromium at ${CHROMIUM}` }, () => {
  let hub, browser, allowed, other, alice;

  before(async () => {
    [allowed, other] = await Promise.all([startApp(), startApp()]);
    const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
    await applyDemo(pg);
    hub = await startHub({ pg, redis, args: ['--cors-origins', allowed.origin] });
    alice = token(hub, 'demo-alice');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });

  after(async () => {
    await browser?.close();
  });

  async function openApp(t, app, query = '') {
    const context = await browser.newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    const console = [];
    page.on('console', (m) => console.push(m.text()));
    await page.goto(`${app.origin}/${query}`);
    return { page, console };
  }

  test('the allowed origin calls the API with a bearer token, preflights included', async (t) => {
    const { page } = await openApp(t, allowed);
    const out = await page.evaluate(callHub, { hubUrl: hub.url, tok: alice });
    assert.equal(out.me.status, 200, JSON.stringify(out));
    assert.match(JSON.stringify(out.me.body), /demo-alice/);
    // the promo call reached the hub and its JSON error is readable by the app
    assert.ok(out.promo.status >= 400 && out.promo.status < 500, JSON.stringify(out.promo));
    assert.equal(typeof out.promo.body?.error?.code, 'string');
  });

  test('another origin is blocked by the browser: no CORS headers for it', async (t) => {
    const { page, console } = await openApp(t, other);
    const out = await page.evaluate(callHub, { hubUrl: hub.url, tok: alice });
    assert.deepEqual(out.me, { blocked: 'TypeError' }, JSON.stringify(out));
    assert.deepEqual(out.promo, { blocked: 'TypeError' });
    assert.ok(console.some((l) => /CORS policy/.test(l)), console.join('\n'));
  });

  test("the hub's pages refuse to be framed by another origin", async (t) => {
    const { page, console } = await openApp(t, allowed, `?frame=${encodeURIComponent(`${hub.url}/admin.html`)}`);
    await page.waitForFunction(() => document.getElementById('f'), null, { timeout: 15000 });
    const frame = page.frames().find((f) => f !== page.mainFrame());
    // Chromium leaves a refused frame empty (about:blank or an error page), never the admin page
    const title = frame ? await frame.title().catch(() => '') : '';
    assert.doesNotMatch(title, /admin/i);
    assert.ok(console.some((l) => /frame-ancestors/.test(l)), console.join('\n'));
  });
});
