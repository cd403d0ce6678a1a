//! The job table: durable work for the worker, claimed with a lease, per lane.

use super::*;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Provision,
    Deprovision,
    DecisionTimeout,
    DeliverMail,
    /// Tells the configured approver addresses about a new request and schedules its
    /// reminder and escalation (the worker holds those settings).
    AnnounceRequest,
    ApprovalReminder,
    ApprovalEscalation,
    /// Warns the holder of an active grant that it ends soon.
    EndingSoon,
    /// Reads accounts, OUs and permission sets from AWS (one job, rescheduled each time).
    SyncCatalog,
    /// Compares AWS's assignments with the live grants (one job, rescheduled each time).
    Reconcile,
    /// Verifies the whole audit chain with the key (one job, rescheduled each time).
    VerifyAudit,
    /// Moves or deletes the AWS-side backstop schedule of a grant's assignment.
    SyncBackstop,
    /// A break-glass use still unreviewed when its review is due: every admin is told.
    BreakGlassReview,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Deprovision => "deprovision",
            Self::DecisionTimeout => "decision_timeout",
            Self::DeliverMail => "deliver_mail",
            Self::AnnounceRequest => "announce_request",
            Self::ApprovalReminder => "approval_reminder",
            Self::ApprovalEscalation => "approval_escalation",
            Self::EndingSoon => "ending_soon",
            Self::SyncCatalog => "sync_catalog",
            Self::Reconcile => "reconcile",
            Self::VerifyAudit => "verify_audit",
            Self::SyncBackstop => "sync_backstop",
            Self::BreakGlassReview => "break_glass_review",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Provision,
            Self::Deprovision,
            Self::DecisionTimeout,
            Self::DeliverMail,
            Self::AnnounceRequest,
            Self::ApprovalReminder,
            Self::ApprovalEscalation,
            Self::EndingSoon,
            Self::SyncCatalog,
            Self::Reconcile,
            Self::VerifyAudit,
            Self::SyncBackstop,
            Self::BreakGlassReview,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

app::sql_text_enum!(JobKind);

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRow {
    pub job_id: String,
    pub kind: JobKind,
    pub subject_id: String,
    pub run_at: Timestamp,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// 1 once admins were alerted about this job's failures.
    pub alerted: i64,
    /// The fencing token of this claim: completions count only while it is the job's.
    pub lease_token: i64,
}

pub async fn insert_job(
    conn: &mut AnyConnection,
    kind: JobKind,
    subject_id: &str,
    run_at: Timestamp,
    now: Timestamp,
) -> Result<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO job (job_id, kind, subject_id, run_at, attempts, alerted, created_at)
         VALUES ($1, $2, $3, $4, 0, 0, $5)",
    )
    .bind(&id)
    .bind(kind.as_str())
    .bind(subject_id)
    .bind(run_at.millis())
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    notify_jobs(conn).await?;
    Ok(id)
}

/// The PostgreSQL channel on which a new or earlier job wakes every replica's workers.
pub const JOBS_CHANNEL: &str = "portcullis_jobs";

/// Tells every replica that a job was added or brought forward (PostgreSQL: `NOTIFY`,
/// delivered when the caller's transaction commits, never if it rolls back; SQLite has
/// one process and needs none).
async fn notify_jobs(conn: &mut AnyConnection) -> Result<()> {
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query(&format!("NOTIFY {JOBS_CHANNEL}"))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Listens for [`JOBS_CHANNEL`] on PostgreSQL and wakes `wake` at each notification, so
/// that a job written by one replica is taken up at once by another. Returns once it is
/// listening; the task reconnects by itself after an error (a restarted database).
pub async fn listen_for_jobs(
    url: &DatabaseUrl,
    wake: std::sync::Arc<tokio::sync::Notify>,
) -> Result<tokio::task::JoinHandle<()>> {
    async fn connect(url: &str) -> Result<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(JOBS_CHANNEL).await?;
        Ok(listener)
    }
    let url = url.expose().to_owned();
    let mut listener = connect(&url).await.context("LISTEN for new jobs")?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, "job notifications lost; reconnecting");
                    // Jobs written meanwhile are found by the workers' own timers.
                    wake.notify_one();
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match connect(&url).await {
                            Ok(l) => {
                                listener = l;
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = format!("{e:#}"), "cannot LISTEN yet")
                            }
                        }
                    }
                }
            }
        }
    }))
}

