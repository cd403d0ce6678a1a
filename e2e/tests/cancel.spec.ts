// A requester withdraws a request that is still waiting for approval.
import {
  approvalRows,
  cancelPendingRequest,
  countOf,
  expect,
  justification,
  open,
  reloadUntil,
  requestAccessOk,
  requestRows,
  test,
} from './pages';

test('alice cancels a pending request and it leaves bob\'s queue', async ({ as }) => {
  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-readonly', { justification: justification('changed my mind'), duration: '30m' });

  const bob = await as('bob');
  await open(bob, '/approvals');
  const queued = approvalRows(bob, { entitlement: 'prod-readonly', requester: 'alice' });
  await expect(queued.first()).toBeVisible();
  const queuedBefore = await countOf(queued);

  await open(alice, '/requests');
  await expect(requestRows(alice, { entitlement: 'prod-readonly', status: 'pending' }).first().getByTestId('cancel-request')).toBeVisible();
  await cancelPendingRequest(alice, 'prod-readonly');
  // Only pending requests can be cancelled.
  await expect(requestRows(alice, { status: 'cancelled' }).getByTestId('cancel-request')).toHaveCount(0);

  await reloadUntil(bob, queued, { count: queuedBefore - 1 });
});
