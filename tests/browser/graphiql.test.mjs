// GraphiQL as served from the binary: it must work with every request to a host other
// than the loopback blocked (the machine is offline, or behind a strict proxy), under its
// CSP, with the admin token of a `#token=` link preset, and serve exactly the vendored
// bytes recorded in frontend/vendor/graphiql/SOURCES.json.
// Run: node --test tests/browser/
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkBinary, launchChromium, ROOT, startLarder, stopAll } from './larder.mjs';

const VENDOR = path.join(ROOT, 'frontend/vendor/graphiql');
let tmp;
let browser;
let larder;

before(async () => {
  await checkBinary();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'larder-graphiql-'));
  [larder, browser] = await Promise.all([startLarder(tmp, 'main'), launchChromium()]);
});

after(async () => {
  await browser?.close();
  await stopAll();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A page whose requests may reach only the loopback; records what was blocked and any
 * page error or CSP violation. */
async function openOffline(url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const blocked = [];
  const problems = [];
  await context.route('**/*', (route) => {
    const { protocol, hostname } = new URL(route.request().url());
    const loopback = hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]';
    if (loopback || protocol === 'data:' || protocol === 'blob:') return route.continue();
    blocked.push(route.request().url());
    return route.abort('internetdisconnected');
  });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  await page.goto(url);
  return { page, blocked, problems, close: () => context.close() };
}

const editor = (selector) => `document.querySelector('${selector} .CodeMirror').CodeMirror`;

test('GraphiQL runs a query and a mutation offline, with the token preset', async () => {
  const { page, blocked, problems, close } = await openOffline(`${larder.url}/graphql#token=${larder.token}`);
  await page.waitForSelector('.graphiql-container .graphiql-query-editor .CodeMirror');
  // The token left the address bar, and sits in the headers editor.
  assert.equal(new URL(page.url()).hash, '');
  // The variables and headers editors share the tools pane; one of them holds it.
  const headers = await page.evaluate(() =>
    [...document.querySelectorAll('.graphiql-editor-tool .CodeMirror')].map((e) => e.CodeMirror.getValue()).join('\n'),
  );
  assert.match(headers, new RegExp(`Bearer ${larder.token}`));

  const run = async (query, expect) => {
    await page.evaluate(`${editor('.graphiql-query-editor')}.setValue(${JSON.stringify(query)})`);
    await page.click('.graphiql-execute-button');
    await page.waitForFunction(
      (needle) => document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror.getValue().includes(needle),
      expect,
    );
    return JSON.parse(await page.evaluate(`${editor('.graphiql-response')}.getValue()`));
  };
  const read = await run('{ categories { name productCount } }', 'Bakery');
  assert.equal(read.data.categories.length, 10);
  assert.equal(read.data.categories[0].name, 'Bakery');
  // A mutation needs the admin token: it works only because the header was preset.
  const write = await run('mutation { clearCache { backend cleared } }', 'cleared');
  assert.deepEqual(write.data.clearCache, { backend: 'memory', cleared: true });

  await close();
  assert.deepEqual(blocked, [], 'GraphiQL asked for other hosts');
  assert.deepEqual(problems, [], 'the page reported errors');
});

test('the playground is served under a CSP, and served only with introspection on', async () => {
  const page = await fetch(`${larder.url}/graphql`, { headers: { accept: 'text/html' } });
  assert.equal(page.status, 200);
  const csp = page.headers.get('content-security-policy');
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /connect-src 'self'/);
  assert.doesNotMatch(await page.text(), /https?:\/\/(?!www\.w3\.org)/, 'the page names no other host');

  const off = await startLarder(tmp, 'no-introspection', { INTROSPECTION: 'false' });
  const offPage = await fetch(`${off.url}/graphql`, { headers: { accept: 'text/html' } });
  assert.equal(offPage.status, 200);
  const text = await offPage.text();
  assert.match(text, /GraphiQL is off/);
  assert.match(text, /INTROSPECTION=false/);
  assert.doesNotMatch(text, /graphiql\.min\.js/);
  await off.stop();
});

test('the served vendored files are exactly those recorded in SOURCES.json', async () => {
  const sources = JSON.parse(await readFile(path.join(VENDOR, 'SOURCES.json'), 'utf8'));
  assert.ok(sources.length >= 5, 'GraphiQL, its CSS, React, ReactDOM and graphql-ws');
  for (const { file, sha256, version, package: pkg } of sources) {
    assert.match(version, /^\d+\.\d+\.\d+$/, `${pkg} is pinned to an exact version`);
    const onDisk = createHash('sha256').update(await readFile(path.join(VENDOR, file))).digest('hex');
    assert.equal(onDisk, sha256, `${file} in the repository`);
    const served = await fetch(`${larder.url}/vendor/graphiql/${file}`);
    assert.equal(served.status, 200, file);
    const body = Buffer.from(await served.arrayBuffer());
    assert.equal(createHash('sha256').update(body).digest('hex'), sha256, `${file} as served`);
  }
});
