//! Test harness shared by the integration suites: a fresh, migrated and seeded store on
//! SQLite or PostgreSQL, a manual clock, the portal use cases, the simulated provisioner,
//! workers on demand, and a fault-injecting provisioner for retry tests.
//!
//! PostgreSQL tests need `POSTGRES_TEST_URL` (an admin URL such as
//! `postgres://postgres@127.0.0.1:55433/postgres`); each test creates its own database.
//! Without it they are skipped, saying so once on stderr, so that a plain `cargo test` runs
//! the SQLite half; under CI (`CI` set) they fail instead, so CI never skips them.

#![allow(dead_code)]

pub mod cli;
mod database;
mod flaky;
pub mod moto;
pub mod peers;
pub mod web;

pub use database::*;
pub use flaky::*;

use app::domain::Entitlement;
use app::domain::{
    AccountId, ApproverRule, PermissionSetArn, Policy, Principal, RequestDraft, Target,
    TargetScope, Timestamp,
};
use app::ssr::Portal;
use async_trait::async_trait;
use portcullis::clock::{Clock, ManualClock};
use portcullis::config::WorkerSettings;
use portcullis::mailer::{MailError, Mailer, OutboxOnly};
use portcullis::portal::PortalService;
use portcullis::provisioner::simulated::SimulatedProvisioner;
use portcullis::provisioner::{
    Assignment, AssignmentRecord, Assignments, CatalogSource, DeleteStart, Inventory,
    OperationStatus, Principals, ProvisionError, Provisioner,
};
use portcullis::seed;
use portcullis::store::{
    self, AuditKey, AuditQuery, AuditRow, DatabaseUrl, GrantRow, JobRow, Store,
};
use portcullis::worker::Worker;
use sqlx::{Connection, Executor, Row};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub const T0: Timestamp = Timestamp(1_800_000_000_000);
/// How long the simulated AWS takes to settle an operation (on the manual clock).
pub const SIM_DELAY: Duration = Duration::from_secs(2);
pub const POLL_MS: u64 = 200;
pub const BACKOFF_BASE_MS: u64 = 100;
pub const LEASE_SECS: u64 = 60;
pub const PUBLIC_URL: &str = "http://portal.test";
pub const ENV_VAR: &str = "POSTGRES_TEST_URL";

pub const HOUR_MS: i64 = 3_600_000;

