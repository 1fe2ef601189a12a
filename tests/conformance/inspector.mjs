// What schema tooling sees: `graphql-inspector diff <running larder> schema.graphql` must
// find no change at all (not even a non-breaking one), since schema.graphql is what
// clients and codegen are handed. graphql-inspector introspects the way most tools do
// (graphql-tools' default query), so this also catches what only such a query shows.
//
//   node tests/conformance/inspector.mjs
//
// Prints `1 passed, 0 failed` as the last line on success; otherwise graphql-inspector's
// report and exit code 1.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT, startLarder } from './server.mjs';

const larder = await startLarder();
let failed = false;
try {
  const bin = join(REPO_ROOT, 'node_modules', '.bin', 'graphql-inspector');
  const run = spawnSync(bin, ['diff', larder.url, join(REPO_ROOT, 'schema.graphql')], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  const report = `${run.stdout ?? ''}${run.stderr ?? ''}`;
  if (run.status !== 0 || !/No changes detected/.test(report)) {
    failed = true;
    console.error(`graphql-inspector diff ${larder.url} schema.graphql (exit ${run.status}):\n${report}`);
  }
} finally {
  await larder.stop();
}
console.log(failed ? '0 passed, 1 failed' : '1 passed, 0 failed');
process.exit(failed ? 1 : 0);
