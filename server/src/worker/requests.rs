//! Request jobs: the decision timeout, the announcement of a new request, reminders and
//! escalation to approvers, and the ending-soon warning.

use super::*;
use crate::approval;

impl Worker {
    pub(super) async fn decision_timeout(
        &self,
        request_id: &str,
        now: Timestamp,
    ) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let Some(request) = store::lock_request(&mut tx, request_id).await? else {
            return Ok(Outcome::Done);
        };
        if request.status != RequestStatus::Pending {
            return Ok(Outcome::Done);
        }
        if now < request.decision_due_at {
            return Ok(Outcome::Again(request.decision_due_at));
        }
        let to = RequestStatus::Pending.apply(RequestEvent::DecisionTimeout)?;
        store::set_request_status(&mut tx, request_id, to, now).await?;
        notify::forget_approval_nudges(&mut tx, request_id).await?;
        audit::audit(
            &mut tx,
            &Actor::system(),
            Event {
                action: "request.timed_out",
                person_id: Some(&request.requester_id),
                subject_kind: "request",
                subject_id: request_id,
                entitlement_id: Some(&request.entitlement_id),
                detail: "no decision before the deadline".into(),
            },
            now,
        )
        .await?;
        if let Some(user) = store::get_user(&mut tx, &request.requester_id).await? {
            let name = store::get_entitlement(&mut tx, &request.entitlement_id)
                .await?
                .map(|e| e.name)
                .unwrap_or_default();
            let mail = notify::request_timed_out(&self.public_url, &name, &request.justification);
            notify::queue(&mut tx, &user.email, &mail, now).await?;
        }
        tx.commit().await?;
        Ok(Outcome::Done)
    }

    // ------------------------------------------------------------ reminders and warnings
    //
    // Each of these sends its mail and deletes its own job in one transaction, so a worker
    // that dies after committing never sends them twice; each does nothing once the state
    // has moved on (request decided, grant over or ended early).

    /// A new request: tells the configured approver addresses (the people the portal knows
    /// were told when it was made) and schedules its reminder and escalation.
    pub(super) async fn announce_request(&self, job: &JobRow, now: Timestamp) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let Some(request) = store::lock_request(&mut tx, &job.subject_id).await? else {
            return Ok(Outcome::Done);
        };
        if request.status == RequestStatus::Pending {
            let requester = store::get_user(&mut tx, &request.requester_id)
                .await?
                .context("request without user")?;
            let entitlement = store::get_entitlement(&mut tx, &request.entitlement_id)
                .await?
                .context("request without entitlement")?;
            let told: Vec<String> =
                notify::approvers_of(&mut tx, &entitlement.policy, &requester, 0)
                    .await?
                    .into_iter()
                    .map(|p| p.email.to_lowercase())
                    .collect();
            let mail = notify::approval_mail(
                Nudge::New,
                &request,
                &requester,
                &entitlement.name,
                &self.public_url,
                now,
            );
            for to in distinct(self.mail.approver_addresses.iter().cloned()) {
                if !told.contains(&to.to_lowercase()) && !to.eq_ignore_ascii_case(&requester.email)
                {
                    notify::queue(&mut tx, &to, &mail, now).await?;
                }
            }
            let created = request.created_at;
            if let Some(after) = self
                .mail
                .reminder_after()
                .filter(|_| self.mail.max_reminders > 0)
            {
                store::insert_job(
                    &mut tx,
                    JobKind::ApprovalReminder,
                    &request.access_request_id,
                    created.plus(after),
                    now,
                )
                .await?;
            }
            if let Some((_, after)) = self.escalation_of(&entitlement.policy) {
                store::insert_job(
                    &mut tx,
                    JobKind::ApprovalEscalation,
                    &request.access_request_id,
                    created.plus(after),
                    now,
                )
                .await?;
            }
        }
        // The job goes with the mail it sent, in one transaction, and only while this
        // worker still holds it: a worker whose lease lapsed sends nothing twice.
        if store::job_done(&mut tx, job).await? {
            tx.commit().await?;
        }
        Ok(Outcome::Finished)
    }

    /// A request still pending: reminds the approvers who have not decided yet (and the
    /// configured approver addresses), then schedules the next reminder, up to
    /// `mail.max_reminders`, one every `mail.reminder_after_secs`.
    pub(super) async fn remind_approvers(&self, job: &JobRow, now: Timestamp) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let Some(request) = store::lock_request(&mut tx, &job.subject_id).await? else {
            return Ok(Outcome::Done);
        };
        if request.status == RequestStatus::Pending {
            let (requester, entitlement) = self.pending_parties(&mut tx, &request).await?;
            let escalated = entitlement
                .policy
                .with_escalation(request.escalation().as_ref());
            // The people of the step the request waits at.
            let policy = notify::policy_for(&mut tx, &escalated, &requester).await?;
            let id = &request.access_request_id;
            // One read of its decisions: where it waits, and who decided already.
            let standing = approval::standing(&mut tx, id, &policy, &requester).await?;
            let (at, decided) = (standing.progress.step, standing.deciders());
            let people = notify::approvers_of(&mut tx, &policy, &requester, at).await?;
            let mut recipients: Vec<String> = people
                .into_iter()
                .filter(|p| {
                    p.user_id
                        .as_ref()
                        .is_none_or(|id| *id != requester.user_id && !decided.contains(id))
                })
                .map(|p| p.email)
                .collect();
            recipients.extend(self.mail.approver_addresses.iter().cloned());
            let recipients = distinct(recipients.into_iter());
            if recipients.is_empty() {
                tracing::warn!(request = %request.access_request_id, "a pending request has nobody to remind");
            }
            let nudge = (Nudge::Reminder, &requester, entitlement.name.as_str());
            self.nudge(&mut tx, nudge, &request, &recipients, now)
                .await?;
            if let Some(every) = self.mail.reminder_after() {
                let sent = request.created_at.until(now).as_secs() / every.as_secs().max(1);
                if sent < u64::from(self.mail.max_reminders) {
                    let next = request.created_at.plus(every * (sent as u32 + 1));
                    let id = &request.access_request_id;
                    store::insert_job(&mut tx, JobKind::ApprovalReminder, id, next, now).await?;
                }
            }
        }
        // The job goes with the mail it sent, in one transaction, and only while this
        // worker still holds it: a worker whose lease lapsed sends nothing twice.
        if store::job_done(&mut tx, job).await? {
            tx.commit().await?;
        }
        Ok(Outcome::Finished)
    }

    /// A request nobody decided in time: escalated to the entitlement's escalation rule
    /// (or the portal-wide fallback group), recorded on the request, so its members may
    /// decide it from now on, audited, and its members told.
    pub(super) async fn escalate(&self, job: &JobRow, now: Timestamp) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let Some(request) = store::lock_request(&mut tx, &job.subject_id).await? else {
            return Ok(Outcome::Done);
        };
        let id = request.access_request_id.clone();
        if request.status == RequestStatus::Pending {
            let (requester, entitlement) = self.pending_parties(&mut tx, &request).await?;
            if let Some((rule, _)) = self.escalation_of(&entitlement.policy) {
                let decided: Vec<String> = store::decisions_for_request(&mut tx, &id)
                    .await?
                    .into_iter()
                    .map(|d| d.approver_id)
                    .collect();
                store::set_escalated(&mut tx, &id, &rule, now).await?;
                let names = rule_names(&rule);
                let waited = app::domain::time::format_duration(request.created_at.until(now));
                audit::audit(
                    &mut tx,
                    &Actor::system(),
                    Event {
                        action: "request.escalated",
                        person_id: Some(&request.requester_id),
                        subject_kind: "request",
                        subject_id: &id,
                        entitlement_id: Some(&request.entitlement_id),
                        detail: format!("no decision after {waited}: {names} may decide it now"),
                    },
                    now,
                )
                .await?;
                let policy = entitlement.policy.with_escalation(Some(&rule));
                let people = notify::told_for_rule(&mut tx, &rule, &policy, &requester).await?;
                let recipients = distinct(
                    people
                        .into_iter()
                        .filter(|p| p.user_id.as_ref().is_none_or(|id| !decided.contains(id)))
                        .map(|p| p.email),
                );
                if recipients.is_empty() {
                    tracing::warn!(request = %id, %names, "an escalated request has nobody to tell (in the portal or the directory)");
                }
                let nudge = (
                    Nudge::Escalation(&names),
                    &requester,
                    entitlement.name.as_str(),
                );
                self.nudge(&mut tx, nudge, &request, &recipients, now)
                    .await?;
            }
        }
        if store::job_done(&mut tx, job).await? {
            tx.commit().await?;
        }
        Ok(Outcome::Finished)
    }

    /// Queues one approval mail (`nudge`: why, the requester, the entitlement's name) to
    /// each recipient.
    async fn nudge(
        &self,
        conn: &mut sqlx::AnyConnection,
        (nudge, requester, entitlement): (Nudge<'_>, &Principal, &str),
        request: &store::RequestRow,
        recipients: &[String],
        now: Timestamp,
    ) -> Result<()> {
        let mail = notify::approval_mail(
            nudge,
            request,
            requester,
            entitlement,
            &self.public_url,
            now,
        );
        for to in recipients {
            notify::queue(conn, to, &mail, now).await?;
        }
        Ok(())
    }

    /// The requester and entitlement of a pending request.
    async fn pending_parties(
        &self,
        conn: &mut sqlx::AnyConnection,
        request: &store::RequestRow,
    ) -> Result<(Principal, app::domain::Entitlement)> {
        let requester = store::get_user(conn, &request.requester_id)
            .await?
            .context("request without user")?;
        let entitlement = store::get_entitlement(conn, &request.entitlement_id)
            .await?
            .context("request without entitlement")?;
        Ok((requester, entitlement))
    }

    /// Where a request of this policy escalates, and after how long: the entitlement's own
    /// rule and delay, else `mail.fallback_approver_group` and `mail.escalate_after_secs`.
    /// `None` when there is no rule or no delay.
    pub(super) fn escalation_of(&self, policy: &Policy) -> Option<(ApproverRule, Duration)> {
        let secs = match policy.escalate_after_secs {
            0 => self.mail.escalate_after_secs,
            s => s,
        };
        let rule = if policy.escalation.is_empty() {
            ApproverRule {
                groups: vec![self.mail.fallback_approver_group.clone()?],
                ..Default::default()
            }
        } else {
            policy.escalation.clone()
        };
        (secs > 0).then(|| (rule, Duration::from_secs(secs)))
    }

    /// A break-glass use nobody reviewed in time: every admin is told again (and the
    /// escalation audited). Nothing happens once it was reviewed.
    pub(super) async fn break_glass_unreviewed(
        &self,
        job: &JobRow,
        now: Timestamp,
    ) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let id = job.subject_id.clone();
        let open = store::alert_open(&mut tx, store::AlertKind::BreakGlass, &id).await?;
        if let (true, Some(request)) = (open, store::get_request(&mut tx, &id).await?) {
            let (requester, entitlement) = self.pending_parties(&mut tx, &request).await?;
            let waited = app::domain::time::format_duration(request.created_at.until(now));
            audit::audit(
                &mut tx,
                &Actor::system(),
                Event {
                    action: "break_glass.review_overdue",
                    person_id: Some(&request.requester_id),
                    subject_kind: "request",
                    subject_id: &id,
                    entitlement_id: Some(&request.entitlement_id),
                    detail: format!("not reviewed after {waited}: every admin told"),
                },
                now,
            )
            .await?;
            let mail = notify::break_glass_unreviewed(
                &self.public_url,
                &entitlement.name,
                &requester.display_name,
                &waited,
                &request,
            );
            for admin in notify::admins(&mut tx).await? {
                if admin.user_id != requester.user_id {
                    notify::queue(&mut tx, &admin.email, &mail, now).await?;
                }
            }
        }
        if store::job_done(&mut tx, job).await? {
            tx.commit().await?;
        }
        Ok(Outcome::Finished)
    }

    /// Warns the holder that an active grant ends soon, with a link to ask for more time.
    pub(super) async fn ending_soon(&self, job: &JobRow, now: Timestamp) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let Some(grant) = store::lock_grant(&mut tx, &job.subject_id).await? else {
            return Ok(Outcome::Done);
        };
        let lead = self.mail.ending_soon_lead().unwrap_or_default();
        let due = grant.ends_at.minus(lead);
        if grant.status == GrantStatus::Active && now < grant.ends_at {
            if now < due {
                // The end moved later since this was scheduled: warn in time for the new one.
                return Ok(Outcome::Again(due));
            }
            if let Some(user) = store::get_user(&mut tx, &grant.principal_id).await? {
                let request = store::get_request(&mut tx, &grant.access_request_id)
                    .await?
                    .context("grant without request")?;
                let entitlement = store::get_entitlement(&mut tx, &request.entitlement_id)
                    .await?
                    .map(|e| e.name)
                    .unwrap_or_default();
                let (account_name, ps_name, tail) = store::describe_target(&mut tx, &grant).await?;
                let target = format!("{ps_name} on {account_name} ({})", grant.account_id);
                let left = app::domain::time::format_duration(now.until(grant.ends_at));
                let facts = notify::GrantFacts {
                    target: &target,
                    entitlement: &entitlement,
                    ends: grant.ends_at,
                    session_tail: &tail,
                };
                let mail = notify::ending_soon(
                    &self.public_url,
                    &grant.access_grant_id,
                    &facts,
                    &left,
                    &request.justification,
                );
                notify::queue(&mut tx, &user.email, &mail, now).await?;
            }
        }
        // The job goes with the mail it sent, in one transaction, and only while this
        // worker still holds it: a worker whose lease lapsed sends nothing twice.
        if store::job_done(&mut tx, job).await? {
            tx.commit().await?;
        }
        Ok(Outcome::Finished)
    }
}

/// Addresses without repeats (compared without case), in their first order.
fn distinct(addresses: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in addresses {
        if !out.iter().any(|b| b.eq_ignore_ascii_case(&a)) {
            out.push(a);
        }
    }
    out
}

/// An approver rule as mail and the audit trail name it: `members of cloud-fallback`,
/// `frank@example.com`.
fn rule_names(rule: &ApproverRule) -> String {
    rule.groups
        .iter()
        .map(|g| format!("members of {g}"))
        .chain(rule.users.iter().cloned())
        .collect::<Vec<_>>()
        .join(" and ")
}