/// Releases the leases these workers (of a replica that restarted) still hold, taking
/// the next token so the old run, were it still alive, is fenced out. Returns how many.
pub async fn release_leases_of(conn: &mut AnyConnection, owners: &[&str]) -> Result<u64> {
    let mut released = 0;
    for owner in owners {
        released += sqlx::query(
            "UPDATE job SET lease_owner = NULL, lease_until = NULL, lease_token = lease_token + 1
             WHERE lease_owner = $1",
        )
        .bind(*owner)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(released)
}

/// Claims the most overdue job whose lease is free, revocations first: when a burst of
/// work is due, access ends on time before anything else starts. Exactly one worker wins a job:
/// on PostgreSQL the candidate row is locked and skipped by others; on SQLite the
/// write transaction is exclusive. The conditional UPDATE re-checks the lease either way.
pub async fn claim_job(
    store: &Store,
    worker: &str,
    now: Timestamp,
    lease: Duration,
) -> Result<Option<JobRow>> {
    claim_job_in(store, worker, now, lease, Lane::All).await
}

/// Which jobs a worker takes: catalog syncs and reconciliations make hundreds of paced AWS
/// calls and audit verification reads every event, so the server runs them in a lane of
/// their own, where they never hold up a revocation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Lane {
    All,
    /// Grants and requests: everything but maintenance and mail delivery.
    Grants,
    /// Catalog sync, reconciliation and audit verification only.
    Maintenance,
    /// Mail delivery only: a slow or unreachable SMTP server (30 s per try) never holds
    /// up a grant or a revocation.
    Mail,
}

impl Lane {
    pub fn name(self) -> &'static str {
        match self {
            Lane::All => "all",
            Lane::Grants => "grants",
            Lane::Maintenance => "maintenance",
            Lane::Mail => "mail",
        }
    }

    fn filter(self) -> &'static str {
        match self {
            Lane::All => "",
            Lane::Grants => {
                " AND kind NOT IN ('sync_catalog', 'reconcile', 'verify_audit', 'deliver_mail')"
            }
            Lane::Maintenance => " AND kind IN ('sync_catalog', 'reconcile', 'verify_audit')",
            Lane::Mail => " AND kind = 'deliver_mail'",
        }
    }
}

/// [`claim_job`] within one lane.
pub async fn claim_job_in(
    store: &Store,
    worker: &str,
    now: Timestamp,
    lease: Duration,
    lane: Lane,
) -> Result<Option<JobRow>> {
    let lane = lane.filter();
    let skip_locked = match store.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let mut tx = store.begin().await?;
    let candidate: Option<(String, String, Option<String>, Option<i64>)> =
        sqlx::query_as(&format!(
            "SELECT job_id, subject_id, lease_owner, lease_until FROM job
         WHERE run_at <= $1 AND (lease_until IS NULL OR lease_until < $1){lane}
         ORDER BY CASE WHEN kind = 'deprovision' THEN 0 ELSE 1 END, run_at LIMIT 1{skip_locked}"
        ))
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await?;
    let Some((job_id, subject, owner, until)) = candidate else {
        tx.commit().await?;
        return Ok(None);
    };
    // Every clean ending of a step clears its owner: one still set means its lease lapsed
    // (a replica that died and did not come back, or a step stalled past its lease).
    if let (Some(owner), Some(until)) = (owner, until) {
        tracing::warn!(
            job = %job_id,
            %subject,
            from = %owner,
            lapsed_ms = now.millis() - until,
            "taking over a job whose lease lapsed"
        );
    }
    let lease_until = now.plus(lease).millis();
    let job: Option<JobRow> = sqlx::query_as(
        "UPDATE job SET lease_owner = $1, lease_until = $2, lease_token = lease_token + 1
         WHERE job_id = $3 AND (lease_until IS NULL OR lease_until < $4)
         RETURNING job_id, kind, subject_id, run_at, attempts, last_error, alerted, lease_token",
    )
    .bind(worker)
    .bind(lease_until)
    .bind(&job_id)
    .bind(now.millis())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(job)
}

// ---- Fenced: what a worker does with a job it claimed. Each is conditional on the lease
// token of its claim and returns false when another worker has taken the job over since
// (the lease lapsed): then nothing changes, and the new owner finishes the job.

/// The job is done: deletes it.
pub async fn job_done(conn: &mut AnyConnection, job: &JobRow) -> Result<bool> {
    let done = sqlx::query("DELETE FROM job WHERE job_id = $1 AND lease_token = $2")
        .bind(&job.job_id)
        .bind(job.lease_token)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Runs the job again at `run_at`, releasing the lease, unless someone moved it while it
/// ran (an admin asking for a run now): then it keeps their time. Not a failure.
pub async fn job_again(conn: &mut AnyConnection, job: &JobRow, run_at: Timestamp) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE job SET run_at = CASE WHEN run_at <> $1 THEN run_at ELSE $2 END,
             lease_owner = NULL, lease_until = NULL, last_error = NULL
         WHERE job_id = $3 AND lease_token = $4",
    )
    .bind(job.run_at)
    .bind(run_at)
    .bind(&job.job_id)
    .bind(job.lease_token)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The job failed: counts an attempt, keeps the error, runs it again at `run_at`.
