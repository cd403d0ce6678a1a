//! Assignment origins: which AWS assignments the portal made (and may delete) and which it
//! found already there; the deleting flag that reconciliation and a starting grant agree on.

use super::*;

/// How long a grant waits for a deletion reconciliation started on its assignment; a
/// deleting flag older than this is stale (its reconciliation died) and is ignored.
pub const DELETING_FOR_AT_MOST: Duration = Duration::from_secs(900);

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The portal asked AWS to create it.
    Portal,
    /// A grant found it already in place.
    External,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Portal => "portal",
            Self::External => "external",
        }
    }
}

/// One (account, permission set, user): what an assignment is for the portal.
#[derive(Copy, Clone, Debug)]
pub struct AssignmentKey<'a> {
    pub account_id: &'a str,
    pub permission_set_arn: &'a str,
    pub user_id: &'a str,
}

impl GrantRow {
    pub fn key(&self) -> AssignmentKey<'_> {
        AssignmentKey {
            account_id: &self.account_id,
            permission_set_arn: &self.permission_set_arn,
            user_id: &self.principal_id,
        }
    }
}

/// A (account, permission set, user) whose assignment's origin the portal knows.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ManagedRow {
    pub account_id: String,
    pub permission_set_arn: String,
    pub user_id: String,
    pub origin: String,
    /// Set while reconciliation deletes the assignment.
    pub deleting_since: Option<i64>,
}

impl ManagedRow {
    pub fn key(&self) -> AssignmentKey<'_> {
        AssignmentKey {
            account_id: &self.account_id,
            permission_set_arn: &self.permission_set_arn,
            user_id: &self.user_id,
        }
    }

    pub fn origin(&self) -> Origin {
        if self.origin == "portal" {
            Origin::Portal
        } else {
            Origin::External
        }
    }
}

const MANAGED_COLS: &str = "account_id, permission_set_arn, user_id, origin, deleting_since";
const MANAGED_KEY: &str = "account_id = $1 AND permission_set_arn = $2 AND user_id = $3";

/// What the portal knows of one assignment, if anything.
pub async fn managed_assignment(
    conn: &mut AnyConnection,
    k: AssignmentKey<'_>,
) -> Result<Option<ManagedRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {MANAGED_COLS} FROM managed_assignment WHERE {MANAGED_KEY}"
    ))
    .bind(k.account_id)
    .bind(k.permission_set_arn)
    .bind(k.user_id)
    .fetch_optional(conn)
    .await?)
}

/// Where the assignment of a grant came from, when the portal knows.
pub async fn assignment_origin(conn: &mut AnyConnection, g: &GrantRow) -> Result<Option<Origin>> {
    Ok(managed_assignment(conn, g.key()).await?.map(|m| m.origin()))
}

pub async fn managed_assignments(conn: &mut AnyConnection) -> Result<Vec<ManagedRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {MANAGED_COLS} FROM managed_assignment"))
            .fetch_all(conn)
            .await?,
    )
}

/// Records where an assignment came from; with `deleting`, also flags it as being
/// deleted by reconciliation (keeping a known origin). The flag is committed before
/// reconciliation looks for live grants one last time, so that either it sees a new
/// grant, or the grant's worker sees the flag and waits.
async fn upsert_managed(
    conn: &mut AnyConnection,
    k: AssignmentKey<'_>,
    origin: Origin,
    deleting: bool,
    now: Timestamp,
) -> Result<()> {
    let on_conflict = if deleting {
        "deleting_since = excluded.deleting_since"
    } else {
        "origin = excluded.origin"
    };
    sqlx::query(&format!(
        "INSERT INTO managed_assignment (account_id, permission_set_arn, user_id, origin, created_at, deleting_since)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (account_id, permission_set_arn, user_id) DO UPDATE SET {on_conflict}"
    ))
    .bind(k.account_id)
    .bind(k.permission_set_arn)
    .bind(k.user_id)
    .bind(origin.as_str())
    .bind(now.millis())
    .bind(deleting.then_some(now.millis()))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_assignment_origin(
    conn: &mut AnyConnection,
    g: &GrantRow,
    origin: Origin,
    now: Timestamp,
) -> Result<()> {
    upsert_managed(conn, g.key(), origin, false, now).await
}

/// See [`upsert_managed`].
pub async fn mark_deleting(
    conn: &mut AnyConnection,
    k: AssignmentKey<'_>,
    origin: Origin,
    now: Timestamp,
) -> Result<()> {
    upsert_managed(conn, k, origin, true, now).await
}

pub async fn clear_deleting(conn: &mut AnyConnection, k: AssignmentKey<'_>) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE managed_assignment SET deleting_since = NULL WHERE {MANAGED_KEY}"
    ))
    .bind(k.account_id)
    .bind(k.permission_set_arn)
    .bind(k.user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The assignment is gone from AWS (or was never made): its origin no longer matters.
pub async fn forget_assignment(conn: &mut AnyConnection, k: AssignmentKey<'_>) -> Result<()> {
    sqlx::query(&format!(
        "DELETE FROM managed_assignment WHERE {MANAGED_KEY}"
    ))
    .bind(k.account_id)
    .bind(k.permission_set_arn)
    .bind(k.user_id)
    .execute(conn)
    .await?;
    Ok(())
}
