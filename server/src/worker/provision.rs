//! Provisioning a grant: eligibility again (invariant 5), share or create the assignment,
//! poll AWS until it reports SUCCEEDED (invariant 1), alert when an operation is stuck.

use super::*;

impl Worker {
    pub(super) async fn assignment_for(&self, g: &GrantRow) -> Result<Assignment> {
        let mut conn = self.store.conn().await?;
        let user = store::get_user(&mut conn, &g.principal_id)
            .await?
            .with_context(|| format!("grant {} has no user", g.access_grant_id))?;
        Ok(Assignment {
            account_id: g.account_id.clone(),
            permission_set_arn: g.permission_set_arn.clone(),
            user_id: g.principal_id.clone(),
            user_name: user.email,
            principal_id: g.aws_principal_id.clone(),
        })
    }

    pub(super) async fn provision(&self, grant_id: &str, now: Timestamp) -> Result<Outcome> {
        let grant = {
            let mut conn = self.store.conn().await?;
            store::get_grant(&mut conn, grant_id).await?
        };
        let Some(grant) = grant else {
            return Ok(Outcome::Done);
        };
        match grant.status {
            GrantStatus::Scheduled => self.start_provisioning(grant, now).await,
            GrantStatus::Provisioning => self.poll_creation(grant, now).await,
            // Active, ending or over: nothing left to provision.
            _ => Ok(Outcome::Done),
        }
    }

