// Alice asks for prod-readonly, her manager Bob approves it, the grant is
// provisioned, and Alice ends it early.
import {
  PERSONAS,
  QUICK,
  assignmentRows,
  countOf,
  decide,
  expect,
  grantRows,
  justification,
  navigate,
  open,
  reloadUntil,
  requestAccessOk,
  requestRows,
  signIn,
  signOut,
  test,
} from './pages';

test('alice requests prod-readonly, bob approves, alice ends the grant early', async ({ page, as }) => {
  test.setTimeout(120_000);

  // --- Alice asks for access -------------------------------------------------
  await signIn(page, 'alice');
  await navigate(page, 'nav-my');
  const requestsBefore = await countOf(requestRows(page, { entitlement: 'prod-readonly' }));
  const endedBefore = await countOf(requestRows(page, { entitlement: 'prod-readonly', status: 'ended' }));
  const revokedBefore = await countOf(grantRows(page, { entitlement: 'prod-readonly', status: 'revoked' }));

  await navigate(page, 'nav-request');
  await requestAccessOk(page, 'prod-readonly', {
    justification: justification('read prod logs for an incident'),
    duration: '1h',
  });

  await navigate(page, 'nav-my');
  await reloadUntil(page, requestRows(page, { entitlement: 'prod-readonly' }), { count: requestsBefore + 1 });
  await expect(requestRows(page, { entitlement: 'prod-readonly', status: 'pending' }).first()).toBeVisible();
  await signOut(page);

  // --- Bob, her manager, approves ------------------------------------------
  await signIn(page, 'bob');
  await expect(page.getByTestId('whoami')).toContainText(PERSONAS.bob.displayName);
  await navigate(page, 'nav-approvals');
  await decide(page, { entitlement: 'prod-readonly', requester: 'alice' }, 'approved', 'Approved by e2e: fine for an hour.');
  await signOut(page);

  // --- Alice sees the grant provisioned --------------------------------------
  await signIn(page, 'alice');
  await open(page, '/requests');
  const activeGrant = grantRows(page, { entitlement: 'prod-readonly', status: 'active' });
  await reloadUntil(
    page,
    async () => {
      await expect(requestRows(page, { entitlement: 'prod-readonly', status: 'active' }).first()).toBeVisible(QUICK);
      await expect(activeGrant.first()).toBeVisible(QUICK);
    },
    { message: 'the approved request and its grant become active' },
  );
  await expect(activeGrant.first().getByTestId('time-left')).toHaveText(/\d/);

  // While the grant is active the simulated AWS holds an assignment for it.
  const dana = await as('dana');
  await open(dana, '/admin/aws');
  const assignmentsWhileActive = await countOf(assignmentRows(dana));
  expect(assignmentsWhileActive, 'assignments in /admin/aws while the grant is active').toBeGreaterThan(0);

  // --- Alice ends it early -------------------------------------------------
  await activeGrant.first().getByTestId('end-grant').click();
  await reloadUntil(
    page,
    async () => {
      await expect(grantRows(page, { entitlement: 'prod-readonly', status: 'revoked' })).toHaveCount(revokedBefore + 1, QUICK);
      await expect(requestRows(page, { entitlement: 'prod-readonly', status: 'ended' })).toHaveCount(endedBefore + 1, QUICK);
      await expect(activeGrant).toHaveCount(0, QUICK);
    },
    { message: 'the ended grant is revoked and its request ended' },
  );

  // ...and the assignment is gone from the simulated AWS.
  await reloadUntil(dana, assignmentRows(dana), { count: assignmentsWhileActive - 1 });
});
