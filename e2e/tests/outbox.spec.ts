// A request that needs approval sends mail to the approver.
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

test('asking for prod-readonly mails alice\'s manager bob', async ({ as }) => {
  const bob = await as('bob');
  await open(bob, '/outbox');
  const toBob = outboxRows(bob, PERSONAS.bob.email);
  const mailsBefore = await countOf(toBob);

  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-readonly', { justification: justification('mail the approver'), duration: '1h' });

  // Mail may be sent by the background worker: poll.
  await reloadUntil(bob, toBob, { count: mailsBefore + 1, message: 'a mail to bob@example.com is in the outbox' });
  await expect(toBob.first()).toHaveText(/\S/); // has a subject

  // Leave nothing pending behind for the other specs.
  await cancelPendingRequest(alice, 'prod-readonly');
});
