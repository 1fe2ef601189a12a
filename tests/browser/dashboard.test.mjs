// Browser tests of the dashboard (frontend/): each run starts its own larder on a free
// port with a fresh SQLite file and the demo catalog, and drives Debian's Chromium with
// playwright-core. Run: node --test tests/browser/
//
//   LARDER_BIN   server binary (default target/debug/larder, from the repository root)
//   CHROMIUM     browser binary (default /usr/bin/chromium)
//
// Also writes docs/dashboard.png, a desktop screenshot after the data loaded.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkBinary, freePort, launchChromium, ROOT, startLarder as startIn, stopAll } from './larder.mjs';

const XSS_NAME = '<img src=x onerror=alert(1)>';

let tmp;
let browser;
let larder; // the server most tests share

const startLarder = (name, extraEnv) => startIn(tmp, name, extraEnv);

before(async () => {
  await checkBinary();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'larder-browser-'));
  [larder, browser] = await Promise.all([startLarder('main'), launchChromium()]);
});

after(async () => {
  await browser?.close();
  await stopAll();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------- page helpers

/**
 * Opens the dashboard in a fresh browser context (its own sessionStorage). Records
 * JavaScript dialogs, page errors and CSP violations; check() asserts there were none.
 */
async function openDashboard({ server = larder, query = '', viewport = { width: 1280, height: 900 }, onRequest = null } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  // Every URL the page asks for, with the `Referer` it sends.
  if (onRequest) page.on('request', (r) => onRequest(`${r.url()} referer=${r.headers().referer ?? ''}`));
  page.setDefaultTimeout(15_000);
  const dialogs = [];
  const problems = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/.test(message.text())) {
      problems.push(`CSP: ${message.text()}`);
    }
  });
  await page.goto(`${server.url}/${query}`);
  await page.waitForSelector('#product-rows tr');
  await page.waitForSelector('#load-meta .source');
  return {
    page,
    dialogs,
    async close() {
      await context.close();
      assert.deepEqual(problems, [], 'the page reported errors');
    },
  };
}

/** Runs `action` and waits for the product list's next load report; returns it. */
async function nextLoad(page, action) {
  await page.evaluate(() => document.querySelector('#load-meta > *')?.setAttribute('data-old', ''));
  await action();
  await page.waitForSelector('#load-meta > :not([data-old])');
  return page.evaluate(() => {
    const text = (selector) => document.querySelector(`#load-meta ${selector} dd`)?.textContent ?? null;
    return {
      source: text('.source'),
      sql: text('.sql'),
      trips: text('.trips'),
      time: text('.time'),
      xCache: text('.x-cache'),
      error: document.querySelector('#load-meta .form-error')?.textContent ?? null,
    };
  });
}

/** Types into the search box and waits for the list to show that search. */
async function search(page, text) {
  return nextLoad(page, () => page.fill('#f-search', text));
}

const rowNames = (page) => page.$$eval('#product-rows button[data-id]', (buttons) => buttons.map((b) => b.textContent));

const detailsFields = (page) =>
  page.$$eval('#details-fields > div', (items) =>
    Object.fromEntries(items.map((d) => [d.querySelector('dt').textContent, d.querySelector('dd').textContent])),
  );

const cardNumber = async (page, id) => Number((await page.textContent(`#${id}`)).replace(/[^\d.]/g, ''));

/** Creates a product through the form; returns once the list has been reloaded. */
async function createProduct(page, { name, description = '', price, category, stock }) {
  await page.click('#new-product');
  await page.fill('#e-name', name);
  await page.fill('#e-description', description);
  await page.fill('#e-price', price);
  await page.fill('#e-category', category);
  await page.fill('#e-stock', stock);
  await nextLoad(page, () => page.click('#editor-submit'));
  assert.ok(await page.isHidden('#editor-dialog'));
}

// ---------------------------------------------------------------- scenarios

test('no dashboard module parses strings as HTML', async () => {
  const dir = path.join(ROOT, 'frontend');
  for (const file of (await readdir(dir)).filter((f) => f.endsWith('.js'))) {
    const text = await readFile(path.join(dir, file), 'utf8');
    assert.doesNotMatch(text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|DOMParser/, file);
  }
});

