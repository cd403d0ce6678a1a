//! Requests: what one may ask for, asking, one's own requests and grants, cancelling.

use super::*;

const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

impl PortalService {
    pub(super) async fn eligible_entitlements(
        &self,
        who: &Principal,
    ) -> Result<Vec<EntitlementCard>, AppError> {
        let mut conn = self.store.conn().await.or_internal()?;
        let ents = self.entitlements_by_id(&mut conn).await.or_internal()?;
        let retired = store::retired_entitlements(&mut conn).await.or_internal()?;
        let mut cards = Vec::new();
        let mut list: Vec<&Entitlement> = ents
            .values()
            .filter(|e| e.policy.is_eligible(who) && !retired.contains_key(&e.id))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        for e in list {
            let targets = self.target_views(&mut conn, e).await.or_internal()?;
            cards.push(EntitlementCard {
                id: e.id.clone(),
                name: e.name.clone(),
                description: e.description.clone(),
                targets,
                max_duration: format_duration(e.policy.max_duration()),
                default_duration: format_duration(e.policy.default_duration()).replace(' ', ""),
                require_ticket: e.policy.require_ticket,
                ticket_example: e
                    .policy
                    .ticket_pattern
                    .as_ref()
                    .and(e.policy.ticket_example.clone()),
                auto_approve: e.policy.auto_approve,
                break_glass: e.policy.break_glass,
                approval: Self::describe_policy(e),
            });
        }
        Ok(cards)
    }

    pub(super) async fn create_request(
        &self,
        who: &Principal,
        entitlement_id: &str,
        draft: RequestDraft,
    ) -> Result<String, AppError> {
        let now = self.now();
        let id = EntitlementId::parse(entitlement_id)
            .map_err(|m| AppError::invalid("entitlement", m))?;
        // Before the transaction: no AWS call while holding the database.
        self.known_to_aws(who, &id).await?;
        let mut tx = self.store.begin().await.or_internal()?;
        self.within_hourly_limit(&mut tx, who, now).await?;
        let Some(entitlement) = store::get_entitlement(&mut tx, id.as_str())
            .await
            .or_internal()?
        else {
            return Err(AppError::invalid("entitlement", "unknown entitlement"));
        };
        if let Some(at) = store::entitlement_retired_at(&mut tx, id.as_str())
            .await
            .or_internal()?
        {
            return Err(AppError::invalid(
                "entitlement",
                format!(
                    "{} was retired on {}: it can no longer be requested",
                    entitlement.name,
                    at.format_utc()
                ),
            ));
        }
        if !entitlement.policy.is_eligible(who) {
            drop(tx);
            return Err(self
                .deny(
                    who,
                    "request",
                    id.as_str(),
                    "you are not eligible for this entitlement",
                )
                .await);
        }
        let checked = entitlement.policy.validate(&draft, self.min_duration);
        let start = app::domain::time::parse_start(&draft.starts, now, self.start_horizon);
        let (valid, start) = match (checked, start) {
            (Ok(valid), Ok(start)) => (valid, start),
            (checked, start) => {
                let mut errors = checked.err().unwrap_or_default();
                if let Err(m) = start {
                    errors.push(FieldError::new("starts", m));
                }
                // Says which form the errors belong to: without JavaScript every card on the
                // page reads the same error back from the URL.
                errors.push(FieldError::new("for", entitlement.id.clone()));
                return Err(AppError::Invalid(errors));
            }
        };
        let mut request = new_request(who, &entitlement, &valid, None, now);
        let mut detail = format!("for {} because: {}", valid.duration, request.justification);
        if let Some(at) = start {
            request.starts_at = at;
            detail = format!("from {}, {detail}", at.format_utc());
        }
        let approves_itself = entitlement.policy.approves_itself();
        self.submit(
            tx,
            request,
            &entitlement,
            who,
            ("request.created", detail),
            approves_itself,
            now,
        )
        .await
    }

