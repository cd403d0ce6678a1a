//! Reconciliation: compares the assignments AWS holds for the permission sets and accounts
//! the portal manages with the live grants, and mends or reports every difference.
//!
//! - An assignment the portal created whose grants have all ended is deleted.
//! - An active grant whose assignment is missing is provisioned again, and reported.
//! - An assignment made outside the portal is reported as drift (an alert on the admin
//!   page), and deleted only when `aws.owned_permission_sets` lists its permission set.
//!
//! Every finding is audited. Its alert stays open while the finding lasts, and for one
//! run after a deletion, so that admins see it on the AWS page.
//!
//! Deleting races with a grant about to be provisioned on the same assignment. Both sides
//! write before they read: reconciliation flags the assignment as being deleted (commits)
//! and only then looks for live grants one last time; a grant exists (committed) before
//! its worker reads that flag, and waits while it is set. Either reconciliation sees the
//! grant and keeps the assignment, or the worker sees the flag and waits.

use crate::audit::{self, Actor, Event};
use crate::clock::Clock;
use crate::config::Upkeep;
use crate::grants;
use crate::provisioner::{Assignment, Backstop, LiveAssignment, OperationStatus, Provisioner};
use crate::store::DELETING_FOR_AT_MOST;
use crate::store::{self, AlertKind, GrantRow, JobKind, Origin, Store};
use anyhow::{Context, Result};
use app::domain::{GrantEvent, GrantStatus, Timestamp};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

mod drift;
mod schedules;

pub use schedules::ScheduleFindings;

/// The alert kinds reconciliation raises (the drift report on the admin page).
const DRIFT_EXTERNAL: AlertKind = AlertKind::DriftExternal;
const DRIFT_MISSING: AlertKind = AlertKind::DriftMissing;
const DRIFT_ORPHAN: AlertKind = AlertKind::DriftOrphan;

/// How long a run waits for one deletion to settle before leaving it to AWS.
const DELETION_POLLS: u32 = 20;
const DELETION_POLL_EVERY: Duration = Duration::from_millis(500);
/// A grant that became active this close to the listing is not judged against it.
const LISTING_MARGIN: Duration = Duration::from_secs(60);

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
    /// Deletions left for a later run: some people could not be looked up in AWS.
    pub deletions_held: usize,
    /// What went wrong with single assignments (the run goes on).
    pub errors: Vec<String>,
    /// The backstop's schedules against the live grants, when the backstop is on.
    pub backstop: Option<ScheduleFindings>,
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
        )?;
        if self.deletions_held > 0 {
            write!(
                f,
                "; {} deletions held back because some people could not be looked up in AWS",
                self.deletions_held
            )?;
        }
        if let Some(b) = &self.backstop {
            write!(f, "; {b}")?;
        }
        if !self.errors.is_empty() {
            write!(
                f,
                "; {} errors: {}",
                self.errors.len(),
                self.errors.join("; ")
            )?;
        }
        Ok(())
    }
}

/// Runs one reconciliation, recorded in `maintenance_run` and audited. A run with errors on
/// single assignments still does the rest, and is recorded as failed.
pub async fn run(
    store: &Store,
    provisioner: &dyn Provisioner,
    backstop: Option<&dyn Backstop>,
    clock: &dyn Clock,
    upkeep: &Upkeep,
    wake: &Arc<Notify>,
) -> Result<Findings> {
    let run_id = {
        let mut conn = store.conn().await?;
        store::start_run(&mut conn, JobKind::Reconcile, clock.now()).await?
    };
    let outcome = Run {
        store,
        provisioner,
        clock,
        upkeep,
        run_id: &run_id,
        findings: Findings::default(),
        touched: HashSet::new(),
        reported: HashSet::new(),
    }
    .reconcile(backstop)
    .await;
    let now = clock.now();
    let (ok, summary) = match &outcome {
        Ok(f) => (f.errors.is_empty(), f.to_string()),
        Err(e) => (false, format!("{e:#}")),
    };
    let action = if ok {
        "reconcile.finished"
    } else {
        "reconcile.failed"
    };
    audit::finish_run(store, &run_id, action, ok, &summary, now).await?;
    if matches!(&outcome, Ok(f) if f.missing > 0 || f.backstop.as_ref().is_some_and(|b| b.repaired > 0))
    {
        wake.notify_one();
    }
    match outcome {
        Ok(f) if f.errors.is_empty() => Ok(f),
        Ok(_) => anyhow::bail!("reconciliation finished with errors: {summary}"),
        Err(e) => Err(e),
    }
}