test('a second load of the same page comes from the cache, timed in ms', async () => {
  const { page, close } = await openDashboard();
  const first = await page.evaluate(() => document.querySelector('#load-meta .source dd').textContent);
  assert.ok(['database', 'both'].includes(first), `first load: ${first}`);
  assert.equal(await page.locator('#product-rows tr').count(), 20);
  assert.equal(await page.textContent('#page-info'), '1–20 of 1,000');

  const second = await nextLoad(page, () => page.click('#load'));
  assert.equal(second.source, 'cache');
  assert.equal(second.sql, '0');
  assert.equal(second.xCache, 'HIT');
  assert.match(second.time, /^\d+(\.\d+)? ms$/);
  assert.match(second.trips, /^\d+$/);

  const log = await page.$$eval('#log-rows tr', (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.deepEqual(log[0].slice(0, 3), ['ProductsPage', 'cache', 'HIT']);
  assert.match(log[0][3], / ms$/);
  await close();
});

test('filters, sort and cursor pages', async () => {
  const { page, close } = await openDashboard();
  await nextLoad(page, () => page.selectOption('#f-sort', 'PRICE'));
  await nextLoad(page, () => page.selectOption('#f-direction', 'DESC'));
  const prices = await page.$$eval('#product-rows tr', (rows) => rows.map((r) => Number(r.cells[3].textContent)));
  assert.deepEqual(prices, [...prices].sort((a, b) => b - a));

  const firstPage = await rowNames(page);
  assert.ok(await page.isDisabled('#page-prev'));
  await nextLoad(page, () => page.click('#page-next'));
  assert.equal(await page.textContent('#page-info'), '21–40 of 1,000');
  const secondPage = await rowNames(page);
  assert.ok(!secondPage.some((n) => firstPage.includes(n)), 'page 2 repeats page 1');
  await nextLoad(page, () => page.click('#page-prev'));
  assert.deepEqual(await rowNames(page), firstPage);

  const category = await page.$eval('#f-category option:nth-child(2)', (o) => ({ value: o.value, name: o.textContent.replace(/ \(.*/, '') }));
  await nextLoad(page, () => page.selectOption('#f-category', category.value));
  const categories = await page.$$eval('#product-rows tr', (rows) => rows.map((r) => r.cells[2].textContent));
  assert.ok(categories.length > 0 && categories.every((c) => c === category.name), categories.join());

  await nextLoad(page, async () => {
    await page.fill('#f-min', '100');
    await page.fill('#f-max', '200');
  });
  const filtered = await page.$$eval('#product-rows tr', (rows) => rows.map((r) => Number(r.cells[3].textContent)));
  assert.ok(filtered.every((p) => p >= 100 && p <= 200), filtered.join());
  await close();
});

test('create a product, find it, edit it with an inline error first, then delete it', async () => {
  const { page, close } = await openDashboard({ query: `#token=${larder.token}` });
  const name = `Test Teapot ${randomBytes(3).toString('hex')}`;
  await createProduct(page, { name, description: 'Cast iron, 0.8 l', price: '12.50', category: 'Test Kitchen', stock: '7' });
  assert.match(await page.textContent('#toast'), /Created “Test Teapot/);

  await search(page, name);
  assert.deepEqual(await rowNames(page), [name]);
  const row = await page.$$eval('#product-rows tr td', (cells) => cells.map((c) => c.textContent));
  assert.deepEqual(row.slice(1), [name, 'Test Kitchen', '12.50', '7', 'v1']);
  await page.waitForSelector('#f-category option:has-text("Test Kitchen (1)")', { state: 'attached' });

  // Details, then the edit form: the server's BAD_USER_INPUT lands under the price field.
  await page.click(`#product-rows button[data-id]`);
  await page.waitForSelector('#details-fields > div');
  assert.equal(await page.textContent('#details-title'), name);
  assert.equal((await detailsFields(page)).Description, 'Cast iron, 0.8 l');
  await page.click('#details-edit');
  await page.fill('#e-price', '1.234');
  await page.click('#editor-submit');
  await page.waitForSelector('#e-price-error:not(:empty)');
  assert.match(await page.textContent('#e-price-error'), /two decimals/);
  assert.equal(await page.getAttribute('#e-price', 'aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'e-price');

  await page.fill('#e-price', '15.75');
  await page.fill('#e-stock', '0');
  await nextLoad(page, () => page.click('#editor-submit'));
  await page.waitForSelector('#editor-dialog', { state: 'hidden' });
  const fields = await detailsFields(page);
  assert.equal(fields.Price, '15.75');
  assert.equal(fields.Version, '2');
  assert.match(fields.Stock, /out of stock/);
  const edited = await page.$$eval('#product-rows tr td', (cells) => cells.map((c) => c.textContent));
  assert.deepEqual(edited.slice(3), ['15.75', 'out of stock', 'v2']);

  // Delete, with the confirmation inside the dialog.
  await page.click('#details-delete');
  await page.click('#details-confirm-delete');
  await page.waitForSelector('#details-dialog', { state: 'hidden' });
  assert.match(await page.textContent('#toast'), /Deleted/);
  await page.waitForSelector('#products-empty', { state: 'visible' });
  assert.deepEqual(await rowNames(page), []);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'products', 'the focus was lost');
  await close();
});

test('the cache statistics follow the requests; clear cache and reset stats', async () => {
  const { page, close } = await openDashboard({ query: `#token=${larder.token}` });
  await page.waitForFunction(() => document.querySelector('#stat-hits').textContent !== '–');
  const hits = await cardNumber(page, 'stat-hits');
  await nextLoad(page, () => page.click('#load'));
  await page.waitForFunction((before) => Number(document.querySelector('#stat-hits').textContent.replace(/\D/g, '')) > before, hits);
  assert.equal(await page.$$eval('#entity-rows tr th', (ths) => ths.map((t) => t.textContent).join()), 'product,category,list,response');
  assert.match(await page.textContent('#stat-backend'), /memory\s*connected/);
  assert.match(await page.textContent('#stat-hit-rate'), /^\d+\.\d%$/);
  await page.waitForSelector('#hit-rate-chart svg polyline', { timeout: 8000 });
  assert.ok(await page.isHidden('#banner-cache'));

  await page.click('#clear-cache');
  await page.waitForFunction(() => /Cache cleared/.test(document.querySelector('#toast').textContent));
  const cleared = await nextLoad(page, () => page.click('#load'));
  assert.equal(cleared.source, 'database');

  await page.click('#reset-stats');
  await page.waitForFunction(() => /reset/.test(document.querySelector('#toast').textContent));
  await page.waitForFunction(() => document.querySelector('#stat-hits').textContent === '0');
  assert.equal(await page.textContent('#stat-misses'), '0');
  await close();
});

test('the performance comparison draws cached vs uncached bars', async () => {
  // Without the token the comparison is refused and says why.
  const anonymous = await openDashboard();
  await anonymous.page.click('#perf-run');
  await anonymous.page.waitForFunction(() => /admin token/.test(document.querySelector('#perf-result').textContent));
  await anonymous.close();

  const { page, close } = await openDashboard({ query: `#token=${larder.token}` });
  await page.fill('#perf-iterations', '500');
  await page.click('#perf-run');
  await page.waitForSelector('#perf-iterations-error:not(:empty)');
  assert.match(await page.textContent('#perf-iterations-error'), /iterations/);

  await page.selectOption('#perf-scenario', 'SINGLE_PRODUCT');
  await page.fill('#perf-iterations', '20');
  await page.click('#perf-run');
  await page.waitForSelector('#perf-result svg.bar-chart');
  assert.equal(await page.locator('#perf-result svg rect.bar-cached').count(), 4); // 3 bars + legend
  assert.equal(await page.locator('#perf-result svg rect.bar-uncached').count(), 4);
  assert.match(await page.textContent('#perf-speedup'), /^\d+\.\d×$/);
  const values = await page.$$eval('#perf-result svg text.value', (texts) => texts.map((t) => t.textContent));
  assert.equal(values.length, 6);
  assert.ok(values.every((v) => / ms$/.test(v)), values.join());
  const table = await page.$$eval('#perf-result table tbody tr', (rows) =>
    Object.fromEntries(rows.map((r) => [r.cells[0].textContent, [r.cells[1].textContent, r.cells[2].textContent]])),
  );
  assert.equal(table['SQL statements per run'][0], '0');
  assert.ok(Number(table['SQL statements per run'][1]) > 0);
  assert.match(table.p50[0], / ms$/);
  await close();
});

test('product data is shown as text, never as markup', async () => {
  const { page, dialogs, close } = await openDashboard({ query: `#token=${larder.token}` });
  await createProduct(page, { name: XSS_NAME, description: '<script>alert(2)</script>', price: '1.00', category: '<b>Bold</b>', stock: '1' });
  assert.equal(await page.textContent('#toast'), `Created “${XSS_NAME}”.`);
  await search(page, '<img');
  assert.deepEqual(await rowNames(page), [XSS_NAME]);
  assert.equal(await page.textContent('#product-rows td:nth-child(3)'), '<b>Bold</b>');
  await page.click('#product-rows button[data-id]');
  await page.waitForSelector('#details-fields > div');
  assert.equal(await page.textContent('#details-title'), XSS_NAME);
  assert.equal((await detailsFields(page)).Description, '<script>alert(2)</script>');
  assert.equal(await page.locator('img, b, main script, dialog script').count(), 0, 'markup from data was injected');
  await page.waitForTimeout(300);
  assert.deepEqual(dialogs, []);
  await close();
});

test('a phone-width screen: no horizontal scroll, key controls visible', async () => {
  const { page, close } = await openDashboard({ viewport: { width: 375, height: 740 } });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.equal(overflow, 0, 'the page scrolls sideways');
  for (const selector of ['#token-input', '#clear-cache', '#new-product', '#f-search', '#f-category', '#load', '#page-next', '#product-rows button', '#perf-run']) {
    const control = page.locator(selector).first();
    await control.scrollIntoViewIfNeeded();
    assert.ok(await control.isVisible(), `${selector} is not visible`);
    const box = await control.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 375, `${selector} sticks out: ${JSON.stringify(box)}`);
    assert.ok(box.height >= 24, `${selector} is too small to tap: ${box.height}px`);
  }
  await page.click('#product-rows button[data-id]');
  await page.waitForSelector('#details-fields > div');
  const dialog = await page.locator('#details-dialog').boundingBox();
  assert.ok(dialog.x >= 0 && dialog.x + dialog.width <= 375, JSON.stringify(dialog));
  await close();
});

test('keyboard: skip link, open a product with Enter, Escape gives the focus back', async () => {
  const { page, close } = await openDashboard();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip-link');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'products');

  const button = page.locator('#product-rows button[data-id]').first();
  await button.focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#details-fields > div');
  assert.ok(await page.evaluate(() => document.querySelector('#details-dialog').open));
  await page.keyboard.press('Escape');
  await page.waitForSelector('#details-dialog', { state: 'hidden' });
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), await button.getAttribute('data-id'));
  // A visible focus indicator.
  const outline = await button.evaluate((b) => getComputedStyle(b).outlineStyle);
  assert.notEqual(outline, 'none');
  await close();
});

test('token: taken from #token=, removed from the address bar, a wrong one is named', async () => {
  const requested = [];
  const { page, close } = await openDashboard({ query: '#products&token=wrong-token', onRequest: (url) => requested.push(url) });
  assert.equal(new URL(page.url()).hash, '#products', 'the token stayed in the address bar');
  assert.ok(!requested.some((url) => url.includes('wrong-token')), `the token went to the server: ${requested.join(' ')}`);
  const referrerPolicy = await page.evaluate(async () => (await fetch('/')).headers.get('referrer-policy'));
  assert.equal(referrerPolicy, 'no-referrer');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('larder.adminToken')), 'wrong-token');
  assert.equal(await page.inputValue('#token-input'), 'wrong-token');

  const name = `Token Test ${randomBytes(3).toString('hex')}`;
  await page.click('#new-product');
  await page.fill('#e-name', name);
  await page.fill('#e-price', '3.00');
  await page.fill('#e-category', 'Test Kitchen');
  await page.click('#editor-submit');
  await page.waitForSelector('#editor-error:not(:empty)');
  assert.match(await page.textContent('#editor-error'), /admin token was rejected/);
  assert.match(await page.textContent('#token-status'), /Rejected/);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'editor-token');

  // The right token, typed into the form's own token field, saves the product.
  await page.fill('#editor-token', larder.token);
  await page.click('#editor-submit');
  await page.waitForSelector('#editor-dialog', { state: 'hidden' });
  assert.equal(await page.inputValue('#token-input'), larder.token);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('larder.adminToken')), larder.token);

  // Kept for the session: a reload still has it.
  await page.reload();
  await page.waitForSelector('#product-rows tr');
  assert.equal(await page.inputValue('#token-input'), larder.token);

  // Without a token, a change says what is missing.
  await page.click('#token-forget');
  await page.click('#clear-cache');
  await page.waitForFunction(() => /needs the admin token/.test(document.querySelector('#toast').textContent));
  assert.match(await page.textContent('#token-status'), /Enter the token/);
  await close();
});

