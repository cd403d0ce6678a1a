// An admin revokes someone else's active grant.
import {
  QUICK,
  adminGrantRows,
  countOf,
  expect,
  grantRows,
  justification,
  open,
  reloadUntil,
  requestAccessOk,
  test,
} from './pages';

test('dana revokes alice\'s active sandbox-admin grant', async ({ as }) => {
  test.setTimeout(90_000);

  const alice = await as('alice');
  await open(alice, '/requests');
  const revokedBefore = await countOf(grantRows(alice, { entitlement: 'sandbox-admin', status: 'revoked' }));
  await requestAccessOk(alice, 'sandbox-admin', { justification: justification('revoked by an admin'), duration: '1h' });
  await open(alice, '/requests');
  const active = grantRows(alice, { entitlement: 'sandbox-admin', status: 'active' });
  await reloadUntil(alice, active, { message: 'the auto-approved grant becomes active' });

  const dana = await as('dana');
  await open(dana, '/admin');
  // admin-grant-row carries no persona attribute in the contract: pick alice's
  // by its text (her name or email is shown in the row).
  const alicesGrants = adminGrantRows(dana).filter({ hasText: /alice/i });
  await expect(alicesGrants.first()).toBeVisible();
  const grantsBefore = await countOf(alicesGrants);
  await alicesGrants.first().getByTestId('revoke-grant').click();
  await reloadUntil(dana, alicesGrants, { count: grantsBefore - 1, message: 'the revoked grant leaves the active list' });

  await reloadUntil(alice, async () => {
    await expect(grantRows(alice, { entitlement: 'sandbox-admin', status: 'revoked' })).toHaveCount(revokedBefore + 1, QUICK);
    await expect(active).toHaveCount(0, QUICK);
  });
});