/// One key per assignment, for alerts and comparisons.
fn key(a: &LiveAssignment) -> String {
    format!(
        "{}|{}|{}|{}",
        a.account_id, a.permission_set_arn, a.principal_type, a.principal_id
    )
}

/// The portal's key for `user`'s share of an assignment AWS listed.
fn key_for<'a>(a: &'a LiveAssignment, user: &'a str) -> store::AssignmentKey<'a> {
    store::AssignmentKey {
        account_id: &a.account_id,
        permission_set_arn: &a.permission_set_arn,
        user_id: user,
    }
}

type Triple = (String, String, String);

fn triple(account_id: &str, permission_set_arn: &str, user: &str) -> Triple {
    (
        account_id.to_owned(),
        permission_set_arn.to_owned(),
        user.to_owned(),
    )
}

struct Run<'a> {
    store: &'a Store,
    provisioner: &'a dyn Provisioner,
    clock: &'a dyn Clock,
    upkeep: &'a Upkeep,
    run_id: &'a str,
    findings: Findings,
    /// The alerts this run raised or found still true: the others are resolved at the end.
    touched: HashSet<(AlertKind, String)>,
    /// Assignments made outside the portal with an open alert (reported once while they last).
    reported: HashSet<String>,
}

/// Why reconciliation deletes an assignment.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Why {
    /// The portal made it and no live grant needs it.
    Leftover,
    /// Made outside the portal, for a permission set the portal owns.
    Owned,
}

