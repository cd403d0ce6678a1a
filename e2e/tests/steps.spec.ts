// Approval in steps (issue #12, item 1): Staging administrator is approved by the
// requester's manager first, then by a cloud approver. Carol does not see Alice's request
// until Bob has approved it; then her queue says it waits at step 2 and that Bob approved
// it; her approval grants the access.
import {
  approvalRows,
  countOf,
  decide,
  expect,
  grantRows,
  justification,
  open,
  reloadUntil,
  requestAccessOk,
  requestRows,
  test,
} from './pages';

test('a two-step request: the manager approves, then a cloud approver', async ({ as }) => {
  test.setTimeout(120_000);
  const alice = await as('alice');
  await open(alice, '/requests');
  const activeBefore = await countOf(grantRows(alice, { entitlement: 'staging-admin', status: 'active' }));
  await requestAccessOk(alice, 'staging-admin', { justification: justification('two steps'), duration: '30m' });
  await open(alice, '/requests');
  const pending = requestRows(alice, { entitlement: 'staging-admin', status: 'pending' });
  await expect(pending.first().getByTestId('deciders')).toHaveText(
    'Step 1 of 2: Manager. Decided by your manager (bob@example.com)',
  );

  // Step 1: Carol, a cloud approver, does not see it yet; Bob does.
  const carol = await as('carol');
  await open(carol, '/approvals');
  const carolsRows = approvalRows(carol, { entitlement: 'staging-admin', requester: 'alice' });
  await expect(carolsRows).toHaveCount(0);
  const bob = await as('bob');
  await open(bob, '/approvals');
  const bobsRow = approvalRows(bob, { entitlement: 'staging-admin', requester: 'alice' }).first();
  await expect(bobsRow.getByTestId('approval-step')).toHaveText('Step 1 of 2: Manager');
  // The card says what Alice asked for this before (the demo database may hold earlier runs).
  await expect(bobsRow.getByTestId('requester-history')).toContainText('in the last 90 days');
  await expect(bobsRow.getByTestId('approval-target')).toContainText(
    'AdministratorAccess on staging (222222222222, OU path /r-demo/ou-demo-workloads/) (sessions last up to 1h)',
  );
  // The window it grants, and how long a session can outlast it.
  await expect(bobsRow.getByTestId('approval-window')).toHaveText('Window: 30m from approval');
  await expect(bobsRow.getByTestId('session-tail')).toHaveText(
    'After the end: a session opened just before the end can stay open 1h after it: 1h 30m from approval in all',
  );
  await decide(bob, { entitlement: 'staging-admin', requester: 'alice' }, 'approved', 'Step one, by e2e.');

  // Step 2: Carol's queue has it, says where it stands and who approved.
  await open(carol, '/approvals');
  await reloadUntil(carol, carolsRows, { count: 1 });
  await expect(carolsRows.first().getByTestId('approval-step')).toHaveText('Step 2 of 2: Cloud approvers');
  await expect(carolsRows.first().getByTestId('approved-by')).toHaveText('Approved so far by Bob Manager (step 1)');
  await decide(carol, { entitlement: 'staging-admin', requester: 'alice' }, 'approved', 'Step two, by e2e.');

  // Approved at the last step: the access is granted in the simulated AWS.
  await open(alice, '/requests');
  await reloadUntil(alice, grantRows(alice, { entitlement: 'staging-admin', status: 'active' }), {
    count: activeBefore + 1,
    message: 'the staging admin grant is active',
  });
});
