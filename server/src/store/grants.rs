//! Grants, and the locks and sibling queries that decide an assignment's fate
//! (invariant 3: an assignment goes only when no other live grant covers it).

use super::*;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GrantRow {
    pub access_grant_id: String,
    pub access_request_id: String,
    pub principal_id: String,
    pub account_id: String,
    pub permission_set_arn: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub status: GrantStatus,
    pub operation_id: Option<String>,
    pub operation_started_at: Option<Timestamp>,
    pub failure_reason: Option<String>,
    pub ended_by: Option<String>,
    /// The IAM Identity Center user id the assignment is for, once provisioning started.
    pub aws_principal_id: Option<String>,
}

pub(crate) const GRANT_COLS: &str =
    "access_grant_id, access_request_id, principal_id, account_id, permission_set_arn, \
    starts_at, ends_at, status, operation_id, operation_started_at, failure_reason, ended_by, \
    aws_principal_id";

pub async fn insert_grant(conn: &mut AnyConnection, g: &GrantRow, now: Timestamp) -> Result<()> {
    sqlx::query(
        "INSERT INTO access_grant (access_grant_id, access_request_id, principal_id, account_id,
             permission_set_arn, starts_at, ends_at, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&g.access_grant_id)
    .bind(&g.access_request_id)
    .bind(&g.principal_id)
    .bind(&g.account_id)
    .bind(&g.permission_set_arn)
    .bind(g.starts_at)
    .bind(g.ends_at)
    .bind(g.status)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_grant(conn: &mut AnyConnection, id: &str) -> Result<Option<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant WHERE access_grant_id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn lock_grant(conn: &mut AnyConnection, id: &str) -> Result<Option<GrantRow>> {
    sqlx::query("UPDATE access_grant SET updated_at = updated_at WHERE access_grant_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    get_grant(conn, id).await
}

/// The grant's new status and, for operations in flight, the AWS request id.
pub struct GrantUpdate<'a> {
    pub status: GrantStatus,
    pub operation_id: Option<&'a str>,
    pub operation_started_at: Option<Timestamp>,
    pub failure_reason: Option<&'a str>,
}

impl<'a> GrantUpdate<'a> {
    /// A status with no AWS operation in flight.
    pub fn settled(status: GrantStatus) -> Self {
        Self {
            status,
            operation_id: None,
            operation_started_at: None,
            failure_reason: None,
        }
    }

    /// An AWS operation started at `at`; `op` is `None` while the worker has claimed the
    /// operation but AWS has not answered with a request id yet.
    pub fn in_flight(status: GrantStatus, op: Option<&'a str>, at: Timestamp) -> Self {
        Self {
            status,
            operation_id: op,
            operation_started_at: Some(at),
            failure_reason: None,
        }
    }

    pub fn failure(self, reason: Option<&'a str>) -> Self {
        Self {
            failure_reason: reason,
            ..self
        }
    }
}

/// Moves a grant on, if it is still in the status `from` the caller read (compare and set):
/// two workers that both read a grant can never both move it. An error when it is not:
/// the step fails, and its job runs again on what the grant is now.
pub async fn update_grant(
    conn: &mut AnyConnection,
    id: &str,
    from: GrantStatus,
    u: GrantUpdate<'_>,
    now: Timestamp,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE access_grant SET status = $1, operation_id = $2, operation_started_at = $3,
             failure_reason = COALESCE($4, failure_reason), updated_at = $5,
             deprovision_started_at = COALESCE(deprovision_started_at,
                 CASE WHEN $1 = 'deprovisioning' THEN $5 END)
         WHERE access_grant_id = $6 AND status = $7",
    )
    .bind(u.status.as_str())
    .bind(u.operation_id)
    .bind(u.operation_started_at.map(Timestamp::millis))
    .bind(u.failure_reason)
    .bind(now.millis())
    .bind(id)
    .bind(from)
    .execute(conn)
    .await?;
    anyhow::ensure!(
        done.rows_affected() == 1,
        "grant {id} is no longer {from}: another worker moved it on"
    );
    Ok(())
}

/// Records the IAM Identity Center principal a grant's assignment is made for, once,
/// before the creation is asked for.
pub async fn set_grant_principal(
    conn: &mut AnyConnection,
    id: &str,
    aws_principal_id: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE access_grant SET aws_principal_id = $1
         WHERE access_grant_id = $2 AND aws_principal_id IS NULL",
    )
    .bind(aws_principal_id)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a grant's end forward to `at` (end early, admin revoke), and records who did it.
pub async fn end_grant_at(
    conn: &mut AnyConnection,
    id: &str,
    at: Timestamp,
    by: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE access_grant SET ends_at = $1, ended_by = $2, updated_at = $1
         WHERE access_grant_id = $3 AND ends_at > $1",
    )
    .bind(at.millis())
    .bind(by)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves an active grant's end later (an approved extension): only while it is active
/// and its end is still `from`. False when it has moved on.
pub async fn extend_grant_end(
    conn: &mut AnyConnection,
    id: &str,
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE access_grant SET ends_at = $1, updated_at = $2
         WHERE access_grant_id = $3 AND ends_at = $4 AND status = 'active'",
    )
    .bind(to.millis())
    .bind(now.millis())
    .bind(id)
    .bind(from.millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn grants_for_request(conn: &mut AnyConnection, id: &str) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant WHERE access_request_id = $1 ORDER BY account_id"
    ))
    .bind(id)
    .fetch_all(conn)
    .await?)
}

