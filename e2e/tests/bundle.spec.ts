// Bundles (issue #12, item 10): Alice asks for sandbox administrator and production
// read-only in one go. Both requests are made with her one justification: the sandbox is
// granted at once (it approves itself) while read-only waits for Bob, her manager; the
// request's page lists the other part. The spec cancels and ends what it made.
import { cancelPendingRequest, countOf, expect, grantRows, justification, open, reloadUntil, requestRows, test } from './pages';

test('two entitlements asked for together, each decided by its own policy', async ({ as }) => {
  test.setTimeout(90_000);
  const alice = await as('alice');
  await open(alice, '/requests');
  const pendingBefore = await countOf(requestRows(alice, { entitlement: 'prod-readonly', status: 'pending' }));
  const activeBefore = await countOf(grantRows(alice, { entitlement: 'sandbox-admin', status: 'active' }));

  await open(alice, '/');
  const form = alice.getByTestId('bundle-form');
  await form.getByTestId('bundle-sandbox-admin').check();
  await form.getByTestId('bundle-prod-readonly').check();
  await form.locator('textarea[name="justification"]').fill(justification('bundle'));
  await form.locator('input[name="duration"]').fill('30m');
  await form.getByTestId('submit-bundle').click();
  await expect(form.getByTestId('bundle-created')).toHaveText(/2 requests sent together/);

  await open(alice, '/requests');
  const pending = requestRows(alice, { entitlement: 'prod-readonly', status: 'pending' });
  await expect(pending).toHaveCount(pendingBefore + 1);
  await reloadUntil(alice, grantRows(alice, { entitlement: 'sandbox-admin', status: 'active' }), {
    count: activeBefore + 1,
    message: 'the sandbox part is granted at once',
  });
  // The pending part's page names the part asked with it.
  await pending.first().getByTestId('request-link').click();
  await expect(alice.getByTestId('bundle-part')).toHaveCount(1);
  await expect(alice.getByTestId('bundle-part').first()).toContainText('Sandbox administrator');
  await cancelPendingRequest(alice, 'prod-readonly');
  // Ends the sandbox part, leaving no active access for the other specs.
  await open(alice, '/requests');
  const sandbox = grantRows(alice, { entitlement: 'sandbox-admin', status: 'active' });
  await sandbox.first().getByTestId('end-grant').click();
  await reloadUntil(alice, sandbox, { count: activeBefore, message: 'the sandbox part has ended' });
});
