// Progressive enhancement: with JavaScript disabled (no WebAssembly), the forms post
// to the server, which redirects back; errors come back in the URL and show by their
// fields, in the right card only.
import { test, expect } from '@playwright/test';
import { entitlementCard, requestRows, signIn, countOf, open, justification } from './pages';

test.use({ javaScriptEnabled: false });

test('without JavaScript alice requests access, sees field errors, and cancels', async ({ page }) => {
  await signIn(page, 'alice');

  await open(page, '/requests');
  const pendingBefore = await countOf(requestRows(page, { entitlement: 'prod-readonly', status: 'pending' }));

  // A bad submission: the server answers with the errors next to the fields.
  await open(page, '/');
  const card = entitlementCard(page, 'prod-readonly');
  await card.locator('textarea[name="justification"]').fill('');
  await card.locator('input[name="duration"]').fill('100h');
  await card.getByTestId('submit-request').click();
  await expect(card.getByTestId('error-justification')).toContainText('required');
  await expect(card.getByTestId('error-duration')).toContainText('maximum');
  // Only the card that was submitted shows them.
  await expect(entitlementCard(page, 'sandbox-admin').getByTestId('error-duration')).toHaveCount(0);

  // A good one.
  await card.locator('textarea[name="justification"]').fill(justification('no-js request'));
  await card.locator('input[name="duration"]').fill('1h');
  await card.getByTestId('submit-request').click();
  await open(page, '/requests');
  const pending = requestRows(page, { entitlement: 'prod-readonly', status: 'pending' });
  await expect(pending).toHaveCount(pendingBefore + 1);

  // Cancelling is a form post too.
  await pending.first().getByTestId('cancel-request').click();
  await open(page, '/requests');
  await expect(pending).toHaveCount(pendingBefore);
});