pub async fn grants_for_principal(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant WHERE principal_id = $1 ORDER BY starts_at DESC LIMIT 200"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

/// Grants that hold or are about to hold an assignment, soonest end first, at most
/// `limit` of them (the admin page) or all (reconciliation).
pub async fn live_grants(conn: &mut AnyConnection, limit: Option<i64>) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant
         WHERE status IN ('scheduled', 'provisioning', 'active', 'deprovisioning')
         ORDER BY ends_at LIMIT $1"
    ))
    .bind(limit.unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?)
}

/// Up to `limit` live grants, soonest end first, from just after `after` (the `ends_at`
/// and id of the last one a page showed) or from the first.
pub async fn live_grants_page(
    conn: &mut AnyConnection,
    after: Option<(Timestamp, &str)>,
    limit: i64,
) -> Result<Vec<GrantRow>> {
    let (at, id) = after.map_or((i64::MIN, ""), |(at, id)| (at.millis(), id));
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant
         WHERE status IN ('scheduled', 'provisioning', 'active', 'deprovisioning')
           AND (ends_at > $1 OR (ends_at = $1 AND access_grant_id > $2))
         ORDER BY ends_at, access_grant_id LIMIT $3"
    ))
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Other grants that hold, or are about to hold, the same AWS assignment, and whose time
/// is not over. An assignment is deleted only when this is empty (invariant 3).
pub async fn other_live_covering(
    conn: &mut AnyConnection,
    g: &GrantRow,
    now: Timestamp,
) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant
         WHERE principal_id = $1 AND permission_set_arn = $2 AND account_id = $3
           AND access_grant_id <> $4 AND status IN ('provisioning', 'active') AND ends_at > $5"
    ))
    .bind(&g.principal_id)
    .bind(&g.permission_set_arn)
    .bind(&g.account_id)
    .bind(&g.access_grant_id)
    .bind(now.millis())
    .fetch_all(conn)
    .await?)
}

/// Locks every grant of one (user, permission set, account) for the rest of the transaction,
/// so that the decision "create", "share" or "delete" for that assignment is made by one
/// worker at a time.
pub async fn lock_assignment(conn: &mut AnyConnection, g: &GrantRow) -> Result<()> {
    sqlx::query(
        "UPDATE access_grant SET updated_at = updated_at
         WHERE principal_id = $1 AND permission_set_arn = $2 AND account_id = $3",
    )
    .bind(&g.principal_id)
    .bind(&g.permission_set_arn)
    .bind(&g.account_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Assignment creations the whole deployment has asked AWS for and not yet seen settled
/// (grants in `provisioning` with an AWS request id), other than `except`'s: the creation
/// cap (`aws.max_outstanding_creations`) counts these, whichever replica started or polls
/// them.
pub async fn creations_in_flight(conn: &mut AnyConnection, except: &str) -> Result<usize> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM access_grant
         WHERE status = 'provisioning' AND operation_id IS NOT NULL AND access_grant_id <> $1",
    )
    .bind(except)
    .fetch_one(conn)
    .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Grants of the same assignment in the given statuses, other than `g`.
pub async fn siblings_in(
    conn: &mut AnyConnection,
    g: &GrantRow,
    statuses: &[GrantStatus],
) -> Result<Vec<GrantRow>> {
    let list = statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant
         WHERE principal_id = $1 AND permission_set_arn = $2 AND account_id = $3
           AND access_grant_id <> $4 AND status IN ({list})"
    ))
    .bind(&g.principal_id)
    .bind(&g.permission_set_arn)
    .bind(&g.account_id)
    .bind(&g.access_grant_id)
    .fetch_all(conn)
    .await?)
}

/// Grants active since before `at` whose time is not over at `now`: the assignment of
/// each must exist in AWS.
pub async fn grants_active_since(
    conn: &mut AnyConnection,
    at: Timestamp,
    now: Timestamp,
) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant
         WHERE status = 'active' AND updated_at < $1 AND ends_at > $2 ORDER BY account_id"
    ))
    .bind(at.millis())
    .bind(now.millis())
    .fetch_all(conn)
    .await?)
}

/// Whether any grant of (account, permission set, user) holds or is about to hold the
/// assignment right now.
pub async fn has_live_grant(
    conn: &mut AnyConnection,
    account_id: &str,
    permission_set_arn: &str,
    user_id: &str,
) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM access_grant
         WHERE account_id = $1 AND permission_set_arn = $2 AND principal_id = $3
           AND status IN ('scheduled', 'provisioning', 'active', 'deprovisioning')",
    )
    .bind(account_id)
    .bind(permission_set_arn)
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// How many grants of this entitlement's requests are live (scheduled, provisioning,
/// active or deprovisioning).
pub async fn live_grants_of_entitlement(
    conn: &mut AnyConnection,
    entitlement_id: &str,
) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM access_grant g
         JOIN access_request r ON r.access_request_id = g.access_request_id
         WHERE r.entitlement_id = $1
           AND g.status IN ('scheduled', 'provisioning', 'active', 'deprovisioning')",
    )
    .bind(entitlement_id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}
