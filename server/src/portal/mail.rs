//! The outbox page: the mail one was sent (admins: all of it), and resending parked mail.

use super::*;

impl PortalService {
    pub(super) async fn outbox(&self, who: &Principal) -> Result<Vec<MailView>, AppError> {
        let mut conn = self.store.conn().await.or_internal()?;
        let rows = store::recent_mail(&mut conn, 300).await.or_internal()?;
        // Admins see every message; everyone else sees only mail addressed to them.
        Ok(rows
            .into_iter()
            .filter(|m| who.is_admin || m.recipient.eq_ignore_ascii_case(&who.email))
            .map(|m| MailView {
                to: m.recipient,
                subject: m.subject,
                body_text: m.body_text,
                created_at: m.created_at.format_utc(),
                status: m.status.to_string(),
            })
            .collect())
    }

    pub(super) async fn resend_mail(&self, who: &Principal, mail_id: &str) -> Result<(), AppError> {
        let Admin(admin) = self.admin(who, "resend_mail").await?;
        let now = self.now();
        let id = Self::parse_id(mail_id, "That message")?;
        let mut tx = self.store.begin().await.or_internal()?;
        let Some(mail) = store::get_mail(&mut tx, id.as_str()).await.or_internal()? else {
            return Err(AppError::NotFound("That message".into()));
        };
        if !store::requeue_parked_mail(&mut tx, id.as_str(), now)
            .await
            .or_internal()?
        {
            return Err(AppError::Conflict(format!(
                "This message is {}, not parked; nothing to resend.",
                mail.status
            )));
        }
        let result: anyhow::Result<()> = async {
            store::resolve_alerts(&mut tx, store::AlertKind::MailParked, id.as_str(), now).await?;
            audit::audit(
                &mut tx,
                &Actor::of(admin),
                Event {
                    action: "mail.resend",
                    person_id: None,
                    subject_kind: "mail",
                    subject_id: id.as_str(),
                    entitlement_id: None,
                    detail: format!(
                        "to {} after {} failed attempts: {}",
                        mail.recipient, mail.attempts, mail.subject
                    ),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        result.or_internal()?;
        self.wake.notify_one();
        Ok(())
    }
}
