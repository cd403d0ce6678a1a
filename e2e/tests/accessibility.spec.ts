// Everyone, every screen (issue #13): axe-core checks every page of every persona, in
// light and dark mode (`prefers-color-scheme`), at phone width (390 px) and desktop
// width, and any violation fails the test, with the rule, the page and the elements; so
// does a page that scrolls sideways on a phone or ignores the dark scheme. A keyboard walk
// checks that Tab reaches every control and that the focus can always be seen.
// One request waits for Bob while it runs, so the approval card (the richest view) and
// a request's own page are checked too; it is cancelled at the end.
import AxeBuilder from '@axe-core/playwright';
import type { Page } from '@playwright/test';
import {
  type Persona,
  cancelPendingRequest,
  expect,
  justification,
  open,
  requestAccessOk,
  requestRows,
  test,
} from './pages';

/**
 * Each persona's pages (`REQUEST` stands for the waiting request's own page): every page
 * in their menu, and for Alice, who is neither approver nor admin, what she gets when she
 * opens the approvals and admin pages anyway (every admin page answers the same way).
 */
const REQUEST = 'the request';
const PAGES: Record<Persona, string[]> = {
  alice: ['/', '/requests', REQUEST, '/outbox', '/approvals', '/admin'],
  bob: ['/', '/requests', '/approvals', REQUEST],
  carol: ['/approvals', REQUEST],
  dana: ['/admin', '/admin/audit', '/admin/aws', '/admin/entitlements', '/admin/access', '/outbox', REQUEST],
};
const WIDTHS = [
  { name: 'phone', width: 390, height: 844 },
  { name: 'desktop', width: 1280, height: 900 },
];
const SCHEMES = ['light', 'dark'] as const;

/** The pending request the first test made: its page, as Alice's My access links it. */
async function pendingRequestPath(alice: Page): Promise<string> {
  await open(alice, '/requests');
  const link = requestRows(alice, { entitlement: 'prod-readonly', status: 'pending' }).first().locator('a[href^="/requests/"]');
  const path = (await link.first().getAttribute('href')) ?? '';
  expect(path).toMatch(/^\/requests\/[0-9a-f]+$/);
  return path;
}

/** The relative luminance of a CSS `rgb()` colour (0 black, 1 white). */
function luminance(css: string): number {
  const [r, g, b] = (css.match(/[\d.]+/g) ?? ['0', '0', '0']).slice(0, 3).map((c) => {
    const v = Number(c) / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** axe-core on the page as it is now: one line per violated rule, with where. */
async function violations(page: Page, where: string): Promise<string[]> {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']).analyze();
  return results.violations.map(
    (v) =>
      `${where}: ${v.id} (${v.impact}): ${v.help}; ${v.nodes
        .slice(0, 3)
        .map((n) => n.target.join(' '))
        .join(' | ')}`,
  );
}

/**
 * Every page, in every width and scheme, as it looks to `page`'s persona: axe-core's
 * violations, a page that scrolls sideways, and a scheme the page does not follow.
 */
async function checkEverything(page: Page, paths: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const size of WIDTHS) {
    await page.setViewportSize({ width: size.width, height: size.height });
    for (const path of paths) {
      await page.emulateMedia({ colorScheme: 'light' });
      await open(page, path);
      const sideways = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      if (sideways > 0) found.push(`${path} (${size.name}): scrolls ${sideways} px sideways`);
      for (const scheme of SCHEMES) {
        await page.emulateMedia({ colorScheme: scheme });
        const background = luminance(await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor));
        if ((scheme === 'dark') !== background < 0.2) {
          found.push(`${path} (${size.name}, ${scheme}): the background's luminance is ${background.toFixed(2)}`);
        }
        found.push(...(await violations(page, `${path} (${size.name}, ${scheme})`)));
      }
    }
  }
  return found;
}

test('a request waits for Bob while the pages are checked', async ({ as }) => {
  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-readonly', { justification: justification('accessibility'), duration: '1h' });
  await pendingRequestPath(alice);
});

for (const persona of ['alice', 'bob', 'carol', 'dana'] as Persona[]) {
  test(`${persona}'s pages: no axe-core violation, light and dark, phone and desktop`, async ({ as }) => {
    test.setTimeout(120_000);
    const requestPath = await pendingRequestPath(await as('alice'));
    const page = await as(persona);
    const found = await checkEverything(
      page,
      PAGES[persona].map((p) => (p === REQUEST ? requestPath : p)),
    );
    expect(found, found.join('\n')).toEqual([]);
  });
}

test('the sign-in page: no axe-core violation, light and dark, phone and desktop', async ({ page }) => {
  const found = await checkEverything(page, ['/demo/login']);
  expect(found, found.join('\n')).toEqual([]);
});


/**
 * Tab from the top of the page: every link, button and field that can be seen is
 * reached, and each one shows where the focus is (an outline of at least 2 px).
 */
async function walkWithTab(page: Page, path: string): Promise<string[]> {
  await open(page, path);
  const reachable = await page.evaluate(() => {
    const all = document.querySelectorAll<HTMLElement>('a[href], button, input:not([type="hidden"]), textarea, select, summary');
    let n = 0;
    all.forEach((el) => {
      const visible = el.offsetParent !== null || el.getClientRects().length > 0;
      if (visible && !el.hasAttribute('disabled')) {
        el.dataset.a11yWant = String(n++);
      }
    });
    return n;
  });
  const problems: string[] = [];
  const reached = new Set<string>();
  await page.locator('body').focus();
  for (let i = 0; i < reachable + 10 && reached.size < reachable; i++) {
    await page.keyboard.press('Tab');
    const info = await page.evaluate(() => {
      const el = document.activeElement as HTMLElement | null;
      if (!el || el === document.body) return null;
      const style = getComputedStyle(el);
      return {
        want: el.dataset.a11yWant ?? null,
        what: `${el.tagName.toLowerCase()} ${(el.textContent ?? '').trim().slice(0, 30) || el.getAttribute('name') || ''}`,
        outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
      };
    });
    if (!info) continue;
    if (info.want !== null) reached.add(info.want);
    if (!info.outline) problems.push(`${path}: focus on "${info.what}" is not visible`);
  }
  if (reached.size < reachable) {
    const missed = await page.evaluate(
      (got) =>
        Array.from(document.querySelectorAll<HTMLElement>('[data-a11y-want]'))
          .filter((el) => !got.includes(el.dataset.a11yWant ?? ''))
          .slice(0, 5)
          .map((el) => `${el.tagName.toLowerCase()} ${(el.textContent ?? '').trim().slice(0, 30)}`),
      Array.from(reached),
    );
    problems.push(`${path}: ${reachable - reached.size} of ${reachable} controls never get the focus: ${missed.join(', ')}`);
  }
  return problems;
}

test('every action is reachable by keyboard, with the focus visible', async ({ as }) => {
  test.setTimeout(120_000);
  const requestPath = await pendingRequestPath(await as('alice'));
  const found: string[] = [];
  for (const [persona, paths] of [
    ['alice', ['/', '/requests', requestPath]],
    ['bob', ['/approvals']],
    ['dana', ['/admin', '/admin/audit', '/admin/entitlements']],
  ] as [Persona, string[]][]) {
    const page = await as(persona);
    for (const path of paths) found.push(...(await walkWithTab(page, path)));
  }
  expect(found, found.join('\n')).toEqual([]);
});

test('the request is cancelled again', async ({ as }) => {
  const alice = await as('alice');
  await cancelPendingRequest(alice, 'prod-readonly');
});
