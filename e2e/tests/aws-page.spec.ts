// The admin AWS page: the catalog with OU paths, and catalog sync and reconciliation on
// demand, whose outcome shows up by itself (the page polls while it is open).
import { expect, open, signIn, test } from './pages';

test('an admin sees the catalog and runs a reconciliation and a catalog sync', async ({ page }) => {
  await signIn(page, 'dana');
  await open(page, '/admin/aws');

  const production = page.getByTestId('catalog-account').filter({ hasText: 'production' });
  await expect(production).toBeVisible();
  await expect(production).toContainText('Root / Workloads');
  await expect(page.getByTestId('catalog-permission-set').filter({ hasText: 'ReadOnlyAccess' })).toContainText('4h');

  // The runs before this one (the server schedules its own) do not count.
  const reconcile = page.getByTestId('reconcile-run');
  const before = (await reconcile.textContent()) ?? '';
  await page.getByTestId('reconcile-now').click();
  await expect(reconcile).not.toHaveText(before, { timeout: 15_000 });
  await expect(reconcile).toHaveAttribute('data-status', 'succeeded', { timeout: 15_000 });
  await expect(reconcile).toContainText('in sync');
  await expect(page.getByTestId('no-drift')).toBeVisible();

  const catalog = page.getByTestId('catalog-run');
  const catalogBefore = (await catalog.textContent()) ?? '';
  await page.getByTestId('catalog-now').click();
  await expect(catalog).not.toHaveText(catalogBefore, { timeout: 15_000 });
  await expect(catalog).toHaveAttribute('data-status', 'succeeded', { timeout: 15_000 });
  await expect(catalog).toContainText('seeded');

  // Both are in the audit log, under Dana's name.
  await open(page, '/admin/audit?action=reconcile.requested');
  await expect(page.getByTestId('audit-row').first()).toContainText('Dana');
});
