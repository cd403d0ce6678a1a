//! What the browser can ask of the server: the server functions.
//! Server functions stay thin: who is calling, then the use case behind [`crate::ssr::Portal`],
//! which checks authorization and does the work. What they return lives in [`crate::views`].

#[cfg(feature = "ssr")]
use crate::domain::RequestDraft;
use crate::error::AppError;
#[cfg(feature = "ssr")]
use crate::views::AuditFilter;
use crate::views::{
    AccessExplorer, AdminOverview, Approvals, AssignmentView, AuditPage, AwsOverview,
    DashboardView, EntitlementCard, EntitlementDetailView, MailView, Me, MyAccess, RequestDetail,
    WhatIfView,
};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use crate::ssr::{caller, portal, recently_signed_in_caller};

#[server]
pub async fn whoami() -> Result<Option<Me>, AppError> {
    Ok(crate::ssr::session().map(|s| Me {
        user_id: s.principal.user_id.clone(),
        display_name: s.principal.display_name.clone(),
        email: s.principal.email.clone(),
        is_admin: s.principal.is_admin,
        demo: s.demo,
    }))
}

#[server]
pub async fn list_entitlements() -> Result<Vec<EntitlementCard>, AppError> {
    portal()?.eligible_entitlements(&caller()?).await
}

#[server]
pub async fn create_request(
    entitlement: String,
    justification: String,
    duration: String,
    ticket: Option<String>,
    starts: Option<String>,
) -> Result<String, AppError> {
    let draft = RequestDraft {
        justification,
        duration,
        ticket: ticket.unwrap_or_default(),
        starts: starts.unwrap_or_default(),
    };
    portal()?
        .create_request(&caller()?, &entitlement, draft)
        .await
}

/// Several entitlements at once. The form's checkboxes are named `entitlements[{id}]`, so
/// they arrive as a map whose keys are the ids chosen (none chosen: no map at all).
#[server]
pub async fn create_bundle(
    entitlements: Option<std::collections::BTreeMap<String, String>>,
    justification: String,
    duration: String,
    ticket: Option<String>,
    starts: Option<String>,
) -> Result<Vec<String>, AppError> {
    let draft = RequestDraft {
        justification,
        duration,
        ticket: ticket.unwrap_or_default(),
        starts: starts.unwrap_or_default(),
    };
    let chosen: Vec<String> = entitlements.unwrap_or_default().into_keys().collect();
    portal()?.create_bundle(&caller()?, &chosen, draft).await
}

#[server]
pub async fn load_my_access() -> Result<MyAccess, AppError> {
    portal()?.my_access(&caller()?).await
}

#[server]
pub async fn cancel_request(request_id: String) -> Result<(), AppError> {
    portal()?.cancel_request(&caller()?, &request_id).await
}

#[server]
pub async fn end_grant(grant_id: String) -> Result<(), AppError> {
    portal()?.end_grant(&caller()?, &grant_id).await
}

#[server]
pub async fn extend_grant(
    grant_id: String,
    justification: String,
    duration: String,
    ticket: Option<String>,
    seen_end: Option<i64>,
) -> Result<String, AppError> {
    let draft = RequestDraft {
        justification,
        duration,
        ticket: ticket.unwrap_or_default(),
        ..Default::default()
    };
    portal()?
        .extend_grant(&caller()?, &grant_id, draft, seen_end)
        .await
}

#[server]
pub async fn approval_queue() -> Result<Approvals, AppError> {
    portal()?.approvals(&caller()?).await
}

/// One request's page. Whether deciding will first ask for a fresh sign-in is the
/// session's to say, so the page can offer it before the approver writes a comment.
#[server]
pub async fn load_request(request_id: String) -> Result<RequestDetail, AppError> {
    let s = crate::ssr::session().ok_or(AppError::Unauthenticated)?;
    let mut detail = portal()?.request_detail(&s.principal, &request_id).await?;
    detail.reauth_needed = detail.may_decide && !s.recent_sign_in;
    Ok(detail)
}

#[server]
pub async fn decide(request_id: String, verdict: String, comment: String) -> Result<(), AppError> {
    let approve = match verdict.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(AppError::invalid("verdict", "choose approve or reject")),
    };
    portal()?
        .decide(
            &recently_signed_in_caller()?,
            &request_id,
            approve,
            &comment,
        )
        .await
}

/// The overview, its requests from `requests` on (older) and its live grants from
/// `grants` on (ending later): the cursors the page before gave.
#[server]
pub async fn load_admin_overview(
    requests: Option<String>,
    grants: Option<String>,
) -> Result<AdminOverview, AppError> {
    let page = crate::views::OverviewCursor { requests, grants };
    portal()?.admin_overview(&caller()?, page).await
}

#[server]
pub async fn load_access(
    person: Option<String>,
    account: Option<String>,
    ou: Option<String>,
    permission_set: Option<String>,
) -> Result<AccessExplorer, AppError> {
    let filter = crate::views::AccessFilter {
        person,
        account,
        ou,
        permission_set,
    };
    portal()?.access_explorer(&caller()?, filter).await
}

/// Changes nothing: what a new definition of an entitlement would change.
#[server]
pub async fn what_if(definition: String) -> Result<WhatIfView, AppError> {
    portal()?.what_if(&caller()?, &definition).await
}

#[server]
pub async fn load_dashboard() -> Result<DashboardView, AppError> {
    portal()?.dashboard(&caller()?).await
}

#[server]
pub async fn load_admin_entitlements() -> Result<Vec<EntitlementDetailView>, AppError> {
    portal()?.admin_entitlements(&caller()?).await
}

/// Needs a recent sign-in, like every decision about someone's access.
#[server]
pub async fn review_break_glass(request_id: String, comment: String) -> Result<(), AppError> {
    portal()?
        .review_break_glass(&recently_signed_in_caller()?, &request_id, &comment)
        .await
}

#[server]
pub async fn revoke_grant(grant_id: String) -> Result<(), AppError> {
    portal()?
        .revoke_grant(&recently_signed_in_caller()?, &grant_id)
        .await
}

#[server]
pub async fn audit_log(
    person: Option<String>,
    entitlement: Option<String>,
    action: Option<String>,
    before: Option<i64>,
) -> Result<AuditPage, AppError> {
    // Flat arguments: a struct whose fields are all empty would not be sent at all.
    let filter = AuditFilter {
        person,
        entitlement,
        action,
        before,
    };
    portal()?.audit_log(&caller()?, filter).await
}

#[server]
pub async fn aws_assignments() -> Result<Vec<AssignmentView>, AppError> {
    portal()?.aws_assignments(&caller()?).await
}

#[server]
pub async fn load_aws_overview() -> Result<AwsOverview, AppError> {
    portal()?.aws_overview(&caller()?).await
}

/// Asks for a catalog sync (`what = "catalog"`) or a reconciliation (`"reconcile"`) now.
#[server]
pub async fn run_upkeep(what: String) -> Result<(), AppError> {
    portal()?.run_upkeep(&caller()?, &what).await
}

#[server]
pub async fn resend_mail(mail_id: String) -> Result<(), AppError> {
    portal()?.resend_mail(&caller()?, &mail_id).await
}

#[server]
pub async fn mail_outbox() -> Result<Vec<MailView>, AppError> {
    portal()?.outbox(&caller()?).await
}
