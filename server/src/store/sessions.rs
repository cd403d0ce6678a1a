//! Browser sessions and OpenID Connect login flows (single-use, browser-bound state).

use super::*;

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A sign-in started with the OpenID provider, waiting for the browser to come back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginFlow {
    pub browser_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub expires_at: Timestamp,
}

/// Records a started sign-in under the hash of its `state`; drops expired ones.
pub async fn create_login_flow(
    conn: &mut AnyConnection,
    state: &str,
    flow: &LoginFlow,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("DELETE FROM oidc_login WHERE expires_at <= $1")
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO oidc_login (state_hash, browser_hash, nonce, pkce_verifier, return_to, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hash_token(state))
    .bind(&flow.browser_hash)
    .bind(&flow.nonce)
    .bind(&flow.pkce_verifier)
    .bind(&flow.return_to)
    .bind(now.millis())
    .bind(flow.expires_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the sign-in started with `state`: at most once, since the row is deleted.
pub async fn take_login_flow(conn: &mut AnyConnection, state: &str) -> Result<Option<LoginFlow>> {
    let row = sqlx::query(
        "DELETE FROM oidc_login WHERE state_hash = $1
         RETURNING browser_hash, nonce, pkce_verifier, return_to, expires_at",
    )
    .bind(hash_token(state))
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(LoginFlow {
            browser_hash: r.try_get("browser_hash")?,
            nonce: r.try_get("nonce")?,
            pkce_verifier: r.try_get("pkce_verifier")?,
            return_to: r.try_get("return_to")?,
            expires_at: Timestamp::from_millis(r.try_get("expires_at")?),
        })
    })
    .transpose()
}

/// A new session of someone who proved who they are just now.
pub async fn create_session(
    conn: &mut AnyConnection,
    token: &str,
    user_id: &str,
    demo: bool,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<()> {
    create_session_authenticated(conn, token, user_id, demo, now, expires_at, now).await
}

/// A new session, with when the person last proved who they are (the provider's
/// `auth_time`, which can be older than the sign-in when the provider remembered them).
pub async fn create_session_authenticated(
    conn: &mut AnyConnection,
    token: &str,
    user_id: &str,
    demo: bool,
    now: Timestamp,
    expires_at: Timestamp,
    authenticated_at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO web_session (session_hash, user_id, demo, created_at, last_seen_at, expires_at, authenticated_at)
         VALUES ($1, $2, $3, $4, $4, $5, $6)",
    )
    .bind(hash_token(token))
    .bind(user_id)
    .bind(i64::from(demo))
    .bind(now.millis())
    .bind(expires_at.millis())
    .bind(authenticated_at.min(now).millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// A session found by its token.
#[derive(Clone, Debug)]
pub struct FoundSession {
    pub principal: Principal,
    pub demo: bool,
    /// When the person last proved who they are.
    pub authenticated_at: Timestamp,
}

/// The session's user, if the session exists, has not expired and has not been idle too long.
/// Touches `last_seen_at` at most once a minute to spare the database.
pub async fn find_session(
    conn: &mut AnyConnection,
    token: &str,
    now: Timestamp,
    idle: Duration,
) -> Result<Option<(Principal, bool)>> {
    Ok(find_session_full(conn, token, now, idle)
        .await?
        .map(|s| (s.principal, s.demo)))
}

/// [`find_session`], with when the person last proved who they are.
pub async fn find_session_full(
    conn: &mut AnyConnection,
    token: &str,
    now: Timestamp,
    idle: Duration,
) -> Result<Option<FoundSession>> {
    let hash = hash_token(token);
    let row = sqlx::query(
        "SELECT s.demo, s.last_seen_at, COALESCE(s.authenticated_at, s.created_at) AS authenticated_at, u.*
         FROM web_session s JOIN app_user u ON u.user_id = s.user_id
         WHERE s.session_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3",
    )
    .bind(&hash)
    .bind(now.millis())
    .bind(now.millis() - idle.as_millis() as i64)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let last_seen: i64 = row.try_get("last_seen_at")?;
    if now.millis() - last_seen > 60_000 {
        sqlx::query("UPDATE web_session SET last_seen_at = $1 WHERE session_hash = $2")
            .bind(now.millis())
            .bind(&hash)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(FoundSession {
        principal: principal_from_row(&row)?,
        demo: row.try_get::<i64, _>("demo")? != 0,
        authenticated_at: Timestamp::from_millis(row.try_get("authenticated_at")?),
    }))
}

/// Ends every session of one person ("End all my sessions"); returns how many there were.
pub async fn delete_sessions_of(conn: &mut AnyConnection, user_id: &str) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM web_session WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected())
}

pub async fn delete_session(conn: &mut AnyConnection, token: &str) -> Result<()> {
    sqlx::query("DELETE FROM web_session WHERE session_hash = $1")
        .bind(hash_token(token))
        .execute(conn)
        .await?;
    Ok(())
}
