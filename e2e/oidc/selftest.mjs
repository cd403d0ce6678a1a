// Smoke test for e2e/oidc/provider.mjs: starts it on a free port and runs real
// authorization code + PKCE (S256) flows against it with node's built-in fetch
// (manual redirects, manual cookies). Nothing needs to listen on the client's
// redirect URI: the flow stops at the Location header.
//
// Run (from any directory):  node e2e/oidc/selftest.mjs
// Prints PASS/FAIL lines; exits non-zero on any failure.

import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROVIDER = path.join(HERE, 'provider.mjs');

const CLIENT = {
  client_id: 'portcullis',
  client_secret: 'selftest-secret:with/odd+chars',
  redirect_uris: ['http://127.0.0.1:3000/auth/callback'],
  post_logout_redirect_uris: ['http://127.0.0.1:3000/'],
};
const REDIRECT_URI = CLIENT.redirect_uris[0];
const POST_LOGOUT = CLIENT.post_logout_redirect_uris[0];

const ALICE = {
  login: 'alice',
  password: 'alice-password',
  sub: 'u-alice',
  email: 'alice@example.com',
  name: 'Alice Employee',
  groups: ['engineering'],
  manager: 'bob@example.com',
};
const BOB = {
  login: 'bob',
  password: 'bob-password',
  sub: 'u-bob',
  email: 'bob@example.com',
  name: 'Bob Manager',
  groups: ['engineering', 'managers'],
};

// ---------------------------------------------------------------- reporting

let failures = 0;
let passes = 0;
function pass(name) {
  passes += 1;
  console.log(`PASS ${name}`);
}
function fail(name, detail) {
  failures += 1;
  console.log(`FAIL ${name}${detail ? `: ${detail}` : ''}`);
}
function check(name, ok, detail) {
  if (ok) pass(name); else fail(name, detail);
  return ok;
}
async function step(name, fn) {
  try {
    await fn();
  } catch (err) {
    fail(name, err?.stack || String(err));
  }
}
function assert(cond, message) {
  if (!cond) throw new Error(message);
}

// ---------------------------------------------------------------- HTTP helpers

class CookieJar {
  #cookies = new Map();

  header() {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expires = attrs.map((a) => a.trim()).find((a) => /^expires=/i.test(a));
      const maxAge = attrs.map((a) => a.trim()).find((a) => /^max-age=/i.test(a));
      const expired = (expires && Date.parse(expires.slice(8)) <= Date.now())
        || (maxAge && Number(maxAge.slice(8)) <= 0);
      if (!value || expired) this.#cookies.delete(name); else this.#cookies.set(name, value);
    }
  }

  names() {
    return [...this.#cookies.keys()];
  }
}

async function http(jar, url, { method = 'GET', form, headers = {} } = {}) {
  const h = { ...headers };
  const cookie = jar?.header();
  if (cookie) h.cookie = cookie;
  let body;
  if (form) {
    body = new URLSearchParams(form).toString();
    h['content-type'] = 'application/x-www-form-urlencoded';
  }
  const res = await fetch(url, { method, headers: h, body, redirect: 'manual' });
  jar?.store(res);
  return res;
}

// Follows redirects (GET) until the Location points at `stopPrefix` (returned
// as a URL, not fetched) or a non-redirect response arrives.
async function follow(jar, startUrl, stopPrefix, firstResponse) {
  let url = startUrl;
  const visited = [url];
  let res = firstResponse ?? await http(jar, url);
  for (let hops = 0; hops < 20; hops += 1) {
    if (res.status < 300 || res.status >= 400) {
      return { res, url, visited, body: await res.text() };
    }
    const location = new URL(res.headers.get('location'), url);
    await res.arrayBuffer();
    if (stopPrefix && location.href.startsWith(stopPrefix)) {
      return { stoppedAt: location, visited };
    }
    url = location.href;
    visited.push(url);
    res = await http(jar, url);
  }
  throw new Error('too many redirects');
}

