//! Extensions (issue #12, item 5): more time on access one holds, without a gap. The
//! holder of an active grant asks for more time; the request follows the entitlement's
//! policy like any other (its approvers, or approved at once up to
//! `policy.extension_auto_approve_secs`), and once approved the end of every live grant
//! of the original request moves later in one transaction. Nothing is revoked and
//! created again: the revocation job finds the grant not yet due and waits for the new
//! end (`worker::revoke`, under the assignment lock this takes too). A grant never lasts
//! longer than `policy.max_total_secs` from its start.

use super::requests::new_request;
use super::*;

impl PortalService {
    pub(super) async fn extend_grant(
        &self,
        who: &Principal,
        grant_id: &str,
        draft: RequestDraft,
        seen_end: Option<i64>,
    ) -> Result<String, AppError> {
        let now = self.now();
        let gid = Self::parse_id(grant_id, "That access")?;
        let mut tx = self.store.begin().await.or_internal()?;
        let Some(grant) = store::get_grant(&mut tx, gid.as_str())
            .await
            .or_internal()?
        else {
            return Err(AppError::NotFound("That access".into()));
        };
        if grant.principal_id != who.user_id {
            drop(tx);
            let why = "only the person who holds access can ask to extend it";
            return Err(self.deny(who, "extend", gid.as_str(), why).await);
        }
        // The locks the worker takes, in its order (each assignment, then the request), so
        // neither waits on the other in a cycle; then one extension at a time per request,
        // and the grant as it is now.
        for g in store::grants_for_request(&mut tx, &grant.access_request_id)
            .await
            .or_internal()?
        {
            store::lock_assignment(&mut tx, &g).await.or_internal()?;
        }
        let original = store::lock_request(&mut tx, &grant.access_request_id)
            .await
            .or_internal()?
            .context("grant without request")
            .or_internal()?;
        let grant = store::get_grant(&mut tx, gid.as_str())
            .await
            .or_internal()?
            .context("grant vanished")
            .or_internal()?;
        if grant.status != GrantStatus::Active || grant.ends_at <= now {
            return Err(AppError::Conflict(format!(
                "Only active access can be extended; this one is {}.",
                grant.status
            )));
        }
        if seen_end.is_some_and(|end| end != grant.ends_at.millis()) {
            return Err(AppError::Conflict(format!(
                "This access was extended meanwhile: it now ends {}. Ask again if you need more.",
                grant.ends_at.format_utc()
            )));
        }
        let entitlement = store::get_entitlement(&mut tx, &original.entitlement_id)
            .await
            .or_internal()?
            .context("request without entitlement")
            .or_internal()?;
        if let Some(at) = store::entitlement_retired_at(&mut tx, &entitlement.id)
            .await
            .or_internal()?
        {
            return Err(AppError::Conflict(format!(
                "{} was retired on {}: its access runs to its end and cannot be extended.",
                entitlement.name,
                at.format_utc()
            )));
        }
        if !entitlement.policy.is_eligible(who) {
            drop(tx);
            let why = "you are no longer eligible for this entitlement";
            return Err(self.deny(who, "extend", gid.as_str(), why).await);
        }
        if store::pending_extension_of(&mut tx, &original.access_request_id)
            .await
            .or_internal()?
            .is_some()
        {
            return Err(AppError::Conflict(
                "An extension of this access already waits for a decision.".into(),
            ));
        }
        self.within_hourly_limit(&mut tx, who, now).await?;
        let so_far = grant.starts_at.until(grant.ends_at);
        let valid = entitlement
            .policy
            .validate_extension(&draft, self.min_duration, so_far)
            .map_err(|mut errors| {
                errors.push(app::domain::FieldError::new(
                    "for",
                    grant.access_grant_id.clone(),
                ));
                AppError::Invalid(errors)
            })?;
        let more = valid.duration.as_duration();
        let extends = Some(original.access_request_id.clone());
        let request = new_request(who, &entitlement, &valid, extends, now);
        let detail = format!(
            "{} more on request {} because: {}",
            valid.duration, original.access_request_id, request.justification
        );
        let approves_itself = entitlement.policy.extension_approves_itself(more);
        let event = ("request.extension_requested", detail);
        self.submit(tx, request, &entitlement, who, event, approves_itself, now)
            .await
    }

