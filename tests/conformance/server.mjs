// Starts a throwaway larder server for node-side tests.
//
//   import { startLarder } from './server.mjs';
//   const { url, base, stop } = await startLarder({ INTROSPECTION: 'false' });
//   try { ... fetch(url, ...) ... } finally { await stop(); }
//
// The binary is $LARDER_BIN (default target/debug/larder; relative paths are taken from
// the repository root). Each server gets a free port on 127.0.0.1 and a fresh SQLite file
// in its own temporary directory (removed by stop()), no demo data, the admin token
// `conformance-token` (exported as ADMIN_TOKEN) and RUST_LOG=warn; `extraEnv` overrides
// any of these. larder settings inherited from the calling shell (REDIS_URL,
// CACHE_BACKEND, ...) are dropped so runs are reproducible, and the server runs in its
// temporary directory so that no `.env` file is picked up.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ADMIN_TOKEN = 'conformance-token';

const HEALTH_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_BYTES = 16 * 1024;

// Every variable larder reads: each one env.example names (set or commented out), plus
// the log filter. Read from there, so a new setting cannot be forgotten here.
const LARDER_ENV = [
  ...new Set(
    readFileSync(join(REPO_ROOT, 'env.example'), 'utf8')
      .split('\n')
      .map((line) => line.match(/^#?\s*([A-Z][A-Z0-9_]+)=/)?.[1])
      .filter(Boolean),
  ),
  'RUST_LOG',
];

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts larder and waits until GET /health answers 200.
 * @param {Record<string, string>} [extraEnv] environment overrides
 * @returns {Promise<{url: string, base: string, port: number, adminToken: string,
 *   logs: () => string, stop: () => Promise<void>}>}
 */
export async function startLarder(extraEnv = {}) {
  const bin = resolve(REPO_ROOT, process.env.LARDER_BIN || 'target/debug/larder');
  if (!existsSync(bin)) {
    throw new Error(`larder binary not found at ${bin} (build it with cargo, or set LARDER_BIN)`);
  }
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'larder-node-'));

  const env = { ...process.env };
  for (const key of LARDER_ENV) delete env[key];
  Object.assign(env, {
    BIND_ADDR: `127.0.0.1:${port}`,
    DATABASE_URL: `sqlite://${join(dir, 'larder.db')}?mode=rwc`,
    SEED_DEMO: 'false',
    ADMIN_TOKEN,
    RUST_LOG: 'warn',
    ...extraEnv,
  });

  const child = spawn(bin, ['serve'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (chunk) => {
    log = (log + chunk.toString('utf8')).slice(-LOG_TAIL_BYTES);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);

  let exited = null; // { code, signal } once the process is gone
  const exit = new Promise((r) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      r(exited);
    });
  });
  let spawnError = null;
  child.once('error', (err) => {
    spawnError = err;
  });

  // If this process dies without calling stop() (uncaught exception, process.exit, a
  // signal), take the server down with it.
  const killNow = () => {
    if (!exited) {
      try { child.kill('SIGKILL'); } catch { /* already gone */ }
    }
    try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
  };
  const onSignal = (signal) => {
    killNow();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('exit', killNow);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let stopped = null;
  const stop = () => {
    stopped ??= (async () => {
      if (!exited && !spawnError) {
        child.kill('SIGTERM'); // graceful shutdown: in-flight requests finish
        const done = await Promise.race([exit, sleep(STOP_GRACE_MS).then(() => null)]);
        if (!done) {
          child.kill('SIGKILL');
          await exit;
        }
      }
      process.off('exit', killNow);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopped;
  };

  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  try {
    for (;;) {
      if (spawnError) throw new Error(`could not start ${bin}: ${spawnError.message}`);
      if (exited) {
        throw new Error(
          `larder exited before becoming healthy (code ${exited.code}, signal ${exited.signal})`,
        );
      }
      try {
        const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1_000) });
        await res.arrayBuffer();
        if (res.status === 200) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(`larder did not answer GET /health with 200 within ${HEALTH_TIMEOUT_MS / 1000} s`);
      }
      await sleep(100);
    }
  } catch (err) {
    await stop();
    err.message += log.trim() ? `\n--- larder output (tail) ---\n${log.trim()}` : ' (no output)';
    throw err;
  }

  return { url: `${base}/graphql`, base, port, adminToken: env.ADMIN_TOKEN, logs: () => log, stop };
}
