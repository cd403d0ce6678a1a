// The audit log a page at a time (issue #13): 100 events a page, newest first; "Older
// events" goes on where the page ended (the URL carries the cursor, so it can be shared
// and works without JavaScript), with the filter kept, and "First page" goes back.
import { test, expect, type Page } from '@playwright/test';
import { auditRows, open, signIn } from './pages';

// More events than a page, whatever ran before: each time Alice opens the admin page
// she is refused, and each refusal is audited (`denied.admin_overview`).
test.beforeAll(async ({ browser }) => {
  const context = await browser.newContext();
  const alice = await context.newPage();
  await signIn(alice, 'alice');
  for (let i = 0; i < 130; i++) {
    await alice.request.get('/admin');
  }
  await context.close();
});

async function seqs(page: Page): Promise<number[]> {
  const cells = await auditRows(page).locator('td[data-label="#"]').allTextContents();
  return cells.map((c) => Number(c.trim()));
}

for (const javaScriptEnabled of [true, false]) {
  test.describe(javaScriptEnabled ? 'with JavaScript' : 'without JavaScript', () => {
    test.use({ javaScriptEnabled });

    test('the audit log pages through older events and back', async ({ page }) => {
      await signIn(page, 'dana');
      await open(page, '/admin/audit');
      await expect(auditRows(page)).toHaveCount(100);
      const first = await seqs(page);
      expect(first).toEqual([...first].sort((a, b) => b - a));
      await expect(page.getByTestId('audit-pager')).not.toContainText('First page');

      await page.getByTestId('audit-pager-next').click();
      await page.waitForURL(/before=/);
      await expect(auditRows(page).first()).toBeVisible();
      const second = await seqs(page);
      expect(second.length).toBeGreaterThan(0);
      expect(second.length).toBeLessThanOrEqual(100);
      // Straight on from the first page: nothing skipped, nothing twice.
      expect(second[0]).toBeLessThan(first[first.length - 1]);
      const before = Number(new URL(page.url()).searchParams.get('before'));
      expect(before).toBe(first[first.length - 1]);

      await page.getByTestId('audit-pager').getByRole('link', { name: 'First page' }).click();
      await page.waitForURL((url) => !url.search.includes('before='));
      await expect(auditRows(page)).toHaveCount(100);
      expect((await seqs(page))[0]).toBeGreaterThanOrEqual(first[0]);
    });
  });
}

test('a filtered audit log keeps its filter on the next page', async ({ page }) => {
  await signIn(page, 'dana');
  await open(page, '/admin/audit?action=denied.');
  const rows = auditRows(page);
  await expect(rows).toHaveCount(100);
  await page.getByTestId('audit-pager-next').click();
  await page.waitForURL(/before=/);
  expect(new URL(page.url()).searchParams.get('action')).toBe('denied.');
  await expect(rows.first()).toBeVisible();
  for (const action of await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-action')))) {
    expect(action).toMatch(/^denied\./);
  }
});
