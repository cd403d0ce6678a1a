// Invalid request forms are refused with an explanation next to the field, and
// create no request.
import {
  countOf,
  entitlementCard,
  expect,
  justification,
  open,
  requestAccess,
  requestRows,
  signIn,
  test,
} from './pages';

test('invalid requests show field errors and create nothing', async ({ page }) => {
  await signIn(page, 'alice');
  await open(page, '/requests');
  const readonlyBefore = await countOf(requestRows(page, { entitlement: 'prod-readonly' }));
  const adminBefore = await countOf(requestRows(page, { entitlement: 'prod-admin' }));

  await open(page, '/');
  const card = entitlementCard(page, 'prod-readonly');

  // Missing justification.
  await requestAccess(page, 'prod-readonly', { justification: '', duration: '1h', skipBrowserValidation: true });
  await expect(card.getByTestId('error-justification')).toBeVisible();
  await expect(card.getByTestId('request-created')).toHaveCount(0);

  // Longer than the entitlement allows.
  await requestAccess(page, 'prod-readonly', {
    justification: justification('too long'),
    duration: '100h',
    skipBrowserValidation: true,
  });
  await expect(card.getByTestId('error-duration')).toContainText(/maximum/i);
  await expect(card.getByTestId('request-created')).toHaveCount(0);

  // Shorter than the policy minimum (5s in the e2e server).
  await requestAccess(page, 'prod-readonly', {
    justification: justification('too short'),
    duration: '1s',
    skipBrowserValidation: true,
  });
  await expect(card.getByTestId('error-duration')).toContainText(/minimum/i);
  await expect(card.getByTestId('request-created')).toHaveCount(0);

  // prod-admin requires a change ticket.
  const adminCard = entitlementCard(page, 'prod-admin');
  await requestAccess(page, 'prod-admin', {
    justification: justification('no ticket'),
    duration: '1h',
    ticket: '',
    skipBrowserValidation: true,
  });
  await expect(adminCard.getByTestId('error-ticket')).toBeVisible();
  await expect(adminCard.getByTestId('request-created')).toHaveCount(0);

  // ... of its own format (change or incident tickets), shown as an example on the form.
  await expect(adminCard.getByTestId('ticket-format')).toHaveText('Format: like CHG-10234');
  await requestAccess(page, 'prod-admin', {
    justification: justification('wrong ticket format'),
    duration: '1h',
    ticket: 'JIRA-4411',
    skipBrowserValidation: true,
  });
  await expect(adminCard.getByTestId('error-ticket')).toHaveText(
    'this entitlement needs a ticket like CHG-10234',
  );
  await expect(adminCard.getByTestId('request-created')).toHaveCount(0);

  // None of that created a request.
  await open(page, '/requests');
  await expect(requestRows(page, { entitlement: 'prod-readonly' })).toHaveCount(readonlyBefore);
  await expect(requestRows(page, { entitlement: 'prod-admin' })).toHaveCount(adminBefore);
});

test('alice is only offered the entitlements she is eligible for', async ({ page }) => {
  await signIn(page, 'alice');
  await open(page, '/');
  await expect(entitlementCard(page, 'sandbox-admin')).toBeVisible();
  await expect(entitlementCard(page, 'prod-readonly')).toBeVisible();
  await expect(entitlementCard(page, 'prod-admin')).toBeVisible();
  await expect(entitlementCard(page, 'security-audit')).toBeHidden();

  // Only prod-admin asks for a ticket.
  await expect(entitlementCard(page, 'prod-admin').locator('input[name="ticket"]')).toBeVisible();
  await expect(entitlementCard(page, 'prod-readonly').locator('input[name="ticket"]')).toBeHidden();
  await expect(entitlementCard(page, 'sandbox-admin').locator('input[name="ticket"]')).toBeHidden();
});
