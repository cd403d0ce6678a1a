//! Reconciliation of the AWS-side backstop (issue #15, `aws.backstop`): the schedules the
//! backstop holds against the live grants.
//!
//! - A live grant whose assignment has no schedule gets one: a `sync_backstop` job is
//!   queued for it (unless one is already waiting), reported and audited.
//! - A schedule that no live grant needs (its grants ended, and its deletion was lost) is
//!   deleted and audited.
//!
//! The schedules are listed first and the grants read after: a schedule in the listing was
//! set after its grant became active, so that grant is in the read, and a live grant's
//! schedule is never taken for a leftover. (A grant that becomes active after the read, on
//! an assignment whose old schedule is being deleted here, loses the schedule its sync just
//! moved; the next run sets it again.) Whether a schedule fires at the right time is not
//! checked: listing does not say, and each grant change moves it.

use super::Run;
use crate::audit::{self, Actor, Event};
use crate::provisioner::Backstop;
use crate::store::{self, JobKind};
use anyhow::Result;
use app::domain::GrantStatus;
use std::collections::{BTreeMap, BTreeSet};

/// What the backstop part of a run found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleFindings {
    /// Schedules the backstop holds.
    pub schedules: usize,
    /// Live assignments without one: a sync queued.
    pub repaired: usize,
    /// Schedules no live grant needs: deleted.
    pub removed: usize,
}

impl std::fmt::Display for ScheduleFindings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backstop: {} schedules, {} missing for live grants set again, {} left over removed",
            self.schedules, self.repaired, self.removed
        )
    }
}

impl Run<'_> {
    pub(super) async fn schedules(&mut self, backstop: &dyn Backstop) -> Result<()> {
        let listed: BTreeSet<String> = backstop.schedule_names().await?.into_iter().collect();
        let now = self.clock.now();
        let mut conn = self.store.conn().await?;
        let grants = store::live_grants(&mut conn, None).await?;
        drop(conn);
        // Every assignment a live grant holds (or is about to hold, or is giving up), and
        // the active grants of each: those need a schedule.
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let mut active: BTreeMap<String, Vec<&store::GrantRow>> = BTreeMap::new();
        for g in &grants {
            let name = crate::provisioner::schedule_name(
                &g.account_id,
                &g.permission_set_arn,
                &g.principal_id,
            );
            if matches!(
                g.status,
                GrantStatus::Provisioning | GrantStatus::Active | GrantStatus::Deprovisioning
            ) {
                keep.insert(name.clone());
            }
            if g.status == GrantStatus::Active {
                active.entry(name).or_default().push(g);
            }
        }
        let mut found = ScheduleFindings {
            schedules: listed.len(),
            ..Default::default()
        };
        for (name, holders) in &active {
            if listed.contains(name) {
                continue;
            }
            let mut tx = self.store.begin().await?;
            let mut waiting = false;
            for g in holders {
                waiting |= store::jobs_for(&mut tx, &g.access_grant_id)
                    .await?
                    .iter()
                    .any(|j| j.kind == JobKind::SyncBackstop);
            }
            if waiting {
                continue; // its sync is on its way
            }
            let g = holders[0];
            store::insert_job(&mut tx, JobKind::SyncBackstop, &g.access_grant_id, now, now).await?;
            audit::audit(
                &mut tx,
                &Actor::system(),
                Event {
                    action: "reconcile.backstop_missing",
                    person_id: Some(&g.principal_id),
                    subject_kind: "grant",
                    subject_id: &g.access_grant_id,
                    entitlement_id: None,
                    detail: format!(
                        "the backstop schedule {name} of an active grant was missing: setting \
                         it again"
                    ),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            found.repaired += 1;
        }
        for name in listed.difference(&keep) {
            if let Err(e) = backstop.remove(name).await {
                self.findings
                    .errors
                    .push(format!("backstop schedule {name}: {e}"));
                continue;
            }
            let mut tx = self.store.begin().await?;
            audit::audit(
                &mut tx,
                &Actor::system(),
                Event {
                    action: "reconcile.backstop_orphan",
                    person_id: None,
                    subject_kind: "schedule",
                    subject_id: name,
                    entitlement_id: None,
                    detail: format!(
                        "the backstop schedule {name} protected no live grant: deleted"
                    ),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            found.removed += 1;
        }
        self.findings.backstop = Some(found);
        Ok(())
    }
}
