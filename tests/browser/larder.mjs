// Shared by the browser tests: start a larder of its own (free port, fresh SQLite file,
// the demo catalog) and launch Debian's Chromium with playwright-core.
//
//   LARDER_BIN   server binary (default target/debug/larder, from the repository root)
//   CHROMIUM     browser binary (default /usr/bin/chromium)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.resolve(ROOT, process.env.LARDER_BIN ?? 'target/debug/larder');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const servers = new Set();

// Kill the servers even when the test process ends abruptly.
process.on('exit', () => {
  for (const s of servers) s.stop();
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

export async function checkBinary() {
  await access(BIN).catch(() => {
    throw new Error(`no larder binary at ${BIN}: build it (cargo build) or set LARDER_BIN`);
  });
}

/** Starts larder with its own database under `tmp`; resolves once GET /health answers. */
export async function startLarder(tmp, name, extraEnv = {}) {
  const port = await freePort();
  const dir = path.join(tmp, name);
  await mkdir(dir, { recursive: true });
  const token = randomBytes(16).toString('hex');
  const child = spawn(BIN, [], {
    cwd: dir, // no stray .env from the repository
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME ?? dir,
      BIND_ADDR: `127.0.0.1:${port}`,
      DATABASE_URL: `sqlite://${dir}/larder.db?mode=rwc`,
      ADMIN_TOKEN: token,
      SEED_DEMO: 'true',
      RUST_LOG: 'warn',
      ...extraEnv,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const server = {
    url: `http://127.0.0.1:${port}`,
    token,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      servers.delete(server);
    },
  };
  servers.add(server);

  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`larder exited with ${child.exitCode}:\n${stderr}`);
    try {
      if ((await fetch(`${server.url}/health`)).ok) return server;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  await server.stop();
  throw new Error(`larder did not answer /health within 60 s:\n${stderr}`);
}

/** Stops every server this process started. */
export async function stopAll() {
  await Promise.all([...servers].map((s) => s.stop()));
}

export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
