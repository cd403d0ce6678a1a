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
    .execute(&mut *conn)
    .await?;
    set_groups(conn, &p.user_id, &p.groups).await
}

/// The person's groups as rows of `user_group` (the claims of their latest sign-in).
async fn set_groups(conn: &mut AnyConnection, user_id: &str, groups: &[String]) -> Result<()> {
    sqlx::query("DELETE FROM user_group WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let unique: std::collections::BTreeSet<&String> = groups.iter().collect();
    for g in unique {
        sqlx::query("INSERT INTO user_group (group_name, user_id) VALUES ($1, $2)")
            .bind(g)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Fills `user_group` for people whose groups it does not hold yet (those known before
/// the table existed). Run after every migration; finds nothing to do once done.
pub async fn backfill_user_groups(conn: &mut AnyConnection) -> Result<usize> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_id, groups_json FROM app_user u
         WHERE groups_json <> '[]'
           AND NOT EXISTS (SELECT 1 FROM user_group g WHERE g.user_id = u.user_id)",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (user_id, groups) in &rows {
        let groups: Vec<String> = serde_json::from_str(groups).context("bad groups_json")?;
        set_groups(conn, user_id, &groups).await?;
    }
    Ok(rows.len())
}

/// The people with these ids (those that exist), for a page's rows: never everyone.
pub async fn users_by_ids<'a>(
    conn: &mut AnyConnection,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<std::collections::HashMap<String, Principal>> {
    let ids: std::collections::BTreeSet<&str> = ids.into_iter().collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let rows = rows_for_ids(conn, &ids, |ph| {
        format!("SELECT * FROM app_user WHERE user_id IN ({ph})")
    })
    .await?;
    rows.iter()
        .map(|row| principal_from_row(row).map(|p| (p.user_id.clone(), p)))
        .collect()
}

/// Members of any of these groups, by the groups of their latest sign-in (indexed).
pub async fn members_of_groups(
    conn: &mut AnyConnection,
    groups: &[String],
) -> Result<Vec<Principal>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT * FROM app_user WHERE user_id IN
           (SELECT user_id FROM user_group WHERE group_name IN ({}))
         ORDER BY email",
        placeholders(1, groups.len())
    );
    let mut q = sqlx::query(&sql);
    for g in groups {
        q = q.bind(g);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter().map(principal_from_row).collect()
}

/// People named by user id or by email (ignoring case): the candidates for a manager
/// claim or an approver list, which the policy then checks (indexed).
pub async fn users_named(conn: &mut AnyConnection, names: &[String]) -> Result<Vec<Principal>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // As `Principal::is_known_as` matches: trimmed, the email ignoring ASCII case.
    let names: Vec<String> = names.iter().map(|n| n.trim().to_owned()).collect();
    let lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    let mut out = Vec::new();
    for (ids, emails) in names.chunks(IDS_PER_QUERY).zip(lower.chunks(IDS_PER_QUERY)) {
        let n = ids.len();
        let sql = format!(
            "SELECT * FROM app_user WHERE user_id IN ({}) OR lower(email) IN ({})",
            placeholders(1, n),
            placeholders(n + 1, n)
        );
        let mut q = sqlx::query(&sql);
        for id in ids.iter().chain(emails) {
            q = q.bind(id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.push(principal_from_row(&row)?);
        }
    }
    out.sort_by(|a: &Principal, b| a.user_id.cmp(&b.user_id));
    out.dedup_by(|a, b| a.user_id == b.user_id);
    Ok(out)
}

/// The admins, by the claims of their latest sign-in (indexed).
pub async fn admins(conn: &mut AnyConnection) -> Result<Vec<Principal>> {
    let rows = sqlx::query("SELECT * FROM app_user WHERE is_admin = 1 ORDER BY email")
        .fetch_all(conn)
        .await?;
    rows.iter().map(principal_from_row).collect()
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
