// The access explorer (issue #14, item 6): Dana sees that Alice holds Sandbox
// administrator right now (with a link to the request behind it), narrows the lists with
// the filter form, exports what she sees as CSV, and asks what a new entitlement's
// definition would change before anyone applies it. Others are refused.
import {
  PERSONAS,
  expect,
  grantRows,
  justification,
  open,
  reloadUntil,
  requestAccessOk,
  signIn,
  test,
} from './pages';

const PS_AUDIT = 'arn:aws:sso:::permissionSet/ssoins-0000000000000000/ps-0000000000000003';

const NEW_ENTITLEMENT = `[[entitlements]]
id = "staging-audit"
name = "Staging security audit"
description = "Read the staging account's security configuration."
targets = [
  { kind = "account", account_id = "222222222222", permission_set_arn = "${PS_AUDIT}" },
]
[entitlements.policy]
eligible_groups = ["security"]
approvers = { groups = ["cloud-approvers"] }
max_duration_secs = 3600
default_duration_secs = 3600
`;

test('dana explores who holds and who could ask, exports it, and asks what if', async ({ as }) => {
  test.setTimeout(90_000);

  const alice = await as('alice');
  await requestAccessOk(alice, 'sandbox-admin', { justification: justification('access explorer'), duration: '1h' });
  await open(alice, '/requests');
  const active = grantRows(alice, { entitlement: 'sandbox-admin', status: 'active' });
  await reloadUntil(alice, active, { message: 'the auto-approved grant becomes active' });

  const dana = await as('dana');
  await open(dana, '/admin');
  await dana.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Access' }).click();
  await expect(dana).toHaveURL(/\/admin\/access$/);

  // Narrow to Alice on the sandbox account with the filter form.
  const filters = dana.getByTestId('access-filters');
  await filters.getByLabel('Person').fill('alice');
  await filters.getByLabel('Account').fill('sandbox');
  await filters.getByTestId('access-filter').click();
  await expect(dana).toHaveURL(/person=alice/);
  const holding = dana.getByTestId('access-holding').getByTestId('access-row');
  await expect(holding.first()).toBeVisible();
  await expect(holding.filter({ hasText: 'AdministratorAccess' }).first()).toContainText('Sandbox administrator');
  for (const email of await holding.evaluateAll((rows) => rows.map((r) => r.getAttribute('data-email')))) {
    expect(email).toBe(PERSONAS.alice.email);
  }
  // The entitlement links to the request behind the grant.
  const link = holding.first().getByRole('link', { name: 'Sandbox administrator' });
  await expect(link).toHaveAttribute('href', /^\/requests\/[0-9a-f-]+$/);
  const eligible = dana.getByTestId('access-eligible').getByTestId('access-row');
  await expect(eligible.first()).toContainText('sandbox (111111111111)');

  // Bob could ask for production read-only. Carol, in security, could ask for the
  // audit of every account in the Workloads OU, and for nothing on the sandbox.
  await open(dana, '/admin/access?person=bob&permission_set=ReadOnly');
  await expect(
    dana.getByTestId('access-eligible').getByTestId('access-row').filter({ hasText: 'Production read-only' }),
  ).toHaveCount(1);
  await open(dana, '/admin/access?person=carol&ou=workloads');
  const audit = dana.getByTestId('access-eligible').getByTestId('access-row');
  await expect(audit.filter({ hasText: 'Security audit of workloads' })).toHaveCount(2);
  await expect(audit.filter({ hasText: 'staging (222222222222)' })).toHaveCount(1);
  await expect(audit.filter({ hasText: 'production (333333333333)' })).toHaveCount(1);
  await open(dana, '/admin/access?person=carol&account=sandbox');
  await expect(dana.getByTestId('access-eligible-empty')).toBeVisible();

  // The export carries the filter and has exactly the matching rows.
  await open(dana, '/admin/access?person=alice&account=sandbox');
  const href = await dana.getByTestId('access-export').getAttribute('href');
  expect(href).toBe('/admin/access.csv?person=alice&account=sandbox');
  const csv = await dana.request.get(href!);
  expect(csv.status()).toBe(200);
  expect(csv.headers()['content-type']).toContain('text/csv');
  const lines = (await csv.text()).trim().split('\n');
  expect(lines[0]).toBe('kind,person,email,account,ou_path,permission_set,entitlement,status,ends_or_decided_by,request_id');
  expect(lines.some((l) => l.startsWith('"holds","Alice Employee","alice@example.com","sandbox (111111111111)"'))).toBe(true);
  expect(lines.slice(1).every((l) => l.includes('alice@example.com'))).toBe(true);

  // What if: a new entitlement for security, decided by the cloud approvers.
  const whatIf = dana.getByTestId('what-if');
  await whatIf.getByLabel('Definition').fill('this is not toml');
  await whatIf.getByTestId('what-if-run').click();
  await expect(dana.getByTestId('error-definition')).toContainText("not an entitlement's TOML");
  await whatIf.getByLabel('Definition').fill(NEW_ENTITLEMENT);
  await whatIf.getByTestId('what-if-run').click();
  const result = dana.getByTestId('what-if-result');
  await expect(result.getByRole('heading').first()).toHaveText('Staging security audit (staging-audit) is new');
  await expect(result.getByTestId('what-if-eligible-gain')).toHaveText('Carol Approver <carol@example.com>');
  await expect(result.getByTestId('what-if-approvers-gain')).toHaveText('Carol Approver <carol@example.com>');
  // Or start from production read-only's definition and edit it: security may ask too.
  await whatIf.getByTestId('what-if-start-from').getByRole('link', { name: 'Production read-only' }).click();
  await expect(dana).toHaveURL(/from=prod-readonly/);
  const definition = dana.getByTestId('what-if').getByLabel('Definition');
  await expect(definition).toHaveValue(/id = "prod-readonly"/);
  const edited = (await definition.inputValue()).replace(
    'eligible_groups = ["engineering"]',
    'eligible_groups = ["engineering", "security"]',
  );
  expect(edited).toContain('"security"');
  await definition.fill(edited);
  await dana.getByTestId('what-if-run').click();
  const changed = dana.getByTestId('what-if-result');
  await expect(changed.getByRole('heading').first()).toHaveText('Changing Production read-only (prod-readonly)');
  await expect(changed.getByTestId('what-if-eligible-gain')).toHaveText('Carol Approver <carol@example.com>');
  await expect(changed.getByTestId('what-if-eligible-lose')).toHaveCount(0);

  // Nothing was applied.
  await open(dana, '/admin/entitlements');
  await expect(dana.locator('[data-entitlement="staging-audit"]')).toHaveCount(0);

  // Not an admin: refused, page and export.
  await open(alice, '/admin/access');
  await expect(alice.getByTestId('forbidden')).toBeVisible();
  await expect(alice.getByTestId('access-row')).toHaveCount(0);
  expect((await alice.request.get('/admin/access.csv')).status()).toBe(403);

  // Leave no active grant behind for the other specs.
  await open(alice, '/requests');
  await active.first().getByTestId('end-grant').click();
  await reloadUntil(alice, active, { count: 0, message: 'the grant ends' });
});

