// Playwright configuration for the Portcullis end-to-end suite.
//
// Run from this directory with the path of a built server binary:
//
//   E2E_PORTCULLIS_BIN=../target/release/portcullis npx playwright test
//
// Playwright starts `$E2E_PORTCULLIS_BIN demo` on 127.0.0.1:3100 with a fresh SQLite
// database under the OS temp dir, waits for /healthz, runs the specs in ./tests
// one at a time, and stops the server. The browser is Debian's chromium at
// /usr/bin/chromium: this machine cannot download Playwright's own browsers, and
// nothing here ever tries to (`npx playwright install` is never needed).
import { defineConfig, devices } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const repoRoot = path.resolve(__dirname, '..');
const baseURL = process.env.E2E_URL ?? 'http://127.0.0.1:3100';
const listen = '127.0.0.1:3100';

// `playwright test --list` loads this file but starts no server, so it must
// not insist on a binary.
const listingOnly = process.argv.includes('--list');

function serverBinary(): string {
  const bin = process.env.E2E_PORTCULLIS_BIN;
  if (!bin) {
    if (listingOnly) return '/bin/true';
    throw new Error(
      'E2E_PORTCULLIS_BIN is not set. Build the server (e.g. `cargo leptos build --release`) and run\n' +
        '  E2E_PORTCULLIS_BIN=/path/to/target/release/portcullis npx playwright test\n' +
        'Playwright starts `$E2E_PORTCULLIS_BIN demo` itself; see e2e/playwright.config.ts.',
    );
  }
  // The server runs with the repo root as its cwd: resolve a relative path
  // against the directory Playwright was started from, as the user meant it.
  if (!bin.includes('/')) return bin; // a bare command name, looked up on PATH
  const resolved = path.resolve(process.cwd(), bin);
  if (!listingOnly && !fs.existsSync(resolved)) {
    throw new Error(`E2E_PORTCULLIS_BIN points to ${resolved}, which does not exist. Build the server first.`);
  }
  return resolved;
}

// One fresh database per run. The config is evaluated again in every worker
// process; remembering the name in the environment (which workers inherit)
// keeps it the same everywhere.
if (!process.env.E2E_DB_FILE) {
  process.env.E2E_DB_FILE = path.join(
    os.tmpdir(),
    `e2e-${Date.now()}-${crypto.randomBytes(6).toString('hex')}.db`,
  );
}
const dbFile = process.env.E2E_DB_FILE;
// `portcullis serve` (sign-in through the test OpenID provider) has its own database.
const serveDbFile = dbFile.replace(/\.db$/, '-serve.db');
if (!listingOnly) {
  // An empty file is a valid, empty SQLite database: this way the run does not
  // depend on the server opening its database with create-if-missing.
  fs.closeSync(fs.openSync(dbFile, 'a'));
  fs.closeSync(fs.openSync(serveDbFile, 'a'));
}

// `portcullis serve` on SERVE_URL signs people in through a real OpenID provider
// (oidc-provider, e2e/oidc/provider.mjs) on IDP_URL, with the fixture users of
// e2e/oidc/accounts.json, and grants access in IAM Identity Center: the moto server
// behind .ci/moto's fault layer on AWS_URL, seeded by e2e/aws/seed.py (which also
// writes the server's configuration file: the entitlement names moto's OU ids).
const SERVE_URL = 'http://127.0.0.1:3101';
const IDP_URL = 'http://127.0.0.1:3102';
const AWS_URL = 'http://127.0.0.1:3103';
const serveConfig = dbFile.replace(/\.db$/, '-serve.toml');
// The Python venv with moto (made or reused by .ci/moto/venv, which prints its path).
const motoPython = listingOnly
  ? '/bin/true'
  : path.join(
      execFileSync('bash', [path.join(repoRoot, '.ci', 'moto', 'venv')], { encoding: 'utf8' }).trim(),
      'bin',
      'python',
    );
// A local Slack-compatible webhook (e2e/chat/receiver.mjs) that the demo's chat settings
// point at: it records every post, and the chat spec reads them back. The path's last part
// stands for the secret a real webhook URL carries.
const CHAT_URL = 'http://127.0.0.1:3104';
const oidcClient = { id: 'portcullis-e2e', secret: 'e2e-client-secret-not-for-production' };

// Everything from the caller's environment is passed to the server, except the
// variables that only steer this suite (the server may reject unknown
// PORTCULLIS_* settings).
const inheritedEnv: Record<string, string> = {};
for (const [key, value] of Object.entries(process.env)) {
  if (value === undefined) continue;
  if (key === 'E2E_PORTCULLIS_BIN' || key.startsWith('E2E_')) continue;
  inheritedEnv[key] = value;
}

// What every server started for the suite shares: a fresh process each run, output
// kept, run from the repository root, stopped with SIGTERM.
const serverDefaults = {
  reuseExistingServer: false,
  stdout: 'pipe' as const,
  stderr: 'pipe' as const,
  cwd: repoRoot,
  gracefulShutdown: { signal: 'SIGTERM' as const, timeout: 5_000 },
};

