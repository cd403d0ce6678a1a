// Demo sign-in and sign-out.
import { PERSONAS, type Persona, expect, open, signIn, signOut, test, waitForPath } from './pages';

test('unauthenticated visitors are sent to the demo sign-in page', async ({ page }) => {
  for (const path of ['/', '/requests', '/approvals', '/admin', '/outbox']) {
    await page.goto(path);
    await waitForPath(page, '/demo/login');
  }
  for (const persona of Object.keys(PERSONAS)) {
    await expect(page.getByTestId(`persona-${persona}`)).toBeVisible();
  }
});

test('every persona can sign in and out', async ({ page }) => {
  for (const persona of Object.keys(PERSONAS) as Persona[]) {
    await signIn(page, persona);
    await expect(page.getByTestId('whoami')).toContainText(PERSONAS[persona].displayName);
    await signOut(page);
    // Signed out for real: app pages send us back to sign in.
    await open(page, '/requests');
    await waitForPath(page, '/demo/login');
  }
});

test('"End all my sessions" signs alice out in every browser', async ({ page, as }) => {
  await signIn(page, 'alice');
  const other = await as('alice');
  const bob = await as('bob');
  await page.getByTestId('sign-out-everywhere').click();
  await waitForPath(page, '/demo/login');
  // Her other browser is signed out too; bob is not.
  await open(other, '/requests');
  await waitForPath(other, '/demo/login');
  await open(bob, '/requests');
  await expect(bob.getByTestId('whoami')).toContainText(PERSONAS.bob.displayName);
});
