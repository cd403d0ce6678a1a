//! What the browser can ask of the server: view models and server functions.
//! Server functions stay thin: who is calling, then the use case behind [`crate::ssr::Portal`],
//! which checks authorization and does the work.

#[cfg(feature = "ssr")]
use crate::domain::RequestDraft;
use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use crate::ssr::{caller, portal};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Me {
    pub user_id: String,
    pub display_name: String,
    pub email: String,
    pub is_admin: bool,
    pub demo: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetView {
    pub scope: String,
    pub permission_set: String,
    pub session_duration: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntitlementCard {
    pub id: String,
    pub name: String,
    pub description: String,
    pub targets: Vec<TargetView>,
    pub max_duration: String,
    pub default_duration: String,
    pub require_ticket: bool,
    pub auto_approve: bool,
    pub break_glass: bool,
    pub approval: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionView {
    pub request_id: String,
    pub entitlement_id: String,
    pub entitlement_name: String,
    pub requester: String,
    pub requester_key: String,
    pub approver: String,
    pub approver_id: String,
    pub verdict: String,
    pub comment: String,
    pub decided_at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestView {
    pub id: String,
    pub entitlement_id: String,
    pub entitlement_name: String,
    pub requester: String,
    /// Short handle of the requester (the email's local part), for lists and tests.
    pub requester_key: String,
    pub justification: String,
    pub ticket: Option<String>,
    pub duration: String,
    pub status: String,
    pub created_at: String,
    pub approvals: u32,
    pub approvals_required: u32,
    pub decisions: Vec<DecisionView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrantView {
    pub id: String,
    pub request_id: String,
    pub entitlement_id: String,
    pub entitlement_name: String,
    pub principal: String,
    pub account_id: String,
    pub account_name: String,
    pub permission_set: String,
    pub status: String,
    pub starts_at: String,
    pub ends_at: String,
    pub time_left: Option<String>,
    /// Deleting an assignment does not end open sessions: they can last this long after.
    pub session_tail: String,
    pub failure: Option<String>,
    /// For admins: its provisioning or revocation keeps failing (and is still retried).
    #[serde(default)]
    pub trouble: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MyAccess {
    pub requests: Vec<RequestView>,
    pub grants: Vec<GrantView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approvals {
    pub pending: Vec<RequestView>,
    pub decided: Vec<DecisionView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub kind: String,
    pub message: String,
    pub at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerHealth {
    pub queued_jobs: i64,
    pub overdue_jobs: i64,
    pub failing_jobs: i64,
    pub oldest_overdue: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminOverview {
    pub requests: Vec<RequestView>,
    pub grants: Vec<GrantView>,
    pub alerts: Vec<AlertView>,
    pub worker: WorkerHealth,
    /// Mail the worker gave up on; an admin can resend it.
    pub parked_mail: Vec<ParkedMailView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParkedMailView {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub person: Option<String>,
    pub entitlement: Option<String>,
    pub action: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub entitlement: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignmentView {
    pub account_id: String,
    pub account_name: String,
    pub permission_set: String,
    pub principal: String,
    pub created_at: String,
}

/// The catalog as last synced, the latest catalog syncs and reconciliations, and the
/// drift they found (the admin AWS page).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AwsOverview {
    pub provisioner: String,
    pub accounts: Vec<AccountView>,
    pub permission_sets: Vec<PermissionSetView>,
    pub catalog_runs: Vec<RunView>,
    pub reconcile_runs: Vec<RunView>,
    pub drift: Vec<AlertView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountView {
    pub account_id: String,
    pub name: String,
    /// OU names from the root down, e.g. `Root / Workloads / Prod`.
    pub ou_path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PermissionSetView {
    pub arn: String,
    pub name: String,
    pub description: String,
    pub session_duration: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub status: String,
    pub progress: String,
    pub summary: String,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MailView {
    pub to: String,
    pub subject: String,
    pub body_text: String,
    pub created_at: String,
    pub status: String,
}

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
) -> Result<String, AppError> {
    let draft = RequestDraft {
        justification,
        duration,
        ticket: ticket.unwrap_or_default(),
    };
    portal()?
        .create_request(&caller()?, &entitlement, draft)
        .await
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
pub async fn approval_queue() -> Result<Approvals, AppError> {
    portal()?.approvals(&caller()?).await
}

#[server]
pub async fn decide(request_id: String, verdict: String, comment: String) -> Result<(), AppError> {
    let approve = match verdict.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(AppError::invalid("verdict", "choose approve or reject")),
    };
    portal()?
        .decide(&caller()?, &request_id, approve, &comment)
        .await
}

#[server]
pub async fn load_admin_overview() -> Result<AdminOverview, AppError> {
    portal()?.admin_overview(&caller()?).await
}

#[server]
pub async fn revoke_grant(grant_id: String) -> Result<(), AppError> {
    portal()?.revoke_grant(&caller()?, &grant_id).await
}

#[server]
pub async fn audit_log(
    person: Option<String>,
    entitlement: Option<String>,
    action: Option<String>,
) -> Result<Vec<AuditView>, AppError> {
    // Flat arguments: a struct whose fields are all empty would not be sent at all.
    let filter = AuditFilter {
        person,
        entitlement,
        action,
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
