//! The edge to mail delivery. Demo mode keeps messages in the outbox page only.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("mail delivery failed: {0}")]
pub struct MailError(pub String);

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, to: &str, subject: &str, text: &str, html: &str) -> Result<(), MailError>;
}

/// Delivers nothing: the outbox page is the mailbox (demo mode).
pub struct OutboxOnly;

#[async_trait]
impl Mailer for OutboxOnly {
    async fn send(&self, _to: &str, _subject: &str, _text: &str, _html: &str) -> Result<(), MailError> {
        Ok(())
    }
}
