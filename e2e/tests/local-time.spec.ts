// Times as the reader lives them (issue #13): a reader in Tokyo sees their grant's end in
// Tokyo time with how long is left ("in 59 min"), the UTC time on hover, and when they
// asked as a relative time. The server writes UTC; the browser turns it local.
import {
  QUICK,
  expect,
  grantRows,
  justification,
  open,
  reloadUntil,
  requestAccessOk,
  requestRows,
  signIn,
  test,
} from './pages';

/** `2026-12-03 11:11:30 UTC` in Tokyo (UTC+9, no daylight saving), as `HH:MM`. */
function tokyoClock(utc: string): string {
  const [date, time] = utc.replace(' UTC', '').split(' ');
  const ms = Date.parse(`${date}T${time}Z`) + 9 * 3600_000;
  return new Date(ms).toISOString().slice(11, 16);
}

test('a reader in Tokyo sees local times and how far they are', async ({ browser, pageErrors }) => {
  test.setTimeout(90_000);
  const context = await browser.newContext({ timezoneId: 'Asia/Tokyo', locale: 'en-GB' });
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
  await signIn(page, 'alice');
  await requestAccessOk(page, 'sandbox-admin', { justification: justification('local time'), duration: '1h' });
  await open(page, '/requests');
  const active = grantRows(page, { entitlement: 'sandbox-admin', status: 'active' }).first();
  await reloadUntil(page, async () => {
    await expect(active).toBeVisible(QUICK);
  });

  // The end: Tokyo's clock, "in 59 min" or "in 1 h", and UTC on hover.
  const ends = active.getByTestId('when');
  const utc = (await ends.getAttribute('title')) ?? '';
  expect(utc).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  await expect(ends).toContainText(tokyoClock(utc));
  await expect(ends).toContainText(/\(in (59 min|1 h)\)/);
  expect(await ends.getAttribute('datetime')).toBe(`${utc.replace(' UTC', '').replace(' ', 'T')}Z`);

  // When it was asked for: moments ago.
  const asked = requestRows(page, { entitlement: 'sandbox-admin' }).first().getByTestId('when');
  await expect(asked).toContainText(/\((just now|\d+ min ago)\)/);

  // Leave no active grant behind for the other specs.
  await active.getByTestId('end-grant').click();
  await reloadUntil(page, async () => {
    await expect(grantRows(page, { entitlement: 'sandbox-admin', status: 'active' })).toHaveCount(0, QUICK);
  });
  await context.close();
});
