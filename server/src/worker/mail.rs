//! Mail delivery: sends one outbox message, records the attempt first, parks it after
//! too many failures (invariant 7: mail never blocks an access change).

use super::*;
use crate::store::{AlertKind, MailStatus};

impl Worker {
    pub(super) async fn deliver_mail(&self, job: &JobRow, now: Timestamp) -> Result<Outcome> {
        let mail = {
            let mut conn = self.store.conn().await?;
            store::get_mail(&mut conn, &job.subject_id).await?
        };
        let Some(mail) = mail else {
            return Ok(Outcome::Done);
        };
        if mail.status.is_settled() {
            return Ok(Outcome::Done);
        }
        {
            // Record the attempt before sending: a crash mid-send is visible, and resends.
            let mut conn = self.store.conn().await?;
            store::mark_mail_sending(&mut conn, &mail.outbox_id).await?;
        }
        let subject = self.mail.subject(&mail.subject);
        let result = self
            .mailer
            .send(&mail.recipient, &subject, &mail.body_text, &mail.body_html)
            .await;
        let mut conn = self.store.conn().await?;
        match result {
            Ok(()) => {
                store::set_mail_status(&mut conn, &mail.outbox_id, MailStatus::Sent, None, now)
                    .await?;
                Ok(Outcome::Done)
            }
            Err(e) if mail.attempts + 1 >= i64::from(self.settings.mail_max_attempts) => {
                store::set_mail_status(
                    &mut conn,
                    &mail.outbox_id,
                    MailStatus::Parked,
                    Some(&e.to_string()),
                    now,
                )
                .await?;
                store::raise_alert(
                    &mut conn,
                    AlertKind::MailParked,
                    &mail.outbox_id,
                    &format!(
                        "mail to {} parked after {} attempts: {e}",
                        mail.recipient,
                        mail.attempts + 1
                    ),
                    now,
                )
                .await?;
                Ok(Outcome::Done)
            }
            Err(e) => {
                store::set_mail_status(
                    &mut conn,
                    &mail.outbox_id,
                    MailStatus::Pending,
                    Some(&e.to_string()),
                    now,
                )
                .await?;
                Err(e.into())
            }
        }
    }
}
