// Live status (issue #13): My access, Approvals and Admin follow what happens without a
// reload. Alice asks for prod-readonly while Bob's approvals page and Dana's admin page
// are open; the request appears on both; Bob approves; Alice's My access, open the whole
// time, goes from pending to active. Nobody reloads (each page counts its loads to prove
// it). Alice then ends the access, and her page shows the grant revoked, still without a
// reload. A half-typed comment is never thrown away by a refresh.
import type { Page } from '@playwright/test';
import {
  approvalRows,
  adminGrantRows,
  expect,
  grantRows,
  justification,
  open,
  requestAccessOk,
  requestRows,
  test,
} from './pages';

const LIVE = { timeout: 20_000 };

/** Counts the page's document loads from now on (a reload would add one). */
async function countLoads(page: Page): Promise<() => Promise<number>> {
  await page.evaluate(() => sessionStorage.setItem('loads', '0'));
  await page.addInitScript(() => {
    sessionStorage.setItem('loads', String(Number(sessionStorage.getItem('loads') ?? '0') + 1));
  });
  return async () => Number(await page.evaluate(() => sessionStorage.getItem('loads')));
}

test('my access, approvals and admin follow a request without reloading', async ({ as }) => {
  test.setTimeout(120_000);
  const alice = await as('alice');
  const bob = await as('bob');
  const dana = await as('dana');
  await open(alice, '/requests');
  await open(bob, '/approvals');
  await open(dana, '/admin');
  const loads = await Promise.all([alice, bob, dana].map(countLoads));
  const activeBefore = await grantRows(alice, { entitlement: 'prod-readonly', status: 'active' }).count();
  const queuedBefore = await approvalRows(bob, { entitlement: 'prod-readonly', requester: 'alice' }).count();

  // Alice asks in a tab of her own; her My access page stays open.
  const asking = await alice.context().newPage();
  await requestAccessOk(asking, 'prod-readonly', { justification: justification('live status'), duration: '1h' });
  await asking.close();

  await expect(requestRows(alice, { entitlement: 'prod-readonly', status: 'pending' }).first()).toBeVisible(LIVE);
  const queued = approvalRows(bob, { entitlement: 'prod-readonly', requester: 'alice' });
  await expect(queued).toHaveCount(queuedBefore + 1, LIVE);

  // Bob starts a comment, waits longer than a refresh, and finds it still there.
  const comment = queued.first().locator('textarea[name="comment"]');
  await comment.fill('Approved by e2e: live');
  await bob.waitForTimeout(6_000);
  await expect(comment).toHaveValue('Approved by e2e: live');
  await queued.first().getByTestId('approve').click();
  await expect(queued).toHaveCount(queuedBefore, LIVE);

  // Alice's page, never reloaded, shows the access being set up and then active.
  const active = grantRows(alice, { entitlement: 'prod-readonly', status: 'active' });
  await expect(active).toHaveCount(activeBefore + 1, LIVE);
  // Dana's overview lists the live grant.
  await expect(adminGrantRows(dana).filter({ hasText: 'Alice' }).first()).toBeVisible(LIVE);

  // Alice ends it; her page follows it to revoked.
  await active.first().getByTestId('end-grant').click();
  await expect(active).toHaveCount(activeBefore, LIVE);

  for (const count of loads) expect(await count(), 'pages loaded again').toBe(0);
});
