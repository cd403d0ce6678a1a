// A small, real OpenID Connect provider for Portcullis' tests.
//
// Built on oidc-provider 9 (OpenID Certified). TEST USE ONLY: fixed cookie
// keys, plain-text fixture passwords, in-memory keys/sessions/grants (every
// start is fresh), listens on 127.0.0.1 only.
//
// Run (from any directory):  node e2e/oidc/provider.mjs
//
// Environment:
//   OIDC_PORT      (required) port on 127.0.0.1; issuer is http://127.0.0.1:$OIDC_PORT
//   OIDC_ACCOUNTS  (required) path of a JSON file: an array of
//                  { "login", "password", "sub", "email", "name", "groups": [..], "manager"?,
//                    "email_verified"? (true unless false) }
//                  The file is re-read on every lookup (login form and findAccount),
//                  so a test can rewrite it (preferably atomically: write + rename)
//                  to change someone's groups between sign-ins.
//   OIDC_CLIENTS   (required) JSON array of
//                  { "client_id", "client_secret", "redirect_uris": [..], "post_logout_redirect_uris": [..] }
//                  (a value not starting with "[" is read as the path of such a file).
//                  Every client is confidential, client_secret_basic, authorization_code, code.
//
// Prints exactly one line to stdout when listening:
//   oidc provider ready at http://127.0.0.1:PORT
// Never logs passwords, codes or tokens.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';
// oidc-provider's own in-memory store, passed explicitly so it does not print
// its "development-only adapter" warning (in memory is what tests want).
// Deep import of a pinned version's internal file (the package has no
// "exports" map); revisit if oidc-provider is upgraded.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const HOST = '127.0.0.1';
const SCOPES = ['openid', 'email', 'profile', 'groups'];

