//! Requests and the decisions made on them.

use super::*;
use app::domain::ApproverRule;
use sqlx::FromRow;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RequestRow {
    pub access_request_id: String,
    pub requester_id: String,
    pub entitlement_id: String,
    pub justification: String,
    pub ticket: Option<String>,
    pub duration_secs: i64,
    pub starts_at: Timestamp,
    pub decision_due_at: Timestamp,
    pub status: RequestStatus,
    pub created_at: Timestamp,
    /// For an extension: the request whose live grants it would make longer
    /// (`duration_secs` is then the time it adds).
    pub extends_request_id: Option<String>,
    /// The approver rule (JSON) the request was escalated to, once it was.
    pub escalated_to: Option<String>,
    /// The bundle it was asked for in, with other requests of the same id.
    pub bundle_id: Option<String>,
}

impl RequestRow {
    /// Who else may decide it since it was escalated.
    pub fn escalation(&self) -> Option<ApproverRule> {
        self.escalated_to
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
    }
}

pub(crate) const REQUEST_COLS: &str =
    "access_request_id, requester_id, entitlement_id, justification, ticket, \
    duration_secs, starts_at, decision_due_at, status, created_at, extends_request_id, \
    escalated_to, bundle_id";

pub async fn insert_request(conn: &mut AnyConnection, r: &RequestRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO access_request (access_request_id, requester_id, entitlement_id, justification, ticket,
             duration_secs, starts_at, decision_due_at, status, created_at, updated_at,
             extends_request_id, bundle_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12)",
    )
    .bind(&r.access_request_id)
    .bind(&r.requester_id)
    .bind(&r.entitlement_id)
    .bind(&r.justification)
    .bind(&r.ticket)
    .bind(r.duration_secs)
    .bind(r.starts_at)
    .bind(r.decision_due_at)
    .bind(r.status)
    .bind(r.created_at)
    .bind(&r.extends_request_id)
    .bind(&r.bundle_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Reads a request inside a write transaction, holding its row lock until commit.
pub async fn lock_request(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>> {
    sqlx::query("UPDATE access_request SET updated_at = updated_at WHERE access_request_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    get_request(conn, id).await
}

pub async fn get_request(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request WHERE access_request_id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// One earlier request, for an approver's view of the requester's history.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PastRequest {
    pub access_request_id: String,
    pub requester_id: String,
    pub entitlement_id: String,
    pub justification: String,
    pub status: RequestStatus,
    pub created_at: Timestamp,
    /// Its grants that someone ended before their time (the holder or an admin).
    pub ended_early: i64,
}

/// The requests (not extensions) these people made since `since`, newest first, with how
/// many of each one's grants were ended early: indexed by requester and time.
pub async fn requests_of_since<'a>(
    conn: &mut AnyConnection,
    requester_ids: impl IntoIterator<Item = &'a str>,
    since: Timestamp,
) -> Result<Vec<PastRequest>> {
    let ids: std::collections::BTreeSet<&str> = requester_ids.into_iter().collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let since = since.millis();
    let rows = rows_for_ids(conn, &ids, |ph| {
        format!(
            "SELECT r.access_request_id, r.requester_id, r.entitlement_id, r.justification, r.status,
                    r.created_at,
                    (SELECT COUNT(*) FROM access_grant g
                      WHERE g.access_request_id = r.access_request_id AND g.ended_by IS NOT NULL)
                      AS ended_early
             FROM access_request r
             WHERE r.requester_id IN ({ph}) AND r.created_at >= {since}
               AND r.extends_request_id IS NULL
             ORDER BY r.created_at DESC"
        )
    })
    .await?;
    rows.iter()
        .map(|row| Ok(PastRequest::from_row(row)?))
        .collect()
}

/// The requests of a bundle, oldest first.
pub async fn requests_in_bundle(
    conn: &mut AnyConnection,
    bundle_id: &str,
) -> Result<Vec<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request WHERE bundle_id = $1 ORDER BY created_at, access_request_id"
    ))
    .bind(bundle_id)
    .fetch_all(conn)
    .await?)
}

/// Records that a pending request was escalated to `rule`.
pub async fn set_escalated(
    conn: &mut AnyConnection,
    id: &str,
    rule: &ApproverRule,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE access_request SET escalated_to = $1, updated_at = $2 WHERE access_request_id = $3",
    )
    .bind(serde_json::to_string(rule)?)
    .bind(now.millis())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The extension of this request that waits for a decision, if any (one at a time).
pub async fn pending_extension_of(
    conn: &mut AnyConnection,
    request_id: &str,
) -> Result<Option<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request
         WHERE extends_request_id = $1 AND status = 'pending' LIMIT 1"
    ))
    .bind(request_id)
    .fetch_optional(conn)
    .await?)
}