test('Redis down: a banner says the database serves; server down: a banner says so', async () => {
  const closedPort = await freePort();
  const server = await startLarder('redis-down', { CACHE_BACKEND: 'redis', REDIS_URL: `redis://127.0.0.1:${closedPort}/` });
  const { page, close } = await openDashboard({ server });
  await page.waitForSelector('#banner-cache', { state: 'visible' });
  assert.equal((await page.textContent('#banner-cache')).trim(), 'cache unreachable: serving from the database');
  assert.match(await page.textContent('#stat-backend'), /redis\s*unreachable/);
  assert.equal(await page.textContent('#load-meta .source dd'), 'database');

  await server.stop();
  await page.waitForSelector('#banner-offline', { state: 'visible', timeout: 8000 });
  assert.match(await page.textContent('#banner-offline'), /cannot be reached/);
  const failed = await nextLoad(page, () => page.click('#load'));
  assert.match(failed.error, /cannot be reached/);
  await close();
});

test('operations go as persisted queries: the text once per server, then the hash alone', async () => {
  const server = await startLarder('apq');
  const visit = async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const sent = [];
    page.on('response', (response) => {
      const request = response.request();
      if (!request.url().endsWith('/graphql') || request.method() !== 'POST') return;
      const body = request.postDataJSON();
      sent.push(
        response.json().then((answer) => ({
          op: body.operationName,
          code: answer.errors?.[0]?.extensions?.code ?? 'ok',
          text: 'query' in body,
          hash: body.extensions?.persistedQuery?.sha256Hash,
        })),
      );
    });
    await page.goto(`${server.url}/`);
    await page.waitForSelector('#product-rows tr');
    await page.waitForSelector('#load-meta .source');
    const answered = await Promise.all(sent);
    await context.close();
    return answered;
  };
  const first = await visit();
  const page = (sent) => sent.filter((r) => r.op === 'ProductsPage').map(({ code, text }) => [code, text]);
  // The first visit registers: the hash is unknown, the text follows with it.
  assert.deepEqual(page(first), [['PERSISTED_QUERY_NOT_FOUND', false], ['ok', true]], JSON.stringify(first));
  assert.ok(first.every((r) => /^[0-9a-f]{64}$/.test(r.hash)), JSON.stringify(first));
  // A fresh page on the same server sends only hashes, each answered at once.
  const second = await visit();
  assert.deepEqual(page(second), [['ok', false]], JSON.stringify(second));
  assert.ok(second.every((r) => !r.text && r.code === 'ok'), JSON.stringify(second));
  await server.stop();
});

