//! Reconciliation: compares the assignments AWS holds for the permission sets and accounts
//! the portal manages with the live grants, and mends or reports every difference.
//!
//! - An assignment the portal created whose grants have all ended is deleted.
//! - An active grant whose assignment is missing is provisioned again, and reported.
//! - An assignment made outside the portal is reported as drift (an alert on the admin
//!   page), and deleted only when `aws.owned_permission_sets` lists its permission set.
//!
//! Every finding is audited when first seen; a drift alert is resolved by the first run
//! that no longer sees it.

use crate::clock::Clock;
use crate::lifecycle::{self, Actor, Event};
use crate::provisioner::{Assignment, LiveAssignment, Provisioner};
use crate::store::{self, GrantRow, JobKind, Store};
use crate::worker::Upkeep;
use anyhow::{Context, Result};
use app::domain::{GrantEvent, GrantStatus, Timestamp};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Notify;

/// The alert kinds reconciliation raises (the drift report on the admin page).
pub const DRIFT_EXTERNAL: &str = "drift_external";
pub const DRIFT_MISSING: &str = "drift_missing";
pub const DRIFT_ORPHAN: &str = "drift_orphan";

/// What one run found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub pairs: usize,
    pub assignments: usize,
    pub in_sync: usize,
    /// Made by the portal, no live grant: deleted.
    pub orphans_revoked: usize,
    /// Made outside the portal: reported.
    pub external: usize,
    /// Made outside the portal, for a permission set the portal owns: deleted.
    pub external_revoked: usize,
    /// Active grants whose assignment was missing: provisioned again.
    pub missing: usize,
}

impl std::fmt::Display for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} assignments in {} account/permission set pairs: {} in sync, {} made outside \
             the portal ({} of them deleted), {} left over from ended grants deleted, {} \
             missing for active grants provisioned again",
            self.assignments,
            self.pairs,
            self.in_sync,
            self.external + self.external_revoked,
            self.external_revoked,
            self.orphans_revoked,
            self.missing
        )
    }
}

