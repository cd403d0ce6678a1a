// The admin area is for admins only.
import {
  adminGrantRows,
  adminRequestRows,
  assignmentRows,
  auditRows,
  cancelPendingRequest,
  expect,
  justification,
  navigate,
  open,
  requestAccessOk,
  signIn,
  test,
} from './pages';

test('a non-admin gets no admin link and a forbidden page', async ({ page }) => {
  await signIn(page, 'alice');
  await expect(page.getByTestId('nav-request')).toBeVisible();
  await expect(page.getByTestId('nav-admin')).toBeHidden();

  await open(page, '/admin');
  await expect(page.getByTestId('forbidden')).toBeVisible();
  await expect(adminRequestRows(page)).toHaveCount(0);
  await expect(adminGrantRows(page)).toHaveCount(0);
  await expect(page.getByTestId('revoke-grant')).toHaveCount(0);

  // The admin sub-pages leak nothing either.
  await open(page, '/admin/audit');
  await expect(auditRows(page)).toHaveCount(0);
  await open(page, '/admin/aws');
  await expect(assignmentRows(page)).toHaveCount(0);
});

test('an admin sees the admin link and everyone\'s requests', async ({ page, as }) => {
  // Make sure there is at least one request to list.
  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-readonly', { justification: justification('seed the admin list'), duration: '1h' });

  await signIn(page, 'dana');
  await expect(page.getByTestId('nav-admin')).toBeVisible();
  await navigate(page, 'nav-admin');
  await expect(page.getByTestId('forbidden')).toHaveCount(0);
  await expect(adminRequestRows(page).first()).toBeVisible();
  await expect(adminRequestRows(page, { requester: 'alice', status: 'pending' }).first()).toBeVisible();
  await expect(page.locator('a[href="/admin/audit"]').first()).toBeVisible();
  await expect(page.locator('a[href="/admin/aws"]').first()).toBeVisible();

  await page.locator('a[href="/admin/audit"]').first().click();
  await expect(page).toHaveURL(/\/admin\/audit/);
  await expect(auditRows(page).first()).toBeVisible();

  // Leave nothing pending behind for the other specs.
  await cancelPendingRequest(alice, 'prod-readonly');
});
