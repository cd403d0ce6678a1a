// A scheduled start: Alice asks for Sandbox administrator from tomorrow. It is approved
// at once (the entitlement approves itself) but nothing is granted yet: her page says
// when it starts, and cancelling before then removes it all.
import { expect, justification, open, reloadUntil, requestAccess, requestAccessOk, test } from './pages';

test('access asked for later waits for its start and can be cancelled before', async ({ as }) => {
  const alice = await as('alice');
  const why = justification('scheduled start');

  // Too far ahead: refused at the field, nothing made.
  const card = await requestAccess(alice, 'sandbox-admin', { justification: why, duration: '30m', starts: '30d' });
  await expect(card.getByTestId('error-starts')).toHaveText('access can start at most 14 days ahead');

  await requestAccessOk(alice, 'sandbox-admin', { justification: why, duration: '30m', starts: '1d' });
  await open(alice, '/requests');
  const request = alice.getByTestId('request-row').filter({ hasText: why });
  await expect(request).toHaveCount(1);
  await expect(request).toHaveAttribute('data-status', 'approved');
  await expect(request.getByTestId('starts')).toContainText(/\(in (23h \d+m|24h)\)/);
  const requestId = await request.getAttribute('data-request-id');

  // Its grant waits, scheduled, and says when it starts.
  await open(alice, `/requests/${requestId}`);
  const grant = alice.locator('[data-testid="detail-grant-row"][data-status="scheduled"]');
  await expect(grant).toHaveCount(1);
  await expect(grant.getByTestId('starts-in')).toHaveText(/^(23h \d+m|24h)$/);

  // Cancelled before the start: the request and its grant are gone for good.
  await open(alice, '/requests');
  await request.getByTestId('cancel-request').click();
  await reloadUntil(alice, async () => {
    await expect(alice.getByTestId('request-row').filter({ hasText: why })).toHaveAttribute('data-status', 'cancelled');
  });
  await open(alice, `/requests/${requestId}`);
  await expect(alice.locator('[data-testid="detail-grant-row"][data-status="scheduled"]')).toHaveCount(0);
  await expect(alice.locator('[data-testid="history-row"][data-action="request.cancelled"]')).toHaveCount(1);
});