function decodeEntities(s) {
  return s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

function parseForm(html, baseUrl) {
  const formMatch = /<form\b[^>]*>/i.exec(html);
  assert(formMatch, 'no <form> in page');
  const actionMatch = /action="([^"]*)"/i.exec(formMatch[0]);
  const action = new URL(decodeEntities(actionMatch ? actionMatch[1] : ''), baseUrl).href;
  const fields = {};
  for (const m of html.matchAll(/<input\b[^>]*>/gi)) {
    const tag = m[0];
    if (!/type="hidden"/i.test(tag)) continue;
    const name = /name="([^"]*)"/i.exec(tag);
    const value = /value="([^"]*)"/i.exec(tag);
    if (name) fields[decodeEntities(name[1])] = value ? decodeEntities(value[1]) : '';
  }
  return { action, fields };
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

function pkcePair() {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

function basicAuth(id, secret) {
  // RFC 6749 section 2.3.1: form-urlencode both parts before base64.
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

function decodeJwt(jwt) {
  const [h, p, s] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
    signingInput: `${h}.${p}`,
    signature: Buffer.from(s, 'base64url'),
  };
}

// ---------------------------------------------------------------- process

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function startProvider(env) {
  const child = spawn(process.execPath, [PROVIDER], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`provider not ready after 15s; stderr:\n${stderr}`)), 15000);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (/oidc provider ready at http:\/\/127\.0\.0\.1:\d+\n/.test(stdout)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`provider exited early (code ${code}, signal ${signal}); stderr:\n${stderr}`));
    });
  });
  return { child, ready, output: () => ({ stdout, stderr }) };
}

// ---------------------------------------------------------------- flows

function writeAccounts(file, accounts) {
  // Atomic replace, as a test should do.
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(accounts, null, 2));
  fs.renameSync(tmp, file);
}

function authUrl(disco, { state, nonce, challenge, method = 'S256', scope = 'openid email profile groups', extra = {} }) {
  const u = new URL(disco.authorization_endpoint);
  u.searchParams.set('client_id', CLIENT.client_id);
  u.searchParams.set('response_type', 'code');
  u.searchParams.set('scope', scope);
  u.searchParams.set('redirect_uri', REDIRECT_URI);
  u.searchParams.set('state', state);
  u.searchParams.set('nonce', nonce);
  if (challenge !== undefined) {
    u.searchParams.set('code_challenge', challenge);
    u.searchParams.set('code_challenge_method', method);
  }
  for (const [k, v] of Object.entries(extra)) u.searchParams.set(k, v);
  return u.href;
}

// Runs /auth; if a login form appears, submits the credentials. Returns the
// callback URL (with code and state) plus what happened on the way.
async function authorize(jar, disco, { login, password, expectLoginForm }) {
  const state = b64url(crypto.randomBytes(12));
  const nonce = b64url(crypto.randomBytes(12));
  const { verifier, challenge } = pkcePair();
  const start = authUrl(disco, { state, nonce, challenge });

  let sawLoginForm = false;
  let result = await follow(jar, start, REDIRECT_URI);
  if (!result.stoppedAt) {
    assert(result.res.status === 200, `expected the login page, got ${result.res.status} at ${result.url}`);
    assert(/\/interaction\/[^/]+$/.test(new URL(result.url).pathname), `login page not under /interaction/: ${result.url}`);
    assert(result.body.includes('Sign in to Test IdP'), 'login page lacks its heading');
    assert(/name="login"[^>]*id="login"/.test(result.body), 'login input missing');
    assert(/name="password"[^>]*id="password"/.test(result.body), 'password input missing');
    assert(/>Sign in<\/button>/.test(result.body), 'Sign in button missing');
    sawLoginForm = true;
    const { action } = parseForm(result.body, result.url);
    const post = await http(jar, action, { method: 'POST', form: { login, password } });
    assert(post.status === 303, `login POST answered ${post.status}`);
    result = await follow(jar, action, REDIRECT_URI, post);
    assert(result.stoppedAt, `did not reach the redirect_uri; ended at ${result.url} (${result.res?.status})`);
  }
  if (expectLoginForm !== undefined) {
    assert(sawLoginForm === expectLoginForm, expectLoginForm ? 'expected a login form' : 'expected silent SSO, got a login form');
  }
  const cb = result.stoppedAt;
  assert(!cb.searchParams.get('error'), `callback carries error=${cb.searchParams.get('error')}: ${cb.searchParams.get('error_description')}`);
  assert(cb.searchParams.get('state') === state, 'state mismatch on callback');
  assert(cb.searchParams.get('iss') === disco.issuer, 'callback iss parameter missing or wrong');
  const code = cb.searchParams.get('code');
  assert(code, 'no code on callback');
  return { code, verifier, nonce, sawLoginForm };
}

