// Extending access without a gap: Alice holds Production read-only, follows the "ending
// soon" link to her grant's Extend form and asks for 2h more (over the hour that
// approves itself), her manager Bob approves it on its page, and her access simply ends
// later: the same grant, active throughout, never revoked and granted again.
import { expect, justification, open, reloadUntil, requestAccessOk, test, QUICK } from './pages';

test('an extension approved by the manager moves the end, with no gap', async ({ as }) => {
  test.setTimeout(120_000);
  const why = justification('extend');
  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-readonly', { justification: why, duration: '30m' });
  await open(alice, '/requests');
  const request = alice.getByTestId('request-row').filter({ hasText: why });
  const requestId = await request.getAttribute('data-request-id');

  const bob = await as('bob');
  await open(bob, `/requests/${requestId}`);
  await bob.getByTestId('decide-here').getByTestId('approve').click();
  await expect(bob.getByTestId('detail-status')).toHaveText(/approved|active/);

  // Active on Alice's page; the link of the "ending soon" mail opens its Extend form.
  await open(alice, `/requests/${requestId}`);
  const active = alice.locator('[data-testid="detail-grant-row"][data-status="active"]');
  await reloadUntil(alice, active, { count: 1, message: 'the grant is active' });
  const grantId = await active.getAttribute('data-grant-id');
  await open(alice, `/requests?extend=${grantId}#grant-${grantId}`);
  const row = alice.locator(`[data-testid="grant-row"][data-grant-id="${grantId}"]`);
  await expect(row.getByTestId('time-left')).toHaveText(/^(30m|29m|2\dm)/);
  const form = row.getByTestId('extend');
  await expect(form).toHaveAttribute('open', '');
  await form.locator('input[name="duration"]').fill('2h');
  await form.locator('textarea[name="justification"]').fill(`${why}, still investigating`);
  await form.getByTestId('extend-submit').click();
  const pending = row.getByTestId('extension-pending');
  await reloadUntil(alice, pending, { message: 'the extension waits for Bob' });
  const extension = await pending.locator('a').getAttribute('href');
  expect(extension).toMatch(/^\/requests\/[0-9a-f]{32}$/);

  // Bob approves the extension on its own page, which names what it extends.
  await open(bob, extension!);
  await expect(bob.getByTestId('extends-link')).toHaveAttribute('href', `/requests/${requestId}`);
  await bob.getByTestId('decide-here').getByTestId('approve').click();
  await expect(bob.getByTestId('detail-status')).toHaveText('approved');

  // The same grant, still active, now with about 2h30m left.
  await open(alice, '/requests');
  await reloadUntil(alice, async () => {
    await expect(row).toHaveAttribute('data-status', 'active', QUICK);
    await expect(row.getByTestId('time-left')).toHaveText(/^2h (30|29|2\d)m/, QUICK);
  });
  await open(alice, `/requests/${requestId}`);
  const history = alice.getByTestId('history-row');
  await expect(history.and(alice.locator('[data-action="grant.extended"]'))).toHaveCount(1);
  await expect(history.and(alice.locator('[data-action="grant.activated"]'))).toHaveCount(1);
  await expect(history.and(alice.locator('[data-action="grant.revoked"]'))).toHaveCount(0);

  // Leaves no live access behind for the other specs.
  await open(alice, '/requests');
  await row.getByTestId('end-grant').click();
  await reloadUntil(alice, row.and(alice.locator('[data-status="revoked"]')), { count: 1 });
});
