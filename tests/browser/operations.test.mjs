// Validates every GraphQL operation of the dashboard (frontend/operations.js) against the
// checked-in schema.graphql with graphql-js, and checks that no other dashboard module
// carries an operation of its own. Run: node --test tests/browser/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { buildSchema, parse, validate, Kind } from 'graphql';

import * as operations from '../../frontend/operations.js';

const root = new URL('../../', import.meta.url);
const schema = buildSchema(await readFile(new URL('schema.graphql', root), 'utf8'));

test('operations.js exports at least one operation', () => {
  assert.ok(Object.keys(operations).length > 0);
});

for (const [name, source] of Object.entries(operations)) {
  test(`${name} is valid against schema.graphql`, () => {
    const document = parse(source);
    const errors = validate(schema, document).map((e) => e.message);
    assert.deepEqual(errors, [], `${name}:\n${errors.join('\n')}`);
    const ops = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
    assert.equal(ops.length, 1, `${name} must hold exactly one operation`);
    assert.ok(ops[0].name, `${name} must be named (the request log shows the name)`);
  });
}

test('operation names are unique', () => {
  const names = Object.values(operations).map(
    (source) => parse(source).definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION).name.value,
  );
  assert.equal(new Set(names).size, names.length, names.join(', '));
});

test('no other dashboard module holds a GraphQL operation', async () => {
  const dir = new URL('frontend/', root);
  const modules = (await readdir(dir)).filter((f) => f.endsWith('.js') && f !== 'operations.js');
  for (const file of modules) {
    const text = await readFile(new URL(file, dir), 'utf8');
    assert.doesNotMatch(text, /\b(query|mutation|fragment)\s+[A-Z]\w*\s*[({]/, file);
  }
});

test('frontend/persisted.js holds the hash of every operation (node tests/browser/write-hashes.mjs)', async () => {
  const { render } = await import('./write-hashes.mjs');
  const written = await readFile(new URL('frontend/persisted.js', root), 'utf8');
  assert.equal(written, render(), 'frontend/persisted.js is out of date: run node tests/browser/write-hashes.mjs');
});
