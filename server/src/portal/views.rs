//! Read models for the pages: requests, grants and entitlements as the views show them.

use super::*;

impl PortalService {
    pub(super) async fn entitlements_by_id(
        &self,
        conn: &mut AnyConnection,
    ) -> anyhow::Result<HashMap<String, Entitlement>> {
        Ok(store::all_entitlements(conn)
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect())
    }

    /// The people these rows name, and only them: a page never reads everyone.
    pub(super) async fn users_by_id<'a>(
        &self,
        conn: &mut AnyConnection,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<HashMap<String, Principal>> {
        store::users_by_ids(conn, ids).await
    }

    pub(super) async fn request_views(
        &self,
        conn: &mut AnyConnection,
        rows: Vec<RequestRow>,
    ) -> anyhow::Result<Vec<RequestView>> {
        let ents = self.entitlements_by_id(conn).await?;
        let now = self.now();
        // Two queries for the whole page: its decisions, then the people they and the
        // rows name (a query per row took 70-90 ms a page at 100,000 requests).
        let mut decisions_of =
            store::decisions_for_requests(conn, rows.iter().map(|r| r.access_request_id.as_str()))
                .await?;
        let users = {
            let requesters = rows.iter().map(|r| r.requester_id.as_str());
            let approvers = decisions_of
                .values()
                .flatten()
                .map(|d| d.approver_id.as_str());
            self.users_by_id(conn, requesters.chain(approvers)).await?
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let decisions = decisions_of
                .remove(&r.access_request_id)
                .unwrap_or_default();
            let ent = ents.get(&r.entitlement_id);
            let requester = users.get(&r.requester_id);
            let requester_name = requester
                .map(|u| u.display_name.clone())
                .unwrap_or_else(|| r.requester_id.clone());
            let requester_key = requester.map(|u| local_part(&u.email)).unwrap_or_default();
            // Pending: the step it waits at, and its approvals; else all of them.
            let (approvals, approvals_required, step) = match ent.map(|e| &e.policy) {
                Some(p) if r.status == RequestStatus::Pending => {
                    let at = p.progress(&crate::approval::recorded(p, &decisions));
                    (at.approvals, at.needed.max(1), p.step_label(at.step))
                }
                policy => (
                    decisions
                        .iter()
                        .filter(|d| d.verdict == Verdict::Approved)
                        .count() as u32,
                    policy
                        .map(|p| p.approval_steps().iter().map(|s| s.count.max(1)).sum())
                        .unwrap_or(1),
                    None,
                ),
            };
            let stepped = ent.is_some_and(|e| e.policy.is_stepped());
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
                status: r.status.to_string(),
                created_at: r.created_at.format_utc(),
                approvals,
                approvals_required,
                step,
                bundle: r.bundle_id.clone(),
                history: None,
                targets: Vec::new(),
                window: None,
                deciders: None,
                extends: r.extends_request_id.clone(),
                starts: (r.starts_at > r.created_at).then(|| match now < r.starts_at {
                    true => format!(
                        "{} (in {})",
                        r.starts_at.format_utc(),
                        format_duration(now.until(r.starts_at))
                    ),
                    false => r.starts_at.format_utc(),
                }),
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
                        verdict: d.verdict.to_string(),
                        comment: d.comment,
                        decided_at: d.created_at.format_utc(),
                        step: stepped.then(|| d.step as u32 + 1),
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Grant views for admins, each flagged when a job of it keeps failing (the worker
    /// alerted about it and still retries).
    pub(super) async fn flag_trouble(
        &self,
        conn: &mut AnyConnection,
        rows: Vec<GrantRow>,
    ) -> anyhow::Result<Vec<GrantView>> {
        let mut views = self.grant_views(conn, rows).await?;
        let failing = store::alerted_jobs(conn).await?;
        for v in &mut views {
            v.trouble = failing.iter().find(|j| j.subject_id == v.id).map(|j| {
                let what = if j.kind == JobKind::Deprovision {
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

    pub(super) async fn grant_views(
        &self,
        conn: &mut AnyConnection,
        rows: Vec<GrantRow>,
    ) -> anyhow::Result<Vec<GrantView>> {
        let now = self.now();
        let ents = self.entitlements_by_id(conn).await?;
        let users = self
            .users_by_id(conn, rows.iter().map(|g| g.principal_id.as_str()))
            .await?;
        let requests =
            store::requests_by_ids(conn, rows.iter().map(|g| g.access_request_id.as_str())).await?;
        // Many grants share an account and permission set: each pair is looked up once.
        let mut targets: HashMap<(String, String), (String, String, String)> = HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for g in rows {
            let request = requests
                .get(&g.access_request_id)
                .context("grant without request")?;
            let key = (g.account_id.clone(), g.permission_set_arn.clone());
            let (account_name, ps_name, tail) = match targets.get(&key) {
                Some(t) => t.clone(),
                None => {
                    let t = store::describe_target(conn, &g).await?;
                    targets.insert(key, t.clone());
                    t
                }
            };
            let status = g.status;
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
                status: g.status.to_string(),
                starts_at: g.starts_at.format_utc(),
                ends_at: g.ends_at.format_utc(),
                time_left: (status == GrantStatus::Active)
                    .then(|| format_duration(now.until(g.ends_at))),
                session_tail: tail,
                failure: g
                    .failure_reason
                    .clone()
                    .filter(|_| status == GrantStatus::Failed),
                trouble: None,
                starts_in: (status == GrantStatus::Scheduled && now < g.starts_at)
                    .then(|| format_duration(now.until(g.starts_at))),
                extend: None,
            });
        }
        Ok(out)
    }

    /// Who will decide this pending request of `who`'s at step `step` (the one it waits
    /// at), by the policy as it applies to them (naming the manager, or saying why the
    /// fallback decides). `manager_known`: [`notify::manager_known`] for `who`, asked once
    /// by the caller for all their rows.
    pub(super) fn deciders(
        e: &Entitlement,
        who: &Principal,
        manager_known: bool,
        step: usize,
    ) -> String {
        let whole = &e.policy;
        if whole.break_glass || whole.auto_approve {
            return Self::describe_policy(e);
        }
        let p = &whole.at_step(step);
        let mut names = Vec::new();
        if p.approvers.manager {
            let fallback = || Self::rule_names(&p.manager_fallback).join(" or ");
            match &who.manager {
                Some(m) if manager_known || !p.has_manager_fallback() => {
                    names.push(format!("your manager ({m})"))
                }
                Some(m) => names.push(format!(
                    "{} instead of your manager ({m} is not known to Portcullis yet)",
                    fallback()
                )),
                None if p.has_manager_fallback() => {
                    names.push(format!("{} (no manager is on record for you)", fallback()))
                }
                None => {}
            }
        }
        let others = ApproverRuleNames {
            groups: &p.approvers.groups,
            users: &p.approvers.users,
        };
        names.extend(others.names());
        if names.is_empty() {
            return "nobody can approve it: it will time out".into();
        }
        let decided_by = format!("Decided by {}", names.join(" or "));
        match whole.step_label(step) {
            Some(label) => format!("{label}. {decided_by}"),
            None => decided_by,
        }
    }

    /// What an entitlement grants, as the pages show it: each target's scope (an account by
    /// name, id and OU path; an OU with how many accounts it covers today), its permission
    /// set and how long that set's sessions last.
    pub(super) async fn target_views(
        &self,
        conn: &mut AnyConnection,
        e: &Entitlement,
    ) -> anyhow::Result<Vec<TargetView>> {
        let mut targets = Vec::new();
        for t in &e.targets {
            let ps = store::get_permission_set(conn, t.permission_set_arn.as_str()).await?;
            let scope = match &t.scope {
                TargetScope::Account { account_id } => {
                    match store::get_account(conn, account_id.as_str()).await? {
                        Some(a) => format!("{} ({account_id}, OU path {})", a.name, a.ou_path),
                        None => format!("account {account_id}"),
                    }
                }
                TargetScope::Ou { ou_id } => {
                    let n = store::accounts_under_ou(conn, ou_id.as_str()).await?.len();
                    format!("every account in OU {ou_id} ({n} today)")
                }
            };
            targets.push(TargetView {
                scope,
                permission_set: ps
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| t.permission_set_arn.short_id().to_owned()),
                session_secs: ps.as_ref().map_or(0, |p| p.session_duration_secs.max(0)),
                session_duration: ps
                    .map(|p| format_duration(Duration::from_secs(p.session_duration_secs as u64)))
                    .unwrap_or_default(),
                tail: None,
            });
        }
        Ok(targets)
    }

    /// Sets each pending request's `history`: what its requester asked for this
    /// entitlement in the last 90 days (two queries for the page).
    pub(super) async fn add_history(
        &self,
        conn: &mut AnyConnection,
        rows: &[RequestRow],
        views: &mut [RequestView],
    ) -> anyhow::Result<()> {
        let since = self.now().minus(HISTORY_WINDOW);
        let past =
            store::requests_of_since(conn, rows.iter().map(|r| r.requester_id.as_str()), since)
                .await?;
        for (row, view) in rows.iter().zip(views.iter_mut()) {
            let earlier: Vec<&store::PastRequest> = past
                .iter()
                .filter(|p| {
                    p.requester_id == row.requester_id
                        && p.entitlement_id == row.entitlement_id
                        && p.access_request_id != row.access_request_id
                        && p.created_at <= row.created_at
                })
                .collect();
            view.history = Some(history_words(&earlier));
        }
        Ok(())
    }

    fn rule_names(rule: &app::domain::ApproverRule) -> Vec<String> {
        ApproverRuleNames {
            groups: &rule.groups,
            users: &rule.users,
        }
        .names()
    }

    pub(super) fn describe_policy(e: &Entitlement) -> String {
        let p = &e.policy;
        if p.break_glass {
            return "Break-glass: granted at once, admins are alerted".into();
        }
        if p.auto_approve {
            return "Approved automatically".into();
        }
        // "1 approval from your manager, then 2 approvals from a member of cloud-approvers"
        let steps: Vec<String> = p
            .approval_steps()
            .iter()
            .map(|s| {
                let mut who = Vec::new();
                if s.approvers.manager {
                    who.push("your manager".to_string());
                }
                who.extend(Self::rule_names(&s.approvers));
                let n = s.count.max(1);
                format!(
                    "{} approval{} from {}",
                    n,
                    if n == 1 { "" } else { "s" },
                    who.join(" or ")
                )
            })
            .collect();
        steps.join(", then ")
    }
}

/// How far back an approver sees the requester's history with an entitlement.
const HISTORY_WINDOW: Duration = Duration::from_secs(90 * 24 * 3600);

/// "Asked for this 3 times in the last 90 days: 2 granted, 1 rejected; 1 ended early.
/// Last: “deploy the fix” (2026-11-20 10:00:00 UTC)", newest first in `earlier`.
fn history_words(earlier: &[&store::PastRequest]) -> String {
    let Some(last) = earlier.first() else {
        return "First request for this in the last 90 days".into();
    };
    let count = |s: RequestStatus| earlier.iter().filter(|p| p.status == s).count();
    let granted =
        count(RequestStatus::Approved) + count(RequestStatus::Active) + count(RequestStatus::Ended);
    let mut parts = Vec::new();
    for (n, what) in [
        (granted, "granted"),
        (count(RequestStatus::Rejected), "rejected"),
        (count(RequestStatus::Cancelled), "cancelled"),
        (count(RequestStatus::TimedOut), "timed out"),
        (count(RequestStatus::Failed), "failed"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let early: i64 = earlier.iter().map(|p| p.ended_early).sum();
    let early = match early {
        0 => String::new(),
        n => format!("; {n} ended early"),
    };
    let times = match earlier.len() {
        1 => "once".to_owned(),
        n => format!("{n} times"),
    };
    format!(
        "Asked for this {times} in the last 90 days: {}{early}. Last: \u{201c}{}\u{201d} ({})",
        parts.join(", "),
        last.justification,
        last.created_at.format_utc()
    )
}

/// The groups and people of an approver rule, as the pages name them.
struct ApproverRuleNames<'a> {
    groups: &'a [String],
    users: &'a [String],
}

impl ApproverRuleNames<'_> {
    fn names(&self) -> Vec<String> {
        self.groups
            .iter()
            .map(|g| format!("a member of {g}"))
            .chain(self.users.iter().cloned())
            .collect()
    }
}
