//! Grants of an approved request, shared by the use cases (approval) and the worker
//! (settling a grant). Each takes the caller's transaction, so state, audit events, jobs
//! and mail commit together.

use crate::store::{self, AccountRow, GrantRow, JobKind, RequestRow};
use anyhow::{Context, Result};
use app::domain::{
    Entitlement, GrantStatus, RequestEvent, RequestStatus, Target, TargetScope, Timestamp,
};
use sqlx::AnyConnection;
use std::collections::BTreeSet;
use std::time::Duration;

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
    let starts_at = request.starts_at.max(now);
    let ends_at = starts_at.plus(Duration::from_secs(request.duration_secs as u64));
    let mut grants = Vec::new();
    for (account, ps) in pairs {
        let g = GrantRow {
            access_grant_id: store::new_id(),
            access_request_id: request.access_request_id.clone(),
            principal_id: request.requester_id.clone(),
            account_id: account.account_id.clone(),
            permission_set_arn: ps,
            starts_at,
            ends_at,
            status: GrantStatus::Scheduled,
            operation_id: None,
            operation_started_at: None,
            failure_reason: None,
            ended_by: None,
            aws_principal_id: None,
        };
        store::insert_grant(conn, &g, now).await?;
        store::insert_job(conn, JobKind::Provision, &g.access_grant_id, starts_at, now).await?;
        store::insert_job(conn, JobKind::Deprovision, &g.access_grant_id, ends_at, now).await?;
        grants.push(g);
    }
    Ok(grants)
}

/// Brings a request's status in line with its grants (the rule is
/// [`RequestEvent::from_grants`]). Returns the change, if any.
pub async fn sync_request(
    conn: &mut AnyConnection,
    request_id: &str,
    now: Timestamp,
) -> Result<Option<(RequestStatus, RequestStatus)>> {
    let request = store::get_request(conn, request_id)
        .await?
        .with_context(|| format!("request {request_id} vanished"))?;
    let from = request.status;
    let statuses: Vec<GrantStatus> = store::grants_for_request(conn, request_id)
        .await?
        .iter()
        .map(|g| g.status)
        .collect();
    let Some(event) = RequestEvent::from_grants(&statuses) else {
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

/// The (account, permission set) pairs the portal manages: every entitlement's targets
/// today, and wherever a live grant or an assignment the portal made sits.
pub async fn managed_pairs(conn: &mut AnyConnection) -> Result<BTreeSet<(String, String)>> {
    let grants = store::live_grants(&mut *conn, None).await?;
    let managed = store::managed_assignments(&mut *conn).await?;
    pairs_of(conn, &grants, &managed).await
}

/// [`managed_pairs`] with the live grants and the portal's records already at hand.
pub async fn pairs_of(
    conn: &mut AnyConnection,
    grants: &[GrantRow],
    managed: &[store::ManagedRow],
) -> Result<BTreeSet<(String, String)>> {
    let mut pairs = BTreeSet::new();
    for e in store::all_entitlements(&mut *conn).await? {
        for (account, ps) in expand_targets(&mut *conn, &e.targets).await? {
            pairs.insert((account.account_id, ps));
        }
    }
    for g in grants {
        pairs.insert((g.account_id.clone(), g.permission_set_arn.clone()));
    }
    for m in managed {
        pairs.insert((m.account_id.clone(), m.permission_set_arn.clone()));
    }
    Ok(pairs)
}
