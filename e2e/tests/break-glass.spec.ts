// Break-glass with review: Alice takes production administrator at once for an
// emergency; Dana, an admin, finds the use waiting for review on the admin page and
// acknowledges it with a comment; the request's page keeps the review in its history.
import { expect, justification, open, reloadUntil, requestAccessOk, test } from './pages';

test('a break-glass use is granted at once and reviewed by an admin', async ({ as }) => {
  test.setTimeout(90_000);
  const why = justification('break-glass: production is down');
  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-breakglass', { justification: why, duration: '15m' });
  await open(alice, '/requests');
  const request = alice.getByTestId('request-row').filter({ hasText: why });
  const requestId = await request.getAttribute('data-request-id');
  await reloadUntil(alice, async () => {
    await expect(alice.locator(`[data-testid="request-row"][data-request-id="${requestId}"]`)).toHaveAttribute(
      'data-status',
      'active',
      { timeout: 1_500 },
    );
  });

  const dana = await as('dana');
  await open(dana, '/admin');
  const use = dana.locator(`[data-testid="break-glass-use"][data-request-id="${requestId}"]`);
  await expect(use).toContainText(why);
  // A review says what was checked.
  await use.getByTestId('mark-reviewed').click();
  await expect(use.getByTestId('error-comment')).toHaveText('say what you checked: a review needs a comment');
  await use.locator('textarea[name="comment"]').fill('Confirmed the outage with the on-call lead.');
  await use.getByTestId('mark-reviewed').click();
  await reloadUntil(dana, use, { count: 0, message: 'the use leaves the review list' });

  await open(alice, `/requests/${requestId}`);
  const reviewed = alice.locator('[data-testid="history-row"][data-action="break_glass.reviewed"]');
  await expect(reviewed).toHaveCount(1);
  await expect(reviewed).toContainText('Confirmed the outage with the on-call lead.');

  // Leaves no live access behind for the other specs.
  await open(alice, '/requests');
  const grant = alice.locator('[data-testid="grant-row"][data-entitlement="prod-breakglass"][data-status="active"]');
  await grant.first().getByTestId('end-grant').click();
  await reloadUntil(alice, grant, { count: 0 });
});