/// Every extension asked for on this request, oldest first.
pub async fn extensions_of(conn: &mut AnyConnection, request_id: &str) -> Result<Vec<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request
         WHERE extends_request_id = $1 ORDER BY created_at LIMIT 100"
    ))
    .bind(request_id)
    .fetch_all(conn)
    .await?)
}

pub async fn set_request_status(
    conn: &mut AnyConnection,
    id: &str,
    status: RequestStatus,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE access_request SET status = $1, updated_at = $2 WHERE access_request_id = $3",
    )
    .bind(status.as_str())
    .bind(now.millis())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn requests_by_requester(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request WHERE requester_id = $1 ORDER BY created_at DESC LIMIT 200"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

/// How many requests this person has made since `since` (the per-person limit on new
/// requests; counted here so that it holds across replicas).
pub async fn requests_made_since(
    conn: &mut AnyConnection,
    requester_id: &str,
    since: Timestamp,
) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM access_request WHERE requester_id = $1 AND created_at > $2",
    )
    .bind(requester_id)
    .bind(since)
    .fetch_one(conn)
    .await?;
    Ok(n)
}

pub async fn requests_with_status(
    conn: &mut AnyConnection,
    status: RequestStatus,
) -> Result<Vec<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request WHERE status = $1 ORDER BY created_at LIMIT 500"
    ))
    .bind(status.as_str())
    .fetch_all(conn)
    .await?)
}

/// Up to `limit` requests, newest first, from just before `before` (the `created_at` and
/// id of the last one a page showed) or from the newest.
pub async fn requests_page(
    conn: &mut AnyConnection,
    before: Option<(Timestamp, &str)>,
    limit: i64,
) -> Result<Vec<RequestRow>> {
    let (at, id) = before.map_or((i64::MAX, ""), |(at, id)| (at.millis(), id));
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request
         WHERE created_at < $1 OR (created_at = $1 AND access_request_id < $2)
         ORDER BY created_at DESC, access_request_id DESC LIMIT $3"
    ))
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn recent_requests(conn: &mut AnyConnection, limit: i64) -> Result<Vec<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request ORDER BY created_at DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DecisionRow {
    pub decision_id: String,
    pub access_request_id: String,
    pub approver_id: String,
    pub verdict: Verdict,
    pub comment: String,
    pub created_at: Timestamp,
    /// The approval step (0-based) the request was at when this decision was made.
    pub step: i64,
}

pub async fn insert_decision(conn: &mut AnyConnection, d: &DecisionRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO decision (decision_id, access_request_id, approver_id, verdict, comment, created_at, step)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&d.decision_id)
    .bind(&d.access_request_id)
    .bind(&d.approver_id)
    .bind(d.verdict)
    .bind(&d.comment)
    .bind(d.created_at)
    .bind(d.step)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn decisions_for_request(conn: &mut AnyConnection, id: &str) -> Result<Vec<DecisionRow>> {
    Ok(sqlx::query_as(
        "SELECT decision_id, access_request_id, approver_id, verdict, comment, created_at, step FROM decision
         WHERE access_request_id = $1 ORDER BY created_at",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

/// The decisions on each of these requests (for a page's rows), oldest first.
pub async fn decisions_for_requests<'a>(
    conn: &mut AnyConnection,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<std::collections::HashMap<String, Vec<DecisionRow>>> {
    let ids: Vec<&str> = ids.into_iter().collect();
    let mut out: std::collections::HashMap<String, Vec<DecisionRow>> = Default::default();
    let rows = rows_for_ids(conn, &ids, |ph| {
        format!(
            "SELECT decision_id, access_request_id, approver_id, verdict, comment, created_at, step
             FROM decision WHERE access_request_id IN ({ph}) ORDER BY created_at"
        )
    })
    .await?;
    for row in &rows {
        let d = DecisionRow::from_row(row)?;
        out.entry(d.access_request_id.clone()).or_default().push(d);
    }
    Ok(out)
}

/// These requests (those that exist), by id.
pub async fn requests_by_ids<'a>(
    conn: &mut AnyConnection,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<std::collections::HashMap<String, RequestRow>> {
    let ids: std::collections::BTreeSet<&str> = ids.into_iter().collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let rows = rows_for_ids(conn, &ids, |ph| {
        format!("SELECT {REQUEST_COLS} FROM access_request WHERE access_request_id IN ({ph})")
    })
    .await?;
    rows.iter()
        .map(|row| {
            let r = RequestRow::from_row(row)?;
            Ok((r.access_request_id.clone(), r))
        })
        .collect()
}

pub async fn decisions_by_approver(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<DecisionRow>> {
    Ok(sqlx::query_as(
        "SELECT decision_id, access_request_id, approver_id, verdict, comment, created_at, step FROM decision
         WHERE approver_id = $1 ORDER BY created_at DESC LIMIT 200",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}