test('live: a change made through the API shows up without a reload; a stopped server shows not live', async () => {
  const server = await startLarder('live');
  const { page, close } = await openDashboard({ server });
  await page.waitForFunction(() => document.querySelector('#live-status').dataset.state === 'live');
  assert.equal((await page.textContent('#live-status')).trim(), 'live');
  const id = await page.getAttribute('#product-rows button[data-id]', 'data-id');
  await page.click(`#product-rows button[data-id="${id}"]`);
  await page.waitForFunction(() => document.querySelector('#details-dialog').open && document.querySelector('#details-fields dd'));
  // Another client renames it (this page sends nothing).
  const renamed = 'Aardvark mug, renamed elsewhere';
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${server.token}` },
    body: JSON.stringify({
      query: 'mutation($id: ID!, $name: String!) { updateProduct(id: $id, input: { name: $name }) { id } }',
      variables: { id, name: renamed },
    }),
  });
  assert.equal((await response.json()).errors, undefined);
  await page.waitForFunction(
    ([id, name]) => document.querySelector(`#product-rows button[data-id="${id}"]`)?.textContent === name,
    [id, renamed],
  );
  await page.waitForFunction((name) => document.querySelector('#details-title').textContent === name, renamed);
  // The server goes away: the page says it is not live any more.
  await server.stop();
  await page.waitForFunction(() => document.querySelector('#live-status').dataset.state !== 'live');
  assert.match(await page.textContent('#live-status'), /not live/);
  await close();
});

test('screenshot of the desktop dashboard (docs/dashboard.png)', async () => {
  const { page, close } = await openDashboard({ query: `#token=${larder.token}`, viewport: { width: 1280, height: 900 } });
  await nextLoad(page, () => page.click('#load'));
  await page.selectOption('#perf-scenario', 'LIST_PAGE');
  await page.fill('#perf-iterations', '50');
  await page.click('#perf-run');
  await page.waitForSelector('#perf-result svg.bar-chart');
  // A few stats samples, so the hit-rate chart has a line.
  await page.waitForFunction(() => document.querySelector('#hit-rate-chart polyline')?.points.length >= 4, null, { timeout: 12_000 });
  await page.waitForSelector('#toast:empty', { state: 'attached' });
  await mkdir(path.join(ROOT, 'docs'), { recursive: true });
  await page.screenshot({ path: path.join(ROOT, 'docs/dashboard.png'), fullPage: true });
  await close();
});
