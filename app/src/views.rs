//! View models: the data the pages show, as it crosses the wire from server to browser.
//! Plain serializable structs; the server fills them in, the pages only read them.

use serde::{Deserialize, Serialize};

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
    /// The permission set's session length in seconds (0: not known).
    #[serde(default)]
    pub session_secs: i64,
    /// On an approval card: how long a session opened just before the grant ends can
    /// stay open after it (AWS does not end open sessions when the assignment goes).
    #[serde(default)]
    pub tail: Option<String>,
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
    /// A ticket of the entitlement's format, when it has one (shown on the form).
    pub ticket_example: Option<String>,
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
    /// The approval step it was made at (1-based), when approval takes steps.
    #[serde(default)]
    pub step: Option<u32>,
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
    /// Approvals so far and approvals needed: at the step it waits at while pending, in
    /// all once decided.
    pub approvals: u32,
    pub approvals_required: u32,
    /// The step a pending request waits at, when approval takes steps
    /// (`Step 2 of 2: cloud-approvers`).
    #[serde(default)]
    pub step: Option<String>,
    pub decisions: Vec<DecisionView>,
    /// Who will decide, while pending (on the requester's own page).
    #[serde(default)]
    pub deciders: Option<String>,
    /// For an extension: the request whose access it makes longer (`duration` is the
    /// time it adds).
    #[serde(default)]
    pub extends: Option<String>,
    /// A later start the requester asked for: `2026-12-03 09:00:00 UTC (in 3h)`.
    #[serde(default)]
    pub starts: Option<String>,
    /// The bundle it was asked for in, if any (its id).
    #[serde(default)]
    pub bundle: Option<String>,
    /// For the approver: the requester's earlier requests for this entitlement in the
    /// last 90 days, in words.
    #[serde(default)]
    pub history: Option<String>,
    /// For the approver: exactly what approving grants (each account or OU with its
    /// permission set and session length).
    #[serde(default)]
    pub targets: Vec<TargetView>,
    /// For the approver: the window approving grants (`2 h from approval`, or from a
    /// later start to its end).
    #[serde(default)]
    pub window: Option<String>,
}

/// Another request of the same bundle, on a request's page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundlePartView {
    pub id: String,
    pub entitlement_name: String,
    pub status: String,
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
    /// Scheduled to start later: how long until then (`3h 5m`).
    #[serde(default)]
    pub starts_in: Option<String>,
    /// On the holder's own page, for active access: how it may be extended.
    #[serde(default)]
    pub extend: Option<ExtendOffer>,
}

/// What the "Extend" form of an active grant offers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtendOffer {
    /// The most that may be added now (`1h 30m`); `None` when it already lasts as long
    /// as the entitlement allows, or an extension waits for a decision (`pending`).
    pub up_to: Option<String>,
    /// The longest the access may last in all.
    pub max_total: String,
    /// A suggested amount for the form (`1h`).
    pub suggested: String,
    pub require_ticket: bool,
    pub ticket_example: Option<String>,
    /// Extensions up to this long are approved at once (`30m`); `None`: approvers decide.
    pub approves_itself_up_to: Option<String>,
    /// The extension that waits for a decision, if any (its request id).
    pub pending: Option<String>,
    /// The end the form is about (epoch ms): sent back, so that a second submission
    /// against an end that has moved since is refused.
    pub seen_end: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MyAccess {
    pub requests: Vec<RequestView>,
    pub grants: Vec<GrantView>,
}

/// One request and everything that happened to it: the page `/requests/{id}` that every
/// mail about it links to. Shown to its requester, the people who may decide it or did,
/// and admins; to anyone else the request does not exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestDetail {
    pub request: RequestView,
    /// How the entitlement is approved (its policy in words).
    pub approval: String,
    pub grants: Vec<GrantView>,
    /// The audit events of the request and its grants, oldest first.
    pub history: Vec<AuditView>,
    /// The viewer may decide it now: pending, an approver of it, not their own, not
    /// decided by them yet.
    pub may_decide: bool,
    /// Deciding needs a fresh sign-in first (`[session] reauth_after_secs`).
    pub reauth_needed: bool,
    /// The viewer asked for it and may still cancel it.
    pub may_cancel: bool,
    /// Why the viewer sees it: `requester`, `approver` or `admin`.
    pub viewer: String,
    /// The other requests asked for with it (shown to the requester and admins).
    #[serde(default)]
    pub bundle: Vec<BundlePartView>,
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
    /// The latest verification of the audit chain; `None` before the first.
    pub audit_chain: Option<AuditChainView>,
    /// Every entitlement, live ones first.
    pub entitlements: Vec<EntitlementStatusView>,
    /// Break-glass uses waiting for an admin's review, oldest first.
    #[serde(default)]
    pub break_glass: Vec<BreakGlassView>,
    /// The cursor of the next page of requests (older ones), when there are more.
    #[serde(default)]
    pub older_requests: Option<String>,
    /// The cursor of the next page of live grants (ending later), when there are more.
    #[serde(default)]
    pub later_grants: Option<String>,
    /// This page starts past the first (of requests, or of grants).
    #[serde(default)]
    pub paged: bool,
}

/// A break-glass use waiting for its review.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakGlassView {
    pub request_id: String,
    pub requester: String,
    pub entitlement: String,
    pub justification: String,
    pub used_at: String,
    /// Its review is overdue (admins were told again).
    pub overdue: bool,
}

