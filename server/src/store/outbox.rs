//! The mail outbox (invariant 7) and the messages parked after too many failures.

use super::*;

/// Where a message is on its way out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MailStatus {
    /// Waiting for (another) delivery attempt.
    Pending,
    /// An attempt started; a crash mid-send leaves it here, and it is sent again.
    Sending,
    Sent,
    /// Given up after `worker.mail_max_attempts`; an admin may resend it.
    Parked,
}

impl MailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Parked => "parked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sending, Self::Sent, Self::Parked]
            .into_iter()
            .find(|m| m.as_str() == s)
    }

    /// Nothing more to do: sent, or waiting for an admin.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Sent | Self::Parked)
    }
}

app::sql_text_enum!(MailStatus);

impl std::fmt::Display for MailStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub outbox_id: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub status: MailStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

/// Queues a message and the job that delivers it, in the caller's transaction.
pub async fn enqueue_mail(
    conn: &mut AnyConnection,
    recipient: &str,
    subject: &str,
    body_text: &str,
    body_html: &str,
    now: Timestamp,
) -> Result<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO outbox (outbox_id, recipient, subject, body_text, body_html, status, attempts, created_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6)",
    )
    .bind(&id)
    .bind(recipient)
    .bind(subject)
    .bind(body_text)
    .bind(body_html)
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    insert_job(conn, JobKind::DeliverMail, &id, now, now).await?;
    Ok(id)
}

pub(crate) const OUTBOX_COLS: &str =
    "outbox_id, recipient, subject, body_text, body_html, status, attempts, last_error, created_at";

pub async fn get_mail(conn: &mut AnyConnection, id: &str) -> Result<Option<OutboxRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {OUTBOX_COLS} FROM outbox WHERE outbox_id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn set_mail_status(
    conn: &mut AnyConnection,
    id: &str,
    status: MailStatus,
    error: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = $1, last_error = $2, attempts = attempts + 1,
             sent_at = CASE WHEN $1 = 'sent' THEN $3 ELSE sent_at END
         WHERE outbox_id = $4",
    )
    .bind(status)
    .bind(error)
    .bind(now.millis())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a delivery attempt before the message is sent: a crash mid-send stays visible,
/// and the message is sent again.
pub async fn mark_mail_sending(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE outbox SET status = 'sending' WHERE outbox_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn recent_mail(conn: &mut AnyConnection, limit: i64) -> Result<Vec<OutboxRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {OUTBOX_COLS} FROM outbox ORDER BY created_at DESC, outbox_id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Messages the worker gave up on, newest first, for the admin page.
pub async fn parked_mail(conn: &mut AnyConnection, limit: i64) -> Result<Vec<OutboxRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {OUTBOX_COLS} FROM outbox WHERE status = 'parked' ORDER BY created_at DESC, outbox_id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Puts a parked message back in line with a fresh count of attempts and a delivery job.
/// Returns false when the message is not parked (already resent, or never parked).
pub async fn requeue_parked_mail(
    conn: &mut AnyConnection,
    id: &str,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE outbox SET status = 'pending', attempts = 0, last_error = NULL
         WHERE outbox_id = $1 AND status = 'parked'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    insert_job(conn, JobKind::DeliverMail, id, now, now).await?;
    Ok(true)
}
