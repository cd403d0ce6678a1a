//! The background worker: claims due jobs from the durable job table and carries them out.
//!
//! [`Worker::step`] runs one job and is public, so tests and benchmarks drive the worker
//! deterministically with an injected clock. [`Worker::run`] loops, sleeping until the next
//! job falls due or until woken because a job was added.
//!
//! The runner lives here (claim, step, outcome, the loop); what each job kind does lives
//! beside it: `grants` (provision, revoke, settle), `requests` (timeouts, announcements,
//! reminders, ending soon) and `mail` (delivery). See ARCHITECTURE.md, "Jobs and lanes".

mod mail;
mod provision;
mod requests;
mod revoke;
mod settle;

use crate::audit::{self, Actor, Event};
use crate::clock::Clock;
use crate::config::{MailSettings, Upkeep, WorkerSettings};
use crate::grants;
use crate::mailer::Mailer;
use crate::notify::{self, Nudge};
use crate::provisioner::{Assignment, DeleteStart, OperationStatus, Provisioner};
use crate::store::{self, AlertKind, GrantRow, GrantUpdate, JobKind, JobRow, Store};
use anyhow::{Context, Result};
use app::domain::{GrantEvent, GrantStatus, RequestEvent, RequestStatus, Timestamp};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::Instrument;

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
                    let kind = AlertKind::JobFailing(job.kind);
                    store::resolve_alerts(&mut conn, kind, &job.subject_id, now).await?;
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
                        AlertKind::JobFailing(job.kind),
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
        match Some(job.kind) {
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
                let result = crate::upkeep::catalog::sync(
                    &self.store,
                    self.provisioner.as_ref(),
                    &*self.clock,
                )
                .await;
                self.upkeep_outcome(job, result.map(|_| ()), self.upkeep.catalog_every, now)
                    .await
            }
            Some(JobKind::Reconcile) => {
                let result = crate::upkeep::reconcile::run(
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
            Some(JobKind::VerifyAudit) => {
                let result = crate::upkeep::audit_chain::verify(&self.store, &*self.clock).await;
                let every = self.upkeep.verify_audit_every;
                self.upkeep_outcome(job, result.map(|_| ()), every, now)
                    .await
            }
            None => anyhow::bail!("unknown job kind {:?}", job.kind),
        }
    }

    /// A catalog sync, reconciliation or audit verification runs again after its period,
    /// failed or not (the run records why it failed). A failure alerts the admins once; a success clears it.
    async fn upkeep_outcome(
        &self,
        job: &JobRow,
        result: Result<()>,
        every: Duration,
        now: Timestamp,
    ) -> Result<Outcome> {
        let kind = AlertKind::JobFailing(job.kind);
        let mut conn = self.store.conn().await?;
        match result {
            Ok(()) => store::resolve_alerts(&mut conn, kind, &job.subject_id, now).await?,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), job = %job.kind, "maintenance run failed");
                if store::open_alerts_of(&mut conn, &[kind]).await?.is_empty() {
                    let what = match job.kind {
                        JobKind::Reconcile => "Reconciliation",
                        JobKind::VerifyAudit => "Audit verification",
                        _ => "Catalog sync",
                    };
                    store::raise_alert(
                        &mut conn,
                        kind,
                        &job.subject_id,
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
}