/// An entitlement on the admin page: live, or retired since when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntitlementStatusView {
    pub id: String,
    pub name: String,
    pub approval: String,
    pub max_duration: String,
    /// When it was retired (no longer in the configuration); `None` while live.
    pub retired_at: Option<String>,
}

/// The outcome of the latest audit chain verification (invariant 6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditChainView {
    /// The whole chain verified with the key.
    pub verified: bool,
    /// When it was checked.
    pub at: String,
    /// `N events` when verified; where it breaks (or why it could not be read) otherwise.
    pub summary: String,
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
    /// Only events before this number: the page after one that ended there.
    #[serde(default)]
    pub before: Option<i64>,
}

/// A page of the audit log, newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub events: Vec<AuditView>,
    /// Where the next (older) page starts (`before`), when there is one.
    pub older: Option<i64>,
}

/// Where the admin overview's two long lists start: at the top without a cursor, else
/// after the row a cursor names (the `older`/`later` of the page before).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OverviewCursor {
    pub requests: Option<String>,
    pub grants: Option<String>,
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

/// An entitlement on its admin page (`/admin/entitlements`): what it grants, who may ask
/// and who decides, its limits, what it is used for now, and every version of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntitlementDetailView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// When it was retired; `None` while live.
    pub retired_at: Option<String>,
    pub targets: Vec<TargetView>,
    /// Who may ask: the groups and people its policy names.
    pub eligible: String,
    /// Who decides, in words (the same as on the request form).
    pub approval: String,
    /// Durations, tickets, timeouts and the like, one line each.
    pub limits: Vec<String>,
    /// Grants of it live now (being set up, active, or being taken down).
    pub live_grants: usize,
    /// Its newest requests.
    pub recent: Vec<RequestBriefView>,
    /// Every kept version, newest first.
    pub versions: Vec<EntitlementVersionView>,
}

/// One request in a short list: who, where it stands, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestBriefView {
    pub id: String,
    pub requester: String,
    pub status: String,
    pub created_at: String,
}

/// One kept version of an entitlement and how it differs from the one before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntitlementVersionView {
    pub version: i64,
    pub at: String,
    /// `created`, `updated`, `retired` or `restored`.
    pub change: String,
    /// Where the change came from ("the configuration file", "the demo catalog").
    pub by: String,
    /// The definition's lines that changed (all of them for the first version).
    pub diff: Vec<DiffLineView>,
}

/// A line of a difference: `added`, `removed`, or `same` (context).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffLineView {
    pub kind: String,
    pub text: String,
}

/// The admin dashboard (`/admin`): charts of the last 30 days, each with its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DashboardView {
    pub charts: Vec<ChartView>,
}

/// One bar chart: a value per label (a day, an API) for each series, stacked or side by
/// side, with a one-line summary; the page draws it as SVG and lists the same numbers in
/// a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChartView {
    /// For anchors and tests: `requests`, `decision-time`, `active-grants`, `lateness`,
    /// `aws`.
    pub id: String,
    pub title: String,
    /// The numbers that matter, in a sentence.
    pub summary: String,
    /// What the values count or measure (`requests`, `minutes`).
    pub unit: String,
    /// The first column's heading (`Day`, `API`).
    pub label_name: String,
    pub labels: Vec<String>,
    pub series: Vec<SeriesView>,
    /// Series stack on each other (parts of a whole) rather than stand side by side.
    pub stacked: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesView {
    pub name: String,
    /// One per label.
    pub values: Vec<f64>,
}

/// What the access explorer (`/admin/access`) narrows its lists to: words each row must
/// contain (any case); empty ones are ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessFilter {
    /// A person's name or email.
    pub person: Option<String>,
    /// An account's id or name.
    pub account: Option<String>,
    /// An OU's id or its path.
    pub ou: Option<String>,
    /// A permission set's name.
    pub permission_set: Option<String>,
}

/// The access explorer: who holds access now, and who could ask for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessExplorer {
    pub holding: Vec<AccessRowView>,
    /// Rows that matched beyond those shown.
    pub holding_more: usize,
    pub eligible: Vec<AccessRowView>,
    pub eligible_more: usize,
    /// Each live entitlement's definition, for the what-if to start from.
    pub definitions: Vec<DefinitionView>,
}

/// An entitlement's definition as the configuration's TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DefinitionView {
    pub id: String,
    pub name: String,
    pub toml: String,
}

/// One person and one account with one permission set: held through a grant (with its
/// status, end and request), or open to them through an entitlement (with who decides).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessRowView {
    pub person: String,
    pub email: String,
    pub account: String,
    pub ou_path: String,
    pub permission_set: String,
    pub entitlement: String,
    /// The grant's status while held; empty for a row of who could ask.
    pub status: String,
    /// When held access ends; who decides, for a row of who could ask.
    pub detail: String,
    /// The request behind held access.
    pub request_id: Option<String>,
}

/// What an entitlement's new definition would change, before it is applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WhatIfView {
    pub entitlement: String,
    /// Whether it is new (no entitlement has its id yet).
    pub new: bool,
    /// People (of those the portal knows) who could ask for it and could not before, and
    /// the reverse.
    pub eligible_gain: Vec<String>,
    pub eligible_lose: Vec<String>,
    /// People who could decide its requests and could not before, and the reverse (the
    /// requester's manager aside: see `notes`).
    pub approvers_gain: Vec<String>,
    pub approvers_lose: Vec<String>,
    /// Other changes worth knowing (the manager asked or no longer, limits).
    pub notes: Vec<String>,
}
