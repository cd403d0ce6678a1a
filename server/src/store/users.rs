//! People who have signed in: their latest claims, keyed by `iss|sub` ids.

use super::*;

pub(crate) fn principal_from_row(row: &sqlx::any::AnyRow) -> Result<Principal> {
    let groups: String = row.try_get("groups_json")?;
    Ok(Principal {
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        email_verified: row.try_get::<i64, _>("email_verified")? != 0,
        display_name: row.try_get("display_name")?,
        groups: serde_json::from_str(&groups).context("bad groups_json")?,
        manager: row.try_get("manager")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
    })
}

/// Records the claims of a sign-in: groups and manager are refreshed every time. Fails
/// (the `app_user_email_unique` index) when another user has the same email, ignoring case:
/// sign-in checks [`email_owner`] first to say so clearly.
pub async fn upsert_user(conn: &mut AnyConnection, p: &Principal, now: Timestamp) -> Result<()> {
    sqlx::query(
        "INSERT INTO app_user (user_id, email, email_verified, display_name, groups_json, manager, is_admin, created_at, updated_at)
         VALUES ($1, $2, $8, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, email_verified = excluded.email_verified,
             display_name = excluded.display_name, groups_json = excluded.groups_json,
             manager = excluded.manager, is_admin = excluded.is_admin, updated_at = excluded.updated_at",
    )
    .bind(&p.user_id)
    .bind(&p.email)
    .bind(&p.display_name)
    .bind(serde_json::to_string(&p.groups)?)
    .bind(&p.manager)
    .bind(i64::from(p.is_admin))
    .bind(now.millis())
    .bind(i64::from(p.email_verified))
    .execute(conn)
    .await?;
    Ok(())
}

/// Who has this email (ignoring case), if anyone: emails are unique among users.
pub async fn email_owner(conn: &mut AnyConnection, email: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT user_id FROM app_user WHERE lower(email) = lower($1)")
            .bind(email)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn get_user(conn: &mut AnyConnection, user_id: &str) -> Result<Option<Principal>> {
    let row = sqlx::query("SELECT * FROM app_user WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(principal_from_row).transpose()
}

pub async fn all_users(conn: &mut AnyConnection) -> Result<Vec<Principal>> {
    let rows = sqlx::query("SELECT * FROM app_user ORDER BY email")
        .fetch_all(conn)
        .await?;
    rows.iter().map(principal_from_row).collect()
}
