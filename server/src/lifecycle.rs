//! Steps shared by the use cases (user actions) and the worker (jobs). Each takes the
//! caller's transaction, so state, audit events, jobs and mail commit together.

use crate::store::{self, AccountRow, Audit, EntitlementRow, GrantRow, JobKind, RequestRow};
use anyhow::{Context, Result};
use app::domain::{
    GrantStatus, Policy, Principal, RequestEvent, RequestStatus, Target, TargetScope, Timestamp,
};
use sqlx::AnyConnection;
use std::time::Duration;

/// Who did something, for the audit log.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: String,
    pub name: String,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            id: "system".into(),
            name: "Portcullis".into(),
        }
    }

    /// Someone not signed in (a refused cross-site request, a failed sign-in).
    pub fn anonymous() -> Self {
        Self {
            id: "anonymous".into(),
            name: "anonymous".into(),
        }
    }

    pub fn of(p: &Principal) -> Self {
        Self {
            id: p.user_id.clone(),
            name: p.display_name.clone(),
        }
    }
}

/// An audit event about a request or grant, in the caller's transaction.
pub struct Event<'a> {
    pub action: &'a str,
    pub person_id: Option<&'a str>,
    pub subject_kind: &'a str,
    pub subject_id: &'a str,
    pub entitlement_id: Option<&'a str>,
    pub detail: String,
}

pub async fn audit(
    conn: &mut AnyConnection,
    actor: &Actor,
    e: Event<'_>,
    now: Timestamp,
) -> Result<()> {
    store::append_audit(
        conn,
        Audit {
            actor_id: &actor.id,
            actor_name: &actor.name,
            action: e.action,
            person_id: e.person_id,
            subject_kind: e.subject_kind,
            subject_id: e.subject_id,
            entitlement_id: e.entitlement_id,
            detail: &e.detail,
        },
        now,
    )
    .await?;
    Ok(())
}

/// An audit event on its own, for things that change nothing else (refusals, sign-outs).
/// Records the end of a catalog sync or reconciliation run, and audits it as `action`,
/// in one transaction.
pub async fn finish_run(
    store: &crate::store::Store,
    run_id: &str,
    action: &str,
    ok: bool,
    summary: &str,
    now: Timestamp,
) -> Result<()> {
    let mut tx = store.begin().await?;
    store::finish_run(&mut tx, run_id, ok, summary, now).await?;
    let subject_kind = action.split('.').next().unwrap_or("maintenance");
    let e = Event {
        action,
        person_id: None,
        subject_kind,
        subject_id: run_id,
        entitlement_id: None,
        detail: summary.to_owned(),
    };
    audit(&mut tx, &Actor::system(), e, now).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn audit_alone(
    store: &crate::store::Store,
    actor: &Actor,
    e: Event<'_>,
    now: Timestamp,
) -> Result<()> {
    let mut tx = store.begin().await?;
    audit(&mut tx, actor, e, now).await?;
    tx.commit().await?;
    Ok(())
}

/// What can be requested. Also read from the configuration file (`[[entitlements]]`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entitlement {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub targets: Vec<Target>,
    pub policy: Policy,
}

impl Entitlement {
    /// Refuses an entitlement nobody could use, or that grants nothing.
    pub fn check(&self) -> Result<()> {
        let id = &self.id;
        app::domain::EntitlementId::parse(id)
            .map_err(|e| anyhow::anyhow!("entitlement id {id:?}: {e}"))?;
        anyhow::ensure!(
            !self.name.trim().is_empty(),
            "entitlement {id}: the name is empty"
        );
        anyhow::ensure!(
            !self.targets.is_empty(),
            "entitlement {id}: no targets (give at least one account or OU with a permission set)"
        );
        let p = &self.policy;
        anyhow::ensure!(
            !p.eligible_groups.is_empty() || !p.eligible_users.is_empty(),
            "entitlement {id}: nobody is eligible (set policy.eligible_groups or policy.eligible_users)"
        );
        anyhow::ensure!(
            p.max_duration_secs > 0 && p.default_duration_secs <= p.max_duration_secs,
            "entitlement {id}: policy.default_duration_secs ({}) must be at most \
             policy.max_duration_secs ({}), which must be more than 0",
            p.default_duration_secs,
            p.max_duration_secs
        );
        let a = &p.approvers;
        anyhow::ensure!(
            p.auto_approve || p.break_glass || a.manager || !a.groups.is_empty() || !a.users.is_empty(),
            "entitlement {id}: nobody can approve it (set policy.approvers, or policy.auto_approve)"
        );
        anyhow::ensure!(
            p.approvals_required >= 1,
            "entitlement {id}: policy.approvals_required must be at least 1"
        );
        Ok(())
    }

