// The admin dashboard (issue #14, item 5): Dana's /admin shows five charts as SVG, each
// with an accessible title and summary and a table of its numbers. A request Alice makes
// today adds one to today's row of "Requests per day" (after a reload: the charts are
// not live). A non-admin sees no charts.
import type { Locator, Page } from '@playwright/test';
import { cancelPendingRequest, expect, justification, open, requestAccessOk, test } from './pages';

function chart(page: Page, id: string): Locator {
  return page.locator(`[data-testid="chart"][data-chart="${id}"]`);
}

/** Today's total in "Requests per day" (every series of the last row added up). */
async function requestsToday(page: Page): Promise<number> {
  const row = chart(page, 'requests').getByTestId('chart-row').last();
  const cells = await row.locator('td').allTextContents();
  return cells.slice(1).reduce((sum, c) => sum + Number(c), 0);
}

test('dana reads the charts of the last 30 days; a new request counts today', async ({ as }) => {
  const dana = await as('dana');
  await open(dana, '/admin');
  for (const id of ['requests', 'decision-time', 'active-grants', 'lateness', 'aws']) {
    const c = chart(dana, id);
    await expect(c).toBeVisible();
    // An SVG image named by its title and summary, and a data table behind it.
    const svg = c.locator('svg[role="img"]');
    await expect(svg).toBeVisible();
    await expect(svg.locator('title').first()).not.toBeEmpty();
    await expect(c.getByTestId('chart-summary')).toHaveText(/\S/);
    await expect(c.getByTestId('chart-table')).toHaveCount(1);
  }
  // Thirty days, the last one today.
  const rows = chart(dana, 'requests').getByTestId('chart-row');
  await expect(rows).toHaveCount(30);
  const today = new Date().toISOString().slice(0, 10);
  await expect(rows.last()).toHaveAttribute('data-label-value', today);
  const before = await requestsToday(dana);

  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-readonly', { justification: justification('dashboard'), duration: '1h' });
  await dana.reload();
  await expect.poll(() => requestsToday(dana)).toBe(before + 1);
  // Each bar of today says what it counts.
  await expect(chart(dana, 'requests').locator('rect title').last()).toContainText(`${today}, `);

  // The table opens to the numbers.
  await chart(dana, 'requests').locator('summary').click();
  await expect(rows.last()).toBeVisible();

  // Not an admin: no charts at all.
  await open(alice, '/admin');
  await expect(alice.getByTestId('chart')).toHaveCount(0);
  await cancelPendingRequest(alice, 'prod-readonly');
});
