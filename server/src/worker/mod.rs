//! The background worker: claims due jobs from the durable job table and carries them out.
//!
//! [`Worker::step`] runs one job and is public, so tests and benchmarks drive the worker
//! deterministically with an injected clock. [`Worker::run`] loops, sleeping until the next
//! job falls due or until woken because a job was added.
//!
//! The runner lives here (claim, step, outcome, the loop); what each job kind does lives
//! beside it: `grants` (provision, revoke, settle), `requests` (timeouts, announcements,
//! reminders, ending soon) and `mail` (delivery). See ARCHITECTURE.md, "Jobs and lanes".

mod backstop;
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
use crate::provisioner::{Assignment, DeleteStart, OperationStatus, ProvisionError, Provisioner};
use crate::store::{self, AlertKind, GrantRow, GrantUpdate, JobKind, JobRow, Store};
use anyhow::{Context, Result};
use app::domain::{
    ApproverRule, GrantEvent, GrantStatus, Policy, Principal, RequestEvent, RequestStatus,
    Timestamp,
};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::Instrument;

/// Whether a step failed only because AWS throttled it.
fn is_throttled(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ProvisionError>(),
            Some(ProvisionError::Throttled(_))
        )
    })
}

/// How often a worker checks that every live grant still has its jobs.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub(crate) enum Outcome {
    /// Nothing left to do: the job is deleted (if this worker still holds it).
    Done,
    /// The step deleted its own job in its transaction (with the mail it sent).
    Finished,
    /// Run the job again at this time.
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
    /// When this worker last came round its loop (epoch ms), for `/readyz`.
    heartbeat: Arc<AtomicI64>,
    /// Woken in turn whenever this worker is woken (the mail lane by the grants lane:
    /// a use case wakes one `Notify` after it commits, whatever jobs it wrote).
    passes_wakes_to: Option<Arc<Notify>>,
    /// Whether this worker runs the sweep (one worker of the grants lane per replica).
    sweeps: bool,
    metrics: Arc<crate::metrics::Metrics>,
    backstop: Option<(Arc<dyn crate::provisioner::Backstop>, Duration)>,
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
            heartbeat: Arc::new(AtomicI64::new(0)),
            passes_wakes_to: None,
            sweeps: true,
            metrics: Arc::new(crate::metrics::Metrics::default()),
            backstop: None,
        }
    }

    /// [`Worker::with_backstop`] when there is one.
    pub fn with_backstop_if(
        self,
        backstop: Option<Arc<dyn crate::provisioner::Backstop>>,
        grace_secs: u64,
    ) -> Self {
        match backstop {
            Some(b) => self.with_backstop(b, Duration::from_secs(grace_secs)),
            None => self,
        }
    }

    /// Keeps an AWS-side backstop schedule per assignment (`aws.backstop`), firing `grace`
    /// after the latest end of its live grants.
    pub fn with_backstop(
        mut self,
        backstop: Arc<dyn crate::provisioner::Backstop>,
        grace: Duration,
    ) -> Self {
        self.backstop = Some((backstop, grace));
        self
    }

    /// Where this worker counts revocation lateness and approval-to-grant latency.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// One of several workers of the same lane in this replica (`worker.concurrency`):
    /// named `<replica>/<lane>/<n>`; only the first runs the sweep.
    pub fn instance(mut self, n: u32) -> Self {
        self.id = format!("{}/{}/{n}", self.settings.replica(), self.lane.name());
        self.sweeps = n == 0;
        self
    }

    /// Wakes `other` too whenever this worker is woken.
    pub fn passing_wakes_to(mut self, other: Arc<Notify>) -> Self {
        self.passes_wakes_to = Some(other);
        self
    }

    /// When the loop last came round (epoch ms; 0 before it starts), shared with
    /// `/readyz`, which reports a worker that stopped coming round.
    pub fn heartbeat(&self) -> Arc<AtomicI64> {
        self.heartbeat.clone()
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

    /// Takes only the jobs of one lane (the server runs one worker per lane). The worker
    /// is then named `<replica>/<lane>`: stable across restarts, so a restarted replica
    /// can release the leases its previous run left.
    pub fn in_lane(mut self, lane: store::Lane) -> Self {
        self.lane = lane;
        self.id = format!("{}/{}", self.settings.replica(), lane.name());
        self
    }

    /// The name this worker leases jobs under.
    pub fn id(&self) -> &str {
        &self.id
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
        let span = tracing::info_span!("job", kind = %job.kind, subject = %job.subject_id, attempts = job.attempts, token = job.lease_token);
        // The step runs while its lease is renewed; if the lease was taken over meanwhile
        // (this worker stalled past it), the step is dropped where it stands and the new
        // owner finishes the job: every write it made so far was conditional.
        let outcome = tokio::select! {
            outcome = self.run_job(&job, now).instrument(span) => outcome,
            () = self.keep_lease(&job, lease) => {
                tracing::warn!(job = %job.job_id, "lease taken over; leaving the job to its new owner");
                return Ok(true);
            }
        };
        // Record the outcome. A database that went away during the step (an outage, a
        // failover) must not leave the job leased to this live worker until the lease
        // lapses: it is recorded as soon as the database answers again. Every write is
        // fenced by the job's token, so a late record can never undo another worker's.
        let mut pause = Duration::from_millis(250);
        let give_up = std::time::Instant::now() + lease;
        let ours = loop {
            match self.record(&job, &outcome, now).await {
                Ok(ours) => break ours,
                Err(e) if std::time::Instant::now() < give_up => {
                    tracing::warn!(job = %job.job_id, error = format!("{e:#}"), "cannot record the step's outcome yet; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        };
        if !ours {
            tracing::warn!(job = %job.job_id, "lease taken over before the step finished; its new owner decides");
        }
        Ok(true)
    }

    /// Writes what a step came to; returns whether the job was still this worker's.
    async fn record(
        &self,
        job: &JobRow,
        outcome: &Result<Outcome>,
        now: Timestamp,
    ) -> Result<bool> {
        let mut conn = self.store.conn().await?;
        Ok(match outcome {
            Ok(Outcome::Done) => {
                let ours = store::job_done(&mut conn, job).await?;
                // It went through in the end: the alert about its failures is over.
                if ours && job.alerted == 1 {
                    let kind = AlertKind::JobFailing(job.kind);
                    store::resolve_alerts(&mut conn, kind, &job.subject_id, now).await?;
                }
                ours
            }
            Ok(Outcome::Finished) => true,
            Ok(Outcome::Again(at)) => store::job_again(&mut conn, job, *at).await?,
            // AWS asked to slow down: the provisioner has slowed its pace already; this
            // is not a failure of the job (no attempt counted, no alert), it runs again
            // after a poll interval.
            Err(e) if is_throttled(e) => {
                tracing::info!(job = %job.job_id, error = format!("{e:#}"), "throttled; trying again soon");
                store::job_again(&mut conn, job, self.poll_again_at(now)).await?
            }
            Err(e) => self.failed(&mut conn, job, e, now).await?,
        })
    }

    /// Renews the lease of a running job every third of its length; returns only once
    /// the token has moved on (another worker took the job over). A database that cannot
    /// be reached is not a lost lease: the step goes on, and its writes will tell.
    async fn keep_lease(&self, job: &JobRow, lease: Duration) {
        loop {
            tokio::time::sleep(lease / 3).await;
            let until = self.clock.now().plus(lease);
            let renewed = match self.store.conn().await {
                Ok(mut conn) => store::renew_lease(&mut conn, job, until).await,
                Err(e) => Err(e),
            };
            match renewed {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot renew a lease"),
            }
        }
    }

    /// A failed step: counted, retried after a jittered backoff, and alerted once after
    /// `alert_after_failures`. Returns whether the job was still this worker's.
    async fn failed(
        &self,
        conn: &mut sqlx::AnyConnection,
        job: &JobRow,
        e: &anyhow::Error,
        now: Timestamp,
    ) -> Result<bool> {
        let attempt = u32::try_from(job.attempts + 1).unwrap_or(u32::MAX);
        let delay = self.settings.retry_delay(attempt);
        tracing::warn!(
            error = format!("{e:#}"),
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            "job failed; will retry"
        );
        let message = format!("{e:#}");
        if !store::job_failed(conn, job, now.plus(delay), &message).await? {
            return Ok(false);
        }
        if attempt >= self.settings.alert_after_failures && job.alerted == 0 {
            let mut tx = self.store.begin().await?;
            store::raise_alert(
                &mut tx,
                AlertKind::JobFailing(job.kind),
                &job.subject_id,
                &if job.kind == JobKind::SyncBackstop {
                    format!(
                        "The AWS-side backstop is missing for grant {}: its schedule could not \
                         be set after {attempt} tries; still retrying. Last error: {message}",
                        job.subject_id
                    )
                } else {
                    format!(
                        "{} for {} failed {attempt} times; still retrying. Last error: {message}",
                        job.kind, job.subject_id
                    )
                },
                now,
            )
            .await?;
            store::mark_job_alerted(&mut tx, &job.job_id).await?;
            tx.commit().await?;
        }
        Ok(true)
    }

    /// Restores the invariant "every live grant has its jobs" (invariant 2): a grant not
    /// yet active gets its provisioning job back, a live grant its revocation job, each
    /// with an alert, since this only happens after a bug or a hand edit of the database.
    /// Returns how many jobs it put back. The worker runs it at start and every minute.
    pub async fn sweep(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let missing = store::grants_missing_jobs(&mut tx).await?;
        for (grant_id, kind, at) in &missing {
            let at = (*at).max(now);
            store::insert_job(&mut tx, *kind, grant_id, at, now).await?;
            let what = format!(
                "live grant {grant_id} had no {kind} job; the worker put it back (due {})",
                at.format_utc()
            );
            store::raise_alert(&mut tx, AlertKind::JobRestored, grant_id, &what, now).await?;
            // A repair is a state change like any other: on the audit trail too.
            let event = Event {
                action: "job.restored",
                person_id: None,
                subject_kind: "grant",
                subject_id: grant_id,
                entitlement_id: None,
                detail: what,
            };
            audit::audit(&mut tx, &Actor::system(), event, now).await?;
            tracing::error!(grant = %grant_id, %kind, "live grant without its job: restored");
        }
        tx.commit().await?;
        Ok(missing.len())
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
        let mut swept_at: Option<std::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.heartbeat.store(
                self.clock.now().millis(),
                std::sync::atomic::Ordering::Relaxed,
            );
            if self.sweeps
                && matches!(self.lane, store::Lane::Grants | store::Lane::All)
                && swept_at.is_none_or(|t| t.elapsed() >= SWEEP_EVERY)
            {
                if let Err(e) = self.sweep().await {
                    tracing::warn!(error = format!("{e:#}"), "sweep failed");
                }
                swept_at = Some(std::time::Instant::now());
            }
            match self.step().await {
                Ok(true) => {
                    // A step may have queued mail or chat (a grant settled, a reminder):
                    // the lane that delivers it is told now, not at its next poll.
                    if let Some(other) = &self.passes_wakes_to {
                        other.notify_one();
                    }
                    continue;
                }
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
                _ = self.woken_by.notified() => {
                    if let Some(other) = &self.passes_wakes_to {
                        other.notify_one();
                    }
                }
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
            Some(JobKind::SyncBackstop) => self.sync_backstop(&job.subject_id, now).await,
            Some(JobKind::Deprovision) => self.deprovision(&job.subject_id, now).await,
            Some(JobKind::DecisionTimeout) => self.decision_timeout(&job.subject_id, now).await,
            Some(JobKind::DeliverMail) => self.deliver_mail(job, now).await,
            Some(JobKind::AnnounceRequest) => self.announce_request(job, now).await,
            Some(JobKind::ApprovalReminder) => self.remind_approvers(job, now).await,
            Some(JobKind::ApprovalEscalation) => self.escalate(job, now).await,
            Some(JobKind::EndingSoon) => self.ending_soon(job, now).await,
            Some(JobKind::BreakGlassReview) => self.break_glass_unreviewed(job, now).await,
            Some(JobKind::SyncCatalog) => {
                let also: Vec<String> = self.mail.fallback_approver_group.iter().cloned().collect();
                let result = crate::upkeep::catalog::sync(
                    &self.store,
                    self.provisioner.as_ref(),
                    &*self.clock,
                    &also,
                )
                .await;
                self.upkeep_outcome(job, result.map(|_| ()), self.upkeep.catalog_every, now)
                    .await
            }
            Some(JobKind::Reconcile) => {
                let result = crate::upkeep::reconcile::run(
                    &self.store,
                    self.provisioner.as_ref(),
                    self.backstop.as_ref().map(|(b, _)| b.as_ref()),
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

    fn poll_again_at(&self, now: Timestamp) -> Timestamp {
        now.plus(Duration::from_millis(self.settings.poll_interval_ms))
    }

    fn poll_again(&self, now: Timestamp) -> Outcome {
        Outcome::Again(now.plus(Duration::from_millis(self.settings.poll_interval_ms)))
    }
}
