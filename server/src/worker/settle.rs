//! Settling a grant's outcome in one transaction: its new state, the audit event, the
//! request's status, the jobs it no longer needs, and the mail that tells people.

use super::*;

impl Worker {
    pub(super) fn end_reason(&self, g: &GrantRow) -> String {
        match &g.ended_by {
            Some(by) => format!("ended early by {by}"),
            None => "its time was up".into(),
        }
    }

    /// Applies a grant event, audits it, updates the request, tells the people concerned,
    /// and drops jobs that no longer have anything to do.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn settle(
        &self,
        tx: &mut store::Tx,
        grant: &GrantRow,
        event: GrantEvent,
        action: &str,
        detail: String,
        failure: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        let from = grant.status;
        let to = from.apply(event)?;
        if event == GrantEvent::CreationSucceeded {
            let latency = grant.starts_at.until(now);
            self.metrics.grant_active(latency.as_secs_f64());
        }
        store::update_grant(
            tx,
            &grant.access_grant_id,
            from,
            GrantUpdate::settled(to).failure(failure),
            now,
        )
        .await?;
        // Active, or over: the assignment's backstop schedule follows (issue #15).
        if matches!(
            to,
            GrantStatus::Active | GrantStatus::Revoked | GrantStatus::Failed
        ) {
            self.queue_backstop(tx, &grant.access_grant_id, now).await?;
        }
        let request = store::get_request(tx, &grant.access_request_id)
            .await?
            .context("grant without request")?;
        audit::audit(
            tx,
            &Actor::system(),
            Event {
                action,
                person_id: Some(&grant.principal_id),
                subject_kind: "grant",
                subject_id: &grant.access_grant_id,
                entitlement_id: Some(&request.entitlement_id),
                detail,
            },
            now,
        )
        .await?;
        if !to.is_live() {
            store::delete_jobs_for(tx, &grant.access_grant_id, JobKind::Provision).await?;
            store::delete_jobs_for(tx, &grant.access_grant_id, JobKind::EndingSoon).await?;
        }
        if to == GrantStatus::Active {
            if let Some(lead) = self.mail.ending_soon_lead() {
                let at = grant.ends_at.minus(lead).max(now);
                store::insert_job(tx, JobKind::EndingSoon, &grant.access_grant_id, at, now).await?;
            }
        }
        if to == GrantStatus::Failed {
            // Nothing was created: there is nothing to revoke.
            store::delete_jobs_for(tx, &grant.access_grant_id, JobKind::Deprovision).await?;
        }
        if let Some((_, req_to)) = grants::sync_request(tx, &grant.access_request_id, now).await? {
            audit::audit(
                tx,
                &Actor::system(),
                Event {
                    action: &format!("request.{}", req_to.as_str()),
                    person_id: Some(&request.requester_id),
                    subject_kind: "request",
                    subject_id: &request.access_request_id,
                    entitlement_id: Some(&request.entitlement_id),
                    detail: format!("after grant {} became {}", grant.access_grant_id, to),
                },
                now,
            )
            .await?;
        }
        self.tell(tx, grant, &request, to, failure, now).await
    }

    pub(super) async fn tell(
        &self,
        tx: &mut store::Tx,
        grant: &GrantRow,
        request: &store::RequestRow,
        status: GrantStatus,
        failure: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        let Some(user) = store::get_user(tx, &grant.principal_id).await? else {
            return Ok(());
        };
        let (account_name, ps_name, tail) = store::describe_target(tx, grant).await?;
        let entitlement = store::get_entitlement(tx, &request.entitlement_id).await?;
        let policy = entitlement.as_ref().map(|e| e.policy.clone());
        let entitlement = entitlement.map(|e| e.name).unwrap_or_default();
        let target = format!("{ps_name} on {account_name} ({})", grant.account_id);
        let facts = notify::GrantFacts {
            target: &target,
            entitlement: &entitlement,
            ends: grant.ends_at,
            session_tail: &tail,
        };
        let why = match status {
            GrantStatus::Revoked => self.end_reason(grant),
            _ => failure.unwrap_or("").to_owned(),
        };
        let Some(mail) = notify::grant_changed(&self.public_url, &facts, status, &why) else {
            return Ok(());
        };
        notify::queue(tx, &user.email, &mail, now).await?;
        if let Some(policy) = &policy {
            let id = &request.access_request_id;
            let holder = &user.display_name;
            if let Some(chat) =
                notify::chat_grant(&self.public_url, id, holder, &facts, status, &why)
            {
                notify::chat(tx, policy, &chat, now).await?;
            }
        }
        if status == GrantStatus::Failed {
            for admin in notify::admins(tx).await? {
                let mail = notify::provisioning_failed(
                    &self.public_url,
                    &target,
                    &user.display_name,
                    &why,
                    &grant.access_grant_id,
                );
                notify::queue(tx, &admin.email, &mail, now).await?;
            }
        }
        Ok(())
    }
}