    pub(super) async fn start_provisioning(
        &self,
        grant: GrantRow,
        now: Timestamp,
    ) -> Result<Outcome> {
        let Some((mut tx, mut grant)) = self.locked(&grant, GrantStatus::Scheduled).await? else {
            // Moved on since it was read: nothing is deleted on that account; the job
            // runs again at once and the grant's current status decides (fencing rule 5).
            return Ok(Outcome::Again(now));
        };
        if now >= grant.ends_at {
            self.settle(
                &mut tx,
                &grant,
                GrantEvent::Discarded,
                "grant.expired_unprovisioned",
                "its time was over before it could be provisioned".into(),
                None,
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(Outcome::Done);
        }
        // Invariant 5: eligibility again at grant time, against the latest claims.
        let request = store::get_request(&mut tx, &grant.access_request_id)
            .await?
            .context("grant without request")?;
        let requester = store::get_user(&mut tx, &request.requester_id)
            .await?
            .context("request without user")?;
        let entitlement = store::get_entitlement(&mut tx, &request.entitlement_id)
            .await?
            .context("request without entitlement")?;
        if let Some(reason) = entitlement.no_longer_eligible(&requester) {
            self.settle(
                &mut tx,
                &grant,
                GrantEvent::CreationFailed,
                "grant.refused_ineligible",
                reason.clone(),
                Some(&reason),
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(Outcome::Done);
        }
        // Wait while a delete of the same assignment is decided or in flight.
        if !store::siblings_in(&mut tx, &grant, &[GrantStatus::Deprovisioning])
            .await?
            .is_empty()
        {
            tx.commit().await?;
            return Ok(self.poll_again(now));
        }
        // Another live grant already holds the assignment: share it (invariant 3's other half).
        let holders = store::siblings_in(&mut tx, &grant, &[GrantStatus::Active]).await?;
        if let Some(holder) = holders.first() {
            let detail = format!(
                "assignment already in place (shared with grant {})",
                holder.access_grant_id
            );
            self.settle(
                &mut tx,
                &grant,
                GrantEvent::CreationSucceeded,
                "grant.activated",
                detail,
                None,
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(Outcome::Done);
        }
        if !store::siblings_in(&mut tx, &grant, &[GrantStatus::Provisioning])
            .await?
            .is_empty()
        {
            // Another grant is creating it right now: share once it exists.
            tx.commit().await?;
            return Ok(self.poll_again(now));
        }
        // Claim the creation before calling AWS, so a crash after the call resumes it.
        self.start_operation(tx, &mut grant, GrantEvent::ProvisionStarted, now)
            .await?;
        self.create_assignment(grant, now).await
    }

    /// Starts the AWS creation for a grant in `provisioning` without an operation id.
    pub(super) async fn create_assignment(
        &self,
        grant: GrantRow,
        now: Timestamp,
    ) -> Result<Outcome> {
        let mut a = self.assignment_for(&grant).await?;
        // AWS may have been down while the job waited: never create after the end.
        if now >= grant.ends_at {
            return self.time_over(grant, now).await;
        }
        // No slot for one more creation in flight: try again later, without asking AWS.
        // The count is the deployment's, from the database: a creation this replica
        // started and another polled to its end no longer holds a slot here.
        let in_flight = {
            let mut conn = self.store.conn().await?;
            store::creations_in_flight(&mut conn, &grant.access_grant_id).await?
        };
        self.provisioner.creation_slot_free(in_flight)?;
        // The principal is resolved once and kept on the grant: the revocation deletes
        // this very principal's assignment, without a lookup by email.
        if a.principal_id.is_none() {
            match self.provisioner.principal_of(&a).await {
                Ok(principal) => {
                    let mut conn = self.store.conn().await?;
                    store::set_grant_principal(&mut conn, &grant.access_grant_id, &principal)
                        .await?;
                    a.principal_id = Some(principal);
                }
                Err(ProvisionError::Permanent(why)) => {
                    return self.fail_for_good(&grant, "grant.failed", &why, now).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let known = {
            let mut conn = self.store.conn().await?;
            store::managed_assignment(&mut conn, grant.key()).await?
        };
        let origin = known.as_ref().map(store::ManagedRow::origin);
        let deleting = known.and_then(|m| m.deleting_since);
        // Reconciliation is deleting this very assignment: wait until it is gone rather
        // than count on it (a flag older than the limit is from a run that died).
        if deleting.is_some_and(|since| {
            now.millis() - since < store::DELETING_FOR_AT_MOST.as_millis() as i64
        }) {
            return Ok(self.poll_again(now));
        }
        // AWS may keep duplicates: never create what is already there (a crash between
        // our create call and recording it lands here, and so does an assignment made by
        // hand). The look costs a call, the third of a creation. (Skipping it for owned
        // permission sets left a hand-made duplicate behind in `aws_reconcile.rs`.)
        if self.provisioner.assignment_exists(&a).await? {
            let mut tx = self.store.begin().await?;
            let detail = if origin == Some(store::Origin::Portal) {
                "assignment already existed in AWS (the portal's own, from an earlier attempt)"
                    .to_owned()
            } else {
                store::set_assignment_origin(&mut tx, &grant, store::Origin::External, now).await?;
                format!(
                    "assignment already existed in AWS, made outside the portal: {}",
                    if self.upkeep.owns(&grant.permission_set_arn) {
                        "the portal owns this permission set, so it is deleted when the last grant ends"
                    } else {
                        "it is kept when the grant ends"
                    }
                )
            };
            self.settle(
                &mut tx,
                &grant,
                GrantEvent::CreationSucceeded,
                "grant.activated",
                detail,
                None,
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(Outcome::Done);
        }
        // The portal's own from here on: recorded before the call, so that a crash after
        // it still counts the assignment as the portal's.
        if origin != Some(store::Origin::Portal) {
            let mut conn = self.store.conn().await?;
            store::set_assignment_origin(&mut conn, &grant, store::Origin::Portal, now).await?;
        }
        // The calls above take time (the budget, AWS's latency, retries): the end is
        // checked again on the clock right before the creation is asked for. (With the
        // step's start time only, the chaos harness saw a creation 1.5 s after the end.)
        let now = self.clock.now();
        if now >= grant.ends_at {
            return self.time_over(grant, now).await;
        }
        // The same end on this process's monotonic clock, for the provisioner to check
        // again after its wait for a call slot.
        let not_after = tokio::time::Instant::now() + now.until(grant.ends_at);
        let op = match self.provisioner.start_create(&a, not_after).await {
            Ok(op) => op,
            // The budget's next slot came after the end: nothing was asked.
            Err(ProvisionError::TooLate) => return self.time_over(grant, self.clock.now()).await,
            // Refused for good (access denied, unknown principal or permission set):
            // retrying cannot help; the grant fails with AWS's reason.
            Err(ProvisionError::Permanent(why)) => {
                return self.fail_for_good(&grant, "grant.failed", &why, now).await;
            }
            Err(e) => return Err(e.into()),
        };
        self.record_started(
            &grant,
            GrantStatus::Provisioning,
            "CreateAccountAssignment",
            &op,
            now,
        )
        .await
    }

    /// The grant's time is over before its creation was asked for in this attempt. The
    /// principal is kept on the grant before any creation call: with it set (as read at
    /// the start of this step), an earlier attempt may have asked AWS and lost the reply.
    async fn time_over(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
        if grant.aws_principal_id.is_some() {
            return self.withdraw_creation(grant, now).await;
        }
        let why = "its time was over before AWS could be asked to create the assignment";
        self.fail_for_good(&grant, "grant.expired_unprovisioned", why, now)
            .await
    }

    /// The time of a grant in `provisioning` ran out while an earlier attempt may have
    /// asked AWS for its creation and lost the reply (a kill, a crash or a database outage
    /// between the call and its record). AWS is asked to delete it: when there was nothing,
    /// the grant fails as one whose time was over; when there was, the deletion goes on as
    /// a revocation does and the grant ends revoked. (Failing it at once, as this did,
    /// forgot an assignment that existed and left the access in place: the chaos harness
    /// found one left in AWS.) A live grant covering the same assignment keeps it
    /// (invariant 3).
    async fn withdraw_creation(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
        let why = "its time was over before AWS could be asked to create the assignment";
        let Some((mut tx, grant)) = self.locked(&grant, GrantStatus::Provisioning).await? else {
            return Ok(Outcome::Again(now));
        };
        let others = store::other_live_covering(&mut tx, &grant, now).await?;
        drop(tx);
        if !others.is_empty() {
            return self
                .fail_for_good(&grant, "grant.expired_unprovisioned", why, now)
                .await;
        }
        let a = self.assignment_for(&grant).await?;
        match self.provisioner.start_delete(&a).await? {
            DeleteStart::AlreadyGone => {
                self.fail_for_good(&grant, "grant.expired_unprovisioned", why, now)
                    .await
            }
            DeleteStart::Started(op) => {
                let Some((tx, mut grant)) = self.locked(&grant, GrantStatus::Provisioning).await?
                else {
                    return Ok(Outcome::Again(now));
                };
                self.start_operation(tx, &mut grant, GrantEvent::DeprovisionStarted, now)
                    .await?;
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

    /// Records the AWS request id of an operation just started, so that a worker that
    /// restarts resumes polling the same operation instead of starting another.
    pub(super) async fn record_started(
        &self,
        grant: &GrantRow,
        status: GrantStatus,
        api: &str,
        op: &str,
        now: Timestamp,
    ) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        store::update_grant(
            &mut tx,
            &grant.access_grant_id,
            status,
            GrantUpdate::in_flight(status, Some(op), now),
            now,
        )
        .await?;
        audit::audit(
            &mut tx,
            &Actor::system(),
            Event {
                action: &format!("grant.{status}"),
                person_id: Some(&grant.principal_id),
                subject_kind: "grant",
                subject_id: &grant.access_grant_id,
                entitlement_id: None,
                detail: format!(
                    "{api} {} on {} started (request {op})",
                    grant.permission_set_arn, grant.account_id
                ),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(self.poll_again(now))
    }

    pub(super) async fn poll_creation(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
        let Some(op) = grant.operation_id.clone() else {
            return self.create_assignment(grant, now).await;
        };
        match self.provisioner.creation_status(&op).await? {
            OperationStatus::InProgress => {
                self.alert_if_stuck(&grant, now).await?;
                Ok(self.poll_again(now))
            }
            OperationStatus::Succeeded => {
                let mut tx = self.store.begin().await?;
                self.settle(
                    &mut tx,
                    &grant,
                    GrantEvent::CreationSucceeded,
                    "grant.activated",
                    format!("AWS reported the creation SUCCEEDED (request {op})"),
                    None,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(Outcome::Done)
            }
            OperationStatus::Failed(reason) => {
                let message = format!("AWS reported the creation FAILED: {reason}");
                self.fail_for_good(&grant, "grant.failed", &message, now)
                    .await
            }
        }
    }

    pub(super) async fn alert_if_stuck(&self, grant: &GrantRow, now: Timestamp) -> Result<()> {
        let started = grant.operation_started_at.unwrap_or(now);
        let stuck = Duration::from_secs(self.settings.stuck_after_secs);
        let op = grant
            .operation_id
            .as_deref()
            .unwrap_or(&grant.access_grant_id);
        if started.until(now) < stuck {
            return Ok(());
        }
        // Once per operation, however late the worker polls.
        let mut conn = self.store.conn().await?;
        if !store::alert_exists(&mut conn, store::AlertKind::OperationStuck, op).await? {
            store::raise_alert(
                &mut conn,
                store::AlertKind::OperationStuck,
                op,
                &format!(
                    "AWS operation {} for grant {} is still IN_PROGRESS after {}s",
                    grant.operation_id.as_deref().unwrap_or("?"),
                    grant.access_grant_id,
                    stuck.as_secs()
                ),
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// Provisioning that cannot succeed (AWS refused it for good, or its time is over):
    /// the grant fails with the reason, the requester and the admins are told (`settle`),
    /// and an alert stays until an admin looks. Nothing was made: unless another grant
    /// holds the assignment, the portal forgets it (a stale record would make it delete
    /// one someone else makes later).
    pub(super) async fn fail_for_good(
        &self,
        grant: &GrantRow,
        action: &str,
        why: &str,
        now: Timestamp,
    ) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        store::lock_assignment(&mut tx, grant).await?;
        let Some(grant) = store::get_grant(&mut tx, &grant.access_grant_id).await? else {
            return Ok(Outcome::Done);
        };
        let live = [
            GrantStatus::Provisioning,
            GrantStatus::Active,
            GrantStatus::Deprovisioning,
        ];
        if store::siblings_in(&mut tx, &grant, &live).await?.is_empty() {
            store::forget_assignment(&mut tx, grant.key()).await?;
        }
        self.settle(
            &mut tx,
            &grant,
            GrantEvent::CreationFailed,
            action,
            why.to_owned(),
            Some(why),
            now,
        )
        .await?;
        store::raise_alert(
            &mut tx,
            store::AlertKind::ProvisioningFailed,
            &grant.access_grant_id,
            why,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Outcome::Done)
    }

    /// Moves the grant into the AWS operation `event` starts (provisioning or
    /// deprovisioning, no operation id yet) and commits, before AWS is asked: a crash
    /// after the call then resumes the operation instead of forgetting it.
    pub(super) async fn start_operation(
        &self,
        mut tx: store::Tx,
        grant: &mut GrantRow,
        event: GrantEvent,
        now: Timestamp,
    ) -> Result<()> {
        let next = grant.status.apply(event)?;
        store::update_grant(
            &mut tx,
            &grant.access_grant_id,
            grant.status,
            GrantUpdate::in_flight(next, None, now),
            now,
        )
        .await?;
        tx.commit().await?;
        grant.status = next;
        Ok(())
    }

    /// Locks every grant of `grant`'s assignment for the rest of a transaction and reads
    /// `grant` again under that lock: `None` (and no transaction) when it is no longer in
    /// `expected`, so that only one worker decides what happens to an assignment.
    pub(super) async fn locked(
        &self,
        grant: &GrantRow,
        expected: GrantStatus,
    ) -> Result<Option<(store::Tx, GrantRow)>> {
        let mut tx = self.store.begin().await?;
        store::lock_assignment(&mut tx, grant).await?;
        Ok(store::get_grant(&mut tx, &grant.access_grant_id)
            .await?
            .filter(|g| g.status == expected)
            .map(|g| (tx, g)))
    }
}
