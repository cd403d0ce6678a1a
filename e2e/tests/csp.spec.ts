// The Content-Security-Policy: every page carries one with a fresh nonce, Leptos'
// hydration scripts carry that nonce (the app hydrates: the other specs fail on any
// violation), and a script injected into the page is refused and reported. This spec
// watches the console itself, because it provokes a violation on purpose.
import { test, expect } from '@playwright/test';
import { CSP_VIOLATION, open, signIn } from './pages';

test('pages carry a nonce-based CSP that the hydration scripts match', async ({ page, request }) => {
  const nonces: string[] = [];
  for (let i = 0; i < 2; i++) {
    const res = await request.get('/demo/login');
    const csp = res.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("object-src 'none'");
    expect(csp).toContain("base-uri 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("form-action 'self'");
    expect(csp).not.toContain('unsafe-inline');
    const nonce = /'nonce-([A-Za-z0-9_-]{16,})'/.exec(csp)?.[1];
    expect(nonce, `a nonce in ${csp}`).toBeTruthy();
    nonces.push(nonce!);
  }
  expect(nonces[0]).not.toEqual(nonces[1]);

  // An app page (signed in): each script element carries the nonce of its own answer.
  await signIn(page, 'alice');
  const res = await page.request.get('/requests');
  expect(res.status()).toBe(200);
  const csp = res.headers()['content-security-policy'] ?? '';
  const nonce = /'nonce-([A-Za-z0-9_-]+)'/.exec(csp)![1];
  const html = await res.text();
  const scripts = html.match(/<script\b[^>]*>/g) ?? [];
  expect(scripts.length).toBeGreaterThan(0);
  for (const tag of scripts) expect(tag).toContain(`nonce="${nonce}"`);
});

test('a script injected into a page is refused and reported', async ({ page }) => {
  const reported: string[] = [];
  page.on('console', (msg) => {
    if (CSP_VIOLATION.test(msg.text())) reported.push(msg.text());
  });
  await signIn(page, 'alice');
  await open(page, '/requests');

  const directive = await page.evaluate(
    () =>
      new Promise<string>((resolve) => {
        document.addEventListener('securitypolicyviolation', (e) => resolve(e.effectiveDirective), {
          once: true,
        });
        const s = document.createElement('script');
        s.textContent = 'window.__injected = true;';
        document.body.appendChild(s);
        setTimeout(() => resolve('no violation'), 3_000);
      }),
  );
  expect(directive).toBe('script-src-elem');
  expect(await page.evaluate(() => (window as unknown as { __injected?: boolean }).__injected)).toBeUndefined();
  // The console report the other specs fail on.
  await expect.poll(() => reported.length).toBeGreaterThan(0);
});
