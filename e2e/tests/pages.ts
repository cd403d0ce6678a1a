// Page objects and helpers shared by the Portcullis specs.
//
// Everything here follows the UI contract: elements are found by `data-testid`
// (`page.getByTestId`), rows are told apart by their `data-*` attributes.
// The database persists across the tests of one run, so helpers count rows
// matching an entitlement/status rather than assuming empty lists.
import {
  test as base,
  expect,
  type BrowserContext,
  type Locator,
  type Page,
} from '@playwright/test';

export { expect };

// ---------------------------------------------------------------------------
// Contract vocabulary
// ---------------------------------------------------------------------------

export type Persona = 'alice' | 'bob' | 'carol' | 'dana';

export const PERSONAS: Record<Persona, { displayName: string; email: string }> = {
  alice: { displayName: 'Alice Employee', email: 'alice@example.com' },
  bob: { displayName: 'Bob Manager', email: 'bob@example.com' },
  carol: { displayName: 'Carol Approver', email: 'carol@example.com' },
  dana: { displayName: 'Dana Admin', email: 'dana@example.com' },
};

export type EntitlementId =
  | 'sandbox-admin'
  | 'prod-readonly'
  | 'prod-admin'
  | 'staging-admin'
  | 'prod-breakglass'
  | 'security-audit';
/** The demo's retired entitlement: listed on the admin page, never requestable. */
export type RetiredEntitlementId = 'legacy-warehouse';

export type RequestStatus =
  | 'pending'
  | 'approved'
  | 'active'
  | 'ended'
  | 'rejected'
  | 'cancelled'
  | 'timed_out';

export type GrantStatus =
  | 'scheduled'
  | 'provisioning'
  | 'active'
  | 'deprovisioning'
  | 'revoked'
  | 'failed';

export type Verdict = 'approved' | 'rejected';

/** Short per-attempt timeout for assertions inside polling loops. */
export const QUICK = { timeout: 1_500 };

// ---------------------------------------------------------------------------
// Fixtures: page-error tracking and extra signed-in browser contexts
// ---------------------------------------------------------------------------

// Errors caused by navigating away while something is still loading (for
// example a reload during hydration) are not application bugs.
const BENIGN_PAGE_ERRORS = [/abort/i, /Failed to fetch/i, /NetworkError/i, /Load failed/i];

/** Chromium's console report of something the Content-Security-Policy refused. */
export const CSP_VIOLATION = /Content Security Policy/i;

function watchPage(page: Page, errors: string[]): void {
  page.on('pageerror', (err) => {
    const text = `${page.url()}: ${err.name}: ${err.message}`;
    if (!BENIGN_PAGE_ERRORS.some((re) => re.test(text))) errors.push(text);
  });
  // The portal runs with its Content-Security-Policy on: anything it refuses (a script
  // without the page's nonce, a style, a form target) is a bug in the page.
  page.on('console', (msg) => {
    if (CSP_VIOLATION.test(msg.text())) errors.push(`${page.url()}: CSP violation: ${msg.text()}`);
  });
  // Should an action ask for confirmation with window.confirm, say yes
  // (Playwright would otherwise dismiss it and the action would not happen).
  page.on('dialog', (dialog) => {
    dialog.accept().catch(() => {});
  });
}

type Fixtures = {
  /** Uncaught exceptions seen in any page of the test (e.g. a hydration panic); must stay empty. */
  pageErrors: string[];
  /** Opens a new browser context (its own cookies), signs `persona` in and returns its page. */
  as: (persona: Persona) => Promise<Page>;
};

