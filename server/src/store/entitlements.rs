//! Entitlements: what can be requested, with its policy. Targets and policy are stored as
//! JSON and come back as the domain's [`Entitlement`], checked on the way in and out.

use super::*;
use app::domain::Entitlement;
use std::collections::{BTreeSet, HashMap};

#[derive(sqlx::FromRow)]
struct EntitlementRow {
    entitlement_id: String,
    name: String,
    description: String,
    targets_json: String,
    policy_json: String,
}

impl TryFrom<EntitlementRow> for Entitlement {
    type Error = anyhow::Error;

    fn try_from(row: EntitlementRow) -> Result<Self> {
        Ok(Self {
            targets: serde_json::from_str(&row.targets_json).with_context(|| {
                format!("entitlement {} has invalid targets", row.entitlement_id)
            })?,
            policy: serde_json::from_str(&row.policy_json).with_context(|| {
                format!("entitlement {} has an invalid policy", row.entitlement_id)
            })?,
            id: row.entitlement_id,
            name: row.name,
            description: row.description,
        })
    }
}

pub async fn upsert_entitlement(
    conn: &mut AnyConnection,
    e: &Entitlement,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO entitlement (entitlement_id, name, description, targets_json, policy_json, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (entitlement_id) DO UPDATE SET name = excluded.name, description = excluded.description,
             targets_json = excluded.targets_json, policy_json = excluded.policy_json,
             updated_at = excluded.updated_at, retired_at = NULL",
    )
    .bind(&e.id)
    .bind(&e.name)
    .bind(&e.description)
    .bind(serde_json::to_string(&e.targets)?)
    .bind(serde_json::to_string(&e.policy)?)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn all_entitlements(conn: &mut AnyConnection) -> Result<Vec<Entitlement>> {
    let rows: Vec<EntitlementRow> = sqlx::query_as(
        "SELECT entitlement_id, name, description, targets_json, policy_json FROM entitlement ORDER BY name",
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Entitlement::try_from).collect()
}

pub async fn get_entitlement(conn: &mut AnyConnection, id: &str) -> Result<Option<Entitlement>> {
    let row: Option<EntitlementRow> = sqlx::query_as(
        "SELECT entitlement_id, name, description, targets_json, policy_json FROM entitlement
         WHERE entitlement_id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Entitlement::try_from).transpose()
}

/// When each retired entitlement was retired (none of the live ones).
pub async fn retired_entitlements(conn: &mut AnyConnection) -> Result<HashMap<String, Timestamp>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT entitlement_id, retired_at FROM entitlement WHERE retired_at IS NOT NULL",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at)| (id, Timestamp::from_millis(at)))
        .collect())
}

/// When this entitlement was retired; `None` while it is live (or unknown).
pub async fn entitlement_retired_at(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<Timestamp>> {
    let at: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT retired_at FROM entitlement WHERE entitlement_id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(at.and_then(|(at,)| at).map(Timestamp::from_millis))
}

/// Retires one entitlement as of `at`.
pub async fn retire_entitlement(conn: &mut AnyConnection, id: &str, at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE entitlement SET retired_at = $1 WHERE entitlement_id = $2")
        .bind(at.millis())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Retires every live entitlement not in `keep`, and returns the ids it retired.
pub async fn retire_entitlements_except(
    conn: &mut AnyConnection,
    keep: &BTreeSet<String>,
    now: Timestamp,
) -> Result<Vec<String>> {
    let live: Vec<(String,)> = sqlx::query_as(
        "SELECT entitlement_id FROM entitlement WHERE retired_at IS NULL ORDER BY entitlement_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut retired = Vec::new();
    for (id,) in live {
        if keep.contains(&id) {
            continue;
        }
        retire_entitlement(&mut *conn, &id, now).await?;
        retired.push(id);
    }
    Ok(retired)
}

/// One kept version of an entitlement (issue #14, item 7).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct EntitlementVersionRow {
    pub entitlement_id: String,
    pub version: i64,
    pub created_at: Timestamp,
    /// `created`, `updated`, `retired` or `restored`.
    pub change: String,
    pub changed_by: String,
    /// The entitlement as the configuration file's TOML.
    pub definition: String,
}

/// Keeps a version of entitlement `id` as it is now (`definition`, and whether it is
/// `retired`) unless the latest version already says the same; the change is worked out
/// from that latest version. Returns the new version's number, if one was kept. Call it
/// after every change, in the change's transaction.
pub async fn record_entitlement_version(
    conn: &mut AnyConnection,
    id: &str,
    definition: &str,
    retired: bool,
    changed_by: &str,
    now: Timestamp,
) -> Result<Option<i64>> {
    let latest: Option<(i64, String, String)> = sqlx::query_as(
        "SELECT version, change, definition FROM entitlement_version
         WHERE entitlement_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let change = match &latest {
        None if retired => "retired",
        None => "created",
        Some((_, change, def)) => {
            let was_retired = change == "retired";
            match (was_retired, retired) {
                (false, true) => "retired",
                (true, false) => "restored",
                _ if def == definition => return Ok(None),
                (true, true) => "retired",
                (false, false) => "updated",
            }
        }
    };
    let version = latest.map_or(1, |(v, _, _)| v + 1);
    sqlx::query(
        "INSERT INTO entitlement_version (entitlement_id, version, created_at, change, changed_by, definition)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(version)
    .bind(now.millis())
    .bind(change)
    .bind(changed_by)
    .bind(definition)
    .execute(conn)
    .await?;
    Ok(Some(version))
}

/// Every kept version of entitlement `id`, newest first.
pub async fn entitlement_versions(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Vec<EntitlementVersionRow>> {
    Ok(sqlx::query_as(
        "SELECT entitlement_id, version, created_at, change, changed_by, definition
         FROM entitlement_version WHERE entitlement_id = $1 ORDER BY version DESC",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

/// The newest `limit` requests for entitlement `id`.
pub async fn recent_requests_for(
    conn: &mut AnyConnection,
    id: &str,
    limit: i64,
) -> Result<Vec<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request WHERE entitlement_id = $1
         ORDER BY created_at DESC LIMIT $2"
    ))
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
