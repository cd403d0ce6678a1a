//! Keeping the AWS-side backstop in step (issue #15, `aws.backstop`): after a grant turns
//! active or ends, its assignment's one schedule is moved to the latest end among the
//! assignment's live grants plus the grace, or deleted when none is live. One job kind,
//! `sync_backstop`, per change; it reads the state afresh, so running it twice, late or
//! out of order is harmless. A failure retries with backoff and alerts the admins after
//! `worker.alert_after_failures` ("the backstop is missing for grant …"); the grant itself
//! stays as it is.

use super::*;

impl Worker {
    /// Queues a backstop sync for this grant in the caller's transaction (when the
    /// backstop is on).
    pub(super) async fn queue_backstop(
        &self,
        tx: &mut store::Tx,
        grant_id: &str,
        now: Timestamp,
    ) -> Result<()> {
        if self.backstop.is_some() {
            store::insert_job(tx, JobKind::SyncBackstop, grant_id, now, now).await?;
        }
        Ok(())
    }

    pub(super) async fn sync_backstop(&self, grant_id: &str, now: Timestamp) -> Result<Outcome> {
        let Some((backstop, grace)) = &self.backstop else {
            return Ok(Outcome::Done);
        };
        let (grant, live) = {
            let mut conn = self.store.conn().await?;
            let Some(grant) = store::get_grant(&mut conn, grant_id).await? else {
                return Ok(Outcome::Done);
            };
            let live = [GrantStatus::Active, GrantStatus::Provisioning];
            let mut covering = store::siblings_in(&mut conn, &grant, &live).await?;
            if live.contains(&grant.status) {
                covering.push(grant.clone());
            }
            (grant, covering)
        };
        let mut a = self.assignment_for(&grant).await?;
        // The AWS principal, from whichever grant of the assignment learned it (one that
        // shared the assignment never asked AWS).
        a.principal_id = a
            .principal_id
            .or_else(|| live.iter().find_map(|g| g.aws_principal_id.clone()));
        let (action, detail) = match live.iter().map(|g| g.ends_at).max() {
            // Nothing was created in AWS yet (none of them learned the principal): nothing
            // to protect; the grant that creates it queues this again when it is active.
            Some(_) if a.principal_id.is_none() => return Ok(Outcome::Done),
            Some(end) => {
                let at = end.plus(*grace);
                backstop.arm(&a, at.millis()).await?;
                (
                    "backstop.set",
                    format!(
                        "backstop schedule {} set to delete the assignment of {} in {} at {} \
                         (the latest end among its {} live grant(s), plus the grace)",
                        backstop.schedule_name(&a),
                        a.permission_set_arn,
                        a.account_id,
                        at.format_utc(),
                        live.len()
                    ),
                )
            }
            None => {
                backstop.disarm(&a).await?;
                (
                    "backstop.removed",
                    format!(
                        "backstop schedule {} removed: no live grant holds the assignment of \
                         {} in {}",
                        backstop.schedule_name(&a),
                        a.permission_set_arn,
                        a.account_id
                    ),
                )
            }
        };
        let mut tx = self.store.begin().await?;
        audit::audit(
            &mut tx,
            &Actor::system(),
            Event {
                action,
                person_id: Some(&grant.principal_id),
                subject_kind: "grant",
                subject_id: &grant.access_grant_id,
                entitlement_id: None,
                detail,
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Outcome::Done)
    }
}
