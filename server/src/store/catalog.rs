//! The AWS catalog as the last sync saw it: accounts (with OU paths), OUs, permission sets.

use super::*;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccountRow {
    pub account_id: String,
    pub name: String,
    pub ou_id: String,
    pub ou_path: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PermissionSetRow {
    pub permission_set_arn: String,
    pub name: String,
    pub description: String,
    pub session_duration_secs: i64,
}

pub async fn upsert_account(
    conn: &mut AnyConnection,
    a: &AccountRow,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO account (account_id, name, ou_id, ou_path, synced_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account_id) DO UPDATE SET name = excluded.name, ou_id = excluded.ou_id,
             ou_path = excluded.ou_path, synced_at = excluded.synced_at",
    )
    .bind(&a.account_id)
    .bind(&a.name)
    .bind(&a.ou_id)
    .bind(&a.ou_path)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn upsert_permission_set(
    conn: &mut AnyConnection,
    p: &PermissionSetRow,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO permission_set (permission_set_arn, name, description, session_duration_secs, synced_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (permission_set_arn) DO UPDATE SET name = excluded.name,
             description = excluded.description, session_duration_secs = excluded.session_duration_secs,
             synced_at = excluded.synced_at",
    )
    .bind(&p.permission_set_arn)
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.session_duration_secs)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_account(conn: &mut AnyConnection, id: &str) -> Result<Option<AccountRow>> {
    Ok(
        sqlx::query_as(
            "SELECT account_id, name, ou_id, ou_path FROM account WHERE account_id = $1",
        )
        .bind(id)
        .fetch_optional(conn)
        .await?,
    )
}

pub async fn all_accounts(conn: &mut AnyConnection) -> Result<Vec<AccountRow>> {
    Ok(
        sqlx::query_as("SELECT account_id, name, ou_id, ou_path FROM account ORDER BY name")
            .fetch_all(conn)
            .await?,
    )
}

/// Accounts anywhere below an OU, nested OUs included.
pub async fn accounts_under_ou(conn: &mut AnyConnection, ou_id: &str) -> Result<Vec<AccountRow>> {
    Ok(sqlx::query_as(
        "SELECT account_id, name, ou_id, ou_path FROM account WHERE ou_path LIKE $1 ORDER BY account_id",
    )
    .bind(format!("%/{ou_id}/%"))
    .fetch_all(conn)
    .await?)
}

pub async fn get_permission_set(
    conn: &mut AnyConnection,
    arn: &str,
) -> Result<Option<PermissionSetRow>> {
    Ok(sqlx::query_as(
        "SELECT permission_set_arn, name, description, session_duration_secs FROM permission_set
         WHERE permission_set_arn = $1",
    )
    .bind(arn)
    .fetch_optional(conn)
    .await?)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OrgUnitRow {
    pub ou_id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub path: String,
}

pub async fn upsert_org_unit(
    conn: &mut AnyConnection,
    ou: &OrgUnitRow,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO org_unit (ou_id, name, parent_id, path, synced_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (ou_id) DO UPDATE SET name = excluded.name, parent_id = excluded.parent_id,
             path = excluded.path, synced_at = excluded.synced_at",
    )
    .bind(&ou.ou_id)
    .bind(&ou.name)
    .bind(&ou.parent_id)
    .bind(&ou.path)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn all_org_units(conn: &mut AnyConnection) -> Result<Vec<OrgUnitRow>> {
    Ok(
        sqlx::query_as("SELECT ou_id, name, parent_id, path FROM org_unit ORDER BY path")
            .fetch_all(conn)
            .await?,
    )
}

pub async fn all_permission_sets(conn: &mut AnyConnection) -> Result<Vec<PermissionSetRow>> {
    Ok(sqlx::query_as(
        "SELECT permission_set_arn, name, description, session_duration_secs FROM permission_set
         ORDER BY name",
    )
    .fetch_all(conn)
    .await?)
}

/// Marks every account, permission set and OU as not seen, before a sync brings back what
/// AWS still has: what stays marked is then removed by [`drop_unseen_catalog`].
pub async fn mark_catalog_unseen(conn: &mut AnyConnection) -> Result<()> {
    for table in ["account", "permission_set", "org_unit"] {
        sqlx::query(&format!("UPDATE {table} SET synced_at = -1"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Removes catalog rows a sync at `synced_at` did not see again. Returns how many went, by
/// table (accounts, permission sets, OUs).
pub async fn drop_unseen_catalog(
    conn: &mut AnyConnection,
    synced_at: Timestamp,
) -> Result<(u64, u64, u64)> {
    let mut gone = [0u64; 3];
    for (i, table) in ["account", "permission_set", "org_unit"].iter().enumerate() {
        gone[i] = sqlx::query(&format!("DELETE FROM {table} WHERE synced_at < $1"))
            .bind(synced_at.millis())
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok((gone[0], gone[1], gone[2]))
}

/// Account name, permission set name and session duration, for messages and views.
pub async fn describe_target(
    conn: &mut AnyConnection,
    g: &GrantRow,
) -> Result<(String, String, String)> {
    let account = get_account(conn, &g.account_id).await?;
    let ps = get_permission_set(conn, &g.permission_set_arn).await?;
    Ok((
        account
            .map(|a| a.name)
            .unwrap_or_else(|| g.account_id.clone()),
        ps.as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_else(|| g.permission_set_arn.clone()),
        ps.map(|p| {
            app::domain::time::format_duration(Duration::from_secs(p.session_duration_secs as u64))
        })
        .unwrap_or_else(|| "1h".into()),
    ))
}