test.describe('without JavaScript', () => {
  test.use({ javaScriptEnabled: false });

  // The what-if is a plain GET form: the page works the answer out as it renders.
  test('the what-if answers without JavaScript, and its URL can be shared', async ({ page }) => {
    await signIn(page, 'dana');
    await open(page, '/admin/access');
    const whatIf = page.getByTestId('what-if');
    await whatIf.getByLabel('Definition').fill('this is not toml');
    await whatIf.getByTestId('what-if-run').click();
    await expect(page.getByTestId('error-definition')).toContainText("not an entitlement's TOML");
    await page.getByTestId('what-if').getByLabel('Definition').fill(NEW_ENTITLEMENT);
    await page.getByTestId('what-if').getByTestId('what-if-run').click();
    await expect(page).toHaveURL(/definition=.*#what-if$/);
    const result = page.getByTestId('what-if-result');
    await expect(result.getByRole('heading').first()).toHaveText('Staging security audit (staging-audit) is new');
    await expect(result.getByTestId('what-if-approvers-gain')).toHaveText('Carol Approver <carol@example.com>');
    // The definition stays in the form to edit further.
    await expect(page.getByTestId('what-if').getByLabel('Definition')).toHaveValue(/id = "staging-audit"/);
    // The same address answers again when opened afresh.
    const shared = page.url();
    await open(page, shared);
    await expect(page.getByTestId('what-if-result').getByRole('heading').first()).toHaveText(
      'Staging security audit (staging-audit) is new',
    );
  });
});
