//! The background worker: claims due jobs from the durable job table and carries them out.
//!
//! [`Worker::step`] runs one job and is public, so tests and benchmarks drive the worker
//! deterministically with an injected clock. [`Worker::run`] loops, sleeping until the next
//! job falls due or until woken because a job was added.

use crate::clock::Clock;
use crate::lifecycle::{self, Actor, Event};
use crate::mailer::Mailer;
use crate::notify::{self, MailSettings, Nudge};
use crate::provisioner::{Assignment, DeleteStart, OperationStatus, Provisioner};
use crate::store::{self, GrantRow, GrantUpdate, JobKind, JobRow, Store};
use anyhow::{Context, Result};
use app::domain::{GrantEvent, GrantStatus, RequestEvent, RequestStatus, Timestamp};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::Instrument;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct WorkerSettings {
    /// How long a claimed job is reserved before another worker may take it over.
    pub lease_secs: u64,
    /// Longest sleep when nothing is due (a safety net; adds wake the worker at once).
    pub max_idle_secs: u64,
    /// Pause between status polls of an AWS operation in flight.
    pub poll_interval_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_cap_secs: u64,
    /// Failures of one job before admins are alerted (revocations keep retrying after).
    pub alert_after_failures: u32,
    /// An AWS operation still in progress after this long raises an alert.
    pub stuck_after_secs: u64,
    /// Mail delivery attempts before a message is parked for admins.
    pub mail_max_attempts: u32,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease_secs: 60,
            max_idle_secs: 30,
            poll_interval_ms: 1000,
            backoff_base_ms: 1000,
            backoff_cap_secs: 300,
            alert_after_failures: 5,
            stuck_after_secs: 600,
            mail_max_attempts: 8,
        }
    }
}

impl WorkerSettings {
    /// Capped exponential backoff: base * 2^(attempt-1), at most the cap.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ms = self.backoff_base_ms.saturating_mul(1u64 << exp);
        Duration::from_millis(ms).min(Duration::from_secs(self.backoff_cap_secs))
    }

    /// [`WorkerSettings::backoff`] with jitter: somewhere in its upper half, so that jobs
    /// that failed together (a burst of throttling) do not all retry in the same instant.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let full = self.backoff(attempt);
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// How long a grant waits for a deletion reconciliation started on its assignment.
pub const DELETING_FOR_AT_MOST: Duration = Duration::from_secs(900);

/// Catalog sync and reconciliation: how often, and what the portal may delete.
#[derive(Clone, Debug, PartialEq)]
pub struct Upkeep {
    pub catalog_every: Duration,
    pub reconcile_every: Duration,
    /// Permission sets the portal owns outright: assignments of these that no live grant
    /// covers are deleted, whoever made them. Any other assignment the portal did not
    /// create is only reported.
    pub owned_permission_sets: Vec<String>,
}

impl Default for Upkeep {
    fn default() -> Self {
        Self {
            catalog_every: Duration::from_secs(3600),
            reconcile_every: Duration::from_secs(600),
            owned_permission_sets: Vec::new(),
        }
    }
}

impl Upkeep {
    pub fn owns(&self, permission_set_arn: &str) -> bool {
        self.owned_permission_sets
            .iter()
            .any(|p| p == permission_set_arn)
    }
}

pub(crate) enum Outcome {
    Done,
    Again(Timestamp),
}

pub struct Worker {
    id: String,
    store: Store,
    provisioner: Arc<dyn Provisioner>,
    mailer: Arc<dyn Mailer>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    settings: WorkerSettings,
    public_url: String,
    mail: MailSettings,
    upkeep: Upkeep,
    lane: store::Lane,
    /// What wakes this worker early (by default the same `Notify` it wakes others with).
    woken_by: Arc<Notify>,
}

impl Worker {
    pub fn new(
        store: Store,
        provisioner: Arc<dyn Provisioner>,
        mailer: Arc<dyn Mailer>,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
        settings: WorkerSettings,
        public_url: String,
    ) -> Self {
        Self {
            id: format!("worker-{}", &store::new_id()[..8]),
            store,
            provisioner,
            mailer,
            clock,
            wake: wake.clone(),
            settings,
            public_url,
            mail: MailSettings::default(),
            upkeep: Upkeep::default(),
            lane: store::Lane::All,
            woken_by: wake,
        }
    }

    /// Wakes on this `Notify` instead (the maintenance lane has its own).
    pub fn woken_by(mut self, notify: Arc<Notify>) -> Self {
        self.woken_by = notify;
        self
    }

