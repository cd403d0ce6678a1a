//! Entitlements: what can be requested, with its policy. Targets and policy are stored as
//! JSON and come back as the domain's [`Entitlement`], checked on the way in and out.

use super::*;
use app::domain::Entitlement;

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
             updated_at = excluded.updated_at",
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