/// Runs one reconciliation, recorded in `maintenance_run` and audited.
pub async fn run(
    store: &Store,
    provisioner: &dyn Provisioner,
    clock: &dyn Clock,
    upkeep: &Upkeep,
    wake: &Arc<Notify>,
) -> Result<Findings> {
    let run_id = {
        let mut conn = store.conn().await?;
        store::start_run(&mut conn, JobKind::Reconcile, clock.now()).await?
    };
    let outcome = reconcile(store, provisioner, clock, upkeep, &run_id).await;
    let now = clock.now();
    let (ok, summary) = match &outcome {
        Ok(f) => (true, f.to_string()),
        Err(e) => (false, format!("{e:#}")),
    };
    let mut tx = store.begin().await?;
    store::finish_run(&mut tx, &run_id, ok, &summary, now).await?;
    lifecycle::audit(
        &mut tx,
        &Actor::system(),
        Event {
            action: if ok {
                "reconcile.finished"
            } else {
                "reconcile.failed"
            },
            person_id: None,
            subject_kind: "reconciliation",
            subject_id: &run_id,
            entitlement_id: None,
            detail: summary,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    if matches!(&outcome, Ok(f) if f.missing > 0) {
        wake.notify_one();
    }
    outcome
}

/// The (account, permission set) pairs the portal manages: every entitlement's targets
/// today, and wherever a live grant or an assignment the portal made sits.
pub async fn managed_pairs(conn: &mut sqlx::AnyConnection) -> Result<BTreeSet<(String, String)>> {
    let mut pairs = BTreeSet::new();
    for e in store::all_entitlements(&mut *conn).await? {
        let e = lifecycle::Entitlement::from_row(e)?;
        for (account, ps) in lifecycle::expand_targets(&mut *conn, &e.targets).await? {
            pairs.insert((account.account_id, ps));
        }
    }
    for g in store::all_live_grants(&mut *conn).await? {
        pairs.insert((g.account_id, g.permission_set_arn));
    }
    for m in store::managed_assignments(&mut *conn).await? {
        pairs.insert((m.account_id, m.permission_set_arn));
    }
    Ok(pairs)
}

/// One key per assignment, for alerts and comparisons.
fn key(a: &LiveAssignment) -> String {
    format!(
        "{}|{}|{}|{}",
        a.account_id, a.permission_set_arn, a.principal_type, a.principal_id
    )
}

async fn reconcile(
    store: &Store,
    provisioner: &dyn Provisioner,
    clock: &dyn Clock,
    upkeep: &Upkeep,
    run_id: &str,
) -> Result<Findings> {
    let mut findings = Findings::default();
    let (grants, managed) = {
        let mut conn = store.conn().await?;
        (
            store::all_live_grants(&mut conn).await?,
            store::managed_assignments(&mut conn).await?,
        )
    };
    let pairs = {
        let mut conn = store.conn().await?;
        managed_pairs(&mut conn).await?
    };
    findings.pairs = pairs.len();

    // The provisioner's id of every person concerned, and back.
    let mut principal_of: HashMap<String, String> = HashMap::new();
    let people: BTreeSet<&str> = grants
        .iter()
        .map(|g| g.principal_id.as_str())
        .chain(managed.iter().map(|m| m.user_id.as_str()))
        .collect();
    for user_id in people {
        let user = {
            let mut conn = store.conn().await?;
            store::get_user(&mut conn, user_id).await?
        };
        let Some(user) = user else { continue };
        let probe = Assignment {
            account_id: String::new(),
            permission_set_arn: String::new(),
            user_id: user_id.to_owned(),
            user_name: user.email,
        };
        match provisioner.principal_of(&probe).await {
            Ok(p) => {
                principal_of.insert(user_id.to_owned(), p);
            }
            Err(e) => tracing::warn!(user = user_id, error = %e, "cannot resolve a user in AWS"),
        }
    }
    let user_of: HashMap<&str, &str> = principal_of
        .iter()
        .map(|(u, p)| (p.as_str(), u.as_str()))
        .collect();

    // What AWS holds, listed before the grants are read again below: a grant that becomes
    // active after this point is not judged against a listing older than it.
    let listed_at = clock.now();
    let mut live: Vec<LiveAssignment> = Vec::new();
    for (i, (account, ps)) in pairs.iter().enumerate() {
        live.extend(provisioner.assignments_at(account, ps).await?);
        if i % 10 == 9 {
            let mut conn = store.conn().await?;
            let text = format!("listed {} of {} pairs", i + 1, pairs.len());
            store::run_progress(&mut conn, run_id, &text).await?;
        }
    }
    findings.assignments = live.len();

    let covering: HashSet<(String, String, String)> = grants
        .iter()
        .filter(|g| {
            matches!(
                g.status(),
                Ok(GrantStatus::Provisioning | GrantStatus::Active | GrantStatus::Deprovisioning)
            )
        })
        .map(|g| {
            (
                g.account_id.clone(),
                g.permission_set_arn.clone(),
                g.principal_id.clone(),
            )
        })
        .collect();
    let origins: HashMap<(String, String, String), String> = managed
        .iter()
        .map(|m| {
            (
                (
                    m.account_id.clone(),
                    m.permission_set_arn.clone(),
                    m.user_id.clone(),
                ),
                m.origin.clone(),
            )
        })
        .collect();

    let mut drifting: HashSet<String> = HashSet::new();
    for a in &live {
        let user = (a.principal_type == "USER")
            .then(|| user_of.get(a.principal_id.as_str()).copied())
            .flatten();
        let triple = user.map(|u| {
            (
                a.account_id.clone(),
                a.permission_set_arn.clone(),
                u.to_owned(),
            )
        });
        if triple.as_ref().is_some_and(|t| covering.contains(t)) {
            findings.in_sync += 1;
            continue;
        }
        // Asked again now: a grant may have started since the snapshot above.
        if let Some(u) = user {
            let mut conn = store.conn().await?;
            if store::has_live_grant(&mut conn, &a.account_id, &a.permission_set_arn, u).await? {
                findings.in_sync += 1;
                continue;
            }
        }
        let origin = triple.as_ref().and_then(|t| origins.get(t));
        let now = clock.now();
        if origin.map(String::as_str) == Some("portal") {
            // The portal made it and no live grant needs it any more.
            let op = provisioner.start_delete_live(a).await?;
            let mut tx = store.begin().await?;
            let user = user.unwrap_or_default();
            if let Some(m) = managed.iter().find(|m| {
                m.account_id == a.account_id
                    && m.permission_set_arn == a.permission_set_arn
                    && m.user_id == user
            }) {
                store::forget_managed(&mut tx, m).await?;
            }
            finding(
                &mut tx,
                "reconcile.orphan_revoked",
                Some(user),
                a,
                format!(
                    "the portal's assignment of {} in {} to {user} had no live grant left: \
                     DeleteAccountAssignment started (request {op})",
                    a.permission_set_arn, a.account_id
                ),
                now,
            )
            .await?;
            store::raise_alert(
                &mut tx,
                DRIFT_ORPHAN,
                &key(a),
                &format!(
                    "Left-over assignment of {} in {} to {user} deleted (request {op})",
                    a.permission_set_arn, a.account_id
                ),
                now,
            )
            .await?;
            tx.commit().await?;
            findings.orphans_revoked += 1;
            continue;
        }
        let who = match user {
            Some(u) => u.to_owned(),
            None => format!("{} {}", a.principal_type.to_lowercase(), a.principal_id),
        };
        if upkeep.owns(&a.permission_set_arn) {
            let op = provisioner.start_delete_live(a).await?;
            let mut tx = store.begin().await?;
            finding(
                &mut tx,
                "reconcile.external_revoked",
                user,
                a,
                format!(
                    "assignment of {} in {} to {who} made outside the portal, and the portal \
                     owns this permission set: DeleteAccountAssignment started (request {op})",
                    a.permission_set_arn, a.account_id
                ),
                now,
            )
            .await?;
            store::raise_alert(
                &mut tx,
                DRIFT_EXTERNAL,
                &key(a),
                &format!(
                    "{who} held {} in {} outside the portal; deleted (owned permission set)",
                    a.permission_set_arn, a.account_id
                ),
                now,
            )
            .await?;
            tx.commit().await?;
            findings.external_revoked += 1;
            continue;
        }
        // Report it: once, while it lasts.
        findings.external += 1;
        drifting.insert(key(a));
        let mut tx = store.begin().await?;
        if store::open_alerts_of(&mut tx, &[DRIFT_EXTERNAL])
            .await?
            .iter()
            .all(|al| al.subject_id != key(a))
        {
            finding(
                &mut tx,
                "reconcile.drift_external",
                user,
                a,
                format!(
                    "assignment of {} in {} to {who} was made outside the portal; reported, \
                     not deleted",
                    a.permission_set_arn, a.account_id
                ),
                now,
            )
            .await?;
            store::raise_alert(
                &mut tx,
                DRIFT_EXTERNAL,
                &key(a),
                &format!(
                    "{who} holds {} in {} outside the portal (no grant covers it)",
                    a.permission_set_arn, a.account_id
                ),
                now,
            )
            .await?;
        }
        tx.commit().await?;
    }

    // Drift that is gone since: resolve its alert.
    {
        let now = clock.now();
        let mut tx = store.begin().await?;
        for al in store::open_alerts_of(&mut tx, &[DRIFT_EXTERNAL]).await? {
            if !drifting.contains(&al.subject_id) {
                store::resolve_alerts(&mut tx, DRIFT_EXTERNAL, &al.subject_id, now).await?;
            }
        }
        tx.commit().await?;
    }

    // Active grants whose assignment AWS does not have.
    let present: HashSet<(String, String, String)> = live
        .iter()
        .filter(|a| a.principal_type == "USER")
        .map(|a| {
            (
                a.account_id.clone(),
                a.permission_set_arn.clone(),
                a.principal_id.clone(),
            )
        })
        .collect();
    let now = clock.now();
    let active = {
        let mut conn = store.conn().await?;
        store::grants_active_since(&mut conn, listed_at, now).await?
    };
    let mut seen_missing = HashSet::new();
    for g in active {
        let Some(principal) = principal_of.get(&g.principal_id) else {
            continue;
        };
        let t = (
            g.account_id.clone(),
            g.permission_set_arn.clone(),
            principal.clone(),
        );
        if present.contains(&t) {
            continue;
        }
        reprovision(store, &g, now).await?;
        if seen_missing.insert(t) {
            findings.missing += 1;
        }
    }
    Ok(findings)
}

/// Puts an active grant whose assignment vanished back in line for provisioning.
async fn reprovision(store: &Store, g: &GrantRow, now: Timestamp) -> Result<()> {
    let mut tx = store.begin().await?;
    store::lock_assignment(&mut tx, g).await?;
    let Some(g) = store::get_grant(&mut tx, &g.access_grant_id).await? else {
        return Ok(());
    };
    if g.status()? != GrantStatus::Active || g.ends_at <= now.millis() {
        return Ok(());
    }
    let next = GrantStatus::Active
        .apply(GrantEvent::AssignmentMissing)
        .context("re-provisioning")?;
    store::update_grant(
        &mut tx,
        &g.access_grant_id,
        store::GrantUpdate::settled(next),
        now,
    )
    .await?;
    // The portal makes it again, so it is the portal's to delete at the end.
    store::set_assignment_origin(&mut tx, &g, store::Origin::Portal, now).await?;
    store::insert_job(&mut tx, JobKind::Provision, &g.access_grant_id, now, now).await?;
    let detail = format!(
        "the assignment of {} in {} was missing from AWS while the grant is active: \
         provisioning it again",
        g.permission_set_arn, g.account_id
    );
    let request = store::get_request(&mut tx, &g.access_request_id).await?;
    lifecycle::audit(
        &mut tx,
        &Actor::system(),
        Event {
            action: "reconcile.assignment_missing",
            person_id: Some(&g.principal_id),
            subject_kind: "grant",
            subject_id: &g.access_grant_id,
            entitlement_id: request.as_ref().map(|r| r.entitlement_id.as_str()),
            detail: detail.clone(),
        },
        now,
    )
    .await?;
    store::raise_alert(&mut tx, DRIFT_MISSING, &g.access_grant_id, &detail, now).await?;
    tx.commit().await?;
    Ok(())
}

async fn finding(
    tx: &mut store::Tx,
    action: &str,
    user: Option<&str>,
    a: &LiveAssignment,
    detail: String,
    now: Timestamp,
) -> Result<()> {
    lifecycle::audit(
        tx,
        &Actor::system(),
        Event {
            action,
            person_id: user,
            subject_kind: "assignment",
            subject_id: &key(a),
            entitlement_id: None,
            detail,
        },
        now,
    )
    .await
}