export const test = base.extend<Fixtures>({
  pageErrors: [
    // eslint-disable-next-line no-empty-pattern
    async ({}, use) => {
      const errors: string[] = [];
      await use(errors);
      expect(errors, 'uncaught errors or CSP violations in the page').toEqual([]);
    },
    { auto: true },
  ],

  page: async ({ page, pageErrors }, use) => {
    watchPage(page, pageErrors);
    await use(page);
  },

  as: async ({ browser, pageErrors }, use, testInfo) => {
    const contexts: BrowserContext[] = [];
    await use(async (persona: Persona) => {
      const context = await browser.newContext({ baseURL: testInfo.project.use.baseURL });
      contexts.push(context);
      const page = await context.newPage();
      watchPage(page, pageErrors);
      await signIn(page, persona);
      return page;
    });
    for (const context of contexts) await context.close();
  },
});

// ---------------------------------------------------------------------------
// Navigation
// ---------------------------------------------------------------------------

/** Waits until the page has loaded and the network is quiet (wasm fetched, hydration done). */
export async function settle(page: Page): Promise<void> {
  await page.waitForLoadState('load');
  await page.waitForLoadState('networkidle', { timeout: 10_000 }).catch(() => {
    // A page that keeps a connection busy is fine too; the assertions that
    // follow retry on their own.
  });
}

/** Opens an app path (relative to baseURL) and waits for it to settle. */
export async function open(page: Page, path: string): Promise<void> {
  await page.goto(path);
  await settle(page);
}

/** Resolves when the page is at `path` (query and hash ignored). */
export async function waitForPath(page: Page, path: string): Promise<void> {
  await page.waitForURL((url) => url.pathname === path);
  await settle(page);
}

export function pathOf(page: Page): string {
  try {
    return new URL(page.url()).pathname;
  } catch {
    return '';
  }
}

/** Follows a header nav link (`nav-request`, `nav-my`, ...) and waits for its page. */
export async function navigate(
  page: Page,
  link: 'nav-request' | 'nav-my' | 'nav-approvals' | 'nav-admin' | 'nav-outbox',
): Promise<void> {
  const paths = {
    'nav-request': '/',
    'nav-my': '/requests',
    'nav-approvals': '/approvals',
    'nav-admin': '/admin',
    'nav-outbox': '/outbox',
  } as const;
  await page.getByTestId(link).click();
  await waitForPath(page, paths[link]);
}

/**
 * Polls until `check` passes, reloading the page between attempts (the app
 * does not refresh itself when the background worker changes state).
 *
 * `check` is either a function making assertions (give them `QUICK` timeouts)
 * or a locator: then it must match exactly `count` elements, or at least one
 * visible element when `count` is not given. The first attempt looks at the
 * page as it is, without reloading.
 */
export async function reloadUntil(
  page: Page,
  check: Locator | (() => Promise<unknown>),
  opts: { count?: number; timeout?: number; message?: string } = {},
): Promise<void> {
  const { count, timeout = 30_000, message } = opts;
  let attempt = 0;
  await expect(async () => {
    if (attempt++ > 0) {
      // A fresh GET of the current URL (a plain reload could resubmit a form).
      await page.goto(page.url());
      await settle(page);
    }
    if (typeof check === 'function') {
      await check();
    } else if (count !== undefined) {
      await expect(check).toHaveCount(count, QUICK);
    } else {
      await expect(check.first()).toBeVisible(QUICK);
    }
  }, message).toPass({ timeout, intervals: [250, 500, 1_000] });
}

/** Counts the elements a locator matches once the page has settled. */
export async function countOf(locator: Locator): Promise<number> {
  await settle(locator.page());
  return locator.count();
}

// ---------------------------------------------------------------------------
// Sign-in / sign-out (demo personas)
// ---------------------------------------------------------------------------

/** Signs in as a demo persona from /demo/login; ends on / with the name shown in the header. */
export async function signIn(page: Page, persona: Persona): Promise<void> {
  await open(page, '/demo/login');
  await page.getByTestId(`persona-${persona}`).click();
  await waitForPath(page, '/');
  await expect(page.getByTestId('whoami')).toContainText(PERSONAS[persona].displayName);
}

