// The schema a running larder serves (introspection over HTTP) must be the checked-in
// schema.graphql. Both sides are rebuilt with graphql-js, sorted and printed, so only
// differences that matter to clients show (order and formatting do not).
//
//   node tests/conformance/introspection.mjs
//
// Prints `1 passed, 0 failed` as the last line on success; on a mismatch, a line diff
// (`-` checked-in schema.graphql, `+` what the server introspects) and exit code 1.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildClientSchema,
  buildSchema,
  getIntrospectionQuery,
  Kind,
  lexicographicSortSchema,
  parse,
  printSchema,
} from 'graphql';
import { REPO_ROOT, startLarder } from './server.mjs';

const SDL_FILE = join(REPO_ROOT, 'schema.graphql');
const MAX_DIFF_LINES = 60;
const CONTEXT = 2;

// The standard introspection query, with graphql-js's optional parts that async-graphql
// serves turned on, so @specifiedBy(url:), @oneOf, deprecated arguments and input fields
// and `repeatable` directives are compared too. Not `schemaDescription`: async-graphql
// answers `__schema { description }` with the description of the __Schema type itself,
// not a description of this schema.
const INTROSPECTION_OPTIONS = {
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  inputValueDeprecation: true,
  oneOf: true,
  schemaDescription: false,
};

const normalize = (schema) => printSchema(lexicographicSortSchema(schema));

/** Field nesting depth of an operation, fragments inlined (as servers count it). */
function queryDepth(document) {
  const fragments = new Map(
    document.definitions
      .filter((d) => d.kind === Kind.FRAGMENT_DEFINITION)
      .map((d) => [d.name.value, d]),
  );
  const depth = (set) =>
    Math.max(
      0,
      ...set.selections.map((s) => {
        if (s.kind === Kind.FIELD) return 1 + (s.selectionSet ? depth(s.selectionSet) : 0);
        if (s.kind === Kind.FRAGMENT_SPREAD) return depth(fragments.get(s.name.value).selectionSet);
        return depth(s.selectionSet);
      }),
    );
  const op = document.definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION);
  return depth(op.selectionSet);
}

function fail(message, details = []) {
  console.log(`FAIL ${message}`);
  for (const line of details) console.log(`    ${line}`);
  console.log('0 passed, 1 failed');
  return 1;
}

/** Line diff (longest common subsequence) as hunks with a little context. */
function lineDiff(a, b) {
  const n = a.length;
  const m = b.length;
  // lcs[i][j]: length of the LCS of a[i..] and b[j..]
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const ops = []; // [' ' | '-' | '+', line, lineNoA, lineNoB]
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      ops.push([' ', a[i], (i += 1), (j += 1)]);
    } else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      ops.push(['-', a[i], (i += 1), j]);
    } else {
      ops.push(['+', b[j], i, (j += 1)]);
    }
  }
  const out = [];
  let lastShown = -1;
  ops.forEach((op, k) => {
    if (op[0] === ' ') return;
    const from = Math.max(k - CONTEXT, lastShown + 1);
    if (from > lastShown + 1 || lastShown < 0) out.push(`@@ schema.graphql (sorted) line ${ops[from][2] + (ops[from][0] === '+' ? 1 : 0)} @@`);
    for (let c = from; c <= k; c += 1) {
      if (c > lastShown) out.push(`${ops[c][0]} ${ops[c][1]}`);
    }
    let end = k;
    for (let c = k + 1; c <= Math.min(k + CONTEXT, ops.length - 1) && ops[c][0] === ' '; c += 1) {
      out.push(`  ${ops[c][1]}`);
      end = c;
    }
    lastShown = Math.max(lastShown, end);
  });
  return out;
}

async function main() {
  const fileSchema = buildSchema(readFileSync(SDL_FILE, 'utf8'));
  const query = getIntrospectionQuery(INTROSPECTION_OPTIONS);
  const server = await startLarder();
  let status;
  let text;
  try {
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ query, operationName: 'IntrospectionQuery' }),
    });
    status = res.status;
    text = await res.text();
  } finally {
    await server.stop();
  }
  let result;
  try {
    result = JSON.parse(text);
  } catch {
    return fail(`introspection answered ${status} with a body that is not JSON`, [text.slice(0, 500)]);
  }
  if (status !== 200 || result.errors?.length || !result.data) {
    const details = [`status ${status}, errors: ${JSON.stringify(result.errors ?? null)}`];
    if (/too deep/i.test(text)) {
      details.push(
        `the standard introspection query (graphql-js) nests fields ${queryDepth(parse(query))} deep;`,
        "the server's depth limit rejects it (GraphiQL and schema tools send this query)",
      );
    }
    return fail('the server refused the standard introspection query', details);
  }

  const served = normalize(buildClientSchema(result.data));
  const checkedIn = normalize(fileSchema);
  if (served === checkedIn) {
    console.log('1 passed, 0 failed');
    return 0;
  }
  const diff = lineDiff(checkedIn.split('\n'), served.split('\n'));
  const changed = diff.filter((l) => l.startsWith('- ') || l.startsWith('+ ')).length;
  const shown = diff.slice(0, MAX_DIFF_LINES);
  if (diff.length > MAX_DIFF_LINES) shown.push(`... ${diff.length - MAX_DIFF_LINES} more diff lines`);
  return fail('the schema the server introspects differs from schema.graphql', [
    `${changed} differing lines (- schema.graphql, + introspected; both sorted and reprinted by graphql-js):`,
    ...shown,
    'schema.graphql is the output of `larder schema` (sdl() in src/graphql/mod.rs): regenerate it,',
    'or fix sdl() when it leaves out something the server serves',
  ]);
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`introspection: ${err?.stack ?? err}`);
    process.exit(1);
  },
);
