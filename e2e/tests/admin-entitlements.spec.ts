// The admin page for entitlements (issue #13; versions: issue #14): Dana follows an
// entitlement's link from the overview to its section, which says what it grants, who may
// ask, who decides, its limits, its live grants and newest requests; its versions show
// who changed it and what changed. The retired one is marked retired. Others are refused.
import {
  adminEntitlementRow,
  cancelPendingRequest,
  expect,
  justification,
  open,
  requestAccessOk,
  test,
} from './pages';

test('dana reads each entitlement: grants, policy, use and versions', async ({ as }) => {
  // A request of Alice's shows up among the newest requests (then she cancels it).
  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-admin', {
    justification: justification('entitlements page'),
    duration: '1h',
    ticket: 'CHG-10234',
  });

  const dana = await as('dana');
  await open(dana, '/admin');
  await adminEntitlementRow(dana, 'prod-admin').getByRole('link').click();
  await expect(dana).toHaveURL(/\/admin\/entitlements#prod-admin$/);

  const section = dana.locator('[data-testid="entitlement-detail"][data-entitlement="prod-admin"]');
  await expect(section).toBeVisible();
  await expect(section.getByRole('heading', { level: 2 })).toContainText('Production administrator');
  await expect(section.getByTestId('entitlement-target').first()).toContainText('AdministratorAccess on production (333333333333');
  await expect(section.getByTestId('eligible')).toHaveText('groups engineering');
  await expect(section.getByTestId('approval')).toContainText('cloud-approvers');
  await expect(section).toContainText('A ticket is required, like CHG-10234');
  await expect(section.getByTestId('live-grants')).toHaveText(/^\d+$/);
  await expect(section.getByTestId('entitlement-request').first()).toContainText('Alice');

  // Its first version: created by the demo catalog, every line of its TOML.
  const versions = section.getByTestId('versions');
  await versions.locator('summary').click();
  const first = versions.locator('[data-testid="version"][data-version="1"]');
  await expect(first).toContainText('created by the demo catalog');
  await expect(first.getByTestId('diff')).toContainText('+ id = "prod-admin"');

  // The retired one says so.
  await expect(
    dana.locator('[data-testid="entitlement-detail"][data-entitlement="legacy-warehouse"][data-status="retired"]'),
  ).toBeVisible();

  // Not an admin: refused.
  await open(alice, '/admin/entitlements');
  await expect(alice.getByTestId('forbidden')).toBeVisible();
  await expect(alice.getByTestId('entitlement-detail')).toHaveCount(0);

  // Leave nothing pending for the other specs.
  await cancelPendingRequest(alice, 'prod-admin');
});
