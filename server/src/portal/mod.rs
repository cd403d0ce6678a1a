//! The use cases behind the pages. Each checks who is calling, lets the domain decide,
//! and commits state, audit event, jobs and mail in one transaction.
//!
//! [`Portal`] (the trait the pages call) is implemented here by delegating each method to
//! the use case of the same name, in the file for its resource.

use crate::approval;
use crate::audit::{self, Actor, Event};
use crate::clock::Clock;
use crate::export;
use crate::notify;
use crate::provisioner::Provisioner;
use crate::store::{self, GrantRow, JobKind, RequestRow, Store};
use anyhow::Context;
use app::domain::time::format_duration;
use app::domain::Entitlement;
use app::domain::{
    Comment, Denied, EntitlementId, FieldError, GrantEvent, GrantStatus, Principal, RecordId,
    RequestDraft, RequestEvent, RequestStatus, TargetScope, Timestamp, Verdict,
};
use app::error::AppError;
use app::ssr::Portal;
use app::views::*;
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
    /// How far ahead a request may ask its access to start (`[policy] start_horizon`).
    pub start_horizon: Duration,
    pub public_url: String,
    /// New requests one person may make in an hour (`[http] new_requests_per_hour`).
    pub new_requests_per_hour: u32,
    /// What this process counted (the dashboard charts its AWS calls).
    pub metrics: Arc<crate::metrics::Metrics>,
}

tokio::task_local! {
    /// The id of the HTTP request being answered (set by the HTTP edge, sent back as
    /// `X-Request-Id` and kept on its log lines): an internal error met while answering it
    /// takes it as its reference, so the reference a person reads finds the request's logs.
    pub static REQUEST_ID: String;
}

/// Logs an internal error with its cause chain and a reference; the browser sees only the
/// reference (the request's id when there is a request).
pub fn internal(e: anyhow::Error) -> AppError {
    let reference = REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| store::new_id()[..12].to_string());
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

mod access;
mod admin;
mod bundles;
mod dashboard;
mod decisions;
mod detail;
mod entitlement_admin;
mod entitlements;
mod extensions;
mod grants;
mod mail;
mod requests;
mod views;

pub use entitlements::apply_configured_entitlements;

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
        let result = audit::audit_alone(&self.store, &Actor::of(who), event, now).await;
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
}

trait OrInternalTransition<T> {
    fn or_internal_transition(self) -> Result<T, AppError>;
}

impl<T> OrInternalTransition<T> for Result<T, app::domain::TransitionError> {
    fn or_internal_transition(self) -> Result<T, AppError> {
        self.map_err(|e| internal(e.into()))
    }
}

#[async_trait]
impl Portal for PortalService {
    async fn eligible_entitlements(
        &self,
        who: &Principal,
    ) -> Result<Vec<EntitlementCard>, AppError> {
        PortalService::eligible_entitlements(self, who).await
    }

    async fn create_request(
        &self,
        who: &Principal,
        entitlement_id: &str,
        draft: RequestDraft,
    ) -> Result<String, AppError> {
        PortalService::create_request(self, who, entitlement_id, draft).await
    }

    async fn create_bundle(
        &self,
        who: &Principal,
        entitlement_ids: &[String],
        draft: RequestDraft,
    ) -> Result<Vec<String>, AppError> {
        PortalService::create_bundle(self, who, entitlement_ids, draft).await
    }

    async fn my_access(&self, who: &Principal) -> Result<MyAccess, AppError> {
        PortalService::my_access(self, who).await
    }

    async fn cancel_request(&self, who: &Principal, request_id: &str) -> Result<(), AppError> {
        PortalService::cancel_request(self, who, request_id).await
    }

    async fn end_grant(&self, who: &Principal, grant_id: &str) -> Result<(), AppError> {
        PortalService::end_grant(self, who, grant_id).await
    }

    async fn extend_grant(
        &self,
        who: &Principal,
        grant_id: &str,
        draft: RequestDraft,
        seen_end: Option<i64>,
    ) -> Result<String, AppError> {
        PortalService::extend_grant(self, who, grant_id, draft, seen_end).await
    }

    async fn approvals(&self, who: &Principal) -> Result<Approvals, AppError> {
        PortalService::approvals(self, who).await
    }
    async fn request_detail(
        &self,
        who: &Principal,
        request_id: &str,
    ) -> Result<RequestDetail, AppError> {
        PortalService::request_detail(self, who, request_id).await
    }

    async fn decide(
        &self,
        who: &Principal,
        request_id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<(), AppError> {
        PortalService::decide(self, who, request_id, approve, comment).await
    }

    async fn admin_overview(
        &self,
        who: &Principal,
        page: OverviewCursor,
    ) -> Result<AdminOverview, AppError> {
        PortalService::admin_overview(self, who, page).await
    }

    async fn admin_entitlements(
        &self,
        who: &Principal,
    ) -> Result<Vec<EntitlementDetailView>, AppError> {
        PortalService::admin_entitlements(self, who).await
    }

    async fn dashboard(&self, who: &Principal) -> Result<DashboardView, AppError> {
        PortalService::dashboard(self, who).await
    }

    async fn access_explorer(
        &self,
        who: &Principal,
        filter: AccessFilter,
    ) -> Result<AccessExplorer, AppError> {
        self.access_rows(who, filter, access::SHOWN).await
    }

    async fn what_if(&self, who: &Principal, definition: &str) -> Result<WhatIfView, AppError> {
        PortalService::what_if(self, who, definition).await
    }

    async fn review_break_glass(
        &self,
        who: &Principal,
        request_id: &str,
        comment: &str,
    ) -> Result<(), AppError> {
        PortalService::review_break_glass(self, who, request_id, comment).await
    }

    async fn revoke_grant(&self, who: &Principal, grant_id: &str) -> Result<(), AppError> {
        PortalService::revoke_grant(self, who, grant_id).await
    }

    async fn audit_log(&self, who: &Principal, filter: AuditFilter) -> Result<AuditPage, AppError> {
        PortalService::audit_log(self, who, filter).await
    }

    async fn aws_assignments(&self, who: &Principal) -> Result<Vec<AssignmentView>, AppError> {
        PortalService::aws_assignments(self, who).await
    }

    async fn aws_overview(&self, who: &Principal) -> Result<AwsOverview, AppError> {
        PortalService::aws_overview(self, who).await
    }

    async fn run_upkeep(&self, who: &Principal, what: &str) -> Result<(), AppError> {
        PortalService::run_upkeep(self, who, what).await
    }

    async fn resend_mail(&self, who: &Principal, mail_id: &str) -> Result<(), AppError> {
        PortalService::resend_mail(self, who, mail_id).await
    }

    async fn outbox(&self, who: &Principal) -> Result<Vec<MailView>, AppError> {
        PortalService::outbox(self, who).await
    }
}
