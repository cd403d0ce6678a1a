//! What the admin dashboard charts (issue #14, item 5): counts and delays over the last
//! days, read with a bounded number of queries whatever the size of the tables.

use super::*;

/// Rows read at most for a chart of delays (the newest first); a month of a large company's
/// requests or revocations fits.
const MAX_ROWS: i64 = 100_000;

/// Requests made since `since` by UTC day (days since the epoch) and status.
pub async fn requests_per_day(
    conn: &mut AnyConnection,
    since: Timestamp,
) -> Result<Vec<(i64, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT created_at / 86400000 AS day, status, COUNT(*) AS n FROM access_request
         WHERE created_at >= $1 GROUP BY created_at / 86400000, status",
    )
    .bind(since.millis())
    .fetch_all(conn)
    .await?)
}

/// For each request made since `since` that a person decided: when it was made and when
/// its first decision came.
pub async fn decision_delays(
    conn: &mut AnyConnection,
    since: Timestamp,
) -> Result<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT r.created_at, MIN(d.created_at) FROM access_request r
         JOIN decision d ON d.access_request_id = r.access_request_id
         WHERE r.created_at >= $1
         GROUP BY r.access_request_id, r.created_at
         ORDER BY r.created_at DESC LIMIT $2",
    )
    .bind(since.millis())
    .bind(MAX_ROWS)
    .fetch_all(conn)
    .await?)
}

/// The spans (`starts_at`, `ends_at`) of the grants that held access at some time in
/// `[from, until]`: started, not failed (a grant ended early has its end moved to when it
/// ended). One read for every day of a chart: the index on (status, ends_at) keeps it to
/// the grants that ended after `from`.
pub async fn grant_spans(
    conn: &mut AnyConnection,
    from: Timestamp,
    until: Timestamp,
) -> Result<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT starts_at, ends_at FROM access_grant
         WHERE status IN ('active', 'deprovisioning', 'revoked') AND ends_at > $1 AND starts_at <= $2",
    )
    .bind(from.millis())
    .bind(until.millis())
    .fetch_all(conn)
    .await?)
}

/// For each revocation begun since `since`: the grant's end and when its deletion began.
pub async fn revocation_starts(
    conn: &mut AnyConnection,
    since: Timestamp,
) -> Result<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT ends_at, deprovision_started_at FROM access_grant
         WHERE deprovision_started_at >= $1
         ORDER BY deprovision_started_at DESC LIMIT $2",
    )
    .bind(since.millis())
    .bind(MAX_ROWS)
    .fetch_all(conn)
    .await?)
}
