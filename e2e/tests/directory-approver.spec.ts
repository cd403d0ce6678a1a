// Approvers who never signed in are told (issue #12, item 0): Erin is a member of
// cloud-approvers in the directory (Identity Store; the simulated one in the demo) but has
// never used the portal. When Alice asks for production admin, Erin gets the approval mail
// with the request's link, like Carol, who has signed in. The AWS page's catalog sync says
// how many approvers it read from the directory.
import {
  PERSONAS,
  cancelPendingRequest,
  countOf,
  expect,
  justification,
  open,
  outboxRows,
  reloadUntil,
  requestAccessOk,
  test,
} from './pages';

const ERIN = 'erin@example.com';

test('an approver who never signed in hears of the request from the directory', async ({ as }) => {
  test.setTimeout(90_000);
  const dana = await as('dana');
  await open(dana, '/admin/aws');
  await expect(dana.getByTestId('catalog-run')).toContainText('approver directory:');

  await open(dana, '/outbox');
  const toErin = outboxRows(dana, ERIN);
  const toCarol = outboxRows(dana, PERSONAS.carol.email);
  const erinBefore = await countOf(toErin);
  const carolBefore = await countOf(toCarol);

  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-admin', { justification: justification('tell erin too'), duration: '30m', ticket: 'CHG-1234' });

  await reloadUntil(dana, toErin, { count: erinBefore + 1, message: 'a mail to erin@example.com is in the outbox' });
  await expect(toErin.first()).toContainText('Approval needed: Production admin');
  await expect(toCarol).toHaveCount(carolBefore + 1);
  // Nobody who is not an approver is written to as one: Alice is never told of her own request.
  await expect(outboxRows(dana, PERSONAS.alice.email).filter({ hasText: 'Approval needed' })).toHaveCount(0);

  await cancelPendingRequest(alice, 'prod-admin');
});