/// The audit key of every test store.
pub fn audit_key() -> AuditKey {
    AuditKey::from_bytes(b"the Portcullis test suites' audit key: 32 bytes and more").unwrap()
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn name(Backend)` on both backends; the PostgreSQL run returns
/// at once without `POSTGRES_TEST_URL` (see [`postgres_or_skip`]).
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if !super::common::postgres_or_skip() {
                        return;
                    }
                    super::$name(super::common::Backend::Postgres).await
                }
            )*
        }
    };
}

pub struct TestEnv {
    pub backend: Backend,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub portal: PortalService,
    pub sim: Arc<SimulatedProvisioner>,
    pub wake: Arc<Notify>,
    /// The test's own database.
    pub url: DatabaseUrl,
    _dir: Option<tempfile::TempDir>,
}

/// The seeded personas: alice (engineering, manager bob), bob, carol (cloud-approvers,
/// security), dana (admin).
pub fn person(name: &str) -> Principal {
    seed::personas()
        .into_iter()
        .find(|p| p.user_id == format!("demo|{name}"))
        .unwrap_or_else(|| panic!("no persona {name}"))
}

/// An extra person, not among the seeded personas.
pub fn extra_person(name: &str, groups: &[&str]) -> Principal {
    Principal {
        user_id: format!("test|{name}"),
        email: format!("{name}@example.com"),
        email_verified: true,
        display_name: format!("{name} Extra"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        manager: None,
        is_admin: false,
    }
}

pub fn draft(duration: &str) -> RequestDraft {
    RequestDraft {
        justification: "Investigating INC-42".into(),
        duration: duration.into(),
        ticket: String::new(),
        ..Default::default()
    }
}

pub fn draft_with_ticket(duration: &str, ticket: &str) -> RequestDraft {
    RequestDraft {
        ticket: ticket.into(),
        ..draft(duration)
    }
}

pub fn settings() -> WorkerSettings {
    WorkerSettings {
        lease_secs: LEASE_SECS,
        poll_interval_ms: POLL_MS,
        backoff_base_ms: BACKOFF_BASE_MS,
        backoff_cap_secs: 5,
        ..WorkerSettings::default()
    }
}

/// A policy template: engineering may ask, nobody approves unless told, 4h max.
pub fn policy() -> Policy {
    Policy {
        eligible_groups: vec!["engineering".into()],
        eligible_users: vec![],
        approvers: ApproverRule::default(),
        manager_fallback: ApproverRule::default(),
        approvals_required: 1,
        steps: Vec::new(),
        max_duration_secs: 4 * 3600,
        default_duration_secs: 3600,
        require_ticket: false,
        ticket_pattern: None,
        ticket_example: None,
        auto_approve: false,
        break_glass: false,
        decision_timeout_secs: 24 * 3600,
        max_total_secs: None,
        extension_auto_approve_secs: 0,
        escalation: ApproverRule::default(),
        escalate_after_secs: 0,
        review_within_secs: 24 * 3600,
        chat: Vec::new(),
    }
}

/// An entitlement on one account with one permission set.
pub fn entitlement(id: &str, account: &str, permission_set: &str, policy: Policy) -> Entitlement {
    Entitlement {
        id: id.into(),
        name: format!("Test {id}"),
        description: "made by the test suite".into(),
        targets: vec![Target {
            scope: TargetScope::Account {
                account_id: AccountId::parse(account).unwrap(),
            },
            permission_set_arn: PermissionSetArn::parse(permission_set).unwrap(),
        }],
        policy,
    }
}

impl TestEnv {
    pub async fn new(backend: Backend) -> Self {
        let (url, dir) = fresh_database(backend).await;
        let url = DatabaseUrl::new(url);
        let store = Store::connect(&url, audit_key()).await.expect("connect");
        store.migrate().await.expect("migrate");
        seed::seed_demo(&store, T0).await.expect("seed");
        let clock = Arc::new(ManualClock::new(T0));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let sim = Arc::new(SimulatedProvisioner::new(
            store.clone(),
            dyn_clock.clone(),
            SIM_DELAY,
        ));
        let wake = Arc::new(Notify::new());
        let portal = PortalService {
            store: store.clone(),
            clock: dyn_clock,
            provisioner: sim.clone(),
            wake: wake.clone(),
            upkeep_wake: Default::default(),
            min_duration: Duration::from_secs(60),
            start_horizon: portcullis::config::DEFAULT_START_HORIZON,
            new_requests_per_hour: 10_000,
            metrics: Default::default(),
            public_url: PUBLIC_URL.into(),
        };
        Self {
            backend,
            store,
            clock,
            portal,
            sim,
            wake,
            url,
            _dir: dir,
        }
    }

    // ------------------------------------------------------------ workers and time

    /// A worker on the simulated provisioner, with the test settings.
    pub fn worker(&self) -> Worker {
        self.worker_with(self.sim.clone(), settings())
    }

    pub fn worker_with(
        &self,
        provisioner: Arc<dyn Provisioner>,
        settings: WorkerSettings,
    ) -> Worker {
        self.worker_full(provisioner, Arc::new(OutboxOnly), settings)
    }

    pub fn worker_full(
        &self,
        provisioner: Arc<dyn Provisioner>,
        mailer: Arc<dyn Mailer>,
        settings: WorkerSettings,
    ) -> Worker {
        Worker::new(
            self.store.clone(),
            provisioner,
            mailer,
            self.clock.clone(),
            self.wake.clone(),
            settings,
            PUBLIC_URL.into(),
        )
    }

    /// A provisioner that fails on demand and otherwise is the simulated one.
    pub fn flaky(&self) -> Arc<Flaky> {
        Arc::new(Flaky::new(SimulatedProvisioner::new(
            self.store.clone(),
            self.clock.clone(),
            SIM_DELAY,
        )))
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    pub fn set_time(&self, t: i64) {
        self.clock.set(Timestamp(t));
    }

    // ------------------------------------------------------------ reading state

    pub async fn conn(&self) -> sqlx::pool::PoolConnection<sqlx::Any> {
        self.store.conn().await.expect("connection")
    }

    pub async fn request(&self, id: &str) -> store::RequestRow {
        store::get_request(&mut *self.conn().await, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("request {id} not found"))
    }

    pub async fn request_status(&self, id: &str) -> String {
        self.request(id).await.status.to_string()
    }

    pub async fn grants(&self, request_id: &str) -> Vec<GrantRow> {
        store::grants_for_request(&mut *self.conn().await, request_id)
            .await
            .unwrap()
    }

    pub async fn grant(&self, id: &str) -> GrantRow {
        store::get_grant(&mut *self.conn().await, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("grant {id} not found"))
    }

    pub async fn only_grant(&self, request_id: &str) -> GrantRow {
        let mut g = self.grants(request_id).await;
        assert_eq!(
            g.len(),
            1,
            "expected exactly one grant for {request_id}: {g:?}"
        );
        g.remove(0)
    }

    pub async fn jobs(&self, subject: &str) -> Vec<JobRow> {
        store::jobs_for(&mut *self.conn().await, subject)
            .await
            .unwrap()
    }

    pub async fn job(&self, subject: &str, kind: &str) -> Option<JobRow> {
        self.jobs(subject)
            .await
            .into_iter()
            .find(|j| j.kind.as_str() == kind)
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }

    /// Every audit event, oldest first.
    pub async fn audit(&self) -> Vec<AuditRow> {
        let mut rows = store::query_audit(
            &mut *self.conn().await,
            &AuditQuery {
                limit: 1_000_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        rows.reverse();
        rows
    }

    pub async fn audit_with(&self, action: &str) -> Vec<AuditRow> {
        self.audit()
            .await
            .into_iter()
            .filter(|a| a.action == action)
            .collect()
    }

    pub async fn audit_about(&self, subject: &str) -> Vec<String> {
        self.audit()
            .await
            .into_iter()
            .filter(|a| a.subject_id == subject)
            .map(|a| a.action)
            .collect()
    }

    pub async fn mail_to(&self, recipient: &str) -> Vec<store::OutboxRow> {
        let mut m: Vec<_> = store::recent_mail(&mut *self.conn().await, 100_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.recipient == recipient)
            .collect();
        m.reverse();
        m
    }

    pub async fn mail_subjects(&self, recipient: &str) -> Vec<String> {
        self.mail_to(recipient)
            .await
            .into_iter()
            .map(|m| m.subject)
            .collect()
    }

    pub async fn alerts(&self, kind: &str) -> Vec<store::AlertRow> {
        store::open_alerts(&mut *self.conn().await, None)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.kind.as_str() == kind)
            .collect()
    }

    pub async fn all_alerts(&self) -> Vec<store::AlertRow> {
        store::open_alerts(&mut *self.conn().await, None)
            .await
            .unwrap()
    }

    /// The first audit event that does not verify with the store's key, if any.
    pub async fn verify_chain(&self) -> Option<i64> {
        store::verify_audit_chain(&mut *self.conn().await, self.store.audit_key())
            .await
            .unwrap()
            .first_bad
    }

    /// Whether the simulated AWS holds the assignment of this grant.
    pub async fn assignment_exists(&self, g: &GrantRow) -> bool {
        self.sim
            .assignment_exists(&Assignment {
                account_id: g.account_id.clone(),
                permission_set_arn: g.permission_set_arn.clone(),
                user_id: g.principal_id.clone(),
                user_name: String::new(),
                principal_id: None,
            })
            .await
            .unwrap()
    }

    pub async fn assignments(&self) -> Vec<AssignmentRecord> {
        let pairs = portcullis::grants::managed_pairs(&mut *self.conn().await)
            .await
            .unwrap();
        self.sim.list_assignments(&pairs).await.unwrap()
    }

    /// AWS operations the simulated provisioner was asked to start, of one kind
    /// (`create` or `delete`), for one (account, permission set, principal).
    pub async fn sim_operations(&self, kind: &str, g: &GrantRow) -> Vec<(String, String)> {
        sqlx::query(
            "SELECT request_id, status FROM sim_operation WHERE kind = $1 AND account_id = $2
             AND permission_set_arn = $3 AND principal_id = $4 ORDER BY created_at, request_id",
        )
        .bind(kind)
        .bind(&g.account_id)
        .bind(&g.permission_set_arn)
        .bind(&g.principal_id)
        .fetch_all(self.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("request_id"),
                r.get::<String, _>("status"),
            )
        })
        .collect()
    }

    /// Real AWS finishes operations whether or not anybody polls them: settle every
    /// simulated operation still in progress once its time has come.
    pub async fn aws_completes_everything(&self) {
        let rows =
            sqlx::query("SELECT request_id, kind FROM sim_operation WHERE status = 'IN_PROGRESS'")
                .fetch_all(self.store.pool())
                .await
                .unwrap();
        for r in rows {
            let id: String = r.get("request_id");
            let kind: String = r.get("kind");
            let _ = if kind == "create" {
                self.sim.creation_status(&id).await
            } else {
                self.sim.deletion_status(&id).await
            };
        }
    }

    // ------------------------------------------------------------ acting

    /// Creates a request and returns its id, panicking on refusal.
    pub async fn ask(&self, who: &Principal, entitlement: &str, duration: &str) -> String {
        let d = if entitlement == "prod-admin" {
            draft_with_ticket(duration, "CHG-1234")
        } else {
            draft(duration)
        };
        self.portal
            .create_request(who, entitlement, d)
            .await
            .unwrap_or_else(|e| panic!("{} asking for {entitlement}: {e:?}", who.user_id))
    }

    /// The ids of the requests waiting in `who`'s approval queue.
    pub async fn queue_ids(&self, who: &Principal) -> Vec<String> {
        use app::ssr::Portal;
        let pending = self.portal.approvals(who).await.unwrap().pending;
        pending.into_iter().map(|r| r.id).collect()
    }

    pub async fn add_entitlement(&self, e: &Entitlement) {
        store::upsert_entitlement(&mut *self.conn().await, e, self.now())
            .await
            .unwrap();
    }

    pub async fn upsert_user(&self, p: &Principal) {
        store::upsert_user(&mut *self.conn().await, p, self.now())
            .await
            .unwrap();
    }

    /// Runs the worker until nothing is due within the next minute, moving the clock
    /// forward to each next due time (AWS operations, polls, retries).
    pub async fn settle(&self, worker: &Worker) {
        for _ in 0..10_000 {
            worker.drain().await.expect("worker step");
            let next = store::next_job_due(&mut *self.conn().await).await.unwrap();
            let now = self.now().millis();
            match next {
                Some(at) if at.millis() <= now + 60_000 => {
                    self.set_time(at.millis().max(now + 1));
                }
                _ => return,
            }
        }
        panic!("the worker never went quiet");
    }

    /// Moves the clock to `t` in small steps, draining the worker at each.
    pub async fn run_until(&self, worker: &Worker, t: i64, step: Duration) {
        while self.now().millis() < t {
            let next = (self.now().millis() + step.as_millis() as i64).min(t);
            self.set_time(next);
            worker.drain().await.expect("worker step");
        }
    }

    /// Leases every due job to a worker that will never finish them, except jobs of
    /// `keep_kind`, which stay free for the next claim.
    pub async fn lease_away_all_but(&self, keep_kind: &str) -> Vec<JobRow> {
        let lease = Duration::from_secs(LEASE_SECS);
        let mut kept = Vec::new();
        let mut taken = Vec::new();
        while let Some(job) = store::claim_job(&self.store, "test-hog", self.now(), lease)
            .await
            .unwrap()
        {
            assert!(
                kept.len() + taken.len() < 1000,
                "claim_job keeps handing out jobs that are already leased"
            );
            if job.kind.as_str() == keep_kind {
                kept.push(job);
            } else {
                taken.push(job);
            }
        }
        for job in &kept {
            store::reschedule_job(
                &mut *self.conn().await,
                &job.job_id,
                Timestamp(job.run_at.millis()),
                None,
            )
            .await
            .unwrap();
        }
        taken
    }

    /// Invariants that must hold whenever the worker is between jobs.
    pub async fn check_invariants(&self) {
        assert_eq!(
            self.verify_chain().await,
            None,
            "the audit chain must verify"
        );
        let grants: Vec<GrantRow> = sqlx::query_as(
            "SELECT access_grant_id, access_request_id, principal_id, account_id, permission_set_arn,
                    starts_at, ends_at, status, operation_id, operation_started_at, failure_reason, ended_by, aws_principal_id
             FROM access_grant",
        )
        .fetch_all(self.store.pool())
        .await
        .unwrap();
        for g in &grants {
            let live = matches!(
                g.status.as_str(),
                "scheduled" | "provisioning" | "active" | "deprovisioning"
            );
            if live {
                // Invariant 2: a live grant never forgets its end.
                assert!(
                    self.job(&g.access_grant_id, "deprovision").await.is_some(),
                    "live grant {} ({}) has no deprovision job",
                    g.access_grant_id,
                    g.status
                );
            }
            if g.status.as_str() == "active" {
                assert!(
                    self.assignment_exists(g).await,
                    "grant {} is active but AWS has no assignment",
                    g.access_grant_id
                );
            }
        }
        // No access in AWS that no live grant accounts for.
        for a in self.assignments().await {
            let covered = grants.iter().any(|g| {
                g.account_id == a.account_id
                    && g.permission_set_arn == a.permission_set_arn
                    && g.principal_id == a.principal
                    && matches!(
                        g.status.as_str(),
                        "provisioning" | "active" | "deprovisioning"
                    )
            });
            assert!(
                covered,
                "assignment {a:?} in AWS is not covered by any live grant"
            );
        }
    }

    // ------------------------------------------------------------ contention

    /// Holds a lock that the grant's next writers must wait for: the grant's row on
    /// PostgreSQL (as another replica's transaction would), the write lock on SQLite.
    pub async fn hold_grant(&self, grant_id: &str) -> store::Tx {
        match self.backend {
            Backend::Postgres => {
                let mut tx = self.store.begin().await.unwrap();
                sqlx::query("SELECT access_grant_id FROM access_grant WHERE access_grant_id = $1 FOR UPDATE")
                    .bind(grant_id)
                    .fetch_all(&mut *tx)
                    .await
                    .unwrap();
                tx
            }
            Backend::Sqlite => self.store.begin().await.unwrap(),
        }
    }

    /// Waits until `n` sessions wait on a lock (PostgreSQL), or a while (SQLite, whose
    /// writers wait in the busy handler, invisible from outside).
    pub async fn wait_for_waiters(&self, n: i64) {
        match self.backend {
            Backend::Postgres => {
                for _ in 0..500 {
                    let waiting: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM pg_stat_activity
                         WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    )
                    .fetch_one(self.store.pool())
                    .await
                    .unwrap();
                    if waiting >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("never saw {n} sessions waiting on a lock");
            }
            Backend::Sqlite => tokio::time::sleep(Duration::from_millis(150 * n as u64)).await,
        }
    }
}
