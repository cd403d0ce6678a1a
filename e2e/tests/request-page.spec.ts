// A request's own page: the approval mail links to it, Alice's manager Bob decides there,
// Alice follows it through to her access, and Carol (an approver of other entitlements)
// is told it does not exist.
import {
  PERSONAS,
  expect,
  justification,
  open,
  outboxRows,
  reloadUntil,
  requestAccessOk,
  test,
  waitForPath,
} from './pages';

test('the approval mail leads to the request page, where the manager decides', async ({ as }) => {
  test.setTimeout(90_000);
  const why = justification('request page');
  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-readonly', { justification: why, duration: '30m' });

  await open(alice, '/requests');
  const row = alice.getByTestId('request-row').filter({ hasText: why });
  await expect(row).toHaveCount(1);
  const id = await row.getAttribute('data-request-id');
  expect(id).toBeTruthy();
  const path = `/requests/${id}`;

  // The mail to Bob names the page.
  const bob = await as('bob');
  await open(bob, '/outbox');
  const mail = outboxRows(bob, PERSONAS.bob.email).filter({ hasText: why });
  await reloadUntil(bob, mail, { count: 1 });
  await mail.locator('summary').click();
  await expect(mail.locator('pre')).toContainText(new RegExp(`Open the request to decide: http://[^\\s]+${path}`));

  // Bob opens it and approves there.
  await open(bob, path);
  await expect(bob.getByTestId('request-detail')).toHaveAttribute('data-viewer', 'approver');
  await expect(bob.getByTestId('detail-justification')).toHaveText(why);
  await expect(bob.getByTestId('detail-status')).toHaveText('pending');
  // Exactly what approving grants, and how long a session can outlast it.
  await expect(bob.getByTestId('detail-window')).toHaveText('30m from approval');
  await expect(bob.getByTestId('detail-target')).toContainText('ReadOnlyAccess on production (333333333333');
  await expect(bob.getByTestId('detail-session-tail')).toHaveText(
    'After the end: a session opened just before the end can stay open 4h after it: 4h 30m from approval in all',
  );
  await bob.locator('#decide-comment').fill('Approved from its own page.');
  await bob.getByTestId('decide-here').getByTestId('approve').click();
  await expect(bob.getByTestId('detail-decision')).toContainText('Approved from its own page.');
  await expect(bob.getByTestId('detail-status')).toHaveText(/approved|active/);
  await expect(bob.getByTestId('decide-here')).toHaveCount(0);

  // Alice follows her row's link to the page and sees her access come up, with its history.
  await open(alice, '/requests');
  await alice.locator(`[data-testid="request-row"][data-request-id="${id}"]`).getByTestId('request-link').click();
  await waitForPath(alice, path);
  await expect(alice.getByTestId('request-detail')).toHaveAttribute('data-viewer', 'requester');
  const active = alice.locator('[data-testid="detail-grant-row"][data-status="active"]');
  await reloadUntil(alice, active, { count: 1, message: 'the grant is active on the request page' });
  for (const action of ['request.created', 'request.approved', 'grant.activated']) {
    await expect(alice.locator(`[data-testid="history-row"][data-action="${action}"]`)).toHaveCount(1);
  }
  const grantId = await active.getAttribute('data-grant-id');

  // Carol may approve other entitlements, not this one: for her it does not exist.
  const carol = await as('carol');
  await open(carol, path);
  await expect(carol.getByTestId('error')).toHaveText('That request was not found.');
  await expect(carol.getByText(why)).toHaveCount(0);

  // Leaves no live access behind for the other specs.
  await open(alice, '/requests');
  await alice.locator(`[data-testid="grant-row"][data-grant-id="${grantId}"]`).getByTestId('end-grant').click();
  await reloadUntil(alice, alice.locator(`[data-testid="grant-row"][data-grant-id="${grantId}"][data-status="revoked"]`), {
    count: 1,
  });
});
