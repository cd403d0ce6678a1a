//! The use cases behind the pages. Each checks who is calling, lets the domain decide,
//! and commits state, audit event, jobs and mail in one transaction.

use crate::clock::Clock;
use crate::lifecycle::{self, Actor, Entitlement, Event};
use crate::notify;
use crate::provisioner::Provisioner;
use crate::reconcile;
use crate::store::{self, GrantRow, JobKind, RequestRow, Store};
use crate::worker::describe_target;
use anyhow::Context;
use app::api::*;
use app::domain::time::format_duration;
use app::domain::{
    Comment, Denied, EntitlementId, GrantEvent, GrantStatus, Principal, RecordId, RequestDraft,
    RequestEvent, RequestStatus, TargetScope, Timestamp,
};
use app::error::AppError;
use app::ssr::Portal;
use async_trait::async_trait;
use sqlx::AnyConnection;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub struct PortalService {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub provisioner: Arc<dyn Provisioner>,
    /// Wakes the worker when a job is added.
    pub wake: Arc<Notify>,
    /// Wakes the maintenance worker (catalog sync and reconciliation asked for now).
    pub upkeep_wake: Arc<Notify>,
    pub min_duration: Duration,
    pub public_url: String,
}

/// Logs an internal error with its cause chain and a reference; the browser sees only the reference.
pub fn internal(e: anyhow::Error) -> AppError {
    let reference = store::new_id()[..12].to_string();
    tracing::error!(reference = %reference, error = format!("{e:#}"), "internal error");
    AppError::Internal(reference)
}

trait OrInternal<T> {
    fn or_internal(self) -> Result<T, AppError>;
}

impl<T> OrInternal<T> for anyhow::Result<T> {
    fn or_internal(self) -> Result<T, AppError> {
        self.map_err(internal)
    }
}

/// An admin capability: only [`PortalService::admin`] makes one, after checking the claims.
struct Admin<'a>(&'a Principal);

fn local_part(email: &str) -> String {
    email.split('@').next().unwrap_or(email).to_owned()
}

impl PortalService {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Records a refused action in the audit log and returns the error to show.
    async fn deny(&self, who: &Principal, action: &str, subject: &str, reason: &str) -> AppError {
        let now = self.now();
        let event = Event {
            action: &format!("denied.{action}"),
            person_id: Some(&who.user_id),
            subject_kind: "action",
            subject_id: subject,
            entitlement_id: None,
            detail: reason.to_owned(),
        };
        let result = lifecycle::audit_alone(&self.store, &Actor::of(who), event, now).await;
        if let Err(e) = result {
            return internal(e);
        }
        tracing::info!(user = %who.user_id, action, subject, reason, "action denied");
        AppError::Forbidden(reason.to_owned())
    }

