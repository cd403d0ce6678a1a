// `portcullis serve` with a real OpenID provider (oidc-provider on 127.0.0.1:3102,
// started by playwright.config.ts with the users of e2e/oidc/accounts.json) and IAM
// Identity Center (moto on 127.0.0.1:3103, seeded by e2e/aws/seed.py):
// Alice signs in at the provider's login page and asks for prod-readonly; Bob, her
// manager according to the provider's claims, signs in and approves; signing out ends
// the session on the server (the old cookie no longer works) and at the provider.
// Dana, an admin by her groups, then finds Alice's assignment in AWS, the catalog synced
// from Organizations, and a reconciliation with nothing to mend.
import { request as httpRequest, type Page } from '@playwright/test';
import {
  assignmentRows,
  decide,
  expect,
  justification,
  navigate,
  reloadUntil,
  requestAccessOk,
  requestRows,
  settle,
  test,
  waitForPath,
} from './pages';

const SERVE_URL = 'http://127.0.0.1:3101';
const IDP_URL = 'http://127.0.0.1:3102';

test.use({ baseURL: SERVE_URL });

/** From a page that the portal sent to the provider: signs in there and comes back. */
async function signInAtProvider(page: Page, login: string, backTo: string): Promise<void> {
  await page.waitForURL((url) => url.origin === IDP_URL);
  await expect(page.getByRole('heading', { name: 'Sign in to Test IdP' })).toBeVisible();
  await page.locator('#login').fill(login);
  await page.locator('#password').fill(`${login}-pw`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.origin === SERVE_URL && url.pathname === backTo);
  await settle(page);
}

async function signOutEverywhere(page: Page): Promise<void> {
  await page.getByTestId('sign-out').click();
  // The provider's end-session page submits itself and sends the browser back.
  await waitForPath(page, '/auth/signed-out');
  await expect(page.getByTestId('sign-in-again')).toBeVisible();
}

test('sign in at the identity provider, request, manager approves, sign out', async ({ page }) => {
  test.setTimeout(120_000);

  // --- Alice: a protected page sends her to the provider, and back to it ------
  await page.goto('/requests');
  await signInAtProvider(page, 'alice', '/requests');
  await expect(page.getByTestId('whoami')).toContainText('Alice Employee');
  await navigate(page, 'nav-request');
  await requestAccessOk(page, 'prod-readonly', {
    justification: justification('read prod logs through SSO sign-in'),
    duration: '1h',
  });
  await navigate(page, 'nav-my');
  await expect(requestRows(page, { entitlement: 'prod-readonly', status: 'pending' }).first()).toBeVisible();

  const aliceCookie = (await page.context().cookies(SERVE_URL)).find((c) => c.name === 'portcullis_session');
  expect(aliceCookie, 'a session cookie').toBeTruthy();
  expect(aliceCookie!.httpOnly).toBe(true);
  expect(aliceCookie!.sameSite).toBe('Lax');
  await signOutEverywhere(page);

  // The old cookie no longer works: the session is gone on the server.
  const stranger = await httpRequest.newContext({ baseURL: SERVE_URL });
  const replay = await stranger.get('/requests', {
    headers: { cookie: `portcullis_session=${aliceCookie!.value}` },
    maxRedirects: 0,
  });
  expect(replay.status()).toBe(303);
  expect(replay.headers()['location']).toMatch(/^\/auth\/login\?return_to=/);
  await stranger.dispose();

  // --- Bob, her manager per the provider's `manager` claim, approves --------
  // Signed out at the provider too: it asks for a password again.
  await page.getByTestId('sign-in-again').click();
  await signInAtProvider(page, 'bob', '/');
  await expect(page.getByTestId('whoami')).toContainText('Bob Manager');
  await navigate(page, 'nav-approvals');
  await decide(page, { entitlement: 'prod-readonly', requester: 'alice' }, 'approved', 'Approved through SSO.');
  await signOutEverywhere(page);

  // --- Dana, an admin: the assignment exists in AWS --------------------------
  await page.getByTestId('sign-in-again').click();
  await signInAtProvider(page, 'dana', '/');
  await page.goto('/admin/aws');
  await settle(page);
  // The catalog came from Organizations: production sits in Prod, below Workloads.
  const production = page.getByTestId('catalog-account').filter({ hasText: 'production' });
  await expect(production).toContainText('Root / Workloads / Prod');
  // What moto holds: Alice's assignment in production, made by the worker.
  const productionId = await production.getAttribute('data-account');
  await reloadUntil(page, assignmentRows(page, { account: productionId! }).filter({ hasText: 'alice@example.com' }), {
    message: "Alice's assignment in moto",
  });
  const reconcile = page.getByTestId('reconcile-run');
  const before = (await reconcile.textContent()) ?? '';
  await page.getByTestId('reconcile-now').click();
  await expect(reconcile).not.toHaveText(before, { timeout: 20_000 });
  await expect(reconcile).toHaveAttribute('data-status', 'succeeded', { timeout: 20_000 });
  await expect(reconcile).toContainText('1 in sync');
  await expect(page.getByTestId('no-drift')).toBeVisible();
  await signOutEverywhere(page);
});

test('a tampered callback shows a clear page with a retry link', async ({ page }) => {
  await page.goto('/auth/callback?code=forged&state=forged');
  await expect(page.getByTestId('signin-error')).toContainText('no longer valid');
  await page.getByTestId('signin-retry').click();
  await signInAtProvider(page, 'carol', '/');
  await expect(page.getByTestId('whoami')).toContainText('Carol Approver');
});
