// Chat notifications (issue #12, item 9): the demo's entitlements tell a Slack-compatible
// incoming webhook of their events. Here the webhook is a local receiver
// (e2e/chat/receiver.mjs, set in playwright.config.ts). Alice asks for prod-readonly with a
// justification that tries to ping the whole channel; the webhook hears of the request, with
// its link and the ping made harmless; Bob approves; it hears of the approval and of the
// grant; Alice ends it; it hears of the end. The outbox page lists the posts by the webhook's
// name and never shows its URL.
import {
  PERSONAS,
  QUICK,
  decide,
  expect,
  grantRows,
  justification,
  open,
  outboxRows,
  reloadUntil,
  requestAccessOk,
  test,
} from './pages';

const RECEIVER = 'http://127.0.0.1:3104';
const SECRET = 'e2e-webhook-secret';

type Post = { path: string; contentType: string; body: { text?: string } };

async function received(): Promise<Post[]> {
  const res = await fetch(`${RECEIVER}/received`);
  expect(res.ok, 'the chat receiver answers').toBeTruthy();
  return (await res.json()) as Post[];
}

/** The texts posted since `from` posts had been received that mention `needle`. */
async function textsWith(from: number, needle: string): Promise<string[]> {
  return (await received())
    .slice(from)
    .map((p) => p.body.text ?? '')
    .filter((t) => t.includes(needle));
}

test('the webhook hears of a request, its approval, the grant and its end', async ({ as }) => {
  test.setTimeout(120_000);
  const before = (await received()).length;
  const why = justification('chat <!channel> @here');

  // --- Alice asks: the webhook hears of it, with the link to decide -----------
  const alice = await as('alice');
  await requestAccessOk(alice, 'prod-readonly', { justification: why, duration: '1h' });
  const stamp = why.slice(why.lastIndexOf('('));
  let asked: string[] = [];
  await expect
    .poll(async () => (asked = await textsWith(before, stamp)).length, {
      message: 'the webhook hears of the new request',
      timeout: 20_000,
    })
    .toBe(1);
  const text = asked[0];
  expect(text).toContain('*Approval needed: ');
  expect(text).toContain(PERSONAS.alice.displayName);
  // What Alice typed cannot mention the channel or make a link: it arrives escaped.
  expect(text).toContain('&lt;!channel&gt;');
  expect(text).not.toContain('<!channel>');
  const link = /<(http:\/\/127\.0\.0\.1:3100\/requests\/([^|>]+))\|Open the request>/.exec(text);
  expect(link, `a link to the request in ${JSON.stringify(text)}`).not.toBeNull();
  const [, url, id] = link!;
  const posts = await received();
  const post = posts.slice(before).find((p) => (p.body.text ?? '').includes(stamp))!;
  expect(post.contentType).toContain('application/json');

  // The link opens the request's own page.
  await alice.goto(url);
  await expect(alice.getByTestId('request-detail')).toBeVisible();

  // --- Bob approves: the webhook hears of the decision and of the grant --------
  const bob = await as('bob');
  await decide(bob, { entitlement: 'prod-readonly', requester: 'alice' }, 'approved', 'Approved by e2e: chat.');
  await expect
    .poll(async () => (await textsWith(before, `/requests/${id}|`)).map((t) => t.split('\n')[0]), {
      // The grant's post is due at once: the worker that granted wakes the delivering
      // lane (before, it waited for that lane's next poll, up to 30 s).
      message: 'the webhook hears of the approval and of the grant',
      timeout: 15_000,
    })
    .toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\*Request approved: /),
        expect.stringMatching(/^\*Access granted: /),
      ]),
    );

  // --- Alice ends it: the webhook hears of the end ------------------------------
  await open(alice, '/requests');
  const active = grantRows(alice, { entitlement: 'prod-readonly', status: 'active' });
  await reloadUntil(alice, async () => {
    await expect(active.first()).toBeVisible(QUICK);
  });
  await active.first().getByTestId('end-grant').click();
  await expect
    .poll(async () => (await textsWith(before, `/requests/${id}|`)).some((t) => t.startsWith('*Access ended: ')), {
      message: 'the webhook hears that the access ended',
      timeout: 15_000,
    })
    .toBe(true);

  // --- The outbox page lists the posts by the webhook's name, never its URL -------
  const dana = await as('dana');
  await open(dana, '/outbox');
  await expect(outboxRows(dana, 'chat:ops').first()).toBeVisible();
  await expect(dana.locator('body')).not.toContainText(SECRET);
  await expect(dana.locator('body')).not.toContainText('/services/T000');
});
