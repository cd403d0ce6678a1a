-- Sign-ins in progress with the OpenID provider: one row per started sign-in, deleted when
-- the provider sends the browser back (single use) or when it expires. `state` and the
-- browser-binding cookie are stored as SHA-256 hashes only.
CREATE TABLE oidc_login (
    state_hash TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,            -- sha256 of the login cookie that started it
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_login_expires_idx ON oidc_login (expires_at);
