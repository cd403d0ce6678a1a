//! Revoking a grant at its end: keep the assignment while another live grant covers it
//! (invariant 3), otherwise delete it and poll until AWS reports SUCCEEDED; never give up
//! (invariant 4).

use super::*;

impl Worker {
    pub(super) async fn deprovision(&self, grant_id: &str, now: Timestamp) -> Result<Outcome> {
        let grant = {
            let mut conn = self.store.conn().await?;
            store::get_grant(&mut conn, grant_id).await?
        };
        let Some(grant) = grant else {
            return Ok(Outcome::Done);
        };
        match grant.status {
            // Its end moved later (an extension): not due yet.
            GrantStatus::Scheduled | GrantStatus::Active if now < grant.ends_at => {
                Ok(Outcome::Again(grant.ends_at))
            }
            GrantStatus::Scheduled => {
                let mut tx = self.store.begin().await?;
                self.settle(
                    &mut tx,
                    &grant,
                    GrantEvent::Discarded,
                    "grant.discarded",
                    "ended before it was provisioned".into(),
                    None,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(Outcome::Done)
            }
            // Let the creation settle first; then this job removes it.
            GrantStatus::Provisioning => Ok(self.poll_again(now)),
            GrantStatus::Active => self.start_deprovisioning(grant, now).await,
            GrantStatus::Deprovisioning => self.poll_deletion(grant, now).await,
            GrantStatus::Revoked | GrantStatus::Failed => Ok(Outcome::Done),
        }
    }

    pub(super) async fn start_deprovisioning(
        &self,
        grant: GrantRow,
        now: Timestamp,
    ) -> Result<Outcome> {
        let Some((mut tx, mut grant)) = self.locked(&grant, GrantStatus::Active).await? else {
            // Moved on since it was read: nothing is deleted on that account; the job
            // runs again at once and the grant's current status decides (fencing rule 5).
            return Ok(Outcome::Again(now));
        };
        if now < grant.ends_at {
            // Extended since it was read (`portal::extensions`, under the same lock):
            // nothing is deleted before the grant's end.
            return Ok(Outcome::Again(grant.ends_at));
        }
        // Invariant 3: keep the assignment while another live grant covers it.
        let others = store::other_live_covering(&mut tx, &grant, now).await?;
        if !others.is_empty() {
            let ids: Vec<&str> = others.iter().map(|g| g.access_grant_id.as_str()).collect();
            self.settle(
                &mut tx,
                &grant,
                GrantEvent::DeletionSucceeded,
                "grant.revoked",
                format!(
                    "{}; assignment kept for grant(s) {}",
                    self.end_reason(&grant),
                    ids.join(", ")
                ),
                None,
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(Outcome::Done);
        }
        // Never delete what the portal did not make, unless it owns the permission set.
        let origin = store::assignment_origin(&mut tx, &grant).await?;
        if origin == Some(store::Origin::External) && !self.upkeep.owns(&grant.permission_set_arn) {
            store::forget_assignment(&mut tx, grant.key()).await?;
            self.settle(
                &mut tx,
                &grant,
                GrantEvent::DeletionSucceeded,
                "grant.revoked",
                format!(
                    "{}; the assignment was made outside the portal and is kept \
                     (aws.owned_permission_sets does not list this permission set)",
                    self.end_reason(&grant)
                ),
                None,
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(Outcome::Done);
        }
        self.start_operation(tx, &mut grant, GrantEvent::DeprovisionStarted, now)
            .await?;
        self.delete_assignment(grant, now).await
    }

    pub(super) async fn delete_assignment(
        &self,
        grant: GrantRow,
        now: Timestamp,
    ) -> Result<Outcome> {
        let a = self.assignment_for(&grant).await?;
        let started = self.provisioner.start_delete(&a).await?;
        let late = grant.ends_at.until(self.clock.now());
        self.metrics.revocation_issued(late.as_secs_f64());
        tracing::info!(
            grant = %grant.access_grant_id,
            worker = %self.id,
            late_ms = late.as_millis() as u64,
            "deletion asked of AWS"
        );
        match started {
            DeleteStart::AlreadyGone => {
                self.revoked(&grant, "the assignment was already gone from AWS", now)
                    .await
            }
            DeleteStart::Started(op) => {
                self.record_started(
                    &grant,
                    GrantStatus::Deprovisioning,
                    "DeleteAccountAssignment",
                    &op,
                    now,
                )
                .await
            }
        }
    }

    pub(super) async fn poll_deletion(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
        let Some(op) = grant.operation_id.clone() else {
            return self.delete_assignment(grant, now).await;
        };
        match self.provisioner.deletion_status(&op).await? {
            OperationStatus::InProgress => {
                self.alert_if_stuck(&grant, now).await?;
                Ok(self.poll_again(now))
            }
            OperationStatus::Succeeded => {
                let how = format!("AWS reported the deletion SUCCEEDED (request {op})");
                self.revoked(&grant, &how, now).await
            }
            OperationStatus::Failed(reason) => {
                // Invariant 4: never give up. Forget the failed operation and start over.
                let mut conn = self.store.conn().await?;
                store::update_grant(
                    &mut conn,
                    &grant.access_grant_id,
                    GrantStatus::Deprovisioning,
                    GrantUpdate::in_flight(GrantStatus::Deprovisioning, None, now)
                        .failure(Some(&reason)),
                    now,
                )
                .await?;
                anyhow::bail!("AWS reported the deletion FAILED: {reason}")
            }
        }
    }

    /// The assignment is gone from AWS (`how` says how the worker knows): the grant is
    /// revoked and the portal forgets the assignment, in one transaction.
    pub(super) async fn revoked(
        &self,
        grant: &GrantRow,
        how: &str,
        now: Timestamp,
    ) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        store::forget_assignment(&mut tx, grant.key()).await?;
        let detail = format!("{}; {how}", self.end_reason(grant));
        self.settle(
            &mut tx,
            grant,
            GrantEvent::DeletionSucceeded,
            "grant.revoked",
            detail,
            None,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Outcome::Done)
    }
}