    /// Writes a new request with its audit event (`event`: action and detail), then
    /// approves it at once (`approves_itself`) or asks its approvers; commits and wakes
    /// the worker. Returns the request's id.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn submit(
        &self,
        mut tx: store::Tx,
        request: RequestRow,
        entitlement: &Entitlement,
        who: &Principal,
        event: (&str, String),
        approves_itself: bool,
        now: Timestamp,
    ) -> Result<String, AppError> {
        self.write_request(
            &mut tx,
            &request,
            entitlement,
            who,
            event,
            approves_itself,
            now,
        )
        .await
        .or_internal()?;
        tx.commit().await.map_err(|e| internal(e.into()))?;
        self.wake.notify_one();
        Ok(request.access_request_id)
    }

    /// [`Self::submit`] without the commit: the request, its audit event, and its
    /// approval or its approvers asked (a bundle writes several in one transaction).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_request(
        &self,
        tx: &mut store::Tx,
        request: &RequestRow,
        entitlement: &Entitlement,
        who: &Principal,
        event: (&str, String),
        approves_itself: bool,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        store::insert_request(tx, request).await?;
        let made = request_event(who, request, event.0, event.1);
        audit::audit(tx, &Actor::of(who), made, now).await?;
        if approves_itself {
            self.approve_by_policy(tx, request, entitlement, who, now)
                .await
        } else {
            self.ask_approvers(tx, request, entitlement, who, now).await
        }
    }

    /// Refuses a new request (an extension too) from someone who made
    /// `http.new_requests_per_hour` in the last hour.
    pub(super) async fn within_hourly_limit(
        &self,
        conn: &mut AnyConnection,
        who: &Principal,
        now: Timestamp,
    ) -> Result<(), AppError> {
        self.within_hourly_limit_for(conn, who, 1, now).await
    }

    /// Refuses `more` new requests (a bundle's parts) that would take `who` past
    /// `http.new_requests_per_hour` in the last hour.
    pub(super) async fn within_hourly_limit_for(
        &self,
        conn: &mut AnyConnection,
        who: &Principal,
        more: usize,
        now: Timestamp,
    ) -> Result<(), AppError> {
        let made = store::requests_made_since(conn, &who.user_id, now.minus(HOUR))
            .await
            .or_internal()?;
        if made + more as i64 > i64::from(self.new_requests_per_hour) {
            tracing::warn!(user = %who.user_id, made, "new request refused: over the hourly limit");
            return Err(AppError::RateLimited(format!(
                "You have made {made} requests in the last hour, the most Portcullis takes; \
                 try again later."
            )));
        }
        Ok(())
    }

    /// Refuses (and audits) a request from someone IAM Identity Center does not know:
    /// access could never be granted. When AWS cannot be asked right now, the request
    /// goes ahead and the grant retries.
    pub(super) async fn known_to_aws(
        &self,
        who: &Principal,
        id: &EntitlementId,
    ) -> Result<(), AppError> {
        match self.provisioner.check_principal(&who.email).await {
            Ok(()) => Ok(()),
            Err(crate::provisioner::ProvisionError::Permanent(why)) => {
                // Refused and audited like any other refusal (`denied.request`).
                let reason = format!(
                    "AWS access cannot be granted to you yet: {why}; ask your administrator \
                     to add you to IAM Identity Center"
                );
                Err(self.deny(who, "request", id.as_str(), &reason).await)
            }
            Err(e) => {
                tracing::warn!(user = %who.user_id, error = %e, "cannot check the requester in AWS");
                Ok(())
            }
        }
    }

    /// Automatic approval (or break-glass): approved at once, grants scheduled.
    async fn approve_by_policy(
        &self,
        tx: &mut store::Tx,
        request: &RequestRow,
        entitlement: &Entitlement,
        who: &Principal,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let to = RequestStatus::Pending.apply(RequestEvent::Approval { complete: true })?;
        store::set_request_status(tx, &request.access_request_id, to, now).await?;
        let action = if entitlement.policy.break_glass {
            "request.break_glass"
        } else {
            "request.auto_approved"
        };
        let approved = request_event(who, request, action, "approved by policy".into());
        audit::audit(tx, &Actor::system(), approved, now).await?;
        self.approve_complete(tx, request, entitlement, who, None, now)
            .await
    }

    /// A request that needs approvers: its decision deadline, mail to the approvers the
    /// portal knows, and the announcement job (configured addresses, reminder, escalation:
    /// the worker holds those settings).
    async fn ask_approvers(
        &self,
        tx: &mut store::Tx,
        request: &RequestRow,
        entitlement: &Entitlement,
        who: &Principal,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let id = &request.access_request_id;
        store::insert_job(
            tx,
            JobKind::DecisionTimeout,
            id,
            request.decision_due_at,
            now,
        )
        .await?;
        let mail = notify::approval_mail(
            notify::Nudge::New,
            request,
            who,
            &entitlement.name,
            &self.public_url,
            now,
        );
        for approver in notify::approvers_of(tx, &entitlement.policy, who, 0).await? {
            notify::queue(tx, &approver.email, &mail, now).await?;
        }
        let chat = notify::chat_request(
            &self.public_url,
            request,
            &who.display_name,
            &entitlement.name,
            now,
        );
        notify::chat(tx, &entitlement.policy, &chat, now).await?;
        store::insert_job(tx, JobKind::AnnounceRequest, id, now, now).await?;
        Ok(())
    }

    pub(super) async fn my_access(&self, who: &Principal) -> Result<MyAccess, AppError> {
        let mut conn = self.store.conn().await.or_internal()?;
        let requests = store::requests_by_requester(&mut conn, &who.user_id)
            .await
            .or_internal()?;
        let grants = store::grants_for_principal(&mut conn, &who.user_id)
            .await
            .or_internal()?;
        let ents = self.entitlements_by_id(&mut conn).await.or_internal()?;
        let pending: Vec<RequestRow> = requests
            .iter()
            .filter(|r| r.status == RequestStatus::Pending)
            .cloned()
            .collect();
        let mut views = self
            .request_views(&mut conn, requests)
            .await
            .or_internal()?;
        if !pending.is_empty() {
            let known = notify::manager_known(&mut conn, who).await.or_internal()?;
            // Each pending request where deciding would find it (its own few queries: a
            // person has few pending requests).
            for r in &pending {
                let (Some(e), Some(v)) = (
                    ents.get(&r.entitlement_id),
                    views.iter_mut().find(|v| v.id == r.access_request_id),
                ) else {
                    continue;
                };
                let policy = e
                    .policy
                    .with_escalation(r.escalation().as_ref())
                    .for_requester(known);
                let at = approval::standing(&mut conn, &r.access_request_id, &policy, who)
                    .await
                    .or_internal()?
                    .progress;
                approval::show(v, &policy, &at);
                v.deciders = Some(Self::deciders(e, who, known, at.step));
            }
        }
        let mut grant_views = self
            .grant_views(&mut conn, grants.clone())
            .await
            .or_internal()?;
        self.offer_extensions(&mut conn, who, &grants, &mut grant_views, &ents)
            .await
            .or_internal()?;
        Ok(MyAccess {
            requests: views,
            grants: grant_views,
        })
    }

    pub(super) async fn cancel_request(
        &self,
        who: &Principal,
        request_id: &str,
    ) -> Result<(), AppError> {
        let now = self.now();
        let id = Self::parse_id(request_id, "That request")?;
        let mut tx = self.store.begin().await.or_internal()?;
        let Some(request) = store::lock_request(&mut tx, id.as_str())
            .await
            .or_internal()?
        else {
            return Err(AppError::NotFound("That request".into()));
        };
        if request.requester_id != who.user_id {
            drop(tx);
            return Err(self
                .deny(
                    who,
                    "cancel",
                    id.as_str(),
                    "only the requester can cancel a request",
                )
                .await);
        }
        let from = request.status;
        if request.extends_request_id.is_some() && from != RequestStatus::Pending {
            return Err(AppError::Conflict(format!(
                "This extension is {from}: its time is part of the access now; use End now \
                 on the access instead."
            )));
        }
        let to = from.apply(RequestEvent::Cancel).map_err(|_| {
            AppError::Conflict(format!(
                "This request is {from} and can no longer be cancelled."
            ))
        })?;
        // Lock each grant before trusting its status: the worker may be starting to
        // provision it right now, and must not be overwritten (it would leak access).
        let mut grants = Vec::new();
        for g in store::grants_for_request(&mut tx, id.as_str())
            .await
            .or_internal()?
        {
            if let Some(locked) = store::lock_grant(&mut tx, &g.access_grant_id)
                .await
                .or_internal()?
            {
                grants.push(locked);
            }
        }
        if grants.iter().any(|g| g.status != GrantStatus::Scheduled) {
            return Err(AppError::Conflict(
                "Access is already being set up; use End now on the grant instead.".into(),
            ));
        }
        let result: anyhow::Result<()> = async {
            for g in &grants {
                let next = GrantStatus::Scheduled.apply(GrantEvent::Discarded)?;
                store::update_grant(
                    &mut tx,
                    &g.access_grant_id,
                    GrantStatus::Scheduled,
                    store::GrantUpdate::settled(next),
                    now,
                )
                .await?;
                store::delete_jobs_for(&mut tx, &g.access_grant_id, JobKind::Provision).await?;
                store::delete_jobs_for(&mut tx, &g.access_grant_id, JobKind::Deprovision).await?;
            }
            store::delete_jobs_for(&mut tx, id.as_str(), JobKind::DecisionTimeout).await?;
            notify::forget_approval_nudges(&mut tx, id.as_str()).await?;
            // A break-glass use cancelled before it started has nothing to review.
            store::resolve_alerts(&mut tx, store::AlertKind::BreakGlass, id.as_str(), now).await?;
            store::delete_jobs_for(&mut tx, id.as_str(), JobKind::BreakGlassReview).await?;
            store::set_request_status(&mut tx, id.as_str(), to, now).await?;
            audit::audit(
                &mut tx,
                &Actor::of(who),
                Event {
                    action: "request.cancelled",
                    person_id: Some(&who.user_id),
                    subject_kind: "request",
                    subject_id: id.as_str(),
                    entitlement_id: Some(&request.entitlement_id),
                    detail: format!("cancelled while {from}"),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        result.or_internal()
    }
}

/// An audit event about a request, on behalf of its requester.
/// A pending request as `who` asked it; `extends`: the request whose access it would
/// make longer.
pub(super) fn new_request(
    who: &Principal,
    entitlement: &Entitlement,
    valid: &app::domain::ValidRequest,
    extends: Option<String>,
    now: Timestamp,
) -> RequestRow {
    RequestRow {
        access_request_id: store::new_id(),
        requester_id: who.user_id.clone(),
        entitlement_id: entitlement.id.clone(),
        justification: valid.justification.to_string(),
        ticket: valid.ticket.as_ref().map(|t| t.to_string()),
        duration_secs: valid.duration.as_secs() as i64,
        starts_at: now,
        decision_due_at: now.plus(Duration::from_secs(
            entitlement.policy.decision_timeout_secs,
        )),
        status: RequestStatus::Pending,
        created_at: now,
        extends_request_id: extends,
        escalated_to: None,
        bundle_id: None,
    }
}

fn request_event<'a>(
    who: &'a Principal,
    request: &'a RequestRow,
    action: &'a str,
    detail: String,
) -> Event<'a> {
    Event {
        action,
        person_id: Some(&who.user_id),
        subject_kind: "request",
        subject_id: &request.access_request_id,
        entitlement_id: Some(&request.entitlement_id),
        detail,
    }
}
