// Production read-only goes to the requester's manager. Bob has no manager on record, so
// a member of cloud-approvers decides instead: his page says so, and Carol approves it.
import {
  cancelPendingRequest,
  countOf,
  decide,
  expect,
  justification,
  open,
  reloadUntil,
  requestAccessOk,
  requestRows,
  test,
} from './pages';

test('with no manager on record, the fallback approvers decide', async ({ as }) => {
  test.setTimeout(90_000);
  const bob = await as('bob');
  await open(bob, '/requests');
  const pendingBefore = await countOf(requestRows(bob, { entitlement: 'prod-readonly', status: 'pending' }));

  await requestAccessOk(bob, 'prod-readonly', { justification: justification('no manager'), duration: '30m' });
  await open(bob, '/requests');
  const pending = requestRows(bob, { entitlement: 'prod-readonly', status: 'pending' });
  await expect(pending).toHaveCount(pendingBefore + 1);
  await expect(pending.first().getByTestId('deciders')).toHaveText(
    'Decided by a member of cloud-approvers (no manager is on record for you)',
  );

  const carol = await as('carol');
  await open(carol, '/approvals');
  await decide(carol, { entitlement: 'prod-readonly', requester: 'bob' }, 'approved', 'Approved by e2e as the fallback.');

  await open(bob, '/requests');
  await reloadUntil(bob, pending, { count: pendingBefore });
});

test('with a known manager, the page names the manager', async ({ as }) => {
  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-readonly', { justification: justification('ask bob'), duration: '30m' });
  await open(alice, '/requests');
  const pending = requestRows(alice, { entitlement: 'prod-readonly', status: 'pending' });
  await expect(pending.first().getByTestId('deciders')).toHaveText('Decided by your manager (bob@example.com)');
  // Leaves nothing pending for the other specs.
  await cancelPendingRequest(alice, 'prod-readonly');
});