    /// Carries out an approved extension in the caller's transaction: every active grant of
    /// the original request ends later (within `max_total`), each change audited
    /// (`grant.extended`), its "ending soon" warning and backstop brought in line, and the
    /// requester told the new end. A grant that has ended or started ending meanwhile is
    /// left alone.
    pub(super) async fn apply_extension(
        &self,
        tx: &mut store::Tx,
        request: &RequestRow,
        entitlement: &Entitlement,
        requester: &Principal,
        approver: Option<&Principal>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let original = request
            .extends_request_id
            .as_deref()
            .context("not an extension")?;
        let more = Duration::from_secs(request.duration_secs.max(0) as u64);
        let max_total = entitlement.policy.max_total();
        let mut new_end = None;
        for g in store::grants_for_request(tx, original).await? {
            // The lock the worker takes before deleting an assignment: a revocation
            // either ran before (the grant is no longer live) or sees the new end.
            store::lock_assignment(tx, &g).await?;
            let Some(g) = store::get_grant(tx, &g.access_grant_id).await? else {
                continue;
            };
            // Only active grants: one still being provisioned (or not yet) keeps its end,
            // which the provisioning steps rely on.
            if g.status != GrantStatus::Active || g.ends_at <= now {
                continue;
            }
            let to = g.ends_at.plus(more).min(g.starts_at.plus(max_total));
            if to <= g.ends_at
                || !store::extend_grant_end(tx, &g.access_grant_id, g.ends_at, to, now).await?
            {
                continue;
            }
            audit::audit(
                tx,
                &Actor::system(),
                Event {
                    action: "grant.extended",
                    person_id: Some(&requester.user_id),
                    subject_kind: "grant",
                    subject_id: &g.access_grant_id,
                    entitlement_id: Some(&entitlement.id),
                    detail: format!(
                        "ends {} instead of {} (extension {})",
                        to.format_utc(),
                        g.ends_at.format_utc(),
                        request.access_request_id
                    ),
                },
                now,
            )
            .await?;
            if g.status == GrantStatus::Active {
                // Warned again before the new end; the schedule in AWS moves with it.
                // (Turning active does both for a grant still being provisioned.)
                store::delete_jobs_for(tx, &g.access_grant_id, JobKind::EndingSoon).await?;
                store::insert_job(tx, JobKind::EndingSoon, &g.access_grant_id, now, now).await?;
                store::insert_job(tx, JobKind::SyncBackstop, &g.access_grant_id, now, now).await?;
            }
            new_end = new_end.max(Some(to));
        }
        let by = approver
            .map(|a| a.display_name.clone())
            .unwrap_or_else(|| "automatic approval".into());
        let mail = notify::extension_approved(
            &self.public_url,
            original,
            &entitlement.name,
            &by,
            new_end,
            &request.justification,
        );
        notify::queue(tx, &requester.email, &mail, now).await
    }

    /// Fills in the "Extend" offer of each of `who`'s active grants (`views[i]` shows
    /// `rows[i]`): how much more they may ask for, or why not now.
    pub(super) async fn offer_extensions(
        &self,
        conn: &mut AnyConnection,
        who: &Principal,
        rows: &[GrantRow],
        views: &mut [GrantView],
        ents: &HashMap<String, Entitlement>,
    ) -> anyhow::Result<()> {
        if !rows.iter().any(|g| g.status == GrantStatus::Active) {
            return Ok(());
        }
        let retired = store::retired_entitlements(conn).await?;
        // One Extend form per request: an extension lengthens all its grants.
        let mut offered = std::collections::HashSet::new();
        for (row, view) in rows.iter().zip(views.iter_mut()) {
            let Some(e) = ents.get(&view.entitlement_id) else {
                continue;
            };
            if row.status != GrantStatus::Active
                || retired.contains_key(&e.id)
                || !e.policy.is_eligible(who)
                || !offered.insert(row.access_request_id.clone())
            {
                continue;
            }
            let p = &e.policy;
            let room = p.extension_room(row.starts_at.until(row.ends_at));
            let pending = store::pending_extension_of(conn, &row.access_request_id)
                .await?
                .map(|r| r.access_request_id);
            let approves_itself_up_to = if p.auto_approve || p.break_glass {
                Some(format_duration(room))
            } else if p.extension_auto_approve_secs > 0 {
                Some(format_duration(Duration::from_secs(
                    p.extension_auto_approve_secs,
                )))
            } else {
                None
            };
            view.extend = Some(ExtendOffer {
                up_to: (room >= self.min_duration && pending.is_none())
                    .then(|| format_duration(room)),
                max_total: format_duration(p.max_total()),
                suggested: format_duration(room.min(p.default_duration())).replace(' ', ""),
                require_ticket: p.require_ticket,
                ticket_example: p.ticket_pattern.as_ref().and(p.ticket_example.clone()),
                approves_itself_up_to,
                pending,
                seen_end: row.ends_at.millis(),
            });
        }
        Ok(())
    }
}
