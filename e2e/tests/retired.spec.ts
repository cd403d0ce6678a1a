// An entitlement no longer in the configuration is retired: the admin page lists it as
// such, and nobody is offered it any more.
import { adminEntitlementRow, entitlementCard, expect, open, test } from './pages';

test('a retired entitlement is listed for admins and offered to nobody', async ({ as }) => {
  const dana = await as('dana');
  await open(dana, '/admin');
  const legacy = adminEntitlementRow(dana, 'legacy-warehouse');
  await expect(legacy).toHaveAttribute('data-status', 'retired');
  await expect(legacy).toContainText('Legacy data warehouse');
  await expect(legacy).toContainText(/retired\s+since/);
  await expect(adminEntitlementRow(dana, 'prod-admin')).toHaveAttribute('data-status', 'live');

  // Alice is in engineering, which was eligible for it: it is not on her request page.
  const alice = await as('alice');
  await open(alice, '/');
  await expect(entitlementCard(alice, 'prod-readonly')).toBeVisible();
  await expect(entitlementCard(alice, 'legacy-warehouse')).toHaveCount(0);
});