export default defineConfig({
  testDir: './tests',
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: !!process.env.CI,
  timeout: 60_000,
  // A stuck run fails in minutes instead of eating CI's whole budget.
  globalTimeout: 15 * 60_000,
  expect: { timeout: 10_000 },
  reporter: 'list',
  outputDir: './test-results',
  use: {
    baseURL,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    video: 'off',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        headless: true,
        launchOptions: {
          executablePath: '/usr/bin/chromium',
          args: [
            '--no-sandbox',
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
          ],
        },
      },
    },
  ],
  webServer: [
    {
      command: `node e2e/chat/receiver.mjs`,
      url: `${CHAT_URL}/received`,
      ...serverDefaults,
      timeout: 30_000,
      env: { ...inheritedEnv, CHAT_PORT: new URL(CHAT_URL).port },
    },
    {
      command: `"${serverBinary()}" demo`,
      url: `http://${listen}/healthz`,
      ...serverDefaults,
      timeout: 120_000,
      env: {
        ...inheritedEnv,
        // These win over the caller's environment: the specs depend on them
        // (a 10s grant must be allowed, 1s must be below the minimum).
        PORTCULLIS_LISTEN: listen,
        // Some Leptos setups read the address from here; keep it consistent
        // (under `cargo leptos end-to-end` it would otherwise say :3000).
        LEPTOS_SITE_ADDR: listen,
        PORTCULLIS_DATABASE_URL: `sqlite://${dbFile}`,
        PORTCULLIS_POLICY__MIN_DURATION: '5s',
        PORTCULLIS_DEMO__PROVISION_DELAY_MS: '300',
        // Every demo entitlement's events also go to the local chat receiver.
        PORTCULLIS_CHAT__WEBHOOKS__OPS: `${CHAT_URL}/services/T000/B000/e2e-webhook-secret`,
        PORTCULLIS_CHAT__EVERYTHING: '[ops]',
        LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? path.join(repoRoot, 'target', 'site'),
      },
    },
    {
      command: `node e2e/oidc/provider.mjs`,
      url: `${IDP_URL}/.well-known/openid-configuration`,
      ...serverDefaults,
      timeout: 60_000,
      env: {
        ...inheritedEnv,
        OIDC_PORT: new URL(IDP_URL).port,
        OIDC_ACCOUNTS: path.join(repoRoot, 'e2e', 'oidc', 'accounts.json'),
        OIDC_CLIENTS: JSON.stringify([
          {
            client_id: oidcClient.id,
            client_secret: oidcClient.secret,
            redirect_uris: [`${SERVE_URL}/auth/callback`],
            post_logout_redirect_uris: [`${SERVE_URL}/auth/signed-out`],
          },
        ]),
      },
    },
    {
      command: `"${motoPython}" .ci/moto/fault_server.py --host 127.0.0.1 --port ${new URL(AWS_URL).port}`,
      url: `${AWS_URL}/_fault/`,
      ...serverDefaults,
      timeout: 60_000,
      env: { ...inheritedEnv },
    },
    {
      // Seed moto, then become the server (exec: the stop signal reaches it).
      command:
        `"${motoPython}" e2e/aws/seed.py --endpoint ${AWS_URL} --config "${serveConfig}"` +
        ` && exec "${serverBinary()}" serve --config "${serveConfig}"`,
      // Ready once the first catalog sync from moto has landed.
      url: `${SERVE_URL}/readyz`,
      ...serverDefaults,
      timeout: 120_000,
      env: {
        ...inheritedEnv,
        PORTCULLIS_LISTEN: new URL(SERVE_URL).host,
        LEPTOS_SITE_ADDR: new URL(SERVE_URL).host,
        PORTCULLIS_PUBLIC_URL: SERVE_URL,
        // The demo server above serves metrics on the default address; this one has none.
        PORTCULLIS_METRICS__LISTEN: '',
        PORTCULLIS_DATABASE_URL: `sqlite://${serveDbFile}`,
        PORTCULLIS_OIDC__ISSUER_URL: IDP_URL,
        PORTCULLIS_OIDC__CLIENT_ID: oidcClient.id,
        PORTCULLIS_OIDC__CLIENT_SECRET: oidcClient.secret,
        PORTCULLIS_OIDC__ADMIN_GROUPS: 'portcullis-admins',
        // The audit chain's key (32 bytes as hex): a test value, for this test database only.
        PORTCULLIS_AUDIT__KEY: 'e2e0'.repeat(16),
        PORTCULLIS_WORKER__POLL_INTERVAL_MS: '300',
        // moto's static test credentials; nothing leaves 127.0.0.1.
        AWS_ACCESS_KEY_ID: 'testing',
        AWS_SECRET_ACCESS_KEY: 'testing',
        AWS_REGION: 'us-east-1',
        AWS_EC2_METADATA_DISABLED: 'true',
        LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? path.join(repoRoot, 'target', 'site'),
      },
    },
  ],
});