    /// How often to sync the catalog and reconcile, and which permission sets are owned.
    pub fn with_upkeep(mut self, upkeep: Upkeep) -> Self {
        self.upkeep = upkeep;
        self
    }

    /// Takes only the jobs of one lane (the server runs one worker per lane).
    pub fn in_lane(mut self, lane: store::Lane) -> Self {
        self.lane = lane;
        self
    }

    /// Who hears about what and when (subjects, reminders, warnings); defaults otherwise.
    pub fn with_mail(mut self, mail: MailSettings) -> Self {
        self.mail = mail;
        self
    }

    /// Claims and runs one due job. Returns whether there was one.
    pub async fn step(&self) -> Result<bool> {
        let now = self.clock.now();
        // A catalog sync or reconciliation of a large organization takes minutes: its
        // lease must outlast it, or another replica would start the same run.
        let lease = match self.lane {
            store::Lane::Maintenance => Duration::from_secs(self.settings.lease_secs.max(1800)),
            _ => Duration::from_secs(self.settings.lease_secs),
        };
        let Some(job) = store::claim_job_in(&self.store, &self.id, now, lease, self.lane).await?
        else {
            return Ok(false);
        };
        let span = tracing::info_span!("job", kind = %job.kind, subject = %job.subject_id, attempts = job.attempts);
        let outcome = self.run_job(&job, now).instrument(span).await;
        let mut conn = self.store.conn().await?;
        match outcome {
            Ok(Outcome::Done) => {
                store::delete_job(&mut conn, &job.job_id).await?;
                // It went through in the end: the alert about its failures is over.
                if job.alerted == 1 {
                    let kind = format!("{}_failing", job.kind);
                    store::resolve_alerts(&mut conn, &kind, &job.subject_id, now).await?;
                }
            }
            Ok(Outcome::Again(at)) => {
                store::reschedule_job_after(&mut conn, &job.job_id, job.run_at, at).await?
            }
            Err(e) => {
                let attempt = u32::try_from(job.attempts + 1).unwrap_or(u32::MAX);
                let delay = self.settings.retry_delay(attempt);
                tracing::warn!(
                    error = format!("{e:#}"),
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    "job failed; will retry"
                );
                let message = format!("{e:#}");
                store::reschedule_job(&mut conn, &job.job_id, now.plus(delay), Some(&message))
                    .await?;
                if attempt >= self.settings.alert_after_failures && job.alerted == 0 {
                    let mut tx = self.store.begin().await?;
                    store::raise_alert(
                        &mut tx,
                        &format!("{}_failing", job.kind),
                        &job.subject_id,
                        &format!("{} for {} failed {attempt} times; still retrying. Last error: {message}", job.kind, job.subject_id),
                        now,
                    )
                    .await?;
                    store::mark_job_alerted(&mut tx, &job.job_id).await?;
                    tx.commit().await?;
                }
            }
        }
        Ok(true)
    }

    /// Runs every job that is due now (tests and benchmarks).
    pub async fn drain(&self) -> Result<usize> {
        let mut n = 0;
        while self.step().await? {
            n += 1;
        }
        Ok(n)
    }

    /// The worker loop. Errors are logged and the loop goes on; it stops when `shutdown` flips.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.id, provisioner = self.provisioner.name(), lane = ?self.lane, "worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.step().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "worker step failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            let sleep = self.until_next_due().await;
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.woken_by.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    async fn until_next_due(&self) -> Duration {
        let max = Duration::from_secs(self.settings.max_idle_secs);
        let next = match self.store.conn().await {
            Ok(mut conn) => store::next_job_due_in(&mut conn, self.lane)
                .await
                .ok()
                .flatten(),
            Err(_) => None,
        };
        match next {
            Some(at) => self.clock.now().until(at).min(max),
            None => max,
        }
    }

