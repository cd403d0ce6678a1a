//! Replica heartbeats: which replicas are alive, so that each takes its share of the AWS
//! call budget.

use super::*;

/// Records that `replica_id` is alive now, forgets replicas silent for an hour, and
/// returns how many replicas (this one included) were seen within `alive_within`.
pub async fn replica_heartbeat(
    conn: &mut AnyConnection,
    replica_id: &str,
    now: Timestamp,
    alive_within: Duration,
) -> Result<u32> {
    sqlx::query(
        "INSERT INTO replica (replica_id, seen_at) VALUES ($1, $2)
         ON CONFLICT (replica_id) DO UPDATE SET seen_at = excluded.seen_at",
    )
    .bind(replica_id)
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM replica WHERE seen_at < $1")
        .bind(now.minus(Duration::from_secs(3600)).millis())
        .execute(&mut *conn)
        .await?;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM replica WHERE seen_at >= $1")
        .bind(now.minus(alive_within).millis())
        .fetch_one(&mut *conn)
        .await?;
    Ok(u32::try_from(n.max(1)).unwrap_or(1))
}

/// A replica that stops cleanly leaves the count at once.
pub async fn replica_gone(conn: &mut AnyConnection, replica_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM replica WHERE replica_id = $1")
        .bind(replica_id)
        .execute(conn)
        .await?;
    Ok(())
}