    async fn admin<'a>(&self, who: &'a Principal, action: &str) -> Result<Admin<'a>, AppError> {
        if who.is_admin {
            Ok(Admin(who))
        } else {
            Err(self
                .deny(
                    who,
                    action,
                    "admin",
                    "this page is for Portcullis admins only",
                )
                .await)
        }
    }

    fn parse_id(s: &str, what: &str) -> Result<RecordId, AppError> {
        RecordId::parse(s).map_err(|_| AppError::NotFound(what.to_owned()))
    }

    async fn entitlements_by_id(
        &self,
        conn: &mut AnyConnection,
    ) -> anyhow::Result<HashMap<String, Entitlement>> {
        store::all_entitlements(conn)
            .await?
            .into_iter()
            .map(|row| Entitlement::from_row(row).map(|e| (e.id.clone(), e)))
            .collect()
    }

    async fn users_by_id(
        &self,
        conn: &mut AnyConnection,
    ) -> anyhow::Result<HashMap<String, Principal>> {
        Ok(store::all_users(conn)
            .await?
            .into_iter()
            .map(|u| (u.user_id.clone(), u))
            .collect())
    }

    async fn request_views(
        &self,
        conn: &mut AnyConnection,
        rows: Vec<RequestRow>,
    ) -> anyhow::Result<Vec<RequestView>> {
        let ents = self.entitlements_by_id(conn).await?;
        let users = self.users_by_id(conn).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let decisions = store::decisions_for_request(conn, &r.access_request_id).await?;
            let ent = ents.get(&r.entitlement_id);
            let requester = users.get(&r.requester_id);
            let requester_name = requester
                .map(|u| u.display_name.clone())
                .unwrap_or_else(|| r.requester_id.clone());
            let requester_key = requester.map(|u| local_part(&u.email)).unwrap_or_default();
            let approvals = decisions.iter().filter(|d| d.verdict == "approved").count() as u32;
            out.push(RequestView {
                id: r.access_request_id.clone(),
                entitlement_id: r.entitlement_id.clone(),
                entitlement_name: ent
                    .map(|e| e.name.clone())
                    .unwrap_or_else(|| r.entitlement_id.clone()),
                requester: requester_name.clone(),
                requester_key: requester_key.clone(),
                justification: r.justification.clone(),
                ticket: r.ticket.clone(),
                duration: format_duration(Duration::from_secs(r.duration_secs as u64)),
                status: r.status.clone(),
                created_at: Timestamp(r.created_at).format_utc(),
                approvals,
                approvals_required: ent.map(|e| e.policy.approvals_required.max(1)).unwrap_or(1),
                decisions: decisions
                    .into_iter()
                    .map(|d| DecisionView {
                        request_id: d.access_request_id,
                        entitlement_id: r.entitlement_id.clone(),
                        entitlement_name: ent.map(|e| e.name.clone()).unwrap_or_default(),
                        requester: requester_name.clone(),
                        requester_key: requester_key.clone(),
                        approver: users
                            .get(&d.approver_id)
                            .map(|u| u.display_name.clone())
                            .unwrap_or_else(|| d.approver_id.clone()),
                        approver_id: d.approver_id,
                        verdict: d.verdict,
                        comment: d.comment,
                        decided_at: Timestamp(d.created_at).format_utc(),
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Grant views for admins, each flagged when a job of it keeps failing (the worker
    /// alerted about it and still retries).
    async fn flag_trouble(
        &self,
        conn: &mut AnyConnection,
        rows: Vec<GrantRow>,
    ) -> anyhow::Result<Vec<GrantView>> {
        let mut views = self.grant_views(conn, rows).await?;
        let failing = store::alerted_jobs(conn).await?;
        for v in &mut views {
            v.trouble = failing.iter().find(|j| j.subject_id == v.id).map(|j| {
                let what = if j.kind == "deprovision" {
                    "Revocation"
                } else {
                    "Provisioning"
                };
                format!(
                    "{what} failing after {} attempts, still retrying: {}",
                    j.attempts,
                    j.last_error.as_deref().unwrap_or("no error recorded")
                )
            });
        }
        Ok(views)
    }

    async fn grant_views(
        &self,
        conn: &mut AnyConnection,
        rows: Vec<GrantRow>,
    ) -> anyhow::Result<Vec<GrantView>> {
        let now = self.now();
        let ents = self.entitlements_by_id(conn).await?;
        let users = self.users_by_id(conn).await?;
        let mut out = Vec::with_capacity(rows.len());
        for g in rows {
            let request = store::get_request(conn, &g.access_request_id)
                .await?
                .context("grant without request")?;
            let (account_name, ps_name, tail) = describe_target(conn, &g).await?;
            let status = g.status()?;
            out.push(GrantView {
                id: g.access_grant_id.clone(),
                request_id: g.access_request_id.clone(),
                entitlement_id: request.entitlement_id.clone(),
                entitlement_name: ents
                    .get(&request.entitlement_id)
                    .map(|e| e.name.clone())
                    .unwrap_or_default(),
                principal: users
                    .get(&g.principal_id)
                    .map(|u| u.display_name.clone())
                    .unwrap_or(g.principal_id.clone()),
                account_id: g.account_id.clone(),
                account_name,
                permission_set: ps_name,
                status: g.status.clone(),
                starts_at: Timestamp(g.starts_at).format_utc(),
                ends_at: Timestamp(g.ends_at).format_utc(),
                time_left: (status == GrantStatus::Active)
                    .then(|| format_duration(now.until(Timestamp(g.ends_at)))),
                session_tail: tail,
                failure: g
                    .failure_reason
                    .clone()
                    .filter(|_| status == GrantStatus::Failed),
                trouble: None,
            });
        }
        Ok(out)
    }

    fn describe_policy(&self, e: &Entitlement) -> String {
        let p = &e.policy;
        if p.break_glass {
            return "Break-glass: granted at once, admins are alerted".into();
        }
        if p.auto_approve {
            return "Approved automatically".into();
        }
        let mut who = Vec::new();
        if p.approvers.manager {
            who.push("your manager".to_string());
        }
        for g in &p.approvers.groups {
            who.push(format!("a member of {g}"));
        }
        for u in &p.approvers.users {
            who.push(u.clone());
        }
        let n = p.approvals_required.max(1);
        format!(
            "{} approval{} from {}",
            n,
            if n == 1 { "" } else { "s" },
            who.join(" or ")
        )
    }

    /// Finishes an approval: schedules grants, tells the requester and the other approvers.
    #[allow(clippy::too_many_arguments)]
    async fn approve_complete(
        &self,
        tx: &mut store::Tx,
        request: &RequestRow,
        entitlement: &Entitlement,
        requester: &Principal,
        approver: Option<&Principal>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let grants = lifecycle::schedule_grants(tx, request, entitlement, now).await?;
        let by = approver
            .map(|a| a.display_name.clone())
            .unwrap_or_else(|| "automatic approval".into());
        let mail = notify::compose(
            format!("Request approved: {}", entitlement.name),
            &format!("Your request for {} was approved by {by}. Access is being set up on {} account(s).", entitlement.name, grants.len()),
            &[("Justification", &request.justification)],
            ("Open My access", &format!("{}/requests", self.public_url)),
        );
        notify::queue(tx, &requester.email, &mail, now).await?;
        if entitlement.policy.break_glass {
            let message = format!(
                "{} used break-glass entitlement {}: {}",
                requester.display_name, entitlement.name, request.justification
            );
            store::raise_alert(tx, "break_glass", &request.access_request_id, &message, now)
                .await?;
            for admin in notify::admins(tx).await? {
                let mail = notify::compose(
                    format!(
                        "Break-glass used: {} by {}",
                        entitlement.name, requester.display_name
                    ),
                    &message,
                    &[("Request", &request.access_request_id)],
                    (
                        "Open the admin dashboard",
                        &format!("{}/admin", self.public_url),
                    ),
                );
                notify::queue(tx, &admin.email, &mail, now).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Portal for PortalService {
    async fn eligible_entitlements(
        &self,
        who: &Principal,
    ) -> Result<Vec<EntitlementCard>, AppError> {
        let mut conn = self.store.conn().await.or_internal()?;
        let ents = self.entitlements_by_id(&mut conn).await.or_internal()?;
        let mut cards = Vec::new();
        let mut list: Vec<&Entitlement> = ents
            .values()
            .filter(|e| e.policy.is_eligible(who))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        for e in list {
            let mut targets = Vec::new();
            for t in &e.targets {
                let ps = store::get_permission_set(&mut conn, t.permission_set_arn.as_str())
                    .await
                    .or_internal()?;
                let scope = match &t.scope {
                    TargetScope::Account { account_id } => {
                        let a = store::get_account(&mut conn, account_id.as_str())
                            .await
                            .or_internal()?;
                        format!("{} ({account_id})", a.map(|a| a.name).unwrap_or_default())
                    }
                    TargetScope::Ou { ou_id } => {
                        let n = store::accounts_under_ou(&mut conn, ou_id.as_str())
                            .await
                            .or_internal()?
                            .len();
                        format!("every account in OU {ou_id} ({n} today)")
                    }
                };
                targets.push(TargetView {
                    scope,
                    permission_set: ps
                        .as_ref()
                        .map(|p| p.name.clone())
                        .unwrap_or_else(|| t.permission_set_arn.short_id().to_owned()),
                    session_duration: ps
                        .map(|p| {
                            format_duration(Duration::from_secs(p.session_duration_secs as u64))
                        })
                        .unwrap_or_default(),
                });
            }
            cards.push(EntitlementCard {
                id: e.id.clone(),
                name: e.name.clone(),
                description: e.description.clone(),
                targets,
                max_duration: format_duration(e.policy.max_duration()),
                default_duration: format_duration(e.policy.default_duration()).replace(' ', ""),
                require_ticket: e.policy.require_ticket,
                auto_approve: e.policy.auto_approve,
                break_glass: e.policy.break_glass,
                approval: self.describe_policy(e),
            });
        }
        Ok(cards)
    }

    async fn create_request(
        &self,
        who: &Principal,
        entitlement_id: &str,
        draft: RequestDraft,
    ) -> Result<String, AppError> {
        let now = self.now();
        let id = EntitlementId::parse(entitlement_id)
            .map_err(|m| AppError::invalid("entitlement", m))?;
        // Before the transaction: no AWS call while holding the database.
        match self.provisioner.check_principal(&who.email).await {
            Ok(()) => {}
            Err(crate::provisioner::ProvisionError::Permanent(why)) => {
                // Refused and audited like any other refusal (`denied.request`).
                let reason = format!(
                    "AWS access cannot be granted to you yet: {why}; ask your administrator \
                     to add you to IAM Identity Center"
                );
                return Err(self.deny(who, "request", id.as_str(), &reason).await);
            }
            // AWS unreachable for now: the request goes ahead, the grant will retry.
            Err(e) => {
                tracing::warn!(user = %who.user_id, error = %e, "cannot check the requester in AWS")
            }
        }
        let mut tx = self.store.begin().await.or_internal()?;
        let Some(entitlement) = lifecycle::load_entitlement(&mut tx, id.as_str())
            .await
            .or_internal()?
        else {
            return Err(AppError::invalid("entitlement", "unknown entitlement"));
        };
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
        let valid = entitlement
            .policy
            .validate(&draft, self.min_duration)
            .map_err(|mut errors| {
                // Says which form the errors belong to: without JavaScript every card on the
                // page reads the same error back from the URL.
                errors.push(app::domain::FieldError::new("for", entitlement.id.clone()));
                AppError::Invalid(errors)
            })?;
        let request = RequestRow {
            access_request_id: store::new_id(),
            requester_id: who.user_id.clone(),
            entitlement_id: entitlement.id.clone(),
            justification: valid.justification.to_string(),
            ticket: valid.ticket.map(|t| t.to_string()),
            duration_secs: valid.duration.as_secs() as i64,
            starts_at: now.millis(),
            decision_due_at: now
                .plus(Duration::from_secs(
                    entitlement.policy.decision_timeout_secs,
                ))
                .millis(),
            status: RequestStatus::Pending.as_str().into(),
            created_at: now.millis(),
        };
        let result: anyhow::Result<()> = async {
            store::insert_request(&mut tx, &request).await?;
            let event = |action: &'static str, detail: String| Event {
                action,
                person_id: Some(&who.user_id),
                subject_kind: "request",
                subject_id: &request.access_request_id,
                entitlement_id: Some(&entitlement.id),
                detail,
            };
            lifecycle::audit(
                &mut tx,
                &Actor::of(who),
                event(
                    "request.created",
                    format!("for {} because: {}", valid.duration, request.justification),
                ),
                now,
            )
            .await?;
            if entitlement.policy.approvals_complete(0) {
                let to = RequestStatus::Pending.apply(RequestEvent::Approval { complete: true })?;
                store::set_request_status(&mut tx, &request.access_request_id, to, now).await?;
                let action = if entitlement.policy.break_glass {
                    "request.break_glass"
                } else {
                    "request.auto_approved"
                };
                lifecycle::audit(
                    &mut tx,
                    &Actor::system(),
                    event(action, "approved by policy".into()),
                    now,
                )
                .await?;
                self.approve_complete(&mut tx, &request, &entitlement, who, None, now)
                    .await?;
            } else {
                store::insert_job(
                    &mut tx,
                    JobKind::DecisionTimeout,
                    &request.access_request_id,
                    Timestamp(request.decision_due_at),
                    now,
                )
                .await?;
                let mail = notify::approval_mail(
                    notify::Nudge::New,
                    &request,
                    who,
                    &entitlement.name,
                    &self.public_url,
                    now,
                );
                for approver in notify::approvers_of(&mut tx, &entitlement.policy, who).await? {
                    notify::queue(&mut tx, &approver.email, &mail, now).await?;
                }
                // The configured approver addresses, the reminder and the escalation follow
                // from the worker, which holds the mail settings.
                store::insert_job(
                    &mut tx,
                    JobKind::AnnounceRequest,
                    &request.access_request_id,
                    now,
                    now,
                )
                .await?;
            }
            Ok(())
        }
        .await;
        result.or_internal()?;
        tx.commit().await.map_err(|e| internal(e.into()))?;
        self.wake.notify_one();
        Ok(request.access_request_id)
    }

    async fn my_access(&self, who: &Principal) -> Result<MyAccess, AppError> {
        let mut conn = self.store.conn().await.or_internal()?;
        let requests = store::requests_by_requester(&mut conn, &who.user_id)
            .await
            .or_internal()?;
        let grants = store::grants_for_principal(&mut conn, &who.user_id)
            .await
            .or_internal()?;
        Ok(MyAccess {
            requests: self
                .request_views(&mut conn, requests)
                .await
                .or_internal()?,
            grants: self.grant_views(&mut conn, grants).await.or_internal()?,
        })
    }

    async fn cancel_request(&self, who: &Principal, request_id: &str) -> Result<(), AppError> {
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
        let from = request.status().or_internal()?;
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
        if grants
            .iter()
            .any(|g| g.status != GrantStatus::Scheduled.as_str())
        {
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
                    store::GrantUpdate::settled(next),
                    now,
                )
                .await?;
                store::delete_jobs_for(&mut tx, &g.access_grant_id, JobKind::Provision).await?;
                store::delete_jobs_for(&mut tx, &g.access_grant_id, JobKind::Deprovision).await?;
            }
            store::delete_jobs_for(&mut tx, id.as_str(), JobKind::DecisionTimeout).await?;
            notify::forget_approval_nudges(&mut tx, id.as_str()).await?;
            store::set_request_status(&mut tx, id.as_str(), to, now).await?;
            lifecycle::audit(
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

    async fn end_grant(&self, who: &Principal, grant_id: &str) -> Result<(), AppError> {
        self.end_grant_as(who, grant_id, None).await
    }

    async fn approvals(&self, who: &Principal) -> Result<Approvals, AppError> {
        let mut conn = self.store.conn().await.or_internal()?;
        let ents = self.entitlements_by_id(&mut conn).await.or_internal()?;
        let users = self.users_by_id(&mut conn).await.or_internal()?;
        let pending = store::requests_with_status(&mut conn, RequestStatus::Pending)
            .await
            .or_internal()?;
        let mine: Vec<String> = store::decisions_by_approver(&mut conn, &who.user_id)
            .await
            .or_internal()?
            .into_iter()
            .map(|d| d.access_request_id)
            .collect();
        let mut queue = Vec::new();
        for r in pending {
            let (Some(e), Some(requester)) =
                (ents.get(&r.entitlement_id), users.get(&r.requester_id))
            else {
                continue;
            };
            if e.policy.may_approve(who, requester).is_ok() && !mine.contains(&r.access_request_id)
            {
                queue.push(r);
            }
        }
        let pending = self.request_views(&mut conn, queue).await.or_internal()?;
        let mut decided_requests = Vec::with_capacity(mine.len());
        for id in &mine {
            if let Some(r) = store::get_request(&mut conn, id).await.or_internal()? {
                decided_requests.push(r);
            }
        }
        // One pass over the requests, keeping only this approver's decisions (by id:
        // display names are not unique).
        let decided = self
            .request_views(&mut conn, decided_requests)
            .await
            .or_internal()?
            .into_iter()
            .flat_map(|v| v.decisions)
            .filter(|d| d.approver_id == who.user_id)
            .collect();
        Ok(Approvals { pending, decided })
    }

    async fn decide(
        &self,
        who: &Principal,
        request_id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<(), AppError> {
        let now = self.now();
        let id = Self::parse_id(request_id, "That request")?;
        let comment = Comment::parse(comment).map_err(|m| AppError::invalid("comment", m))?;
        let mut tx = self.store.begin().await.or_internal()?;
        let Some(request) = store::lock_request(&mut tx, id.as_str())
            .await
            .or_internal()?
        else {
            return Err(AppError::NotFound("That request".into()));
        };
        let entitlement = lifecycle::load_entitlement(&mut tx, &request.entitlement_id)
            .await
            .or_internal()?
            .ok_or_else(|| {
                internal(anyhow::anyhow!(
                    "request {} has no entitlement",
                    request.access_request_id
                ))
            })?;
        // Invariant 5: rights checked now, against the latest claims of both people.
        let requester = store::get_user(&mut tx, &request.requester_id)
            .await
            .or_internal()?
            .ok_or_else(|| internal(anyhow::anyhow!("request without requester")))?;
        if let Err(denied) = entitlement.policy.may_approve(who, &requester) {
            drop(tx);
            let reason = match denied {
                Denied::OwnRequest => "you cannot decide your own request",
                _ => "you are not an approver for this entitlement",
            };
            return Err(self.deny(who, "decide", id.as_str(), reason).await);
        }
        let decisions = store::decisions_for_request(&mut tx, id.as_str())
            .await
            .or_internal()?;
        if decisions.iter().any(|d| d.approver_id == who.user_id) {
            return Err(AppError::Conflict(
                "You have already decided this request.".into(),
            ));
        }
        let from = request.status().or_internal()?;
        let approvals = decisions.iter().filter(|d| d.verdict == "approved").count() as u32
            + u32::from(approve);
        let complete = approve && entitlement.policy.approvals_complete(approvals);
        let event = if approve {
            RequestEvent::Approval { complete }
        } else {
            RequestEvent::Rejection
        };
        let Ok(mut to) = from.apply(event) else {
            let who_decided = decisions
                .last()
                .map(|d| d.approver_id.clone())
                .unwrap_or_default();
            let by = store::get_user(&mut tx, &who_decided)
                .await
                .ok()
                .flatten()
                .map(|u| format!(" by {}", u.display_name))
                .unwrap_or_default();
            return Err(AppError::Conflict(format!(
                "This request was already {from}{by}; nothing changed."
            )));
        };
        let mut refused = None;
        if complete && !entitlement.policy.is_eligible(&requester) {
            // The requester lost eligibility since asking: refuse, with the reason on record.
            to = from
                .apply(RequestEvent::Rejection)
                .or_internal_transition()?;
            refused = Some(format!(
                "{} is no longer eligible for {} (their groups changed since the request)",
                requester.display_name, entitlement.name
            ));
        }
        let verdict = if approve && refused.is_none() {
            "approved"
        } else {
            "rejected"
        };
        let result: anyhow::Result<()> = async {
            store::insert_decision(
                &mut tx,
                &store::DecisionRow {
                    decision_id: store::new_id(),
                    access_request_id: id.to_string(),
                    approver_id: who.user_id.clone(),
                    verdict: if approve {
                        "approved".into()
                    } else {
                        "rejected".into()
                    },
                    comment: comment.to_string(),
                    created_at: now.millis(),
                },
            )
            .await?;
            store::set_request_status(&mut tx, id.as_str(), to, now).await?;
            let action = match (&refused, approve, complete) {
                (Some(_), _, _) => "request.refused_ineligible",
                (None, true, true) => "request.approved",
                (None, true, false) => "request.approval_recorded",
                (None, false, _) => "request.rejected",
            };
            lifecycle::audit(
                &mut tx,
                &Actor::of(who),
                Event {
                    action,
                    person_id: Some(&requester.user_id),
                    subject_kind: "request",
                    subject_id: id.as_str(),
                    entitlement_id: Some(&entitlement.id),
                    detail: refused
                        .clone()
                        .unwrap_or_else(|| format!("{verdict}: {comment}")),
                },
                now,
            )
            .await?;
            if to == RequestStatus::Approved {
                store::delete_jobs_for(&mut tx, id.as_str(), JobKind::DecisionTimeout).await?;
                self.approve_complete(&mut tx, &request, &entitlement, &requester, Some(who), now)
                    .await?;
            } else if to == RequestStatus::Rejected {
                store::delete_jobs_for(&mut tx, id.as_str(), JobKind::DecisionTimeout).await?;
                let why = refused.clone().unwrap_or_else(|| comment.to_string());
                let mail = notify::compose(
                    format!("Request rejected: {}", entitlement.name),
                    &format!(
                        "Your request for {} was rejected by {}.",
                        entitlement.name, who.display_name
                    ),
                    &[("Comment", &why), ("Justification", &request.justification)],
                    ("Open My access", &format!("{}/requests", self.public_url)),
                );
                notify::queue(&mut tx, &requester.email, &mail, now).await?;
            }
            if to != RequestStatus::Pending {
                notify::forget_approval_nudges(&mut tx, id.as_str()).await?;
                // Tell the other approvers someone decided, so they need not look.
                for other in notify::approvers_of(&mut tx, &entitlement.policy, &requester).await? {
                    if other.user_id == who.user_id {
                        continue;
                    }
                    let mail = notify::compose(
                        format!(
                            "Already decided: {} for {}",
                            entitlement.name, requester.display_name
                        ),
                        &format!(
                            "{} {} this request; nothing is needed from you.",
                            who.display_name, to
                        ),
                        &[("Justification", &request.justification)],
                        ("Open Approvals", &format!("{}/approvals", self.public_url)),
                    );
                    notify::queue(&mut tx, &other.email, &mail, now).await?;
                }
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        result.or_internal()?;
        self.wake.notify_one();
        match refused {
            Some(reason) => Err(AppError::Conflict(format!(
                "Not approved: {reason}. The request was closed."
            ))),
            None => Ok(()),
        }
    }

    async fn admin_overview(&self, who: &Principal) -> Result<AdminOverview, AppError> {
        let Admin(_) = self.admin(who, "admin_overview").await?;
        let mut conn = self.store.conn().await.or_internal()?;
        let requests = store::recent_requests(&mut conn, 200).await.or_internal()?;
        let grants = store::live_grants(&mut conn, Some(1000))
            .await
            .or_internal()?;
        let alerts = store::open_alerts(&mut conn).await.or_internal()?;
        let stats = store::job_stats(&mut conn, self.now(), Duration::from_secs(60))
            .await
            .or_internal()?;
        let parked = store::parked_mail(&mut conn, 100).await.or_internal()?;
        Ok(AdminOverview {
            parked_mail: parked
                .into_iter()
                .map(|m| ParkedMailView {
                    id: m.outbox_id,
                    to: m.recipient,
                    subject: m.subject,
                    attempts: m.attempts,
                    last_error: m.last_error.unwrap_or_default(),
                    created_at: Timestamp(m.created_at).format_utc(),
                })
                .collect(),
            requests: self
                .request_views(&mut conn, requests)
                .await
                .or_internal()?,
            grants: self.flag_trouble(&mut conn, grants).await.or_internal()?,
            alerts: alerts
                .into_iter()
                .map(|a| AlertView {
                    kind: a.kind,
                    message: a.message,
                    at: Timestamp(a.created_at).format_utc(),
                })
                .collect(),
            worker: WorkerHealth {
                queued_jobs: stats.queued,
                overdue_jobs: stats.overdue,
                failing_jobs: stats.failing,
                oldest_overdue: stats.oldest_overdue.map(Timestamp::format_utc),
            },
        })
    }

    async fn revoke_grant(&self, who: &Principal, grant_id: &str) -> Result<(), AppError> {
        let admin = self.admin(who, "revoke").await?;
        self.end_grant_as(who, grant_id, Some(admin)).await
    }

    async fn audit_log(
        &self,
        who: &Principal,
        filter: AuditFilter,
    ) -> Result<Vec<AuditView>, AppError> {
        let Admin(_) = self.admin(who, "audit_log").await?;
        let mut conn = self.store.conn().await.or_internal()?;
        let rows = store::query_audit(
            &mut conn,
            &store::AuditQuery {
                person: filter
                    .person
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
                entitlement: filter
                    .entitlement
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
                action: filter
                    .action
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
                limit: 500,
            },
        )
        .await
        .or_internal()?;
        Ok(rows
            .into_iter()
            .map(|a| AuditView {
                seq: a.seq,
                at: Timestamp(a.at).format_utc(),
                actor: a.actor_name,
                action: a.action,
                subject: format!("{} {}", a.subject_kind, a.subject_id),
                entitlement: a.entitlement_id.unwrap_or_default(),
                detail: a.detail,
            })
            .collect())
    }

    async fn aws_assignments(&self, who: &Principal) -> Result<Vec<AssignmentView>, AppError> {
        let Admin(_) = self.admin(who, "aws_assignments").await?;
        let records = self
            .provisioner
            .list_assignments()
            .await
            .map_err(|e| internal(e.into()))?;
        let mut conn = self.store.conn().await.or_internal()?;
        let users = self.users_by_id(&mut conn).await.or_internal()?;
        let mut out = Vec::new();
        for r in records {
            let account = store::get_account(&mut conn, &r.account_id)
                .await
                .or_internal()?;
            let ps = store::get_permission_set(&mut conn, &r.permission_set_arn)
                .await
                .or_internal()?;
            out.push(AssignmentView {
                account_name: account.map(|a| a.name).unwrap_or_default(),
                account_id: r.account_id,
                permission_set: ps.map(|p| p.name).unwrap_or(r.permission_set_arn),
                principal: users
                    .get(&r.principal)
                    .map(|u| u.display_name.clone())
                    .unwrap_or(r.principal),
                created_at: r.created_at.map(Timestamp::format_utc).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    async fn aws_overview(&self, who: &Principal) -> Result<AwsOverview, AppError> {
        let Admin(_) = self.admin(who, "aws_overview").await?;
        let result: anyhow::Result<AwsOverview> = async {
            let mut conn = self.store.conn().await?;
            let ous: HashMap<String, String> = store::all_org_units(&mut conn)
                .await?
                .into_iter()
                .map(|o| (o.ou_id, o.name))
                .collect();
            let accounts = store::all_accounts(&mut conn)
                .await?
                .into_iter()
                .map(|a| AccountView {
                    ou_path: a
                        .ou_path
                        .split('/')
                        .filter(|id| !id.is_empty())
                        .map(|id| ous.get(id).map(String::as_str).unwrap_or(id))
                        .collect::<Vec<_>>()
                        .join(" / "),
                    account_id: a.account_id,
                    name: a.name,
                })
                .collect();
            let permission_sets = store::all_permission_sets(&mut conn)
                .await?
                .into_iter()
                .map(|p| PermissionSetView {
                    session_duration: format_duration(Duration::from_secs(
                        p.session_duration_secs.max(0) as u64,
                    )),
                    arn: p.permission_set_arn,
                    name: p.name,
                    description: p.description,
                })
                .collect();
            let runs = |rows: Vec<store::RunRow>| {
                rows.into_iter()
                    .map(|r| RunView {
                        status: r.status,
                        progress: r.progress,
                        summary: r.summary.unwrap_or_default(),
                        started_at: Timestamp(r.started_at).format_utc(),
                        finished_at: r
                            .finished_at
                            .map(|t| Timestamp(t).format_utc())
                            .unwrap_or_default(),
                    })
                    .collect()
            };
            let catalog_runs = runs(store::recent_runs(&mut conn, JobKind::SyncCatalog, 5).await?);
            let reconcile_runs = runs(store::recent_runs(&mut conn, JobKind::Reconcile, 5).await?);
            let drift = store::open_alerts_of(
                &mut conn,
                &[
                    reconcile::DRIFT_EXTERNAL,
                    reconcile::DRIFT_MISSING,
                    reconcile::DRIFT_ORPHAN,
                ],
            )
            .await?
            .into_iter()
            .map(|a| AlertView {
                kind: a.kind,
                message: a.message,
                at: Timestamp(a.created_at).format_utc(),
            })
            .collect();
            Ok(AwsOverview {
                provisioner: self.provisioner.name().to_owned(),
                accounts,
                permission_sets,
                catalog_runs,
                reconcile_runs,
                drift,
            })
        }
        .await;
        result.or_internal()
    }

    async fn run_upkeep(&self, who: &Principal, what: &str) -> Result<(), AppError> {
        let Admin(admin) = self.admin(who, "run_upkeep").await?;
        let (kind, label) = match what {
            "catalog" => (JobKind::SyncCatalog, "catalog sync"),
            "reconcile" => (JobKind::Reconcile, "reconciliation"),
            _ => {
                return Err(AppError::NotFound(format!(
                    "A maintenance task called {what:?}"
                )))
            }
        };
        let now = self.now();
        let result: anyhow::Result<()> = async {
            let mut tx = self.store.begin().await?;
            store::schedule_singleton(&mut tx, kind, now, now).await?;
            lifecycle::audit(
                &mut tx,
                &Actor::of(admin),
                Event {
                    action: &format!("{}.requested", kind.as_str()),
                    person_id: None,
                    subject_kind: "maintenance",
                    subject_id: kind.as_str(),
                    entitlement_id: None,
                    detail: format!("{label} asked for from the admin page"),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        result.or_internal()?;
        self.upkeep_wake.notify_one();
        Ok(())
    }

    async fn resend_mail(&self, who: &Principal, mail_id: &str) -> Result<(), AppError> {
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
            store::resolve_alerts(&mut tx, "mail_parked", id.as_str(), now).await?;
            lifecycle::audit(
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

    async fn outbox(&self, who: &Principal) -> Result<Vec<MailView>, AppError> {
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
                created_at: Timestamp(m.created_at).format_utc(),
                status: m.status,
            })
            .collect())
    }
}

trait OrInternalTransition<T> {
    fn or_internal_transition(self) -> Result<T, AppError>;
}

impl<T> OrInternalTransition<T> for Result<T, app::domain::TransitionError> {
    fn or_internal_transition(self) -> Result<T, AppError> {
        self.map_err(|e| internal(e.into()))
    }
}

impl PortalService {
    /// Ends a grant now: the requester ending their own access, or an admin revoking it.
    /// `admin` is the capability to end anyone's grant; without it, only one's own.
    async fn end_grant_as(
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
        let status = grant.status().or_internal()?;
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
            lifecycle::audit(
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
                        Timestamp(grant.ends_at).format_utc()
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
