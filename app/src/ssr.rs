//! Server-only glue between the pages and the `server` crate, which implements
//! [`Portal`] and provides it (and the caller's session) as Leptos context.

use crate::domain::{Principal, RequestDraft};
use crate::error::AppError;
use crate::views::{
    AccessExplorer, AccessFilter, AdminOverview, Approvals, AssignmentView, AuditFilter, AuditPage,
    AwsOverview, DashboardView, EntitlementCard, EntitlementDetailView, MailView, MyAccess,
    OverviewCursor, RequestDetail, WhatIfView,
};
use leptos::prelude::*;
use std::sync::Arc;

/// The signed-in caller, put into the request's extensions by the server's session layer.
#[derive(Clone, Debug)]
pub struct Session {
    pub principal: Principal,
    pub demo: bool,
    /// Whether the person proved who they are recently enough for the actions that need
    /// it (deciding a request, revoking a grant): `[session] reauth_after_secs`.
    pub recent_sign_in: bool,
}

/// The use cases the pages need. Every method checks the caller's rights itself.
#[async_trait::async_trait]
pub trait Portal: Send + Sync + 'static {
    async fn eligible_entitlements(
        &self,
        who: &Principal,
    ) -> Result<Vec<EntitlementCard>, AppError>;
    async fn create_request(
        &self,
        who: &Principal,
        entitlement: &str,
        draft: RequestDraft,
    ) -> Result<String, AppError>;
    /// Asks for several entitlements at once (one request each, made together or not at
    /// all, each decided by its own policy); returns the requests' ids.
    async fn create_bundle(
        &self,
        who: &Principal,
        entitlements: &[String],
        draft: RequestDraft,
    ) -> Result<Vec<String>, AppError>;
    async fn my_access(&self, who: &Principal) -> Result<MyAccess, AppError>;
    async fn cancel_request(&self, who: &Principal, request_id: &str) -> Result<(), AppError>;
    async fn end_grant(&self, who: &Principal, grant_id: &str) -> Result<(), AppError>;
    /// Asks for more time on the caller's active grant (an extension request, decided by
    /// the entitlement's policy); returns the extension's request id.
    /// `seen_end`: the end (epoch ms) the form showed; a request made against an end that
    /// has moved since (another extension, a form sent twice) is refused.
    async fn extend_grant(
        &self,
        who: &Principal,
        grant_id: &str,
        draft: RequestDraft,
        seen_end: Option<i64>,
    ) -> Result<String, AppError>;
    async fn approvals(&self, who: &Principal) -> Result<Approvals, AppError>;
    /// One request with its decisions, grants and audit trail, for the people it concerns
    /// (`NotFound` for everyone else, as for an id that does not exist).
    async fn request_detail(
        &self,
        who: &Principal,
        request_id: &str,
    ) -> Result<RequestDetail, AppError>;
    async fn decide(
        &self,
        who: &Principal,
        request_id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<(), AppError>;
    /// The overview, its requests and live grants a page at a time from `page`.
    async fn admin_overview(
        &self,
        who: &Principal,
        page: OverviewCursor,
    ) -> Result<AdminOverview, AppError>;
    /// Who holds access now and who could ask for it, narrowed by `filter` (admins only).
    async fn access_explorer(
        &self,
        who: &Principal,
        filter: AccessFilter,
    ) -> Result<AccessExplorer, AppError>;
    /// Whom an entitlement's new definition (TOML) would let ask or decide (admins only;
    /// changes nothing).
    async fn what_if(&self, who: &Principal, definition: &str) -> Result<WhatIfView, AppError>;
    /// The admin dashboard's charts (admins only).
    async fn dashboard(&self, who: &Principal) -> Result<DashboardView, AppError>;
    /// Every entitlement with its targets, policy, use and versions (admins only).
    async fn admin_entitlements(
        &self,
        who: &Principal,
    ) -> Result<Vec<EntitlementDetailView>, AppError>;
    async fn revoke_grant(&self, who: &Principal, grant_id: &str) -> Result<(), AppError>;
    /// An admin (not the user) acknowledges a break-glass use with a comment.
    async fn review_break_glass(
        &self,
        who: &Principal,
        request_id: &str,
        comment: &str,
    ) -> Result<(), AppError>;
    async fn audit_log(&self, who: &Principal, filter: AuditFilter) -> Result<AuditPage, AppError>;
    async fn aws_assignments(&self, who: &Principal) -> Result<Vec<AssignmentView>, AppError>;
    /// The catalog, the latest syncs and reconciliations, and open drift (admins only).
    async fn aws_overview(&self, who: &Principal) -> Result<AwsOverview, AppError>;
    /// Runs a catalog sync (`catalog`) or a reconciliation (`reconcile`) now (admins only,
    /// audited).
    async fn run_upkeep(&self, who: &Principal, what: &str) -> Result<(), AppError>;
    async fn outbox(&self, who: &Principal) -> Result<Vec<MailView>, AppError>;
    /// Puts a parked message back in line for delivery (admins only, audited).
    async fn resend_mail(&self, who: &Principal, mail_id: &str) -> Result<(), AppError>;
}

pub type SharedPortal = Arc<dyn Portal>;

pub fn portal() -> Result<SharedPortal, AppError> {
    use_context::<SharedPortal>().ok_or_else(|| {
        tracing::error!("Portal missing from Leptos context");
        AppError::Internal("no-portal".into())
    })
}

pub fn session() -> Option<Session> {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Session>().cloned())
}

pub fn caller() -> Result<Principal, AppError> {
    session()
        .map(|s| s.principal)
        .ok_or(AppError::Unauthenticated)
}

/// The caller, for an action that needs a recent sign-in: someone whose last sign-in is
/// older is asked to sign in again (and is refused before anything is checked or changed).
pub fn recently_signed_in_caller() -> Result<Principal, AppError> {
    let s = session().ok_or(AppError::Unauthenticated)?;
    if !s.recent_sign_in {
        return Err(AppError::ReauthRequired);
    }
    Ok(s.principal)
}