    async fn run_job(&self, job: &JobRow, now: Timestamp) -> Result<Outcome> {
        match JobKind::parse(&job.kind) {
            Some(JobKind::Provision) => self.provision(&job.subject_id, now).await,
            Some(JobKind::Deprovision) => self.deprovision(&job.subject_id, now).await,
            Some(JobKind::DecisionTimeout) => self.decision_timeout(&job.subject_id, now).await,
            Some(JobKind::DeliverMail) => self.deliver_mail(job, now).await,
            Some(JobKind::AnnounceRequest) => self.announce_request(job, now).await,
            Some(JobKind::ApprovalReminder) => {
                self.nudge_approvers(job, Nudge::Reminder, now).await
            }
            Some(JobKind::ApprovalEscalation) => {
                let group = self
                    .mail
                    .fallback_approver_group
                    .clone()
                    .unwrap_or_default();
                self.nudge_approvers(job, Nudge::Escalation(&group), now)
                    .await
            }
            Some(JobKind::EndingSoon) => self.ending_soon(job, now).await,
            Some(JobKind::SyncCatalog) => {
                let result =
                    crate::catalog::sync(&self.store, self.provisioner.as_ref(), &*self.clock)
                        .await;
                self.upkeep_outcome(job, result.map(|_| ()), self.upkeep.catalog_every, now)
                    .await
            }
            Some(JobKind::Reconcile) => {
                let result = crate::reconcile::run(
                    &self.store,
                    self.provisioner.as_ref(),
                    &*self.clock,
                    &self.upkeep,
                    &self.wake,
                )
                .await;
                self.upkeep_outcome(job, result.map(|_| ()), self.upkeep.reconcile_every, now)
                    .await
            }
            None => anyhow::bail!("unknown job kind {:?}", job.kind),
        }
    }

