//! Ending access early: the holder ending their own grant, or an admin revoking any.

use super::*;

impl PortalService {
    pub(super) async fn end_grant(&self, who: &Principal, grant_id: &str) -> Result<(), AppError> {
        self.end_grant_as(who, grant_id, None).await
    }

    pub(super) async fn revoke_grant(
        &self,
        who: &Principal,
        grant_id: &str,
    ) -> Result<(), AppError> {
        let admin = self.admin(who, "revoke").await?;
        self.end_grant_as(who, grant_id, Some(admin)).await
    }

    /// Ends a grant now: the requester ending their own access, or an admin revoking it.
    /// `admin` is the capability to end anyone's grant; without it, only one's own.
    pub(super) async fn end_grant_as(
        &self,
        who: &Principal,
        grant_id: &str,
        admin: Option<Admin<'_>>,
    ) -> Result<(), AppError> {
        let as_admin = admin.is_some_and(|a| a.0.user_id == who.user_id);
        let now = self.now();
        let id = Self::parse_id(grant_id, "That grant")?;
        let mut tx = self.store.begin().await.or_internal()?;
        let Some(grant) = store::lock_grant(&mut tx, id.as_str())
            .await
            .or_internal()?
        else {
            return Err(AppError::NotFound("That grant".into()));
        };
        if !as_admin && grant.principal_id != who.user_id {
            drop(tx);
            return Err(self
                .deny(
                    who,
                    "end_grant",
                    id.as_str(),
                    "only the holder or an admin can end this access",
                )
                .await);
        }
        let status = grant.status;
        if !matches!(
            status,
            GrantStatus::Scheduled | GrantStatus::Provisioning | GrantStatus::Active
        ) {
            return Err(AppError::Conflict(format!(
                "This access is already {status}."
            )));
        }
        let request = store::get_request(&mut tx, &grant.access_request_id)
            .await
            .or_internal()?
            .ok_or_else(|| internal(anyhow::anyhow!("grant without request")))?;
        let result: anyhow::Result<()> = async {
            store::end_grant_at(&mut tx, id.as_str(), now, &who.display_name).await?;
            store::advance_job(&mut tx, id.as_str(), JobKind::Deprovision, now).await?;
            audit::audit(
                &mut tx,
                &Actor::of(who),
                Event {
                    action: if as_admin {
                        "grant.revoke_requested"
                    } else {
                        "grant.end_requested"
                    },
                    person_id: Some(&grant.principal_id),
                    subject_kind: "grant",
                    subject_id: id.as_str(),
                    entitlement_id: Some(&request.entitlement_id),
                    detail: format!(
                        "while {status}; scheduled end was {}",
                        grant.ends_at.format_utc()
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
