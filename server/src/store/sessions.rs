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

pub async fn create_session(
    conn: &mut AnyConnection,
    token: &str,
    user_id: &str,
    demo: bool,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO web_session (session_hash, user_id, demo, created_at, last_seen_at, expires_at)
         VALUES ($1, $2, $3, $4, $4, $5)",
    )
    .bind(hash_token(token))
    .bind(user_id)
    .bind(i64::from(demo))
    .bind(now.millis())
    .bind(expires_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// The session's user, if the session exists, has not expired and has not been idle too long.
/// Touches `last_seen_at` at most once a minute to spare the database.
pub async fn find_session(
    conn: &mut AnyConnection,
    token: &str,
    now: Timestamp,
    idle: Duration,
) -> Result<Option<(Principal, bool)>> {
    let hash = hash_token(token);
    let row = sqlx::query(
        "SELECT s.demo, s.last_seen_at, u.* FROM web_session s JOIN app_user u ON u.user_id = s.user_id
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
    Ok(Some((
        principal_from_row(&row)?,
        row.try_get::<i64, _>("demo")? != 0,
    )))
}

pub async fn delete_session(conn: &mut AnyConnection, token: &str) -> Result<()> {
    sqlx::query("DELETE FROM web_session WHERE session_hash = $1")
        .bind(hash_token(token))
        .execute(conn)
        .await?;
    Ok(())
}