function die(message) {
  process.stderr.write(`oidc provider: ${message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- configuration

const portText = process.env.OIDC_PORT;
if (!portText || !/^\d+$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
  die('OIDC_PORT must be set to a port number (1-65535)');
}
const PORT = Number(portText);
const ISSUER = `http://${HOST}:${PORT}`;

const ACCOUNTS_PATH = process.env.OIDC_ACCOUNTS;
if (!ACCOUNTS_PATH) die('OIDC_ACCOUNTS must be set to the path of a JSON accounts file');

function loadClients() {
  const raw = process.env.OIDC_CLIENTS;
  if (!raw) die('OIDC_CLIENTS must be set to a JSON array of clients');
  let text = raw.trim();
  if (!text.startsWith('[')) {
    try {
      text = fs.readFileSync(text, 'utf8');
    } catch (err) {
      die(`OIDC_CLIENTS is neither a JSON array nor a readable file: ${err.message}`);
    }
  }
  let list;
  try {
    list = JSON.parse(text);
  } catch (err) {
    die(`OIDC_CLIENTS is not valid JSON: ${err.message}`);
  }
  if (!Array.isArray(list) || list.length === 0) die('OIDC_CLIENTS must be a non-empty JSON array');
  return list.map((c, i) => {
    if (!c || typeof c.client_id !== 'string' || !c.client_id) die(`OIDC_CLIENTS[${i}].client_id missing`);
    if (typeof c.client_secret !== 'string' || !c.client_secret) die(`OIDC_CLIENTS[${i}].client_secret missing`);
    if (!Array.isArray(c.redirect_uris) || c.redirect_uris.length === 0) die(`OIDC_CLIENTS[${i}].redirect_uris missing`);
    return {
      client_id: c.client_id,
      client_secret: c.client_secret,
      redirect_uris: c.redirect_uris,
      post_logout_redirect_uris: Array.isArray(c.post_logout_redirect_uris) ? c.post_logout_redirect_uris : [],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
    };
  });
}
const CLIENTS = loadClients();

// The accounts file is read fresh on every lookup. A small retry covers a
// test that rewrites it in place (non-atomically) at the moment we read it.
async function readAccounts() {
  let lastError;
  for (let attempt = 0; attempt < 5; attempt += 1) {
    try {
      const list = JSON.parse(await fs.promises.readFile(ACCOUNTS_PATH, 'utf8'));
      if (!Array.isArray(list)) throw new Error('accounts file must hold a JSON array');
      return list;
    } catch (err) {
      lastError = err;
      await new Promise((r) => { setTimeout(r, 20); });
    }
  }
  throw new Error(`cannot read OIDC_ACCOUNTS file: ${lastError.message}`);
}

// Fail fast on a missing or broken accounts file.
try {
  await readAccounts();
} catch (err) {
  die(err.message);
}

function sameSecret(a, b) {
  const ha = crypto.createHash('sha256').update(String(a)).digest();
  const hb = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(ha, hb);
}

async function findAccountBySub(sub) {
  return (await readAccounts()).find((a) => a && a.sub === sub);
}

async function checkLogin(login, password) {
  const account = (await readAccounts()).find((a) => a && a.login === login);
  if (!account || typeof account.password !== 'string' || !sameSecret(account.password, password)) {
    return undefined;
  }
  return account;
}

function claimsOf(account) {
  const claims = {
    sub: account.sub,
    email: account.email,
    // Verified unless the fixture says `"email_verified": false`.
    email_verified: account.email_verified !== false,
    name: account.name,
    preferred_username: account.login,
    groups: Array.isArray(account.groups) ? account.groups : [],
  };
  if (account.manager) claims.manager = account.manager;
  return claims;
}

// ---------------------------------------------------------------- HTML

function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
</head>
<body>
${body}
</body>
</html>
`;
}

function loginPage(uid, { clientId, login = '', error } = {}) {
  return page('Sign in to Test IdP', `<main>
<h1>Sign in to Test IdP</h1>
${clientId ? `<p>Signing in to <strong>${esc(clientId)}</strong>.</p>` : ''}
${error ? `<p role="alert" class="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<p><label for="login">Login</label><br><input type="text" name="login" id="login" value="${esc(login)}" autofocus required></p>
<p><label for="password">Password</label><br><input type="password" name="password" id="password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
</main>`);
}

// ---------------------------------------------------------------- provider

function rsaSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `test-${crypto.randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

const configuration = {
  adapter: createMemoryAdapter(0),
  clients: CLIENTS,
  jwks: { keys: [rsaSigningKey()] },
  enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
  cookies: { keys: ['portcullis-e2e-test-only-cookie-key-not-a-secret'] },
  // Explicit lifetimes (seconds); also keeps oidc-provider from printing notices.
  ttl: {
    AccessToken: 60 * 60,
    AuthorizationCode: 60,
    IdToken: 60 * 60,
    Interaction: 60 * 60,
    Session: 24 * 60 * 60,
    Grant: 24 * 60 * 60,
  },
  pkce: { required: () => true }, // oidc-provider 9 supports S256 only
  conformIdTokenClaims: false, // the code-flow ID token carries the granted claims
  scopes: SCOPES,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups', 'manager'],
  },
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // Auto-confirm RP-initiated logout AND end the provider session
      // (logout=yes); the visible button serves clients without JavaScript.
      async logoutSource(ctx, form) {
        const formWithYes = form.replace(
          '</form>',
          '<input type="hidden" name="logout" value="yes"/><button type="submit">Sign out</button></form>',
        );
        ctx.type = 'html';
        ctx.body = page('Signing out of Test IdP', `<main>
<h1>Signing out of Test IdP</h1>
${formWithYes}
<script>document.getElementById('op.logoutForm').submit();</script>
</main>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.type = 'html';
        ctx.body = page('Signed out of Test IdP', '<main><h1>Signed out of Test IdP</h1></main>');
      },
    },
  },
  interactions: {
    url(ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
  async findAccount(ctx, sub) {
    const account = await findAccountBySub(sub);
    if (!account) return undefined;
    const claims = claimsOf(account);
    return {
      accountId: account.sub,
      async claims() {
        return claims;
      },
    };
  },
  // Grant the requested OIDC scopes so there is never a consent page.
  async loadExistingGrant(ctx) {
    const { client, session } = ctx.oidc;
    const accountId = session.accountId;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
    if (!grant || grant.accountId !== accountId || grant.clientId !== client.clientId) {
      grant = new ctx.oidc.provider.Grant({ accountId, clientId: client.clientId });
    }
    const requested = [...ctx.oidc.requestParamOIDCScopes].filter((s) => SCOPES.includes(s));
    if (requested.length) grant.addOIDCScope(requested.join(' '));
    await grant.save();
    return grant;
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Test IdP error', `<main><h1>Test IdP error</h1>
${Object.entries(out).map(([k, v]) => `<p><strong>${esc(k)}</strong>: ${esc(v)}</p>`).join('\n')}
</main>`);
  },
};

const provider = new Provider(ISSUER, configuration);

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`oidc provider: server_error on ${ctx?.method} ${ctx?.path}: ${err?.message}\n`);
});

// ---------------------------------------------------------------- interactions

async function readForm(req, limit = 64 * 1024) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html, headers = {}) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(html);
}

async function finishConsent(req, res, details) {
  const { prompt: { details: missing = {} }, params, session, grantId } = details;
  let grant = grantId ? await provider.Grant.find(grantId) : undefined;
  if (!grant) grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const savedId = await grant.save();
  const consent = grantId ? {} : { grantId: savedId };
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

async function handleInteraction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    send(res, 400, page('Test IdP error', `<main><h1>Test IdP error</h1><p>${esc(err.message)}</p></main>`));
    return;
  }
  if (details.uid !== uid) {
    send(res, 400, page('Test IdP error', '<main><h1>Test IdP error</h1><p>interaction mismatch</p></main>'));
    return;
  }

  if (details.prompt.name === 'consent') {
    // Should not happen (loadExistingGrant grants everything), but never show a page.
    await finishConsent(req, res, details);
    return;
  }
  if (details.prompt.name !== 'login') {
    send(res, 400, page('Test IdP error', `<main><h1>Test IdP error</h1><p>unsupported prompt ${esc(details.prompt.name)}</p></main>`));
    return;
  }

  const clientId = details.params.client_id;
  if (action === undefined) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, page('Method not allowed', '<p>Method not allowed</p>'), { allow: 'GET' });
      return;
    }
    send(res, 200, loginPage(uid, { clientId, login: details.params.login_hint || '' }));
    return;
  }

  if (req.method !== 'POST') {
    send(res, 405, page('Method not allowed', '<p>Method not allowed</p>'), { allow: 'POST' });
    return;
  }
  const form = await readForm(req);
  const login = form.get('login') || '';
  const password = form.get('password') || '';
  const account = await checkLogin(login, password);
  if (!account) {
    send(res, 401, loginPage(uid, { clientId, login, error: 'Invalid login or password' }));
    return;
  }
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: account.sub } },
    { mergeWithLastSubmission: false },
  );
}

const providerCallback = provider.callback();
const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?\/?$/;

const server = http.createServer((req, res) => {
  const path = (req.url || '/').split('?')[0];
  const match = INTERACTION.exec(path);
  if (!match) {
    providerCallback(req, res);
    return;
  }
  handleInteraction(req, res, match[1], match[2] ? 'login' : undefined).catch((err) => {
    process.stderr.write(`oidc provider: interaction error: ${err.message}\n`);
    if (!res.headersSent) {
      send(res, 500, page('Test IdP error', '<main><h1>Test IdP error</h1><p>internal error</p></main>'));
    } else {
      res.end();
    }
  });
});

server.on('error', (err) => die(`cannot listen on ${HOST}:${PORT}: ${err.message}`));

server.listen(PORT, HOST, () => {
  process.stdout.write(`oidc provider ready at ${ISSUER}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