impl Run<'_> {
    async fn reconcile(mut self, backstop: Option<&dyn Backstop>) -> Result<Findings> {
        let now = self.clock.now();
        let mut conn = self.store.conn().await?;
        let grants = store::live_grants(&mut conn, None).await?;
        let managed = store::managed_assignments(&mut conn).await?;
        let pairs = grants::pairs_of(&mut conn, &grants, &managed).await?;
        let users: HashMap<String, app::domain::Principal> = store::all_users(&mut conn)
            .await?
            .into_iter()
            .map(|u| (u.user_id.clone(), u))
            .collect();
        self.findings.pairs = pairs.len();
        self.reported = store::open_alerts_of(&mut conn, &[DRIFT_EXTERNAL])
            .await?
            .into_iter()
            .map(|al| al.subject_id)
            .collect();
        drop(conn); // not held through the AWS calls below

        // The provisioner's id of every person concerned, and back (several portal users
        // can share one, e.g. the same email from two issuers).
        let mut principal_of: HashMap<String, String> = HashMap::new();
        let mut lookups_failed = 0;
        let people: BTreeSet<&str> = grants
            .iter()
            .map(|g| g.principal_id.as_str())
            .chain(managed.iter().map(|m| m.user_id.as_str()))
            .collect();
        for user_id in people {
            let Some(user) = users.get(user_id) else {
                continue;
            };
            let probe = Assignment {
                account_id: String::new(),
                permission_set_arn: String::new(),
                user_id: user_id.to_owned(),
                user_name: user.email.clone(),
                principal_id: None,
            };
            match self.provisioner.principal_of(&probe).await {
                Ok(p) => {
                    principal_of.insert(user_id.to_owned(), p);
                }
                Err(e) => {
                    lookups_failed += 1;
                    tracing::warn!(user = user_id, error = %e, "cannot look a user up in AWS");
                }
            }
        }
        let mut users_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for (u, p) in &principal_of {
            users_of.entry(p.as_str()).or_default().push(u.as_str());
        }

        // What AWS holds.
        let listed_at = self.clock.now();
        let mut live: Vec<LiveAssignment> = Vec::new();
        for (i, (account, ps)) in pairs.iter().enumerate() {
            live.extend(self.provisioner.assignments_at(account, ps).await?);
            if i % 10 == 9 {
                let mut conn = self.store.conn().await?;
                let text = format!("listed {} of {} pairs", i + 1, pairs.len());
                store::run_progress(&mut conn, self.run_id, &text).await?;
            }
        }
        self.findings.assignments = live.len();

        let covering: HashSet<Triple> = grants
            .iter()
            .filter(|g| {
                matches!(
                    g.status,
                    GrantStatus::Provisioning | GrantStatus::Active | GrantStatus::Deprovisioning
                )
            })
            .map(|g| triple(&g.account_id, &g.permission_set_arn, &g.principal_id))
            .collect();
        let origins: HashMap<Triple, Origin> = managed
            .iter()
            .map(|m| {
                (
                    triple(&m.account_id, &m.permission_set_arn, &m.user_id),
                    m.origin(),
                )
            })
            .collect();

        let mut present: HashSet<Triple> = HashSet::new();
        for a in &live {
            let users: Vec<&str> = if a.principal_type == "USER" {
                users_of
                    .get(a.principal_id.as_str())
                    .cloned()
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            for u in &users {
                present.insert(triple(&a.account_id, &a.permission_set_arn, u));
            }
            let triples: Vec<Triple> = users
                .iter()
                .map(|u| triple(&a.account_id, &a.permission_set_arn, u))
                .collect();
            if triples.iter().any(|t| covering.contains(t)) || self.live_grant(&users, a).await? {
                self.findings.in_sync += 1;
                continue;
            }
            let leftover = triples
                .iter()
                .any(|t| origins.get(t) == Some(&Origin::Portal));
            let why = if leftover {
                Why::Leftover
            } else if self.upkeep.owns(&a.permission_set_arn) {
                Why::Owned
            } else {
                self.report_external(a, &users).await?;
                continue;
            };
            if lookups_failed > 0 {
                // Someone this assignment may belong to could not be looked up: a live
                // grant of theirs could need it. Report, delete next time.
                self.findings.deletions_held += 1;
                if why == Why::Owned {
                    self.report_external(a, &users).await?;
                }
                continue;
            }
            match self.delete(a, &users, why).await {
                Ok(()) => {}
                Err(e) => self.findings.errors.push(format!("{}: {e:#}", key(a))),
            }
        }

        // The portal's records of assignments AWS no longer has, that no grant holds.
        for m in &managed {
            let t = triple(&m.account_id, &m.permission_set_arn, &m.user_id);
            let busy = m
                .deleting_since
                .is_some_and(|s| now.millis() - s < DELETING_FOR_AT_MOST.as_millis() as i64);
            if principal_of.contains_key(&m.user_id)
                && !present.contains(&t)
                && !busy
                && !grants
                    .iter()
                    .any(|g| triple(&g.account_id, &g.permission_set_arn, &g.principal_id) == t)
            {
                let mut conn = self.store.conn().await?;
                store::forget_assignment(&mut conn, m.key()).await?;
            }
        }

        self.find_missing(&principal_of, &live, listed_at).await?;
        if let Some(b) = backstop {
            self.schedules(b).await?;
        }
        self.resolve_untouched().await?;
        Ok(self.findings)
    }

    /// Whether any of these people has a grant on this assignment right now.
    async fn live_grant(&self, users: &[&str], a: &LiveAssignment) -> Result<bool> {
        let mut conn = self.store.conn().await?;
        for u in users {
            if store::has_live_grant(&mut conn, &a.account_id, &a.permission_set_arn, u).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
