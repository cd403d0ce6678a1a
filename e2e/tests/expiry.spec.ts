// A short auto-approved grant runs out on its own: the background worker
// deprovisions it without anyone clicking anything.
import {
  QUICK,
  auditRows,
  countOf,
  expect,
  grantRows,
  justification,
  open,
  reloadUntil,
  requestAccessOk,
  requestRows,
  signIn,
  test,
} from './pages';

const EXPIRY_ACTIONS = ['expire', 'revoke'];

test('a 10s sandbox-admin grant expires by itself', async ({ page, as }) => {
  test.setTimeout(120_000);

  const dana = await as('dana');
  await open(dana, '/admin/audit');
  const expiryEventsBefore = await countOf(auditRows(dana, EXPIRY_ACTIONS));

  await signIn(page, 'alice');
  await open(page, '/requests');
  const endedBefore = await countOf(requestRows(page, { entitlement: 'sandbox-admin', status: 'ended' }));
  const revokedBefore = await countOf(grantRows(page, { entitlement: 'sandbox-admin', status: 'revoked' }));

  await requestAccessOk(page, 'sandbox-admin', {
    justification: justification('try something in the sandbox'),
    duration: '10s',
  });

  // Auto-approved: no approver involved, the grant is provisioned straight away.
  await open(page, '/requests');
  const active = grantRows(page, { entitlement: 'sandbox-admin', status: 'active' });
  await reloadUntil(page, active, { timeout: 15_000, message: 'the auto-approved grant becomes active' });
  await expect(active.first().getByTestId('time-left')).toBeVisible();

  // No clicks from here on: the grant must run out and be deprovisioned.
  await reloadUntil(
    page,
    async () => {
      await expect(grantRows(page, { entitlement: 'sandbox-admin', status: 'revoked' })).toHaveCount(revokedBefore + 1, QUICK);
      await expect(requestRows(page, { entitlement: 'sandbox-admin', status: 'ended' })).toHaveCount(endedBefore + 1, QUICK);
      await expect(active).toHaveCount(0, QUICK);
    },
    { timeout: 45_000, message: 'the 10s grant expires and is revoked within ~40s' },
  );

  // The audit log records it (newest first).
  await open(dana, '/admin/audit');
  await reloadUntil(
    dana,
    async () => {
      const n = await auditRows(dana, EXPIRY_ACTIONS).count();
      expect(n, 'audit rows whose action mentions expire/revoke').toBeGreaterThan(expiryEventsBefore);
    },
    { timeout: 15_000 },
  );

  // The filter form narrows the log to the entitlement and still shows it.
  await dana.locator('input[name="entitlement"]').fill('sandbox-admin');
  await dana.getByTestId('audit-filter').click();
  await reloadUntil(dana, auditRows(dana, EXPIRY_ACTIONS));
});
