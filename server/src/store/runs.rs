//! Maintenance runs (catalog sync, reconciliation): progress while running, outcome after.

use super::*;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunRow {
    pub run_id: String,
    pub kind: JobKind,
    pub status: String,
    pub progress: String,
    pub summary: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

pub async fn start_run(conn: &mut AnyConnection, kind: JobKind, now: Timestamp) -> Result<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO maintenance_run (run_id, kind, status, progress, started_at)
         VALUES ($1, $2, 'running', 'starting', $3)",
    )
    .bind(&id)
    .bind(kind.as_str())
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn run_progress(conn: &mut AnyConnection, id: &str, progress: &str) -> Result<()> {
    sqlx::query("UPDATE maintenance_run SET progress = $1 WHERE run_id = $2")
        .bind(progress)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn finish_run(
    conn: &mut AnyConnection,
    id: &str,
    succeeded: bool,
    summary: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE maintenance_run SET status = $1, summary = $2, finished_at = $3 WHERE run_id = $4",
    )
    .bind(if succeeded { "succeeded" } else { "failed" })
    .bind(summary)
    .bind(now.millis())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The latest runs of one kind, newest first.
pub async fn recent_runs(
    conn: &mut AnyConnection,
    kind: JobKind,
    limit: i64,
) -> Result<Vec<RunRow>> {
    Ok(sqlx::query_as(
        "SELECT run_id, kind, status, progress, summary, started_at, finished_at FROM maintenance_run
         WHERE kind = $1 ORDER BY started_at DESC, run_id LIMIT $2",
    )
    .bind(kind.as_str())
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