async function redeem(disco, code, verifier) {
  const res = await http(null, disco.token_endpoint, {
    method: 'POST',
    headers: { authorization: basicAuth(CLIENT.client_id, CLIENT.client_secret) },
    form: { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier },
  });
  return { status: res.status, json: await res.json() };
}

async function signIn(jar, disco, account, jwks, opts = {}) {
  const { code, verifier, nonce, sawLoginForm } = await authorize(jar, disco, { login: account.login, password: account.password, ...opts });
  const { status, json } = await redeem(disco, code, verifier);
  assert(status === 200, `token endpoint answered ${status}: ${JSON.stringify(json.error)}`);
  assert(json.token_type === 'Bearer' && json.access_token && json.id_token, 'token response lacks tokens');
  const idt = decodeJwt(json.id_token);
  const jwk = jwks.keys.find((k) => k.kid === idt.header.kid);
  assert(jwk, `no JWKS key for kid ${idt.header.kid}`);
  const ok = crypto.verify('sha256', Buffer.from(idt.signingInput), crypto.createPublicKey({ key: jwk, format: 'jwk' }), idt.signature);
  assert(ok && idt.header.alg === 'RS256', 'ID token signature (RS256) does not verify against the JWKS');
  return { tokens: json, idToken: idt.payload, nonce, sawLoginForm, code, verifier };
}

async function userinfo(disco, accessToken) {
  const res = await http(null, disco.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
  return { status: res.status, json: await res.json() };
}

function sameList(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// ---------------------------------------------------------------- main

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'oidc-selftest-'));
const accountsFile = path.join(tmpDir, 'accounts.json');
let provider;