/** Signs out with the header button; ends on /demo/login. */
export async function signOut(page: Page): Promise<void> {
  await page.getByTestId('sign-out').click();
  await waitForPath(page, '/demo/login');
}

// ---------------------------------------------------------------------------
// Row locators
// ---------------------------------------------------------------------------

function attr(name: string, value: string): string {
  return `[${name}=${JSON.stringify(value)}]`;
}

/** Elements with `data-testid=testId` that also carry all the given attributes. */
export function rowsWith(page: Page, testId: string, attrs: Record<string, string | undefined>): Locator {
  let rows = page.getByTestId(testId);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined) rows = rows.and(page.locator(attr(name, value)));
  }
  return rows;
}

/** `/`: the request card of one entitlement. */
export function entitlementCard(page: Page, entitlement: EntitlementId | RetiredEntitlementId): Locator {
  return page.getByTestId(`entitlement-${entitlement}`);
}

/** `/admin`: the entitlements table, one row per entitlement (`live` or `retired`). */
export function adminEntitlementRow(page: Page, entitlement: EntitlementId | RetiredEntitlementId): Locator {
  return page.locator(`[data-testid="entitlement-row"][data-entitlement="${entitlement}"]`);
}

/** `/requests`: my requests. */
export function requestRows(
  page: Page,
  filter: { entitlement?: EntitlementId; status?: RequestStatus } = {},
): Locator {
  return rowsWith(page, 'request-row', {
    'data-entitlement': filter.entitlement,
    'data-status': filter.status,
  });
}

/** `/requests`: my grants. */
export function grantRows(
  page: Page,
  filter: { entitlement?: EntitlementId; status?: GrantStatus } = {},
): Locator {
  return rowsWith(page, 'grant-row', {
    'data-entitlement': filter.entitlement,
    'data-status': filter.status,
  });
}

/** `/approvals`: requests waiting for my decision. */
export function approvalRows(
  page: Page,
  filter: { entitlement?: EntitlementId; requester?: Persona } = {},
): Locator {
  return rowsWith(page, 'approval-row', {
    'data-entitlement': filter.entitlement,
    'data-requester': filter.requester,
  });
}

/** `/approvals`: the decided section. */
export function decidedRows(page: Page, verdict?: Verdict): Locator {
  return rowsWith(page, 'decided-row', { 'data-verdict': verdict });
}

/** `/admin`: all requests. */
export function adminRequestRows(
  page: Page,
  filter: { status?: RequestStatus; requester?: Persona } = {},
): Locator {
  return rowsWith(page, 'admin-request-row', {
    'data-status': filter.status,
    'data-requester': filter.requester,
  });
}

/** `/admin`: active grants. */
export function adminGrantRows(page: Page): Locator {
  return page.getByTestId('admin-grant-row');
}

/** `/admin/audit`: audit rows, optionally those whose action contains any of `actionParts`. */
export function auditRows(page: Page, actionParts: string[] = []): Locator {
  const rows = page.getByTestId('audit-row');
  if (actionParts.length === 0) return rows;
  const selector = actionParts.map((part) => `[data-action*=${JSON.stringify(part)} i]`).join(', ');
  return rows.and(page.locator(selector));
}

/** `/admin/aws`: simulated AWS account assignments. */
export function assignmentRows(page: Page, filter: { account?: string; permissionSet?: string } = {}): Locator {
  return rowsWith(page, 'assignment-row', {
    'data-account': filter.account,
    'data-permission-set': filter.permissionSet,
  });
}

