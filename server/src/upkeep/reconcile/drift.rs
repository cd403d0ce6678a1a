//! What reconciliation does about each finding: drift made outside the portal (reported,
//! or deleted when the permission set is owned), the portal's leftovers (deleted, guarded
//! against a grant that starts meanwhile), active grants whose assignment is missing
//! (provisioned again), and drift alerts that are no longer true (resolved).

use super::*;

impl Run<'_> {
    pub(super) async fn report_external(
        &mut self,
        a: &LiveAssignment,
        users: &[&str],
    ) -> Result<()> {
        self.findings.external += 1;
        self.touched.insert((DRIFT_EXTERNAL, key(a)));
        let now = self.clock.now();
        let who = who(a, users);
        if self.reported.insert(key(a)) {
            let mut tx = self.store.begin().await?;
            finding(
                &mut tx,
                "reconcile.drift_external",
                users.first().copied(),
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
            tx.commit().await?;
        }
        Ok(())
    }

    /// Deletes an assignment no live grant needs, guarded against a grant that starts
    /// meanwhile (see the module's notes), and waits a little for AWS to settle it.
    pub(super) async fn delete(
        &mut self,
        a: &LiveAssignment,
        users: &[&str],
        why: Why,
    ) -> Result<()> {
        let origin = match why {
            Why::Leftover => Origin::Portal,
            Why::Owned => Origin::External,
        };
        {
            let now = self.clock.now();
            let mut tx = self.store.begin().await?;
            for u in users {
                store::mark_deleting(&mut tx, key_for(a, u), origin, now).await?;
            }
            tx.commit().await?;
        }
        if self.live_grant(users, a).await? {
            self.clear(a, users).await?;
            self.findings.in_sync += 1;
            return Ok(());
        }
        let op = match self.provisioner.start_delete_live(a).await {
            Ok(op) => op,
            Err(e) => {
                self.clear(a, users).await?;
                return Err(e.into());
            }
        };
        let mut status = OperationStatus::InProgress;
        for _ in 0..DELETION_POLLS {
            status = self.provisioner.deletion_status(&op).await?;
            if status != OperationStatus::InProgress {
                break;
            }
            tokio::time::sleep(DELETION_POLL_EVERY).await;
        }
        let who = who(a, users);
        let what = format!("{} in {} to {who}", a.permission_set_arn, a.account_id);
        let (action, kind, detail, alert) = match why {
            Why::Leftover => (
                "reconcile.orphan_revoked",
                DRIFT_ORPHAN,
                format!("the portal's assignment of {what} had no live grant left"),
                format!("Left-over assignment of {what} deleted"),
            ),
            Why::Owned => (
                "reconcile.external_revoked",
                DRIFT_EXTERNAL,
                format!(
                    "assignment of {what} made outside the portal, and the portal owns this \
                     permission set"
                ),
                format!(
                    "{who} held {} in {} outside the portal; deleted (owned permission set)",
                    a.permission_set_arn, a.account_id
                ),
            ),
        };
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let outcome = match &status {
            OperationStatus::Succeeded => {
                for u in users {
                    store::forget_assignment(&mut tx, key_for(a, u)).await?;
                }
                format!("DeleteAccountAssignment SUCCEEDED (request {op})")
            }
            OperationStatus::Failed(reason) => {
                for u in users {
                    store::clear_deleting(&mut tx, key_for(a, u)).await?;
                }
                format!(
                    "DeleteAccountAssignment FAILED (request {op}): {reason}; tried again next run"
                )
            }
            // Left flagged: grants wait for it, and the next run looks again.
            OperationStatus::InProgress => {
                format!("DeleteAccountAssignment still IN_PROGRESS (request {op})")
            }
        };
        finding(
            &mut tx,
            action,
            users.first().copied(),
            a,
            format!("{detail}: {outcome}"),
            now,
        )
        .await?;
        store::raise_alert(&mut tx, kind, &key(a), &format!("{alert}: {outcome}"), now).await?;
        tx.commit().await?;
        self.touched.insert((kind, key(a)));
        match (why, &status) {
            (_, OperationStatus::Failed(reason)) => {
                anyhow::bail!("the deletion FAILED: {reason}")
            }
            (Why::Leftover, _) => self.findings.orphans_revoked += 1,
            (Why::Owned, _) => self.findings.external_revoked += 1,
        }
        Ok(())
    }

    pub(super) async fn clear(&self, a: &LiveAssignment, users: &[&str]) -> Result<()> {
        let mut tx = self.store.begin().await?;
        for u in users {
            store::clear_deleting(&mut tx, key_for(a, u)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Active grants whose assignment AWS does not list: provisioned again.
    pub(super) async fn find_missing(
        &mut self,
        principal_of: &HashMap<String, String>,
        live: &[LiveAssignment],
        listed_at: Timestamp,
    ) -> Result<()> {
        let present: HashSet<Triple> = live
            .iter()
            .filter(|a| a.principal_type == "USER")
            .map(|a| triple(&a.account_id, &a.permission_set_arn, &a.principal_id))
            .collect();
        let now = self.clock.now();
        let before = listed_at.minus(LISTING_MARGIN);
        let active = {
            let mut conn = self.store.conn().await?;
            store::grants_active_since(&mut conn, before, now).await?
        };
        let mut seen = HashSet::new();
        for g in active {
            let Some(principal) = principal_of.get(&g.principal_id) else {
                continue;
            };
            let t = triple(&g.account_id, &g.permission_set_arn, principal);
            if present.contains(&t) {
                continue;
            }
            if reprovision(self.store, &g, now).await? {
                self.touched
                    .insert((DRIFT_MISSING, g.access_grant_id.clone()));
                if seen.insert(t) {
                    self.findings.missing += 1;
                }
            }
        }
        Ok(())
    }

    /// Resolves the drift alerts this run did not raise or find still true.
    pub(super) async fn resolve_untouched(&self) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        for al in store::open_alerts_of(&mut tx, &AlertKind::DRIFT).await? {
            let kind = al.kind;
            if !self.touched.contains(&(kind, al.subject_id.clone())) {
                store::resolve_alerts(&mut tx, kind, &al.subject_id, now).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

pub(super) fn who(a: &LiveAssignment, users: &[&str]) -> String {
    match users {
        [] => format!("{} {}", a.principal_type.to_lowercase(), a.principal_id),
        _ => users.join(", "),
    }
}

/// Puts an active grant whose assignment vanished back in line for provisioning. Returns
/// whether it did (the grant may have changed since it was read).
pub(super) async fn reprovision(store: &Store, g: &GrantRow, now: Timestamp) -> Result<bool> {
    let mut tx = store.begin().await?;
    store::lock_assignment(&mut tx, g).await?;
    let Some(g) = store::get_grant(&mut tx, &g.access_grant_id).await? else {
        return Ok(false);
    };
    if g.status != GrantStatus::Active || g.ends_at <= now {
        return Ok(false);
    }
    let next = GrantStatus::Active
        .apply(GrantEvent::AssignmentMissing)
        .context("re-provisioning")?;
    store::update_grant(
        &mut tx,
        &g.access_grant_id,
        GrantStatus::Active,
        store::GrantUpdate::settled(next),
        now,
    )
    .await?;
    // Activated again, it gets its "ends soon" reminder again.
    store::delete_jobs_for(&mut tx, &g.access_grant_id, JobKind::EndingSoon).await?;
    store::insert_job(&mut tx, JobKind::Provision, &g.access_grant_id, now, now).await?;
    let detail = format!(
        "the assignment of {} in {} was missing from AWS while the grant is active: \
         provisioning it again",
        g.permission_set_arn, g.account_id
    );
    let request = store::get_request(&mut tx, &g.access_request_id).await?;
    audit::audit(
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
    Ok(true)
}

pub(super) async fn finding(
    tx: &mut store::Tx,
    action: &str,
    user: Option<&str>,
    a: &LiveAssignment,
    detail: String,
    now: Timestamp,
) -> Result<()> {
    audit::audit(
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