pub async fn job_failed(
    conn: &mut AnyConnection,
    job: &JobRow,
    run_at: Timestamp,
    error: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE job SET run_at = $1, lease_owner = NULL, lease_until = NULL,
             attempts = attempts + 1, last_error = $2
         WHERE job_id = $3 AND lease_token = $4",
    )
    .bind(run_at)
    .bind(error)
    .bind(&job.job_id)
    .bind(job.lease_token)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Extends the lease of a job still running to `until`. False: it was taken over.
pub async fn renew_lease(conn: &mut AnyConnection, job: &JobRow, until: Timestamp) -> Result<bool> {
    let done =
        sqlx::query("UPDATE job SET lease_until = $1 WHERE job_id = $2 AND lease_token = $3")
            .bind(until)
            .bind(&job.job_id)
            .bind(job.lease_token)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

// ---- Unfenced: for jobs nobody holds (tests, repairs).

pub async fn delete_job(conn: &mut AnyConnection, job_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM job WHERE job_id = $1")
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs the job again at `run_at`, releasing the lease. `failed` counts an attempt.
pub async fn reschedule_job(
    conn: &mut AnyConnection,
    job_id: &str,
    run_at: Timestamp,
    failure: Option<&str>,
) -> Result<()> {
    let q = match failure {
        Some(_) => {
            "UPDATE job SET run_at = $1, lease_owner = NULL, lease_until = NULL,
                 attempts = attempts + 1, last_error = $2 WHERE job_id = $3"
        }
        // A poll is not a failure, but it must not forget earlier ones either: an operation
        // that keeps failing between polls still reaches the alert threshold (invariant 4).
        None => {
            "UPDATE job SET run_at = $1, lease_owner = NULL, lease_until = NULL,
                 last_error = $2 WHERE job_id = $3"
        }
    };
    sqlx::query(q)
        .bind(run_at.millis())
        .bind(failure)
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn mark_job_alerted(conn: &mut AnyConnection, job_id: &str) -> Result<()> {
    sqlx::query("UPDATE job SET alerted = 1 WHERE job_id = $1")
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Live grants without the job that must carry them on: a grant not yet active without
/// its provisioning job, or any live grant without its revocation job (invariant 2).
/// Neither should ever happen; the worker's sweep puts the job back and alerts.
pub async fn grants_missing_jobs(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, JobKind, Timestamp)>> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT g.access_grant_id, 'provision', g.starts_at, g.ends_at FROM access_grant g
         WHERE g.status IN ('scheduled', 'provisioning')
           AND NOT EXISTS (SELECT 1 FROM job j WHERE j.subject_id = g.access_grant_id AND j.kind = 'provision')
         UNION ALL
         SELECT g.access_grant_id, 'deprovision', g.starts_at, g.ends_at FROM access_grant g
         WHERE g.status IN ('scheduled', 'provisioning', 'active', 'deprovisioning')
           AND NOT EXISTS (SELECT 1 FROM job j WHERE j.subject_id = g.access_grant_id AND j.kind = 'deprovision')",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, kind, starts, ends)| {
            let kind = JobKind::parse(&kind)?;
            let at = if kind == JobKind::Provision {
                starts
            } else {
                ends
            };
            Some((id, kind, Timestamp(at)))
        })
        .collect())
}

pub async fn delete_jobs_for(
    conn: &mut AnyConnection,
    subject_id: &str,
    kind: JobKind,
) -> Result<()> {
    sqlx::query("DELETE FROM job WHERE subject_id = $1 AND kind = $2")
        .bind(subject_id)
        .bind(kind.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Brings a subject's job forward (never later than it already is).
pub async fn advance_job(
    conn: &mut AnyConnection,
    subject_id: &str,
    kind: JobKind,
    run_at: Timestamp,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE job SET run_at = $1 WHERE subject_id = $2 AND kind = $3 AND run_at > $1",
    )
    .bind(run_at.millis())
    .bind(subject_id)
    .bind(kind.as_str())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() > 0 {
        notify_jobs(conn).await?;
    }
    Ok(done.rows_affected())
}

/// Jobs whose failures the admins were alerted about (and which still retry).
pub async fn alerted_jobs(conn: &mut AnyConnection) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as(
        "SELECT job_id, kind, subject_id, run_at, attempts, last_error, alerted, lease_token FROM job
         WHERE alerted = 1",
    )
    .fetch_all(conn)
    .await?)
}

pub async fn jobs_for(conn: &mut AnyConnection, subject_id: &str) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as(
        "SELECT job_id, kind, subject_id, run_at, attempts, last_error, alerted, lease_token FROM job
         WHERE subject_id = $1 ORDER BY run_at",
    )
    .bind(subject_id)
    .fetch_all(conn)
    .await?)
}

