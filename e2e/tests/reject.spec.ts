// An approver from cloud-approvers turns down a prod-admin request.
import {
  approvalRows,
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

test('carol rejects alice\'s prod-admin request', async ({ as }) => {
  test.setTimeout(90_000);

  const alice = await as('alice');
  await open(alice, '/requests');
  const rejectedBefore = await countOf(requestRows(alice, { entitlement: 'prod-admin', status: 'rejected' }));

  await requestAccessOk(alice, 'prod-admin', {
    justification: justification('hotfix a prod config'),
    duration: '1h',
    ticket: 'CHG-1234',
  });
  await open(alice, '/requests');
  await expect(requestRows(alice, { entitlement: 'prod-admin', status: 'pending' }).first()).toBeVisible();

  // A requester never sees their own request in the approval queue.
  await open(alice, '/approvals');
  await expect(approvalRows(alice, { requester: 'alice' })).toHaveCount(0);

  const carol = await as('carol');
  await open(carol, '/approvals');
  await decide(carol, { entitlement: 'prod-admin', requester: 'alice' }, 'rejected', 'Rejected by e2e: use the runbook instead.');

  await open(alice, '/requests');
  await reloadUntil(alice, requestRows(alice, { entitlement: 'prod-admin', status: 'rejected' }), {
    count: rejectedBefore + 1,
  });
});