/** `/outbox`: sent mail, optionally only to one recipient. */
export function outboxRows(page: Page, to?: string): Locator {
  return rowsWith(page, 'outbox-row', { 'data-to': to });
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

export type RequestInput = {
  justification: string;
  duration: string;
  /** Filled only when given (the field exists only where a ticket is required). */
  ticket?: string;
  /** When access should start (`2h`, `1d`, a UTC time); empty for as soon as approved. */
  starts?: string;
  /**
   * Turn off the browser's own constraint validation (`required`, `pattern`)
   * so that bad input reaches the app's validation and its error messages.
   */
  skipBrowserValidation?: boolean;
};

/**
 * Fills and submits the request form of one entitlement on `/` (opening `/`
 * first if needed) and returns its card. Does not wait for the outcome: expect
 * `request-created` or an `error-*` inside the returned card.
 */
export async function requestAccess(
  page: Page,
  entitlement: EntitlementId,
  input: RequestInput,
): Promise<Locator> {
  if (pathOf(page) !== '/') await open(page, '/');
  const card = entitlementCard(page, entitlement);
  await expect(card).toBeVisible();
  if (input.skipBrowserValidation) {
    await card.evaluate((el) => {
      const forms = new Set<HTMLFormElement>();
      if (el instanceof HTMLFormElement) forms.add(el);
      const outer = el.closest('form');
      if (outer) forms.add(outer);
      el.querySelectorAll('form').forEach((f) => forms.add(f));
      forms.forEach((f) => {
        f.noValidate = true;
      });
    });
  }
  await card.locator('textarea[name="justification"]').fill(input.justification);
  await card.locator('input[name="duration"]').fill(input.duration);
  if (input.ticket !== undefined) {
    await card.locator('input[name="ticket"]').fill(input.ticket);
  }
  if (input.starts !== undefined) {
    await card.locator('input[name="starts"]').fill(input.starts);
  }
  await card.getByTestId('submit-request').click();
  return card;
}

/** Submits a request and waits for the success message in its card. */
export async function requestAccessOk(
  page: Page,
  entitlement: EntitlementId,
  input: RequestInput,
): Promise<Locator> {
  const card = await requestAccess(page, entitlement, input);
  await expect(card.getByTestId('request-created')).toBeVisible();
  return card;
}

/** Cancels one of my pending requests for `entitlement` from /requests and waits until it shows `cancelled`. */
export async function cancelPendingRequest(page: Page, entitlement: EntitlementId): Promise<void> {
  await open(page, '/requests');
  const pending = requestRows(page, { entitlement, status: 'pending' });
  await expect(pending.first()).toBeVisible();
  const pendingBefore = await countOf(pending);
  const cancelledBefore = await countOf(requestRows(page, { entitlement, status: 'cancelled' }));
  await pending.first().getByTestId('cancel-request').click();
  await reloadUntil(page, async () => {
    await expect(requestRows(page, { entitlement, status: 'cancelled' })).toHaveCount(cancelledBefore + 1, QUICK);
    await expect(pending).toHaveCount(pendingBefore - 1, QUICK);
  });
}

/**
 * Decides the first queued request on /approvals matching the filter, with a
 * comment, and waits until it has left the queue and shows in the decided
 * section.
 */
export async function decide(
  page: Page,
  filter: { entitlement: EntitlementId; requester: Persona },
  verdict: Verdict,
  comment: string,
): Promise<void> {
  if (pathOf(page) !== '/approvals') await open(page, '/approvals');
  const queued = approvalRows(page, filter);
  await expect(queued.first()).toBeVisible();
  const queuedBefore = await countOf(queued);
  const decidedBefore = await countOf(decidedRows(page, verdict));
  const row = queued.first();
  await row.locator('textarea[name="comment"]').fill(comment);
  await row.getByTestId(verdict === 'approved' ? 'approve' : 'reject').click();
  await reloadUntil(page, async () => {
    await expect(queued).toHaveCount(queuedBefore - 1, QUICK);
    await expect(decidedRows(page, verdict)).toHaveCount(decidedBefore + 1, QUICK);
  });
}

/** A justification that is unique per call, to make log lines and screenshots easy to match. */
export function justification(what: string): string {
  return `e2e: ${what} (${new Date().toISOString()})`;
}
