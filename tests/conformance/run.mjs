// GraphQL over HTTP conformance: runs every server audit of graphql-http (MUST, SHOULD
// and MAY) against a fresh larder server, and fails on anything but 'ok'.
//
//   node tests/conformance/run.mjs            (or: npm run conformance)
//   LARDER_BIN=target/release/larder node tests/conformance/run.mjs
//
// Prints each failing audit, then `N passed, N failed` as the last line. Exits 1 when an
// audit fails or when graphql-http does not hand out the expected number of audits (so
// an upgrade that adds or drops audits is noticed).
import { serverAudits } from 'graphql-http';
import { startLarder } from './server.mjs';

const EXPECTED_AUDITS = 61;
const BODY_PREVIEW = 300;

async function describeResponse(res) {
  if (!res || typeof res.status !== 'number') return '';
  let body = '';
  try {
    body = await res.text();
  } catch {
    body = '<body already read>';
  }
  if (body.length > BODY_PREVIEW) body = `${body.slice(0, BODY_PREVIEW)}...`;
  const type = res.headers.get('content-type') ?? '<none>';
  return `\n    got: ${res.status}, content-type: ${type}\n    body: ${body}`;
}

async function main() {
  const server = await startLarder();
  let passed = 0;
  let failed = 0;
  let count = 0;
  try {
    const audits = serverAudits({ url: server.url, fetchFn: fetch });
    count = audits.length;
    // One at a time: the output is reproducible and failures are easy to replay.
    for (const audit of audits) {
      let result;
      try {
        result = await audit.fn();
      } catch (err) {
        // graphql-http throws (instead of returning a result) on fatal problems, such as a
        // connection refused or reset.
        result = { id: audit.id, name: audit.name, status: 'error', reason: `fatal: ${err?.stack ?? err}` };
      }
      if (result.status === 'ok') {
        passed += 1;
        continue;
      }
      failed += 1;
      console.log(`FAIL [${result.status}] ${result.id} ${result.name}`);
      console.log(`    reason: ${result.reason}${await describeResponse(result.response)}`);
    }
  } finally {
    await server.stop();
  }
  if (count !== EXPECTED_AUDITS) {
    console.log(`expected ${EXPECTED_AUDITS} audits from graphql-http, got ${count}`);
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 && count === EXPECTED_AUDITS ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`conformance: ${err?.stack ?? err}`);
    process.exit(1);
  },
);