    pub fn from_row(row: EntitlementRow) -> Result<Self> {
        Ok(Self {
            targets: serde_json::from_str(&row.targets_json).with_context(|| {
                format!("entitlement {} has invalid targets", row.entitlement_id)
            })?,
            policy: serde_json::from_str(&row.policy_json).with_context(|| {
                format!("entitlement {} has an invalid policy", row.entitlement_id)
            })?,
            id: row.entitlement_id,
            name: row.name,
            description: row.description,
        })
    }

    pub fn to_row(&self) -> Result<EntitlementRow> {
        Ok(EntitlementRow {
            entitlement_id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            targets_json: serde_json::to_string(&self.targets)?,
            policy_json: serde_json::to_string(&self.policy)?,
        })
    }
}

pub async fn load_entitlement(conn: &mut AnyConnection, id: &str) -> Result<Option<Entitlement>> {
    store::get_entitlement(conn, id)
        .await?
        .map(Entitlement::from_row)
        .transpose()
}

/// The concrete (account, permission set) pairs an entitlement covers today.
pub async fn expand_targets(
    conn: &mut AnyConnection,
    targets: &[Target],
) -> Result<Vec<(AccountRow, String)>> {
    let mut out: Vec<(AccountRow, String)> = Vec::new();
    for t in targets {
        let accounts = match &t.scope {
            TargetScope::Account { account_id } => store::get_account(conn, account_id.as_str())
                .await?
                .into_iter()
                .collect(),
            TargetScope::Ou { ou_id } => store::accounts_under_ou(conn, ou_id.as_str()).await?,
        };
        for a in accounts {
            let ps = t.permission_set_arn.to_string();
            if !out
                .iter()
                .any(|(b, p)| b.account_id == a.account_id && *p == ps)
            {
                out.push((a, ps));
            }
        }
    }
    Ok(out)
}

/// Creates the grants of an approved request, each with its provisioning job and, in the
/// same transaction, its revocation job (invariant 2: nothing can make a grant forget its end).
pub async fn schedule_grants(
    conn: &mut AnyConnection,
    request: &RequestRow,
    entitlement: &Entitlement,
    now: Timestamp,
) -> Result<Vec<GrantRow>> {
    let pairs = expand_targets(conn, &entitlement.targets).await?;
    anyhow::ensure!(
        !pairs.is_empty(),
        "entitlement {} covers no known account",
        entitlement.id
    );
    let starts_at = Timestamp(request.starts_at.max(now.millis()));
    let ends_at = starts_at.plus(Duration::from_secs(request.duration_secs as u64));
    let mut grants = Vec::new();
    for (account, ps) in pairs {
        let g = GrantRow {
            access_grant_id: store::new_id(),
            access_request_id: request.access_request_id.clone(),
            principal_id: request.requester_id.clone(),
            account_id: account.account_id.clone(),
            permission_set_arn: ps,
            starts_at: starts_at.millis(),
            ends_at: ends_at.millis(),
            status: GrantStatus::Scheduled.as_str().into(),
            operation_id: None,
            operation_started_at: None,
            failure_reason: None,
            ended_by: None,
        };
        store::insert_grant(conn, &g, now).await?;
        store::insert_job(conn, JobKind::Provision, &g.access_grant_id, starts_at, now).await?;
        store::insert_job(conn, JobKind::Deprovision, &g.access_grant_id, ends_at, now).await?;
        grants.push(g);
    }
    Ok(grants)
}

/// Brings a request's status in line with its grants: active once one grant is active,
/// ended once all are over, failed when all failed. Returns the change, if any.
pub async fn sync_request(
    conn: &mut AnyConnection,
    request_id: &str,
    now: Timestamp,
) -> Result<Option<(RequestStatus, RequestStatus)>> {
    let request = store::get_request(conn, request_id)
        .await?
        .with_context(|| format!("request {request_id} vanished"))?;
    let from = request.status()?;
    let grants = store::grants_for_request(conn, request_id).await?;
    let statuses: Vec<GrantStatus> = grants.iter().map(|g| g.status()).collect::<Result<_>>()?;
    let event = if statuses.contains(&GrantStatus::Active) {
        RequestEvent::GrantActive
    } else if !statuses.is_empty() && statuses.iter().all(|s| *s == GrantStatus::Failed) {
        RequestEvent::AllGrantsFailed
    } else if !statuses.is_empty() && statuses.iter().all(|s| !s.is_live()) {
        RequestEvent::AllGrantsEnded
    } else {
        return Ok(None);
    };
    match from.apply(event) {
        Ok(to) if to != from => {
            store::set_request_status(conn, request_id, to, now).await?;
            Ok(Some((from, to)))
        }
        // Already there (e.g. active and another grant became active), or a terminal state.
        _ => Ok(None),
    }
}