    /// A catalog sync or reconciliation runs again after its period, failed or not (the
    /// run records why it failed). A failure alerts the admins once; a success clears it.
    async fn upkeep_outcome(
        &self,
        job: &JobRow,
        result: Result<()>,
        every: Duration,
        now: Timestamp,
    ) -> Result<Outcome> {
        let kind = format!("{}_failing", job.kind);
        let mut conn = self.store.conn().await?;
        match result {
            Ok(()) => store::resolve_alerts(&mut conn, &kind, &job.kind, now).await?,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), job = %job.kind, "maintenance run failed");
                if store::open_alerts_of(&mut conn, &[&kind]).await?.is_empty() {
                    let what = if job.kind == "reconcile" {
                        "Reconciliation"
                    } else {
                        "Catalog sync"
                    };
                    store::raise_alert(
                        &mut conn,
                        &kind,
                        &job.kind,
                        &format!(
                            "{what} failed: {e:#}. It runs again in {}s.",
                            every.as_secs()
                        ),
                        now,
                    )
                    .await?;
                }
            }
        }
        Ok(Outcome::Again(now.plus(every)))
    }

    fn poll_again(&self, now: Timestamp) -> Outcome {
        Outcome::Again(now.plus(Duration::from_millis(self.settings.poll_interval_ms)))
    }

    async fn assignment_for(&self, g: &GrantRow) -> Result<Assignment> {
        let mut conn = self.store.conn().await?;
        let user = store::get_user(&mut conn, &g.principal_id)
            .await?
            .with_context(|| format!("grant {} has no user", g.access_grant_id))?;
        Ok(Assignment {
            account_id: g.account_id.clone(),
            permission_set_arn: g.permission_set_arn.clone(),
            user_id: g.principal_id.clone(),
            user_name: user.email,
        })
    }

    // ------------------------------------------------------------ provisioning

    async fn provision(&self, grant_id: &str, now: Timestamp) -> Result<Outcome> {
        let grant = {
            let mut conn = self.store.conn().await?;
            store::get_grant(&mut conn, grant_id).await?
        };
        let Some(grant) = grant else {
            return Ok(Outcome::Done);
        };
        match grant.status()? {
            GrantStatus::Scheduled => self.start_provisioning(grant, now).await,
            GrantStatus::Provisioning => self.poll_creation(grant, now).await,
            // Active, ending or over: nothing left to provision.
            _ => Ok(Outcome::Done),
        }
    }

    async fn start_provisioning(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
        let id = grant.access_grant_id.clone();
        let mut tx = self.store.begin().await?;
        store::lock_assignment(&mut tx, &grant).await?;
        let Some(grant) = store::get_grant(&mut tx, &id).await? else {
            return Ok(Outcome::Done);
        };
        if grant.status()? != GrantStatus::Scheduled {
            return Ok(Outcome::Done);
        }
        if now.millis() >= grant.ends_at {
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
        let entitlement = lifecycle::load_entitlement(&mut tx, &request.entitlement_id)
            .await?
            .context("request without entitlement")?;
        if !entitlement.policy.is_eligible(&requester) {
            let reason = format!(
                "{} is no longer eligible for {} (their groups changed since the request)",
                requester.display_name, entitlement.name
            );
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
        let next = GrantStatus::Scheduled.apply(GrantEvent::ProvisionStarted)?;
        store::update_grant(&mut tx, &id, GrantUpdate::in_flight(next, None, now), now).await?;
        tx.commit().await?;
        self.create_assignment(grant, now).await
    }

    /// Starts the AWS creation for a grant in `provisioning` without an operation id.
    async fn create_assignment(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
        let a = self.assignment_for(&grant).await?;
        // No slot for one more creation in flight: try again later, without asking AWS.
        self.provisioner.creation_slot_free()?;
        let known = {
            let mut conn = self.store.conn().await?;
            store::managed_assignment(&mut conn, grant.key()).await?
        };
        let origin = known.as_ref().map(store::ManagedRow::origin);
        let deleting = known.and_then(|m| m.deleting_since);
        // Reconciliation is deleting this very assignment: wait until it is gone rather
        // than count on it (a flag older than the limit is from a run that died).
        if deleting
            .is_some_and(|since| now.millis() - since < DELETING_FOR_AT_MOST.as_millis() as i64)
        {
            return Ok(self.poll_again(now));
        }
        // AWS may keep duplicates: never create what is already there (a crash between
        // our create call and recording it lands here).
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
        let op = self.provisioner.start_create(&a).await?;
        self.record_started(
            &grant,
            GrantStatus::Provisioning,
            "CreateAccountAssignment",
            &op,
            now,
        )
        .await
    }

    /// Records the AWS request id of an operation just started, so that a worker that
    /// restarts resumes polling the same operation instead of starting another.
    async fn record_started(
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
            GrantUpdate::in_flight(status, Some(op), now),
            now,
        )
        .await?;
        lifecycle::audit(
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

    async fn poll_creation(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
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
                let mut tx = self.store.begin().await?;
                store::lock_assignment(&mut tx, &grant).await?;
                // Nothing was made: unless another grant holds it, the portal has no
                // assignment here to remember (a stale record would make it delete one
                // someone else makes later).
                let live = [
                    GrantStatus::Provisioning,
                    GrantStatus::Active,
                    GrantStatus::Deprovisioning,
                ];
                if store::siblings_in(&mut tx, &grant, &live).await?.is_empty() {
                    store::forget_assignment(&mut tx, grant.key()).await?;
                }
                let message = format!("AWS reported the creation FAILED: {reason}");
                self.settle(
                    &mut tx,
                    &grant,
                    GrantEvent::CreationFailed,
                    "grant.failed",
                    message.clone(),
                    Some(&message),
                    now,
                )
                .await?;
                store::raise_alert(
                    &mut tx,
                    "provisioning_failed",
                    &grant.access_grant_id,
                    &message,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(Outcome::Done)
            }
        }
    }

    async fn alert_if_stuck(&self, grant: &GrantRow, now: Timestamp) -> Result<()> {
        let started = grant.operation_started_at.unwrap_or(now.millis());
        let stuck = Duration::from_secs(self.settings.stuck_after_secs);
        let op = grant
            .operation_id
            .as_deref()
            .unwrap_or(&grant.access_grant_id);
        if now.millis() - started < stuck.as_millis() as i64 {
            return Ok(());
        }
        // Once per operation, however late the worker polls.
        let mut conn = self.store.conn().await?;
        if !store::alert_exists(&mut conn, "operation_stuck", op).await? {
            store::raise_alert(
                &mut conn,
                "operation_stuck",
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

    // ------------------------------------------------------------ revocation

    async fn deprovision(&self, grant_id: &str, now: Timestamp) -> Result<Outcome> {
        let grant = {
            let mut conn = self.store.conn().await?;
            store::get_grant(&mut conn, grant_id).await?
        };
        let Some(grant) = grant else {
            return Ok(Outcome::Done);
        };
        match grant.status()? {
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
            GrantStatus::Active if now.millis() < grant.ends_at => {
                Ok(Outcome::Again(Timestamp(grant.ends_at)))
            }
            GrantStatus::Active => self.start_deprovisioning(grant, now).await,
            GrantStatus::Deprovisioning => self.poll_deletion(grant, now).await,
            GrantStatus::Revoked | GrantStatus::Failed => Ok(Outcome::Done),
        }
    }

    async fn start_deprovisioning(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
        let id = grant.access_grant_id.clone();
        let mut tx = self.store.begin().await?;
        store::lock_assignment(&mut tx, &grant).await?;
        let Some(grant) = store::get_grant(&mut tx, &id).await? else {
            return Ok(Outcome::Done);
        };
        if grant.status()? != GrantStatus::Active {
            return Ok(Outcome::Done);
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
        let next = GrantStatus::Active.apply(GrantEvent::DeprovisionStarted)?;
        store::update_grant(&mut tx, &id, GrantUpdate::in_flight(next, None, now), now).await?;
        tx.commit().await?;
        self.delete_assignment(grant, now).await
    }

    async fn delete_assignment(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
        let a = self.assignment_for(&grant).await?;
        match self.provisioner.start_delete(&a).await? {
            DeleteStart::AlreadyGone => {
                let mut tx = self.store.begin().await?;
                store::forget_assignment(&mut tx, grant.key()).await?;
                self.settle(
                    &mut tx,
                    &grant,
                    GrantEvent::DeletionSucceeded,
                    "grant.revoked",
                    format!(
                        "{}; the assignment was already gone from AWS",
                        self.end_reason(&grant)
                    ),
                    None,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(Outcome::Done)
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

    async fn poll_deletion(&self, grant: GrantRow, now: Timestamp) -> Result<Outcome> {
        let Some(op) = grant.operation_id.clone() else {
            return self.delete_assignment(grant, now).await;
        };
        match self.provisioner.deletion_status(&op).await? {
            OperationStatus::InProgress => {
                self.alert_if_stuck(&grant, now).await?;
                Ok(self.poll_again(now))
            }
            OperationStatus::Succeeded => {
                let mut tx = self.store.begin().await?;
                store::forget_assignment(&mut tx, grant.key()).await?;
                self.settle(
                    &mut tx,
                    &grant,
                    GrantEvent::DeletionSucceeded,
                    "grant.revoked",
                    format!(
                        "{}; AWS reported the deletion SUCCEEDED (request {op})",
                        self.end_reason(&grant)
                    ),
                    None,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(Outcome::Done)
            }
            OperationStatus::Failed(reason) => {
                // Invariant 4: never give up. Forget the failed operation and start over.
                let mut conn = self.store.conn().await?;
                store::update_grant(
                    &mut conn,
                    &grant.access_grant_id,
                    GrantUpdate::in_flight(GrantStatus::Deprovisioning, None, now)
                        .failure(Some(&reason)),
                    now,
                )
                .await?;
                anyhow::bail!("AWS reported the deletion FAILED: {reason}")
            }
        }
    }

    fn end_reason(&self, g: &GrantRow) -> String {
        match &g.ended_by {
            Some(by) => format!("ended early by {by}"),
            None => "its time was up".into(),
        }
    }

    /// Applies a grant event, audits it, updates the request, tells the people concerned,
    /// and drops jobs that no longer have anything to do.
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        tx: &mut store::Tx,
        grant: &GrantRow,
        event: GrantEvent,
        action: &str,
        detail: String,
        failure: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        let from = grant.status()?;
        let to = from.apply(event)?;
        store::update_grant(
            tx,
            &grant.access_grant_id,
            GrantUpdate::settled(to).failure(failure),
            now,
        )
        .await?;
        let request = store::get_request(tx, &grant.access_request_id)
            .await?
            .context("grant without request")?;
        lifecycle::audit(
            tx,
            &Actor::system(),
            Event {
                action,
                person_id: Some(&grant.principal_id),
                subject_kind: "grant",
                subject_id: &grant.access_grant_id,
                entitlement_id: Some(&request.entitlement_id),
                detail,
            },
            now,
        )
        .await?;
        if !to.is_live() {
            store::delete_jobs_for(tx, &grant.access_grant_id, JobKind::Provision).await?;
            store::delete_jobs_for(tx, &grant.access_grant_id, JobKind::EndingSoon).await?;
        }
        if to == GrantStatus::Active {
            if let Some(lead) = self.mail.ending_soon_lead() {
                let at = Timestamp(
                    grant
                        .ends_at
                        .saturating_sub(lead.as_millis() as i64)
                        .max(now.millis()),
                );
                store::insert_job(tx, JobKind::EndingSoon, &grant.access_grant_id, at, now).await?;
            }
        }
        if to == GrantStatus::Failed {
            // Nothing was created: there is nothing to revoke.
            store::delete_jobs_for(tx, &grant.access_grant_id, JobKind::Deprovision).await?;
        }
        if let Some((_, req_to)) =
            lifecycle::sync_request(tx, &grant.access_request_id, now).await?
        {
            lifecycle::audit(
                tx,
                &Actor::system(),
                Event {
                    action: &format!("request.{}", req_to.as_str()),
                    person_id: Some(&request.requester_id),
                    subject_kind: "request",
                    subject_id: &request.access_request_id,
                    entitlement_id: Some(&request.entitlement_id),
                    detail: format!("after grant {} became {}", grant.access_grant_id, to),
                },
                now,
            )
            .await?;
        }
        self.tell(tx, grant, &request, to, failure, now).await
    }

    async fn tell(
        &self,
        tx: &mut store::Tx,
        grant: &GrantRow,
        request: &store::RequestRow,
        status: GrantStatus,
        failure: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        let Some(user) = store::get_user(tx, &grant.principal_id).await? else {
            return Ok(());
        };
        let (account_name, ps_name, tail) = describe_target(tx, grant).await?;
        let entitlement = store::get_entitlement(tx, &request.entitlement_id)
            .await?
            .map(|e| e.name)
            .unwrap_or_default();
        let target = format!("{ps_name} on {account_name} ({})", grant.account_id);
        let ends = Timestamp(grant.ends_at).format_utc();
        let link = format!("{}/requests", self.public_url);
        let (subject, intro) = match status {
            GrantStatus::Active => (
                format!("Access granted: {target}"),
                format!("Your access to {target} ({entitlement}) is active until {ends}. Sessions you open stay valid for up to {tail} after that: AWS does not end open sessions when an assignment is deleted."),
            ),
            GrantStatus::Revoked => (
                format!("Access ended: {target}"),
                format!("Your access to {target} ({entitlement}) has ended ({}).", self.end_reason(grant)),
            ),
            GrantStatus::Failed => (
                format!("Access could not be granted: {target}"),
                format!("Your access to {target} ({entitlement}) could not be granted. {}", failure.unwrap_or("")),
            ),
            _ => return Ok(()),
        };
        let mail = notify::compose(
            subject,
            &intro,
            &[("Account", &target), ("Ends", &ends)],
            ("Open My access", &link),
        );
        notify::queue(tx, &user.email, &mail, now).await?;
        if status == GrantStatus::Failed {
            for admin in notify::admins(tx).await? {
                let mail = notify::compose(
                    format!("Provisioning failed: {target} for {}", user.display_name),
                    &format!(
                        "Granting {target} to {} failed. {}",
                        user.display_name,
                        failure.unwrap_or("")
                    ),
                    &[("Grant", &grant.access_grant_id)],
                    (
                        "Open the admin dashboard",
                        &format!("{}/admin", self.public_url),
                    ),
                );
                notify::queue(tx, &admin.email, &mail, now).await?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ requests and mail

    async fn decision_timeout(&self, request_id: &str, now: Timestamp) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let Some(request) = store::lock_request(&mut tx, request_id).await? else {
            return Ok(Outcome::Done);
        };
        if request.status()? != RequestStatus::Pending {
            return Ok(Outcome::Done);
        }
        if now.millis() < request.decision_due_at {
            return Ok(Outcome::Again(Timestamp(request.decision_due_at)));
        }
        let to = RequestStatus::Pending.apply(RequestEvent::DecisionTimeout)?;
        store::set_request_status(&mut tx, request_id, to, now).await?;
        notify::forget_approval_nudges(&mut tx, request_id).await?;
        lifecycle::audit(
            &mut tx,
            &Actor::system(),
            Event {
                action: "request.timed_out",
                person_id: Some(&request.requester_id),
                subject_kind: "request",
                subject_id: request_id,
                entitlement_id: Some(&request.entitlement_id),
                detail: "no decision before the deadline".into(),
            },
            now,
        )
        .await?;
        if let Some(user) = store::get_user(&mut tx, &request.requester_id).await? {
            let name = store::get_entitlement(&mut tx, &request.entitlement_id)
                .await?
                .map(|e| e.name)
                .unwrap_or_default();
            let mail = notify::compose(
                format!("Request timed out: {name}"),
                &format!("Nobody decided your request for {name} in time. You can ask again."),
                &[("Justification", &request.justification)],
                ("Request access", &format!("{}/", self.public_url)),
            );
            notify::queue(&mut tx, &user.email, &mail, now).await?;
        }
        tx.commit().await?;
        Ok(Outcome::Done)
    }

    async fn deliver_mail(&self, job: &JobRow, now: Timestamp) -> Result<Outcome> {
        let mail = {
            let mut conn = self.store.conn().await?;
            store::get_mail(&mut conn, &job.subject_id).await?
        };
        let Some(mail) = mail else {
            return Ok(Outcome::Done);
        };
        if mail.status == "sent" || mail.status == "parked" {
            return Ok(Outcome::Done);
        }
        {
            // Record the attempt before sending: a crash mid-send is visible, and resends.
            let mut conn = self.store.conn().await?;
            sqlx::query("UPDATE outbox SET status = 'sending' WHERE outbox_id = $1")
                .bind(&mail.outbox_id)
                .execute(&mut *conn)
                .await?;
        }
        let subject = self.mail.subject(&mail.subject);
        let result = self
            .mailer
            .send(&mail.recipient, &subject, &mail.body_text, &mail.body_html)
            .await;
        let mut conn = self.store.conn().await?;
        match result {
            Ok(()) => {
                store::set_mail_status(&mut conn, &mail.outbox_id, "sent", None, now).await?;
                Ok(Outcome::Done)
            }
            Err(e) if mail.attempts + 1 >= i64::from(self.settings.mail_max_attempts) => {
                store::set_mail_status(
                    &mut conn,
                    &mail.outbox_id,
                    "parked",
                    Some(&e.to_string()),
                    now,
                )
                .await?;
                store::raise_alert(
                    &mut conn,
                    "mail_parked",
                    &mail.outbox_id,
                    &format!(
                        "mail to {} parked after {} attempts: {e}",
                        mail.recipient,
                        mail.attempts + 1
                    ),
                    now,
                )
                .await?;
                Ok(Outcome::Done)
            }
            Err(e) => {
                store::set_mail_status(
                    &mut conn,
                    &mail.outbox_id,
                    "pending",
                    Some(&e.to_string()),
                    now,
                )
                .await?;
                Err(e.into())
            }
        }
    }

    // ------------------------------------------------------------ reminders and warnings
    //
    // Each of these sends its mail and deletes its own job in one transaction, so a worker
    // that dies after committing never sends them twice; each does nothing once the state
    // has moved on (request decided, grant over or ended early).

    /// A new request: tells the configured approver addresses (the people the portal knows
    /// were told when it was made) and schedules its reminder and escalation.
    async fn announce_request(&self, job: &JobRow, now: Timestamp) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let Some(request) = store::lock_request(&mut tx, &job.subject_id).await? else {
            return Ok(Outcome::Done);
        };
        if request.status()? == RequestStatus::Pending {
            let requester = store::get_user(&mut tx, &request.requester_id)
                .await?
                .context("request without user")?;
            let entitlement = lifecycle::load_entitlement(&mut tx, &request.entitlement_id)
                .await?
                .context("request without entitlement")?;
            let told: Vec<String> = notify::approvers_of(&mut tx, &entitlement.policy, &requester)
                .await?
                .into_iter()
                .map(|p| p.email.to_lowercase())
                .collect();
            let mail = notify::approval_mail(
                Nudge::New,
                &request,
                &requester,
                &entitlement.name,
                &self.public_url,
                now,
            );
            for to in distinct(self.mail.approver_addresses.iter().cloned()) {
                if !told.contains(&to.to_lowercase()) && !to.eq_ignore_ascii_case(&requester.email)
                {
                    notify::queue(&mut tx, &to, &mail, now).await?;
                }
            }
            let created = Timestamp(request.created_at);
            if let Some(after) = self.mail.reminder_after() {
                store::insert_job(
                    &mut tx,
                    JobKind::ApprovalReminder,
                    &request.access_request_id,
                    created.plus(after),
                    now,
                )
                .await?;
            }
            if let Some(after) = self.mail.escalate_after() {
                store::insert_job(
                    &mut tx,
                    JobKind::ApprovalEscalation,
                    &request.access_request_id,
                    created.plus(after),
                    now,
                )
                .await?;
            }
        }
        store::delete_job(&mut tx, &job.job_id).await?;
        tx.commit().await?;
        Ok(Outcome::Done)
    }

    /// A request still pending: reminds the approvers who have not decided yet (and the
    /// configured approver addresses), or escalates to the fallback group's members.
    async fn nudge_approvers(
        &self,
        job: &JobRow,
        nudge: Nudge<'_>,
        now: Timestamp,
    ) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let Some(request) = store::lock_request(&mut tx, &job.subject_id).await? else {
            return Ok(Outcome::Done);
        };
        if request.status()? == RequestStatus::Pending {
            let requester = store::get_user(&mut tx, &request.requester_id)
                .await?
                .context("request without user")?;
            let entitlement = lifecycle::load_entitlement(&mut tx, &request.entitlement_id)
                .await?
                .context("request without entitlement")?;
            let decided: Vec<String> =
                store::decisions_for_request(&mut tx, &request.access_request_id)
                    .await?
                    .into_iter()
                    .map(|d| d.approver_id)
                    .collect();
            let people = match nudge {
                Nudge::Escalation(group) => notify::members_of(&mut tx, group).await?,
                _ => notify::approvers_of(&mut tx, &entitlement.policy, &requester).await?,
            };
            let mut recipients: Vec<String> = people
                .into_iter()
                .filter(|p| p.user_id != requester.user_id && !decided.contains(&p.user_id))
                .map(|p| p.email)
                .collect();
            if nudge == Nudge::Reminder {
                recipients.extend(self.mail.approver_addresses.iter().cloned());
            }
            let recipients = distinct(recipients.into_iter());
            if recipients.is_empty() {
                tracing::warn!(request = %request.access_request_id, ?nudge, "a pending request has nobody to remind");
            }
            let mail = notify::approval_mail(
                nudge,
                &request,
                &requester,
                &entitlement.name,
                &self.public_url,
                now,
            );
            for to in recipients {
                notify::queue(&mut tx, &to, &mail, now).await?;
            }
        }
        store::delete_job(&mut tx, &job.job_id).await?;
        tx.commit().await?;
        Ok(Outcome::Done)
    }

    /// Warns the holder that an active grant ends soon, with a link to ask for more time.
    async fn ending_soon(&self, job: &JobRow, now: Timestamp) -> Result<Outcome> {
        let mut tx = self.store.begin().await?;
        let Some(grant) = store::lock_grant(&mut tx, &job.subject_id).await? else {
            return Ok(Outcome::Done);
        };
        let lead = self.mail.ending_soon_lead().unwrap_or_default();
        let due = grant.ends_at.saturating_sub(lead.as_millis() as i64);
        if grant.status()? == GrantStatus::Active && now.millis() < grant.ends_at {
            if now.millis() < due {
                // The end moved later since this was scheduled: warn in time for the new one.
                return Ok(Outcome::Again(Timestamp(due)));
            }
            if let Some(user) = store::get_user(&mut tx, &grant.principal_id).await? {
                let request = store::get_request(&mut tx, &grant.access_request_id)
                    .await?
                    .context("grant without request")?;
                let entitlement = store::get_entitlement(&mut tx, &request.entitlement_id)
                    .await?
                    .map(|e| e.name)
                    .unwrap_or_default();
                let (account_name, ps_name, tail) = describe_target(&mut tx, &grant).await?;
                let target = format!("{ps_name} on {account_name} ({})", grant.account_id);
                let ends = Timestamp(grant.ends_at).format_utc();
                let left = app::domain::time::format_duration(now.until(Timestamp(grant.ends_at)));
                let mail = notify::compose(
                    format!("Access ending soon: {target}"),
                    &format!(
                        "Your access to {target} ({entitlement}) ends at {ends}, in {left}. To keep working, ask for                          more time before then: request {entitlement} again. Sessions you open stay valid for up to {tail} after the end."
                    ),
                    &[("Account", &target), ("Ends", &ends), ("Justification", &request.justification)],
                    ("Ask for an extension", &format!("{}/", self.public_url)),
                );
                notify::queue(&mut tx, &user.email, &mail, now).await?;
            }
        }
        store::delete_job(&mut tx, &job.job_id).await?;
        tx.commit().await?;
        Ok(Outcome::Done)
    }
}

/// Addresses without repeats (compared without case), in their first order.
fn distinct(addresses: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in addresses {
        if !out.iter().any(|b| b.eq_ignore_ascii_case(&a)) {
            out.push(a);
        }
    }
    out
}

/// Account name, permission set name and session duration, for messages and views.
pub async fn describe_target(
    conn: &mut sqlx::AnyConnection,
    g: &GrantRow,
) -> Result<(String, String, String)> {
    let account = store::get_account(conn, &g.account_id).await?;
    let ps = store::get_permission_set(conn, &g.permission_set_arn).await?;
    Ok((
        account
            .map(|a| a.name)
            .unwrap_or_else(|| g.account_id.clone()),
        ps.as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_else(|| g.permission_set_arn.clone()),
        ps.map(|p| {
            app::domain::time::format_duration(Duration::from_secs(p.session_duration_secs as u64))
        })
        .unwrap_or_else(|| "1h".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_exponential() {
        let s = WorkerSettings {
            backoff_base_ms: 1000,
            backoff_cap_secs: 60,
            ..Default::default()
        };
        assert_eq!(s.backoff(1), Duration::from_secs(1));
        assert_eq!(s.backoff(2), Duration::from_secs(2));
        assert_eq!(s.backoff(5), Duration::from_secs(16));
        assert_eq!(s.backoff(7), Duration::from_secs(60));
        assert_eq!(s.backoff(500), Duration::from_secs(60));
    }

    #[test]
    fn retries_are_jittered_within_the_upper_half() {
        let s = WorkerSettings {
            backoff_base_ms: 1000,
            backoff_cap_secs: 60,
            ..Default::default()
        };
        let delays: Vec<Duration> = (0..200).map(|_| s.retry_delay(5)).collect();
        assert!(delays
            .iter()
            .all(|d| (Duration::from_secs(8)..=Duration::from_secs(16)).contains(d)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 100,
            "spread out: {} distinct",
            distinct.len()
        );
        assert!(
            s.retry_delay(500) <= Duration::from_secs(60),
            "still capped"
        );
    }
}