async function main() {
  writeAccounts(accountsFile, [ALICE, BOB]);
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  provider = startProvider({
    OIDC_PORT: String(port),
    OIDC_ACCOUNTS: accountsFile,
    OIDC_CLIENTS: JSON.stringify([CLIENT]),
  });
  await provider.ready;
  pass(`provider started (pid ${provider.child.pid}) at ${issuer}`);

  let disco;
  let jwks;
  await step('discovery', async () => {
    const res = await http(null, `${issuer}/.well-known/openid-configuration`);
    disco = await res.json();
    assert(disco.issuer === issuer, `issuer ${disco.issuer}`);
    for (const k of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'end_session_endpoint']) {
      assert(disco[k], `${k} missing`);
    }
    assert(sameList(disco.code_challenge_methods_supported, ['S256']), 'PKCE methods not exactly S256');
    assert(disco.scopes_supported.includes('groups'), 'groups scope not advertised');
    jwks = await (await http(null, disco.jwks_uri)).json();
    assert(jwks.keys.some((k) => k.kty === 'RSA' && k.alg === 'RS256'), 'no RS256 key in JWKS');
    assert(jwks.keys.every((k) => !('d' in k)), 'JWKS leaks private key material');
    pass(`discovery: authorization=${new URL(disco.authorization_endpoint).pathname} token=${new URL(disco.token_endpoint).pathname} `
      + `userinfo=${new URL(disco.userinfo_endpoint).pathname} jwks=${new URL(disco.jwks_uri).pathname} `
      + `end_session=${new URL(disco.end_session_endpoint).pathname}`);
  });
  if (!disco) return;

  // 1. Wrong password does not sign in; the right one then works on the same form.
  const jar = new CookieJar();
  let first;
  await step('wrong password', async () => {
    const { challenge } = pkcePair();
    const r = await follow(jar, authUrl(disco, { state: 's', nonce: 'n', challenge }), REDIRECT_URI);
    assert(!r.stoppedAt && r.res.status === 200, 'expected a login page');
    const { action } = parseForm(r.body, r.url);
    const post = await http(jar, action, { method: 'POST', form: { login: 'alice', password: 'not-her-password' } });
    const body = await post.text();
    assert(post.status === 200 || post.status === 401, `wrong password answered ${post.status}`);
    assert(!post.headers.get('location'), 'wrong password redirected');
    assert(body.includes('Invalid login or password'), 'no "Invalid login or password" message');
    const unknown = await http(jar, action, { method: 'POST', form: { login: 'mallory', password: 'x' } });
    assert(unknown.status === 200 || unknown.status === 401, `unknown user answered ${unknown.status}`);
    assert((await unknown.text()).includes('Invalid login or password'), 'unknown user: no error message');
    pass(`wrong password and unknown login are refused (status ${post.status}, form re-rendered)`);
  });

  // 2. Full code flow for alice.
  await step('code flow (alice)', async () => {
    first = await signIn(jar, disco, ALICE, jwks, { expectLoginForm: true });
    const t = first.idToken;
    assert(t.iss === issuer, `iss ${t.iss}`);
    assert(t.aud === CLIENT.client_id || (Array.isArray(t.aud) && t.aud.includes(CLIENT.client_id)), `aud ${t.aud}`);
    assert(t.nonce === first.nonce, 'nonce mismatch');
    assert(t.sub === ALICE.sub, `sub ${t.sub}`);
    assert(t.email === ALICE.email, `email ${t.email}`);
    assert(t.email_verified === true, 'email_verified not true');
    assert(t.name === ALICE.name, `name ${t.name}`);
    assert(t.preferred_username === ALICE.login, `preferred_username ${t.preferred_username}`);
    assert(sameList(t.groups, ALICE.groups), `groups ${JSON.stringify(t.groups)}`);
    assert(t.manager === ALICE.manager, `manager ${t.manager}`);
    assert(typeof t.exp === 'number' && typeof t.iat === 'number' && t.exp > t.iat, 'exp/iat missing or inconsistent');
    assert(first.tokens.scope.split(' ').sort().join(' ') === 'email groups openid profile', `token scope ${first.tokens.scope}`);
    pass(`code flow + PKCE S256: ID token claims ${Object.keys(t).sort().join(',')}`);
    console.log(`     id_token payload (alice): ${JSON.stringify(t)}`);
  });

  await step('userinfo (alice)', async () => {
    assert(first, 'no tokens from the code flow');
    const { status, json } = await userinfo(disco, first.tokens.access_token);
    assert(status === 200, `userinfo answered ${status}`);
    assert(json.sub === ALICE.sub, `userinfo sub ${json.sub}`);
    assert(sameList(json.groups, ALICE.groups), `userinfo groups ${JSON.stringify(json.groups)}`);
    assert(json.manager === ALICE.manager, `userinfo manager ${json.manager}`);
    pass(`userinfo: ${JSON.stringify(json)}`);
  });

  await step('code is single use', async () => {
    assert(first, 'no code from the code flow');
    const again = await redeem(disco, first.code, first.verifier);
    assert(again.status === 400 && again.json.error === 'invalid_grant', `reuse answered ${again.status} ${again.json.error}`);
    pass('authorization code replay is refused (invalid_grant)');
  });

  // 3. PKCE enforcement.
  await step('PKCE missing', async () => {
    const r = await follow(jar, authUrl(disco, { state: 'pk', nonce: 'n' }), REDIRECT_URI);
    assert(r.stoppedAt, `expected an error redirect, got ${r.res?.status}`);
    assert(r.stoppedAt.searchParams.get('error') === 'invalid_request', `error=${r.stoppedAt.searchParams.get('error')}`);
    assert(!r.stoppedAt.searchParams.get('code'), 'a code was issued without PKCE');
    pass(`PKCE missing is refused (error=invalid_request: ${r.stoppedAt.searchParams.get('error_description')})`);
  });
  await step('PKCE plain', async () => {
    const r = await follow(jar, authUrl(disco, { state: 'pp', nonce: 'n', challenge: 'a'.repeat(43), method: 'plain' }), REDIRECT_URI);
    assert(r.stoppedAt && r.stoppedAt.searchParams.get('error') && !r.stoppedAt.searchParams.get('code'), 'plain PKCE was accepted');
    pass(`PKCE method plain is refused (error=${r.stoppedAt.searchParams.get('error')})`);
  });
  await step('PKCE wrong verifier', async () => {
    const { code } = await authorize(jar, disco, { login: ALICE.login, password: ALICE.password, expectLoginForm: false });
    const r = await redeem(disco, code, pkcePair().verifier);
    assert(r.status === 400 && r.json.error === 'invalid_grant', `wrong verifier answered ${r.status} ${r.json.error}`);
    pass('wrong code_verifier is refused (invalid_grant); existing session signed in silently');
  });
  await step('wrong client secret', async () => {
    const { code, verifier } = await authorize(jar, disco, { login: ALICE.login, password: ALICE.password });
    const res = await http(null, disco.token_endpoint, {
      method: 'POST',
      headers: { authorization: basicAuth(CLIENT.client_id, 'wrong') },
      form: { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier },
    });
    const json = await res.json();
    assert(res.status === 401 && json.error === 'invalid_client', `wrong secret answered ${res.status} ${json.error}`);
    pass('wrong client secret is refused (invalid_client)');
  });

  await step('prompt=consent never shows a page', async () => {
    const { challenge } = pkcePair();
    const r = await follow(jar, authUrl(disco, { state: 'pc', nonce: 'n', challenge, extra: { prompt: 'consent' } }), REDIRECT_URI);
    assert(r.stoppedAt, `prompt=consent stopped at ${r.url} (${r.res?.status})`);
    assert(!r.stoppedAt.searchParams.get('error') && r.stoppedAt.searchParams.get('code'), `prompt=consent: error=${r.stoppedAt.searchParams.get('error')}`);
    assert(r.visited.some((u) => new URL(u).pathname.startsWith('/interaction/')), 'prompt=consent did not go through an interaction');
    pass('prompt=consent is auto-granted by the interaction handler (no consent page)');
  });

  // 4. Accounts file is re-read: change alice's groups and manager.
  const aliceV2 = { ...ALICE, groups: ['engineering', 'oncall'], manager: 'carol@example.com' };
  writeAccounts(accountsFile, [aliceV2, BOB]);
  await step('groups change (fresh sign-in)', async () => {
    const fresh = new CookieJar();
    const r = await signIn(fresh, disco, aliceV2, jwks, { expectLoginForm: true });
    assert(sameList(r.idToken.groups, aliceV2.groups), `ID token groups ${JSON.stringify(r.idToken.groups)}`);
    assert(r.idToken.manager === aliceV2.manager, `ID token manager ${r.idToken.manager}`);
    const u = await userinfo(disco, r.tokens.access_token);
    assert(sameList(u.json.groups, aliceV2.groups), `userinfo groups ${JSON.stringify(u.json.groups)}`);
    pass(`rewritten accounts file: fresh sign-in returns groups ${JSON.stringify(r.idToken.groups)}, manager ${r.idToken.manager}`);
  });
  await step('groups change (existing session)', async () => {
    const r = await signIn(jar, disco, aliceV2, jwks, { expectLoginForm: false });
    assert(sameList(r.idToken.groups, aliceV2.groups), `ID token groups ${JSON.stringify(r.idToken.groups)}`);
    pass('rewritten accounts file: silent re-sign-in on the existing session also returns the new groups');
  });
  await step('second user (bob, no manager)', async () => {
    const r = await signIn(new CookieJar(), disco, BOB, jwks, { expectLoginForm: true });
    assert(r.idToken.sub === BOB.sub && sameList(r.idToken.groups, BOB.groups), 'bob claims wrong');
    assert(!('manager' in r.idToken), 'bob has a manager claim');
    pass('second user signs in; no manager claim when the account has none');
  });

  // 5. RP-initiated logout ends the provider session.
  await step('logout', async () => {
    const u = new URL(disco.end_session_endpoint);
    u.searchParams.set('client_id', CLIENT.client_id);
    u.searchParams.set('post_logout_redirect_uri', POST_LOGOUT);
    u.searchParams.set('state', 'bye');
    const r = await follow(jar, u.href, POST_LOGOUT);
    assert(!r.stoppedAt && r.res.status === 200, `end_session answered ${r.res?.status}`);
    assert(/<script>[^<]*submit\(\)/.test(r.body), 'logout page does not auto-submit');
    assert(/<button[^>]*type="submit"/.test(r.body), 'logout page has no visible submit button');
    const { action, fields } = parseForm(r.body, r.url);
    assert(fields.logout === 'yes', 'logout page lacks hidden logout=yes');
    assert(fields.xsrf, 'logout page lacks xsrf');
    const post = await http(jar, action, { method: 'POST', form: fields });
    const done = await follow(jar, action, POST_LOGOUT, post);
    assert(done.stoppedAt, `logout did not end at the post_logout_redirect_uri (status ${done.res?.status} at ${done.url})`);
    assert(done.stoppedAt.searchParams.get('state') === 'bye', 'logout state not returned');
    pass(`logout: ${new URL(disco.end_session_endpoint).pathname} -> auto-submitted confirm -> ${done.stoppedAt.href}`);

    const again = await follow(jar, authUrl(disco, { state: 'x', nonce: 'y', challenge: pkcePair().challenge }), REDIRECT_URI);
    assert(!again.stoppedAt && again.res.status === 200 && again.body.includes('Sign in to Test IdP'),
      'after logout /auth did not ask for login again');
    pass('after logout, /auth asks for login again');
  });
}

function stopProvider() {
  return new Promise((resolve) => {
    const child = provider?.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
    const timer = setTimeout(() => {
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }, 3000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      check(`provider stopped cleanly on SIGTERM (pid ${child.pid})`, code === 0, `code ${code}, signal ${signal}`);
      resolve();
    });
    process.kill(child.pid, 'SIGTERM');
  });
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    if (provider?.child?.exitCode === null) {
      try { process.kill(provider.child.pid, 'SIGTERM'); } catch { /* already gone */ }
    }
    fs.rmSync(tmpDir, { recursive: true, force: true });
    process.exit(130);
  });
}

try {
  await main();
} catch (err) {
  fail('selftest', err?.stack || String(err));
} finally {
  await stopProvider();
  if (provider) {
    const { stderr } = provider.output();
    if (stderr.trim()) console.log(`provider stderr:\n${stderr.trimEnd().replace(/^/gm, '  | ')}`);
  }
  fs.rmSync(tmpDir, { recursive: true, force: true });
}

console.log(`${failures ? 'FAIL' : 'PASS'} selftest: ${passes} passed, ${failures} failed`);
process.exitCode = failures ? 1 : 0;
