// Apollo Client's own persisted-queries link (APQ) against larder: the link sends a
// hash, gets PERSISTED_QUERY_NOT_FOUND, retries with the document, and from then on
// sends only the hash, by POST or by GET (useGETForHashedQueries). With
// LARDER_TEST_REDIS_URL set, a document registered through one instance is answered by
// another from its hash alone. Run: node --test tests/clients/
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

import { ADMIN_TOKEN, startLarder } from '../conformance/server.mjs';

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

/** An Apollo client of `url` whose every HTTP request is recorded in `sent`. */
function apollo(url, { get = false } = {}) {
  const sent = [];
  const fetchLogged = async (input, init = {}) => {
    const u = new URL(input);
    const body = init.body ? JSON.parse(init.body) : null;
    const params = Object.fromEntries(u.searchParams);
    const response = await fetch(input, init);
    sent.push({
      method: init.method ?? 'GET',
      status: response.status,
      hasQuery: Boolean(body?.query ?? params.query),
      hash: (body?.extensions ?? JSON.parse(params.extensions ?? '{}')).persistedQuery?.sha256Hash,
    });
    return response;
  };
  const link = new PersistedQueryLink({ sha256, useGETForHashedQueries: get }).concat(
    new HttpLink({ uri: url, fetch: fetchLogged }),
  );
  return { client: new ApolloClient({ link, cache: new InMemoryCache() }), sent };
}

async function createProduct(url, name) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
    body: JSON.stringify({
      query: 'mutation($i: CreateProductInput!) { createProduct(input: $i) { id } }',
      variables: { i: { name, price: '2.50', category: 'Tea', stockQuantity: 4 } },
    }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body));
  return body.data.createProduct.id;
}

const PRODUCT = gql`
  query ApqProduct($id: ID!) {
    product(id: $id) {
      id
      name
    }
  }
`;

const server = await startLarder();
after(() => server.stop());

test('by POST: one miss registers the document, then the hash alone is sent', async () => {
  const id = await createProduct(server.url, 'Rooibos');
  const first = apollo(server.url);
  const { data } = await first.client.query({ query: PRODUCT, variables: { id } });
  assert.equal(data.product.name, 'Rooibos');
  assert.deepEqual(
    first.sent.map(({ method, status, hasQuery }) => [method, status, hasQuery]),
    [['POST', 404, false], ['POST', 200, true]],
  );
  assert.match(first.sent[0].hash, /^[0-9a-f]{64}$/);

  // Another client (a fresh page load) of the same document: the hash is enough.
  const second = apollo(server.url);
  const again = await second.client.query({ query: PRODUCT, variables: { id } });
  assert.equal(again.data.product.name, 'Rooibos');
  assert.deepEqual(second.sent.map(({ status, hasQuery }) => [status, hasQuery]), [[200, false]]);
});

test('by GET (useGETForHashedQueries): the hash goes in the URL, the document by POST once', async () => {
  const id = await createProduct(server.url, 'Hojicha');
  const query = gql`
    query ApqProductByGet($id: ID!) {
      product(id: $id) {
        name
        price
      }
    }
  `;
  const first = apollo(server.url, { get: true });
  const { data } = await first.client.query({ query, variables: { id } });
  assert.equal(data.product.name, 'Hojicha');
  assert.deepEqual(
    first.sent.map(({ method, status, hasQuery }) => [method, status, hasQuery]),
    [['GET', 404, false], ['POST', 200, true]],
  );
  const second = apollo(server.url, { get: true });
  const again = await second.client.query({ query, variables: { id } });
  assert.equal(again.data.product.price, '2.50');
  assert.deepEqual(second.sent.map(({ method, status }) => [method, status]), [['GET', 200]]);
});

test('across instances on Redis: registered through one, answered by another', async (t) => {
  const redis = process.env.LARDER_TEST_REDIS_URL;
  if (!redis) {
    t.skip('needs LARDER_TEST_REDIS_URL');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'larder-apq-'));
  const shared = {
    DATABASE_URL: `sqlite://${join(dir, 'shared.db')}?mode=rwc`,
    REDIS_URL: redis,
    CACHE_PREFIX: `larder-apq-${randomUUID()}:`,
  };
  const a = await startLarder(shared);
  const b = await startLarder(shared);
  try {
    const id = await createProduct(a.url, 'Genmaicha');
    const query = gql`
      query ApqAcross($id: ID!) {
        product(id: $id) {
          name
        }
      }
    `;
    const onA = apollo(a.url, { get: true });
    assert.equal((await onA.client.query({ query, variables: { id } })).data.product.name, 'Genmaicha');
    assert.equal(onA.sent.length, 2);
    const onB = apollo(b.url, { get: true });
    assert.equal((await onB.client.query({ query, variables: { id } })).data.product.name, 'Genmaicha');
    assert.deepEqual(onB.sent.map(({ method, status, hasQuery }) => [method, status, hasQuery]), [
      ['GET', 200, false],
    ]);
  } finally {
    await a.stop();
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