/// When the next job falls due (leases included), for the worker's sleep.
pub async fn next_job_due(conn: &mut AnyConnection) -> Result<Option<Timestamp>> {
    next_job_due_in(conn, Lane::All).await
}

/// [`next_job_due`] within one lane.
pub async fn next_job_due_in(conn: &mut AnyConnection, lane: Lane) -> Result<Option<Timestamp>> {
    let at: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > run_at THEN lease_until ELSE run_at END)
         FROM job WHERE 1 = 1{}",
        lane.filter()
    ))
    .fetch_one(conn)
    .await?;
    Ok(at.map(Timestamp))
}

/// Revocations due before `before` and still not done: how many, and the oldest due time.
pub async fn overdue_revocations(
    conn: &mut AnyConnection,
    before: Timestamp,
) -> Result<(i64, Option<Timestamp>)> {
    let row: (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(run_at) FROM job WHERE kind = 'deprovision' AND run_at < $1",
    )
    .bind(before)
    .fetch_one(conn)
    .await?;
    Ok((row.0, row.1.map(Timestamp)))
}

/// The deployment's state for `/metrics`: jobs by kind (due, overdue beyond
/// `overdue_after`, failing), mail waiting, active grants, requests waiting for a decision.
pub async fn metric_gauges(
    conn: &mut AnyConnection,
    now: Timestamp,
    overdue_after: Duration,
) -> Result<crate::metrics::Gauges> {
    let mut g = crate::metrics::Gauges::default();
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT kind,
                SUM(CASE WHEN run_at <= $1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN run_at < $2 THEN 1 ELSE 0 END),
                SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END)
         FROM job GROUP BY kind",
    )
    .bind(now.millis())
    .bind(now.minus(overdue_after).millis())
    .fetch_all(&mut *conn)
    .await?;
    for (kind, due, overdue, failing) in rows {
        g.jobs.insert(kind, (due, overdue, failing));
    }
    let (pending, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status IN ('pending', 'sending')",
    )
    .fetch_one(&mut *conn)
    .await?;
    g.outbox_pending = pending;
    g.outbox_oldest_secs = oldest.map_or(0.0, |t| (now.millis() - t).max(0) as f64 / 1000.0);
    (g.active_grants,) =
        sqlx::query_as("SELECT COUNT(*) FROM access_grant WHERE status = 'active'")
            .fetch_one(&mut *conn)
            .await?;
    (g.pending_requests,) =
        sqlx::query_as("SELECT COUNT(*) FROM access_request WHERE status = 'pending'")
            .fetch_one(&mut *conn)
            .await?;
    Ok(g)
}

#[derive(Clone, Debug, Default)]
pub struct JobStats {
    pub queued: i64,
    pub overdue: i64,
    pub failing: i64,
    pub oldest_overdue: Option<Timestamp>,
}

pub async fn job_stats(
    conn: &mut AnyConnection,
    now: Timestamp,
    grace: Duration,
) -> Result<JobStats> {
    let cutoff = now.minus(grace);
    let row = sqlx::query(
        "SELECT COUNT(*) AS queued,
                COALESCE(SUM(CASE WHEN run_at < $1 THEN 1 ELSE 0 END), 0) AS overdue,
                COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) AS failing,
                MIN(CASE WHEN run_at < $1 THEN run_at END) AS oldest
         FROM job",
    )
    .bind(cutoff.millis())
    .fetch_one(conn)
    .await?;
    Ok(JobStats {
        queued: row.try_get("queued")?,
        overdue: row.try_get("overdue")?,
        failing: row.try_get("failing")?,
        oldest_overdue: row.try_get::<Option<i64>, _>("oldest")?.map(Timestamp),
    })
}

/// Puts a singleton job (catalog sync, reconciliation, audit verification) in line at `run_at`, or brings the
/// one already there forward to it.
pub async fn schedule_singleton(
    conn: &mut AnyConnection,
    kind: JobKind,
    run_at: Timestamp,
    now: Timestamp,
) -> Result<()> {
    let subject = kind.as_str();
    // A unique index keeps it to one job per kind, whoever inserts at the same time.
    sqlx::query(
        "INSERT INTO job (job_id, kind, subject_id, run_at, attempts, alerted, created_at)
         VALUES ($1, $2, $2, $3, 0, 0, $4) ON CONFLICT DO NOTHING",
    )
    .bind(new_id())
    .bind(subject)
    .bind(run_at.millis())
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    // Bring it forward; one running now runs again when done (its new run_at differs from
    // the one it was claimed with, which `reschedule_job_after` keeps).
    sqlx::query(
        "UPDATE job SET run_at = $1 WHERE kind = $2 AND (run_at > $1 OR lease_until IS NOT NULL)",
    )
    .bind(run_at.millis())
    .bind(subject)
    .execute(&mut *conn)
    .await?;
    notify_jobs(conn).await?;
    Ok(())
}
