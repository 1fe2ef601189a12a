// The graphql-ws client (the one Apollo Client, urql and GraphiQL use for
// subscriptions) against larder: it subscribes to productChanged on one instance and
// sees CREATED, UPDATED (new version, new name) and DELETED caused through another
// (both on one database and, with LARDER_TEST_REDIS_URL, one Redis; without it a
// single instance). Run: node --test tests/clients/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { ADMIN_TOKEN, startLarder } from '../conformance/server.mjs';

async function gql(url, query, variables = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body));
  return body.data;
}

/** Every change a subscription sees, and a way to wait for the n-th. */
function subscribe(client, query) {
  const seen = [];
  const waiting = [];
  const dispose = client.subscribe(
    { query },
    {
      next: (result) => {
        seen.push(result);
        for (const w of waiting.splice(0)) w();
      },
      error: (error) => seen.push({ error }),
      complete: () => {},
    },
  );
  const nth = async (n) => {
    while (seen.length < n) await new Promise((resolve) => waiting.push(resolve));
    return seen[n - 1];
  };
  return { seen, nth, dispose };
}

test('CREATED, UPDATED and DELETED made through one instance reach a subscriber on another', async () => {
  const redis = process.env.LARDER_TEST_REDIS_URL;
  const dir = mkdtempSync(join(tmpdir(), 'larder-ws-'));
  const shared = redis
    ? { DATABASE_URL: `sqlite://${join(dir, 'shared.db')}?mode=rwc`, REDIS_URL: redis, CACHE_PREFIX: `larder-ws-${randomUUID()}:` }
    : {};
  const a = await startLarder(shared);
  const b = redis ? await startLarder(shared) : a;
  const client = createClient({
    url: b.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: false,
  });
  try {
    await new Promise((resolve, reject) => {
      client.on('connected', resolve);
      client.on('error', reject);
    });
    const changes = subscribe(
      client,
      'subscription { productChanged { kind id version product { name price } } }',
    );
    // The subscription is registered on the server once its first message went out.
    await new Promise((r) => setTimeout(r, 200));

    const { createProduct } = await gql(
      a.url,
      'mutation($i: CreateProductInput!) { createProduct(input: $i) { id } }',
      { i: { name: 'Lapsang', price: '6.00', category: 'Tea', stockQuantity: 2 } },
    );
    const id = createProduct.id;
    const created = (await changes.nth(1)).data.productChanged;
    assert.deepEqual(created, { kind: 'CREATED', id, version: 1, product: { name: 'Lapsang', price: '6.00' } });

    await gql(a.url, 'mutation($id: ID!) { updateProduct(id: $id, input: { name: "Lapsang souchong" }) { id } }', { id });
    const updated = (await changes.nth(2)).data.productChanged;
    assert.deepEqual(updated, { kind: 'UPDATED', id, version: 2, product: { name: 'Lapsang souchong', price: '6.00' } });

    await gql(a.url, 'mutation($id: ID!) { deleteProduct(id: $id) { id } }', { id });
    const deleted = (await changes.nth(3)).data.productChanged;
    assert.deepEqual(deleted, { kind: 'DELETED', id, version: 3, product: null });
    changes.dispose();
  } finally {
    await client.dispose();
    await a.stop();
    if (b !== a) await b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a query over the socket is refused with a clear error', async () => {
  const server = await startLarder();
  const client = createClient({ url: server.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
  try {
    const result = await new Promise((resolve) => {
      const seen = [];
      client.subscribe({ query: '{ __typename }' }, {
        next: (r) => seen.push(r),
        error: (e) => resolve({ error: e }),
        complete: () => resolve(seen[0]),
      });
    });
    const error = result.errors?.[0] ?? result.error?.[0];
    assert.equal(error.extensions.code, 'BAD_REQUEST', JSON.stringify(result));
    assert.match(error.message, /only subscriptions/);
  } finally {
    await client.dispose();
    await server.stop();
  }
});
