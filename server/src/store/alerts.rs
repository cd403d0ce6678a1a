//! Alerts shown to admins: raised once per (kind, subject), resolved when the cause is gone.

use super::*;

/// What an alert is about. Stored as its name; a job's failures as `<job kind>_failing`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A job keeps failing (still retrying).
    JobFailing(JobKind),
    /// A message the worker gave up on, waiting for an admin to resend it.
    MailParked,
    /// An AWS operation still in progress after `worker.stuck_after_secs`.
    OperationStuck,
    /// Provisioning failed for good (the grant is `failed`).
    ProvisioningFailed,
    /// A break-glass entitlement was used; open until an admin reviews the use.
    BreakGlass,
    /// The worker's sweep found a live grant without its job and put the job back.
    JobRestored,
    /// Reconciliation: an assignment made outside the portal.
    DriftExternal,
    /// Reconciliation: an active grant whose assignment is missing in AWS.
    DriftMissing,
    /// Reconciliation: an assignment the portal made that no live grant covers.
    DriftOrphan,
    /// Audit verification: an event does not fit the keyed hash chain (invariant 6).
    AuditChainBroken,
}

impl AlertKind {
    /// The drift found by reconciliation, as the AWS page shows it.
    pub const DRIFT: [AlertKind; 3] = [Self::DriftExternal, Self::DriftMissing, Self::DriftOrphan];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobFailing(k) => match k {
                JobKind::Provision => "provision_failing",
                JobKind::Deprovision => "deprovision_failing",
                JobKind::DecisionTimeout => "decision_timeout_failing",
                JobKind::DeliverMail => "deliver_mail_failing",
                JobKind::AnnounceRequest => "announce_request_failing",
                JobKind::ApprovalReminder => "approval_reminder_failing",
                JobKind::ApprovalEscalation => "approval_escalation_failing",
                JobKind::EndingSoon => "ending_soon_failing",
                JobKind::SyncCatalog => "sync_catalog_failing",
                JobKind::Reconcile => "reconcile_failing",
                JobKind::VerifyAudit => "verify_audit_failing",
                JobKind::SyncBackstop => "sync_backstop_failing",
                JobKind::BreakGlassReview => "break_glass_review_failing",
            },
            Self::MailParked => "mail_parked",
            Self::OperationStuck => "operation_stuck",
            Self::ProvisioningFailed => "provisioning_failed",
            Self::BreakGlass => "break_glass",
            Self::JobRestored => "job_restored",
            Self::DriftExternal => "drift_external",
            Self::DriftMissing => "drift_missing",
            Self::DriftOrphan => "drift_orphan",
            Self::AuditChainBroken => "audit_chain_broken",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if let Some(job) = s.strip_suffix("_failing") {
            return JobKind::parse(job).map(Self::JobFailing);
        }
        [
            Self::MailParked,
            Self::OperationStuck,
            Self::ProvisioningFailed,
            Self::BreakGlass,
            Self::JobRestored,
            Self::DriftExternal,
            Self::DriftMissing,
            Self::DriftOrphan,
            Self::AuditChainBroken,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

app::sql_text_enum!(AlertKind);

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AlertRow {
    pub alert_id: String,
    pub kind: AlertKind,
    pub subject_id: String,
    pub message: String,
    pub created_at: Timestamp,
}

pub async fn raise_alert(
    conn: &mut AnyConnection,
    kind: AlertKind,
    subject_id: &str,
    message: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO alert (alert_id, kind, subject_id, message, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new_id())
    .bind(kind)
    .bind(subject_id)
    .bind(message)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn alert_exists(
    conn: &mut AnyConnection,
    kind: AlertKind,
    subject_id: &str,
) -> Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM alert WHERE kind = $1 AND subject_id = $2")
            .bind(kind)
            .bind(subject_id)
            .fetch_one(conn)
            .await?;
    Ok(n > 0)
}

/// The newest 100 open alerts, but those of kind `except` (listed on their own).
pub async fn open_alerts(
    conn: &mut AnyConnection,
    except: Option<AlertKind>,
) -> Result<Vec<AlertRow>> {
    Ok(sqlx::query_as(
        "SELECT alert_id, kind, subject_id, message, created_at FROM alert
         WHERE resolved_at IS NULL AND ($1 IS NULL OR kind <> $1)
         ORDER BY created_at DESC LIMIT 100",
    )
    .bind(except.map(AlertKind::as_str))
    .fetch_all(conn)
    .await?)
}

/// Whether an alert of this kind about this subject is open (not resolved).
pub async fn alert_open(
    conn: &mut AnyConnection,
    kind: AlertKind,
    subject_id: &str,
) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM alert WHERE kind = $1 AND subject_id = $2 AND resolved_at IS NULL",
    )
    .bind(kind)
    .bind(subject_id)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// Marks the open alerts of one kind about one subject as resolved.
pub async fn resolve_alerts(
    conn: &mut AnyConnection,
    kind: AlertKind,
    subject_id: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("UPDATE alert SET resolved_at = $1 WHERE kind = $2 AND subject_id = $3 AND resolved_at IS NULL")
        .bind(now.millis())
        .bind(kind)
        .bind(subject_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Open alerts of some kinds (the drift report).
pub async fn open_alerts_of(
    conn: &mut AnyConnection,
    kinds: &[AlertKind],
) -> Result<Vec<AlertRow>> {
    // Names of a closed enum: nothing from outside reaches this SQL text.
    let list = kinds
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(sqlx::query_as(&format!(
        "SELECT alert_id, kind, subject_id, message, created_at FROM alert
         WHERE resolved_at IS NULL AND kind IN ({list}) ORDER BY created_at DESC LIMIT 500"
    ))
    .fetch_all(conn)
    .await?)
}
