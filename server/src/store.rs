//! The store: every query Portcullis runs, for SQLite and PostgreSQL alike.
//!
//! SQL here is written once for both (`$N` parameters, BIGINT epoch milliseconds, TEXT ids).
//! Write transactions on SQLite start with `BEGIN IMMEDIATE` so that concurrent writers
//! queue on the busy timeout instead of failing on lock upgrade; on PostgreSQL, rows are
//! locked by touching them first (`lock_*`), which serialises racing decisions and workers.

use anyhow::{Context, Result};
use app::domain::{GrantStatus, Principal, RecordId, RequestStatus, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Executor, Row};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A database URL whose `Debug` and `Display` hide the password.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    fn redacted(&self) -> String {
        // scheme://user:password@host -> scheme://user:***@host
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let creds = &self.0[s + 3..at];
                match creds.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &self.0[..s + 3], &self.0[at..]),
                    None => self.0.clone(),
                }
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

pub fn new_id() -> String {
    RecordId::from_random(rand::random()).to_string()
}

impl Store {
    #[tracing::instrument(skip_all, fields(url = %url))]
    pub async fn connect(url: &DatabaseUrl) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.is_postgres() {
            Dialect::Postgres
        } else if url.is_sqlite() {
            Dialect::Sqlite
        } else {
            anyhow::bail!("unsupported database URL {url}: use sqlite://FILE or postgres://…");
        };
        let options = AnyConnectOptions::from_str(url.expose())
            .with_context(|| format!("invalid database URL {url}"))?;
        let mut pool = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(10));
        if dialect == Dialect::Sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the database at {url}"))?;
        Ok(Self { pool, dialect })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("database migration failed")
    }

    /// Reachable and at the latest migration.
    pub async fn is_ready(&self) -> bool {
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await;
        matches!(applied, Ok(Some(v)) if v >= latest)
    }

    /// Whether there is a catalog to offer: accounts in it, or a catalog sync that
    /// succeeded (an organization can be empty). A first start waits for its first sync.
    pub async fn catalog_ready(&self) -> bool {
        let n: Result<i64, _> = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM account)
                  + (SELECT COUNT(*) FROM maintenance_run WHERE kind = 'sync_catalog' AND status = 'succeeded')",
        )
        .fetch_one(&self.pool)
        .await;
        matches!(n, Ok(n) if n > 0)
    }

    /// A write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        };
        tx.context("cannot start a database transaction")
    }

    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        self.pool.acquire().await.context("no database connection")
    }
}

// ------------------------------------------------------------------ users

fn principal_from_row(row: &sqlx::any::AnyRow) -> Result<Principal> {
    let groups: String = row.try_get("groups_json")?;
    Ok(Principal {
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        groups: serde_json::from_str(&groups).context("bad groups_json")?,
        manager: row.try_get("manager")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
    })
}

/// Records the claims of a sign-in: groups and manager are refreshed every time.
pub async fn upsert_user(conn: &mut AnyConnection, p: &Principal, now: Timestamp) -> Result<()> {
    sqlx::query(
        "INSERT INTO app_user (user_id, email, display_name, groups_json, manager, is_admin, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, display_name = excluded.display_name,
             groups_json = excluded.groups_json, manager = excluded.manager, is_admin = excluded.is_admin,
             updated_at = excluded.updated_at",
    )
    .bind(&p.user_id)
    .bind(&p.email)
    .bind(&p.display_name)
    .bind(serde_json::to_string(&p.groups)?)
    .bind(&p.manager)
    .bind(i64::from(p.is_admin))
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_user(conn: &mut AnyConnection, user_id: &str) -> Result<Option<Principal>> {
    let row = sqlx::query("SELECT * FROM app_user WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(principal_from_row).transpose()
}

pub async fn all_users(conn: &mut AnyConnection) -> Result<Vec<Principal>> {
    let rows = sqlx::query("SELECT * FROM app_user ORDER BY email")
        .fetch_all(conn)
        .await?;
    rows.iter().map(principal_from_row).collect()
}

// ------------------------------------------------------------------ catalog

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccountRow {
    pub account_id: String,
    pub name: String,
    pub ou_id: String,
    pub ou_path: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PermissionSetRow {
    pub permission_set_arn: String,
    pub name: String,
    pub description: String,
    pub session_duration_secs: i64,
}

pub async fn upsert_account(
    conn: &mut AnyConnection,
    a: &AccountRow,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO account (account_id, name, ou_id, ou_path, synced_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account_id) DO UPDATE SET name = excluded.name, ou_id = excluded.ou_id,
             ou_path = excluded.ou_path, synced_at = excluded.synced_at",
    )
    .bind(&a.account_id)
    .bind(&a.name)
    .bind(&a.ou_id)
    .bind(&a.ou_path)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn upsert_permission_set(
    conn: &mut AnyConnection,
    p: &PermissionSetRow,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO permission_set (permission_set_arn, name, description, session_duration_secs, synced_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (permission_set_arn) DO UPDATE SET name = excluded.name,
             description = excluded.description, session_duration_secs = excluded.session_duration_secs,
             synced_at = excluded.synced_at",
    )
    .bind(&p.permission_set_arn)
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.session_duration_secs)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_account(conn: &mut AnyConnection, id: &str) -> Result<Option<AccountRow>> {
    Ok(
        sqlx::query_as(
            "SELECT account_id, name, ou_id, ou_path FROM account WHERE account_id = $1",
        )
        .bind(id)
        .fetch_optional(conn)
        .await?,
    )
}

pub async fn all_accounts(conn: &mut AnyConnection) -> Result<Vec<AccountRow>> {
    Ok(
        sqlx::query_as("SELECT account_id, name, ou_id, ou_path FROM account ORDER BY name")
            .fetch_all(conn)
            .await?,
    )
}

/// Accounts anywhere below an OU, nested OUs included.
pub async fn accounts_under_ou(conn: &mut AnyConnection, ou_id: &str) -> Result<Vec<AccountRow>> {
    Ok(sqlx::query_as(
        "SELECT account_id, name, ou_id, ou_path FROM account WHERE ou_path LIKE $1 ORDER BY account_id",
    )
    .bind(format!("%/{ou_id}/%"))
    .fetch_all(conn)
    .await?)
}

pub async fn get_permission_set(
    conn: &mut AnyConnection,
    arn: &str,
) -> Result<Option<PermissionSetRow>> {
    Ok(sqlx::query_as(
        "SELECT permission_set_arn, name, description, session_duration_secs FROM permission_set
         WHERE permission_set_arn = $1",
    )
    .bind(arn)
    .fetch_optional(conn)
    .await?)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EntitlementRow {
    pub entitlement_id: String,
    pub name: String,
    pub description: String,
    pub targets_json: String,
    pub policy_json: String,
}

pub async fn upsert_entitlement(
    conn: &mut AnyConnection,
    e: &EntitlementRow,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO entitlement (entitlement_id, name, description, targets_json, policy_json, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (entitlement_id) DO UPDATE SET name = excluded.name, description = excluded.description,
             targets_json = excluded.targets_json, policy_json = excluded.policy_json,
             updated_at = excluded.updated_at",
    )
    .bind(&e.entitlement_id)
    .bind(&e.name)
    .bind(&e.description)
    .bind(&e.targets_json)
    .bind(&e.policy_json)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn all_entitlements(conn: &mut AnyConnection) -> Result<Vec<EntitlementRow>> {
    Ok(sqlx::query_as(
        "SELECT entitlement_id, name, description, targets_json, policy_json FROM entitlement ORDER BY name",
    )
    .fetch_all(conn)
    .await?)
}

pub async fn get_entitlement(conn: &mut AnyConnection, id: &str) -> Result<Option<EntitlementRow>> {
    Ok(sqlx::query_as(
        "SELECT entitlement_id, name, description, targets_json, policy_json FROM entitlement
         WHERE entitlement_id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

// ------------------------------------------------------------------ requests and decisions

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RequestRow {
    pub access_request_id: String,
    pub requester_id: String,
    pub entitlement_id: String,
    pub justification: String,
    pub ticket: Option<String>,
    pub duration_secs: i64,
    pub starts_at: i64,
    pub decision_due_at: i64,
    pub status: String,
    pub created_at: i64,
}

impl RequestRow {
    pub fn status(&self) -> Result<RequestStatus> {
        RequestStatus::parse(&self.status)
            .with_context(|| format!("unknown request status {:?}", self.status))
    }
}

const REQUEST_COLS: &str =
    "access_request_id, requester_id, entitlement_id, justification, ticket, \
    duration_secs, starts_at, decision_due_at, status, created_at";

pub async fn insert_request(conn: &mut AnyConnection, r: &RequestRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO access_request (access_request_id, requester_id, entitlement_id, justification, ticket,
             duration_secs, starts_at, decision_due_at, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(&r.access_request_id)
    .bind(&r.requester_id)
    .bind(&r.entitlement_id)
    .bind(&r.justification)
    .bind(&r.ticket)
    .bind(r.duration_secs)
    .bind(r.starts_at)
    .bind(r.decision_due_at)
    .bind(&r.status)
    .bind(r.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Reads a request inside a write transaction, holding its row lock until commit.
pub async fn lock_request(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>> {
    sqlx::query("UPDATE access_request SET updated_at = updated_at WHERE access_request_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    get_request(conn, id).await
}

pub async fn get_request(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request WHERE access_request_id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn set_request_status(
    conn: &mut AnyConnection,
    id: &str,
    status: RequestStatus,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE access_request SET status = $1, updated_at = $2 WHERE access_request_id = $3",
    )
    .bind(status.as_str())
    .bind(now.millis())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn requests_by_requester(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request WHERE requester_id = $1 ORDER BY created_at DESC LIMIT 200"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

pub async fn requests_with_status(
    conn: &mut AnyConnection,
    status: RequestStatus,
) -> Result<Vec<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request WHERE status = $1 ORDER BY created_at LIMIT 500"
    ))
    .bind(status.as_str())
    .fetch_all(conn)
    .await?)
}

pub async fn recent_requests(conn: &mut AnyConnection, limit: i64) -> Result<Vec<RequestRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REQUEST_COLS} FROM access_request ORDER BY created_at DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DecisionRow {
    pub decision_id: String,
    pub access_request_id: String,
    pub approver_id: String,
    pub verdict: String,
    pub comment: String,
    pub created_at: i64,
}

pub async fn insert_decision(conn: &mut AnyConnection, d: &DecisionRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO decision (decision_id, access_request_id, approver_id, verdict, comment, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&d.decision_id)
    .bind(&d.access_request_id)
    .bind(&d.approver_id)
    .bind(&d.verdict)
    .bind(&d.comment)
    .bind(d.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn decisions_for_request(conn: &mut AnyConnection, id: &str) -> Result<Vec<DecisionRow>> {
    Ok(sqlx::query_as(
        "SELECT decision_id, access_request_id, approver_id, verdict, comment, created_at FROM decision
         WHERE access_request_id = $1 ORDER BY created_at",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

pub async fn decisions_by_approver(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<DecisionRow>> {
    Ok(sqlx::query_as(
        "SELECT decision_id, access_request_id, approver_id, verdict, comment, created_at FROM decision
         WHERE approver_id = $1 ORDER BY created_at DESC LIMIT 200",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

// ------------------------------------------------------------------ grants

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GrantRow {
    pub access_grant_id: String,
    pub access_request_id: String,
    pub principal_id: String,
    pub account_id: String,
    pub permission_set_arn: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub status: String,
    pub operation_id: Option<String>,
    pub operation_started_at: Option<i64>,
    pub failure_reason: Option<String>,
    pub ended_by: Option<String>,
}

impl GrantRow {
    pub fn status(&self) -> Result<GrantStatus> {
        GrantStatus::parse(&self.status)
            .with_context(|| format!("unknown grant status {:?}", self.status))
    }
}

const GRANT_COLS: &str =
    "access_grant_id, access_request_id, principal_id, account_id, permission_set_arn, \
    starts_at, ends_at, status, operation_id, operation_started_at, failure_reason, ended_by";

pub async fn insert_grant(conn: &mut AnyConnection, g: &GrantRow, now: Timestamp) -> Result<()> {
    sqlx::query(
        "INSERT INTO access_grant (access_grant_id, access_request_id, principal_id, account_id,
             permission_set_arn, starts_at, ends_at, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&g.access_grant_id)
    .bind(&g.access_request_id)
    .bind(&g.principal_id)
    .bind(&g.account_id)
    .bind(&g.permission_set_arn)
    .bind(g.starts_at)
    .bind(g.ends_at)
    .bind(&g.status)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_grant(conn: &mut AnyConnection, id: &str) -> Result<Option<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant WHERE access_grant_id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn lock_grant(conn: &mut AnyConnection, id: &str) -> Result<Option<GrantRow>> {
    sqlx::query("UPDATE access_grant SET updated_at = updated_at WHERE access_grant_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    get_grant(conn, id).await
}

/// The grant's new status and, for operations in flight, the AWS request id.
pub struct GrantUpdate<'a> {
    pub status: GrantStatus,
    pub operation_id: Option<&'a str>,
    pub operation_started_at: Option<Timestamp>,
    pub failure_reason: Option<&'a str>,
}

impl<'a> GrantUpdate<'a> {
    /// A status with no AWS operation in flight.
    pub fn settled(status: GrantStatus) -> Self {
        Self {
            status,
            operation_id: None,
            operation_started_at: None,
            failure_reason: None,
        }
    }

    /// An AWS operation started at `at`; `op` is `None` while the worker has claimed the
    /// operation but AWS has not answered with a request id yet.
    pub fn in_flight(status: GrantStatus, op: Option<&'a str>, at: Timestamp) -> Self {
        Self {
            status,
            operation_id: op,
            operation_started_at: Some(at),
            failure_reason: None,
        }
    }

    pub fn failure(self, reason: Option<&'a str>) -> Self {
        Self {
            failure_reason: reason,
            ..self
        }
    }
}

pub async fn update_grant(
    conn: &mut AnyConnection,
    id: &str,
    u: GrantUpdate<'_>,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE access_grant SET status = $1, operation_id = $2, operation_started_at = $3,
             failure_reason = COALESCE($4, failure_reason), updated_at = $5
         WHERE access_grant_id = $6",
    )
    .bind(u.status.as_str())
    .bind(u.operation_id)
    .bind(u.operation_started_at.map(Timestamp::millis))
    .bind(u.failure_reason)
    .bind(now.millis())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a grant's end forward to `at` (end early, admin revoke), and records who did it.
pub async fn end_grant_at(
    conn: &mut AnyConnection,
    id: &str,
    at: Timestamp,
    by: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE access_grant SET ends_at = $1, ended_by = $2, updated_at = $1
         WHERE access_grant_id = $3 AND ends_at > $1",
    )
    .bind(at.millis())
    .bind(by)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn grants_for_request(conn: &mut AnyConnection, id: &str) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant WHERE access_request_id = $1 ORDER BY account_id"
    ))
    .bind(id)
    .fetch_all(conn)
    .await?)
}

pub async fn grants_for_principal(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant WHERE principal_id = $1 ORDER BY starts_at DESC LIMIT 200"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

/// Grants that hold or are about to hold an assignment, soonest end first, at most
/// `limit` of them (the admin page) or all (reconciliation).
pub async fn live_grants(conn: &mut AnyConnection, limit: Option<i64>) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant
         WHERE status IN ('scheduled', 'provisioning', 'active', 'deprovisioning')
         ORDER BY ends_at LIMIT $1"
    ))
    .bind(limit.unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?)
}

/// Other grants that hold, or are about to hold, the same AWS assignment, and whose time
/// is not over. An assignment is deleted only when this is empty (invariant 3).
pub async fn other_live_covering(
    conn: &mut AnyConnection,
    g: &GrantRow,
    now: Timestamp,
) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant
         WHERE principal_id = $1 AND permission_set_arn = $2 AND account_id = $3
           AND access_grant_id <> $4 AND status IN ('provisioning', 'active') AND ends_at > $5"
    ))
    .bind(&g.principal_id)
    .bind(&g.permission_set_arn)
    .bind(&g.account_id)
    .bind(&g.access_grant_id)
    .bind(now.millis())
    .fetch_all(conn)
    .await?)
}

// ------------------------------------------------------------------ jobs

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum JobKind {
    Provision,
    Deprovision,
    DecisionTimeout,
    DeliverMail,
    /// Tells the configured approver addresses about a new request and schedules its
    /// reminder and escalation (the worker holds those settings).
    AnnounceRequest,
    ApprovalReminder,
    ApprovalEscalation,
    /// Warns the holder of an active grant that it ends soon.
    EndingSoon,
    /// Reads accounts, OUs and permission sets from AWS (one job, rescheduled each time).
    SyncCatalog,
    /// Compares AWS's assignments with the live grants (one job, rescheduled each time).
    Reconcile,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Deprovision => "deprovision",
            Self::DecisionTimeout => "decision_timeout",
            Self::DeliverMail => "deliver_mail",
            Self::AnnounceRequest => "announce_request",
            Self::ApprovalReminder => "approval_reminder",
            Self::ApprovalEscalation => "approval_escalation",
            Self::EndingSoon => "ending_soon",
            Self::SyncCatalog => "sync_catalog",
            Self::Reconcile => "reconcile",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Provision,
            Self::Deprovision,
            Self::DecisionTimeout,
            Self::DeliverMail,
            Self::AnnounceRequest,
            Self::ApprovalReminder,
            Self::ApprovalEscalation,
            Self::EndingSoon,
            Self::SyncCatalog,
            Self::Reconcile,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRow {
    pub job_id: String,
    pub kind: String,
    pub subject_id: String,
    pub run_at: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// 1 once admins were alerted about this job's failures.
    pub alerted: i64,
}

pub async fn insert_job(
    conn: &mut AnyConnection,
    kind: JobKind,
    subject_id: &str,
    run_at: Timestamp,
    now: Timestamp,
) -> Result<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO job (job_id, kind, subject_id, run_at, attempts, alerted, created_at)
         VALUES ($1, $2, $3, $4, 0, 0, $5)",
    )
    .bind(&id)
    .bind(kind.as_str())
    .bind(subject_id)
    .bind(run_at.millis())
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(id)
}

/// Claims the most overdue job whose lease is free. Exactly one worker wins a job:
/// on PostgreSQL the candidate row is locked and skipped by others; on SQLite the
/// write transaction is exclusive. The conditional UPDATE re-checks the lease either way.
pub async fn claim_job(
    store: &Store,
    worker: &str,
    now: Timestamp,
    lease: Duration,
) -> Result<Option<JobRow>> {
    claim_job_in(store, worker, now, lease, Lane::All).await
}

/// Which jobs a worker takes: catalog syncs and reconciliations make hundreds of paced AWS
/// calls, so the server runs them in a lane of their own, where they never hold up a
/// revocation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Lane {
    All,
    /// Everything but maintenance.
    Grants,
    /// Catalog sync and reconciliation only.
    Maintenance,
}

impl Lane {
    fn filter(self) -> &'static str {
        match self {
            Lane::All => "",
            Lane::Grants => " AND kind NOT IN ('sync_catalog', 'reconcile')",
            Lane::Maintenance => " AND kind IN ('sync_catalog', 'reconcile')",
        }
    }
}

/// [`claim_job`] within one lane.
pub async fn claim_job_in(
    store: &Store,
    worker: &str,
    now: Timestamp,
    lease: Duration,
    lane: Lane,
) -> Result<Option<JobRow>> {
    let lane = lane.filter();
    let skip_locked = match store.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let mut tx = store.begin().await?;
    let candidate: Option<String> = sqlx::query_scalar(&format!(
        "SELECT job_id FROM job WHERE run_at <= $1 AND (lease_until IS NULL OR lease_until < $1){lane}
         ORDER BY run_at LIMIT 1{skip_locked}"
    ))
    .bind(now.millis())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(job_id) = candidate else {
        tx.commit().await?;
        return Ok(None);
    };
    let lease_until = now.plus(lease).millis();
    let job: Option<JobRow> = sqlx::query_as(
        "UPDATE job SET lease_owner = $1, lease_until = $2
         WHERE job_id = $3 AND (lease_until IS NULL OR lease_until < $4)
         RETURNING job_id, kind, subject_id, run_at, attempts, last_error, alerted",
    )
    .bind(worker)
    .bind(lease_until)
    .bind(&job_id)
    .bind(now.millis())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(job)
}

pub async fn delete_job(conn: &mut AnyConnection, job_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM job WHERE job_id = $1")
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs the job again at `run_at`, releasing the lease, unless someone moved it while it
/// ran (an admin asking for a run now): then it keeps their time.
pub async fn reschedule_job_after(
    conn: &mut AnyConnection,
    job_id: &str,
    claimed_run_at: i64,
    run_at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE job SET run_at = CASE WHEN run_at <> $1 THEN run_at ELSE $2 END,
             lease_owner = NULL, lease_until = NULL, last_error = NULL
         WHERE job_id = $3",
    )
    .bind(claimed_run_at)
    .bind(run_at.millis())
    .bind(job_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs the job again at `run_at`, releasing the lease. `failed` counts an attempt.
pub async fn reschedule_job(
    conn: &mut AnyConnection,
    job_id: &str,
    run_at: Timestamp,
    failure: Option<&str>,
) -> Result<()> {
    let q = match failure {
        Some(_) => {
            "UPDATE job SET run_at = $1, lease_owner = NULL, lease_until = NULL,
                 attempts = attempts + 1, last_error = $2 WHERE job_id = $3"
        }
        // A poll is not a failure, but it must not forget earlier ones either: an operation
        // that keeps failing between polls still reaches the alert threshold (invariant 4).
        None => {
            "UPDATE job SET run_at = $1, lease_owner = NULL, lease_until = NULL,
                 last_error = $2 WHERE job_id = $3"
        }
    };
    sqlx::query(q)
        .bind(run_at.millis())
        .bind(failure)
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn mark_job_alerted(conn: &mut AnyConnection, job_id: &str) -> Result<()> {
    sqlx::query("UPDATE job SET alerted = 1 WHERE job_id = $1")
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_jobs_for(
    conn: &mut AnyConnection,
    subject_id: &str,
    kind: JobKind,
) -> Result<()> {
    sqlx::query("DELETE FROM job WHERE subject_id = $1 AND kind = $2")
        .bind(subject_id)
        .bind(kind.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Brings a subject's job forward (never later than it already is).
pub async fn advance_job(
    conn: &mut AnyConnection,
    subject_id: &str,
    kind: JobKind,
    run_at: Timestamp,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE job SET run_at = $1 WHERE subject_id = $2 AND kind = $3 AND run_at > $1",
    )
    .bind(run_at.millis())
    .bind(subject_id)
    .bind(kind.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Jobs whose failures the admins were alerted about (and which still retry).
pub async fn alerted_jobs(conn: &mut AnyConnection) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as(
        "SELECT job_id, kind, subject_id, run_at, attempts, last_error, alerted FROM job
         WHERE alerted = 1",
    )
    .fetch_all(conn)
    .await?)
}

pub async fn jobs_for(conn: &mut AnyConnection, subject_id: &str) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as(
        "SELECT job_id, kind, subject_id, run_at, attempts, last_error, alerted FROM job
         WHERE subject_id = $1 ORDER BY run_at",
    )
    .bind(subject_id)
    .fetch_all(conn)
    .await?)
}

/// When the next job falls due (leases included), for the worker's sleep.
pub async fn next_job_due(conn: &mut AnyConnection) -> Result<Option<Timestamp>> {
    next_job_due_in(conn, Lane::All).await
}

/// [`next_job_due`] within one lane.
pub async fn next_job_due_in(conn: &mut AnyConnection, lane: Lane) -> Result<Option<Timestamp>> {
    let at: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > run_at THEN lease_until ELSE run_at END)
         FROM job WHERE 1 = 1{}",
        lane.filter()
    ))
    .fetch_one(conn)
    .await?;
    Ok(at.map(Timestamp))
}

#[derive(Clone, Debug, Default)]
pub struct JobStats {
    pub queued: i64,
    pub overdue: i64,
    pub failing: i64,
    pub oldest_overdue: Option<Timestamp>,
}

pub async fn job_stats(
    conn: &mut AnyConnection,
    now: Timestamp,
    grace: Duration,
) -> Result<JobStats> {
    let cutoff = Timestamp(now.millis() - grace.as_millis() as i64);
    let row = sqlx::query(
        "SELECT COUNT(*) AS queued,
                COALESCE(SUM(CASE WHEN run_at < $1 THEN 1 ELSE 0 END), 0) AS overdue,
                COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) AS failing,
                MIN(CASE WHEN run_at < $1 THEN run_at END) AS oldest
         FROM job",
    )
    .bind(cutoff.millis())
    .fetch_one(conn)
    .await?;
    Ok(JobStats {
        queued: row.try_get("queued")?,
        overdue: row.try_get("overdue")?,
        failing: row.try_get("failing")?,
        oldest_overdue: row.try_get::<Option<i64>, _>("oldest")?.map(Timestamp),
    })
}

// ------------------------------------------------------------------ outbox

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub outbox_id: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Queues a message and the job that delivers it, in the caller's transaction.
pub async fn enqueue_mail(
    conn: &mut AnyConnection,
    recipient: &str,
    subject: &str,
    body_text: &str,
    body_html: &str,
    now: Timestamp,
) -> Result<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO outbox (outbox_id, recipient, subject, body_text, body_html, status, attempts, created_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6)",
    )
    .bind(&id)
    .bind(recipient)
    .bind(subject)
    .bind(body_text)
    .bind(body_html)
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    insert_job(conn, JobKind::DeliverMail, &id, now, now).await?;
    Ok(id)
}

const OUTBOX_COLS: &str =
    "outbox_id, recipient, subject, body_text, body_html, status, attempts, last_error, created_at";

pub async fn get_mail(conn: &mut AnyConnection, id: &str) -> Result<Option<OutboxRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {OUTBOX_COLS} FROM outbox WHERE outbox_id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn set_mail_status(
    conn: &mut AnyConnection,
    id: &str,
    status: &str,
    error: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = $1, last_error = $2, attempts = attempts + 1,
             sent_at = CASE WHEN $1 = 'sent' THEN $3 ELSE sent_at END
         WHERE outbox_id = $4",
    )
    .bind(status)
    .bind(error)
    .bind(now.millis())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn recent_mail(conn: &mut AnyConnection, limit: i64) -> Result<Vec<OutboxRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {OUTBOX_COLS} FROM outbox ORDER BY created_at DESC, outbox_id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

// ------------------------------------------------------------------ alerts

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AlertRow {
    pub alert_id: String,
    pub kind: String,
    pub subject_id: String,
    pub message: String,
    pub created_at: i64,
}

pub async fn raise_alert(
    conn: &mut AnyConnection,
    kind: &str,
    subject_id: &str,
    message: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO alert (alert_id, kind, subject_id, message, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new_id())
    .bind(kind)
    .bind(subject_id)
    .bind(message)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn alert_exists(conn: &mut AnyConnection, kind: &str, subject_id: &str) -> Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM alert WHERE kind = $1 AND subject_id = $2")
            .bind(kind)
            .bind(subject_id)
            .fetch_one(conn)
            .await?;
    Ok(n > 0)
}

pub async fn open_alerts(conn: &mut AnyConnection) -> Result<Vec<AlertRow>> {
    Ok(sqlx::query_as(
        "SELECT alert_id, kind, subject_id, message, created_at FROM alert
         WHERE resolved_at IS NULL ORDER BY created_at DESC LIMIT 100",
    )
    .fetch_all(conn)
    .await?)
}

// ------------------------------------------------------------------ sessions

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A sign-in started with the OpenID provider, waiting for the browser to come back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginFlow {
    pub browser_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub expires_at: Timestamp,
}

/// Records a started sign-in under the hash of its `state`; drops expired ones.
pub async fn create_login_flow(
    conn: &mut AnyConnection,
    state: &str,
    flow: &LoginFlow,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("DELETE FROM oidc_login WHERE expires_at <= $1")
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO oidc_login (state_hash, browser_hash, nonce, pkce_verifier, return_to, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hash_token(state))
    .bind(&flow.browser_hash)
    .bind(&flow.nonce)
    .bind(&flow.pkce_verifier)
    .bind(&flow.return_to)
    .bind(now.millis())
    .bind(flow.expires_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the sign-in started with `state`: at most once, since the row is deleted.
pub async fn take_login_flow(conn: &mut AnyConnection, state: &str) -> Result<Option<LoginFlow>> {
    let row = sqlx::query(
        "DELETE FROM oidc_login WHERE state_hash = $1
         RETURNING browser_hash, nonce, pkce_verifier, return_to, expires_at",
    )
    .bind(hash_token(state))
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(LoginFlow {
            browser_hash: r.try_get("browser_hash")?,
            nonce: r.try_get("nonce")?,
            pkce_verifier: r.try_get("pkce_verifier")?,
            return_to: r.try_get("return_to")?,
            expires_at: Timestamp::from_millis(r.try_get("expires_at")?),
        })
    })
    .transpose()
}

pub async fn create_session(
    conn: &mut AnyConnection,
    token: &str,
    user_id: &str,
    demo: bool,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO web_session (session_hash, user_id, demo, created_at, last_seen_at, expires_at)
         VALUES ($1, $2, $3, $4, $4, $5)",
    )
    .bind(hash_token(token))
    .bind(user_id)
    .bind(i64::from(demo))
    .bind(now.millis())
    .bind(expires_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// The session's user, if the session exists, has not expired and has not been idle too long.
/// Touches `last_seen_at` at most once a minute to spare the database.
pub async fn find_session(
    conn: &mut AnyConnection,
    token: &str,
    now: Timestamp,
    idle: Duration,
) -> Result<Option<(Principal, bool)>> {
    let hash = hash_token(token);
    let row = sqlx::query(
        "SELECT s.demo, s.last_seen_at, u.* FROM web_session s JOIN app_user u ON u.user_id = s.user_id
         WHERE s.session_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3",
    )
    .bind(&hash)
    .bind(now.millis())
    .bind(now.millis() - idle.as_millis() as i64)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let last_seen: i64 = row.try_get("last_seen_at")?;
    if now.millis() - last_seen > 60_000 {
        sqlx::query("UPDATE web_session SET last_seen_at = $1 WHERE session_hash = $2")
            .bind(now.millis())
            .bind(&hash)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some((
        principal_from_row(&row)?,
        row.try_get::<i64, _>("demo")? != 0,
    )))
}

pub async fn delete_session(conn: &mut AnyConnection, token: &str) -> Result<()> {
    sqlx::query("DELETE FROM web_session WHERE session_hash = $1")
        .bind(hash_token(token))
        .execute(conn)
        .await?;
    Ok(())
}

// ------------------------------------------------------------------ audit

/// One audit event, written in the same transaction as the change it records.
pub struct Audit<'a> {
    pub actor_id: &'a str,
    pub actor_name: &'a str,
    pub action: &'a str,
    pub person_id: Option<&'a str>,
    pub subject_kind: &'a str,
    pub subject_id: &'a str,
    pub entitlement_id: Option<&'a str>,
    pub detail: &'a str,
}

fn chain_hash(prev: &str, seq: i64, at: i64, e: &Audit<'_>) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different events can serialise to the same bytes.
    for field in [
        prev,
        &seq.to_string(),
        &at.to_string(),
        e.actor_id,
        e.actor_name,
        e.action,
        e.person_id.unwrap_or(""),
        e.subject_kind,
        e.subject_id,
        e.entitlement_id.unwrap_or(""),
        e.detail,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

pub async fn append_audit(conn: &mut AnyConnection, e: Audit<'_>, now: Timestamp) -> Result<i64> {
    // Touching the head row first serialises concurrent writers (a row lock on PostgreSQL;
    // SQLite's write transaction is exclusive anyway).
    let head = sqlx::query(
        "UPDATE audit_head SET seq = seq + 1 WHERE audit_head_id = 1 RETURNING seq, hash",
    )
    .fetch_one(&mut *conn)
    .await?;
    let seq: i64 = head.try_get("seq")?;
    let prev: String = head.try_get("hash")?;
    let hash = chain_hash(&prev, seq, now.millis(), &e);
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE audit_head_id = 1")
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO audit_event (seq, at, actor_id, actor_name, action, person_id, subject_kind, subject_id,
             entitlement_id, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(seq)
    .bind(now.millis())
    .bind(e.actor_id)
    .bind(e.actor_name)
    .bind(e.action)
    .bind(e.person_id)
    .bind(e.subject_kind)
    .bind(e.subject_id)
    .bind(e.entitlement_id)
    .bind(e.detail)
    .bind(&prev)
    .bind(&hash)
    .execute(conn)
    .await?;
    Ok(seq)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub person_id: Option<String>,
    pub subject_kind: String,
    pub subject_id: String,
    pub entitlement_id: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Matches the actor or the person concerned, by id, email or name (substring).
    pub person: Option<String>,
    pub entitlement: Option<String>,
    /// Prefix match: `request.` finds every request event.
    pub action: Option<String>,
    pub limit: i64,
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub async fn query_audit(conn: &mut AnyConnection, q: &AuditQuery) -> Result<Vec<AuditRow>> {
    let person = q
        .person
        .as_deref()
        .map(|p| format!("%{}%", like_escape(&p.to_lowercase())));
    let action = q.action.as_deref().map(|a| format!("{}%", like_escape(a)));
    Ok(sqlx::query_as(
        "SELECT a.* FROM audit_event a
         WHERE ($1 IS NULL OR LOWER(a.actor_id) LIKE $1 ESCAPE '\\' OR LOWER(a.actor_name) LIKE $1 ESCAPE '\\'
                OR LOWER(COALESCE(a.person_id, '')) LIKE $1 ESCAPE '\\'
                OR a.person_id IN (SELECT user_id FROM app_user
                                   WHERE LOWER(email) LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\')
                OR a.actor_id IN (SELECT user_id FROM app_user WHERE LOWER(email) LIKE $1 ESCAPE '\\'))
           AND ($2 IS NULL OR a.entitlement_id = $2)
           AND ($3 IS NULL OR a.action LIKE $3 ESCAPE '\\')
         ORDER BY a.seq DESC LIMIT $4",
    )
    .bind(person)
    .bind(q.entitlement.as_deref())
    .bind(action)
    .bind(q.limit)
    .fetch_all(conn)
    .await?)
}

/// Recomputes the chain. Returns the first sequence number whose hash does not match.
pub async fn verify_audit_chain(conn: &mut AnyConnection) -> Result<Option<i64>> {
    let rows: Vec<AuditRow> = sqlx::query_as("SELECT * FROM audit_event ORDER BY seq")
        .fetch_all(&mut *conn)
        .await?;
    let mut prev = "0".repeat(64);
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE audit_head_id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let (head_seq, head_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
    let count = rows.len() as i64;
    for (expected_seq, r) in (1..).zip(rows) {
        let e = Audit {
            actor_id: &r.actor_id,
            actor_name: &r.actor_name,
            action: &r.action,
            person_id: r.person_id.as_deref(),
            subject_kind: &r.subject_kind,
            subject_id: &r.subject_id,
            entitlement_id: r.entitlement_id.as_deref(),
            detail: &r.detail,
        };
        if r.seq != expected_seq
            || r.prev_hash != prev
            || chain_hash(&prev, r.seq, r.at, &e) != r.hash
        {
            return Ok(Some(r.seq));
        }
        prev = r.hash;
    }
    // Events cut off the end leave the head pointing past the last row.
    if head_seq != count || head_hash != prev {
        return Ok(Some(count + 1));
    }
    Ok(None)
}

/// Locks every grant of one (user, permission set, account) for the rest of the transaction,
/// so that the decision "create", "share" or "delete" for that assignment is made by one
/// worker at a time.
pub async fn lock_assignment(conn: &mut AnyConnection, g: &GrantRow) -> Result<()> {
    sqlx::query(
        "UPDATE access_grant SET updated_at = updated_at
         WHERE principal_id = $1 AND permission_set_arn = $2 AND account_id = $3",
    )
    .bind(&g.principal_id)
    .bind(&g.permission_set_arn)
    .bind(&g.account_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Grants of the same assignment in the given statuses, other than `g`.
pub async fn siblings_in(
    conn: &mut AnyConnection,
    g: &GrantRow,
    statuses: &[GrantStatus],
) -> Result<Vec<GrantRow>> {
    let list = statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant
         WHERE principal_id = $1 AND permission_set_arn = $2 AND account_id = $3
           AND access_grant_id <> $4 AND status IN ({list})"
    ))
    .bind(&g.principal_id)
    .bind(&g.permission_set_arn)
    .bind(&g.account_id)
    .bind(&g.access_grant_id)
    .fetch_all(conn)
    .await?)
}

// ------------------------------------------------------------------ mail: parked and resent

/// Messages the worker gave up on, newest first, for the admin page.
pub async fn parked_mail(conn: &mut AnyConnection, limit: i64) -> Result<Vec<OutboxRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {OUTBOX_COLS} FROM outbox WHERE status = 'parked' ORDER BY created_at DESC, outbox_id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Puts a parked message back in line with a fresh count of attempts and a delivery job.
/// Returns false when the message is not parked (already resent, or never parked).
pub async fn requeue_parked_mail(
    conn: &mut AnyConnection,
    id: &str,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE outbox SET status = 'pending', attempts = 0, last_error = NULL
         WHERE outbox_id = $1 AND status = 'parked'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    insert_job(conn, JobKind::DeliverMail, id, now, now).await?;
    Ok(true)
}

/// Marks the open alerts of one kind about one subject as resolved.
pub async fn resolve_alerts(
    conn: &mut AnyConnection,
    kind: &str,
    subject_id: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("UPDATE alert SET resolved_at = $1 WHERE kind = $2 AND subject_id = $3 AND resolved_at IS NULL")
        .bind(now.millis())
        .bind(kind)
        .bind(subject_id)
        .execute(conn)
        .await?;
    Ok(())
}

// ------------------------------------------------------------------ catalog sync

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OrgUnitRow {
    pub ou_id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub path: String,
}

pub async fn upsert_org_unit(
    conn: &mut AnyConnection,
    ou: &OrgUnitRow,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO org_unit (ou_id, name, parent_id, path, synced_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (ou_id) DO UPDATE SET name = excluded.name, parent_id = excluded.parent_id,
             path = excluded.path, synced_at = excluded.synced_at",
    )
    .bind(&ou.ou_id)
    .bind(&ou.name)
    .bind(&ou.parent_id)
    .bind(&ou.path)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn all_org_units(conn: &mut AnyConnection) -> Result<Vec<OrgUnitRow>> {
    Ok(
        sqlx::query_as("SELECT ou_id, name, parent_id, path FROM org_unit ORDER BY path")
            .fetch_all(conn)
            .await?,
    )
}

pub async fn all_permission_sets(conn: &mut AnyConnection) -> Result<Vec<PermissionSetRow>> {
    Ok(sqlx::query_as(
        "SELECT permission_set_arn, name, description, session_duration_secs FROM permission_set
         ORDER BY name",
    )
    .fetch_all(conn)
    .await?)
}

/// Removes catalog rows a sync at `synced_at` did not see again. Returns how many went, by
/// table (accounts, permission sets, OUs).
pub async fn drop_unseen_catalog(
    conn: &mut AnyConnection,
    synced_at: Timestamp,
) -> Result<(u64, u64, u64)> {
    let mut gone = [0u64; 3];
    for (i, table) in ["account", "permission_set", "org_unit"].iter().enumerate() {
        gone[i] = sqlx::query(&format!("DELETE FROM {table} WHERE synced_at < $1"))
            .bind(synced_at.millis())
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok((gone[0], gone[1], gone[2]))
}

// ------------------------------------------------------------------ assignment origins

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The portal asked AWS to create it.
    Portal,
    /// A grant found it already in place.
    External,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Portal => "portal",
            Self::External => "external",
        }
    }
}

/// One (account, permission set, user): what an assignment is for the portal.
#[derive(Copy, Clone, Debug)]
pub struct AssignmentKey<'a> {
    pub account_id: &'a str,
    pub permission_set_arn: &'a str,
    pub user_id: &'a str,
}

impl GrantRow {
    pub fn key(&self) -> AssignmentKey<'_> {
        AssignmentKey {
            account_id: &self.account_id,
            permission_set_arn: &self.permission_set_arn,
            user_id: &self.principal_id,
        }
    }
}

/// A (account, permission set, user) whose assignment's origin the portal knows.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ManagedRow {
    pub account_id: String,
    pub permission_set_arn: String,
    pub user_id: String,
    pub origin: String,
    /// Set while reconciliation deletes the assignment.
    pub deleting_since: Option<i64>,
}

impl ManagedRow {
    pub fn key(&self) -> AssignmentKey<'_> {
        AssignmentKey {
            account_id: &self.account_id,
            permission_set_arn: &self.permission_set_arn,
            user_id: &self.user_id,
        }
    }

    pub fn origin(&self) -> Origin {
        if self.origin == "portal" {
            Origin::Portal
        } else {
            Origin::External
        }
    }
}

const MANAGED_COLS: &str = "account_id, permission_set_arn, user_id, origin, deleting_since";
const MANAGED_KEY: &str = "account_id = $1 AND permission_set_arn = $2 AND user_id = $3";

/// What the portal knows of one assignment, if anything.
pub async fn managed_assignment(
    conn: &mut AnyConnection,
    k: AssignmentKey<'_>,
) -> Result<Option<ManagedRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {MANAGED_COLS} FROM managed_assignment WHERE {MANAGED_KEY}"
    ))
    .bind(k.account_id)
    .bind(k.permission_set_arn)
    .bind(k.user_id)
    .fetch_optional(conn)
    .await?)
}

/// Where the assignment of a grant came from, when the portal knows.
pub async fn assignment_origin(conn: &mut AnyConnection, g: &GrantRow) -> Result<Option<Origin>> {
    Ok(managed_assignment(conn, g.key()).await?.map(|m| m.origin()))
}

pub async fn managed_assignments(conn: &mut AnyConnection) -> Result<Vec<ManagedRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {MANAGED_COLS} FROM managed_assignment"))
            .fetch_all(conn)
            .await?,
    )
}

/// Records where an assignment came from; with `deleting`, also flags it as being
/// deleted by reconciliation (keeping a known origin). The flag is committed before
/// reconciliation looks for live grants one last time, so that either it sees a new
/// grant, or the grant's worker sees the flag and waits.
async fn upsert_managed(
    conn: &mut AnyConnection,
    k: AssignmentKey<'_>,
    origin: Origin,
    deleting: bool,
    now: Timestamp,
) -> Result<()> {
    let on_conflict = if deleting {
        "deleting_since = excluded.deleting_since"
    } else {
        "origin = excluded.origin"
    };
    sqlx::query(&format!(
        "INSERT INTO managed_assignment (account_id, permission_set_arn, user_id, origin, created_at, deleting_since)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (account_id, permission_set_arn, user_id) DO UPDATE SET {on_conflict}"
    ))
    .bind(k.account_id)
    .bind(k.permission_set_arn)
    .bind(k.user_id)
    .bind(origin.as_str())
    .bind(now.millis())
    .bind(deleting.then_some(now.millis()))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_assignment_origin(
    conn: &mut AnyConnection,
    g: &GrantRow,
    origin: Origin,
    now: Timestamp,
) -> Result<()> {
    upsert_managed(conn, g.key(), origin, false, now).await
}

/// See [`upsert_managed`].
pub async fn mark_deleting(
    conn: &mut AnyConnection,
    k: AssignmentKey<'_>,
    origin: Origin,
    now: Timestamp,
) -> Result<()> {
    upsert_managed(conn, k, origin, true, now).await
}

pub async fn clear_deleting(conn: &mut AnyConnection, k: AssignmentKey<'_>) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE managed_assignment SET deleting_since = NULL WHERE {MANAGED_KEY}"
    ))
    .bind(k.account_id)
    .bind(k.permission_set_arn)
    .bind(k.user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The assignment is gone from AWS (or was never made): its origin no longer matters.
pub async fn forget_assignment(conn: &mut AnyConnection, k: AssignmentKey<'_>) -> Result<()> {
    sqlx::query(&format!(
        "DELETE FROM managed_assignment WHERE {MANAGED_KEY}"
    ))
    .bind(k.account_id)
    .bind(k.permission_set_arn)
    .bind(k.user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Grants active since before `at` whose time is not over at `now`: the assignment of
/// each must exist in AWS.
pub async fn grants_active_since(
    conn: &mut AnyConnection,
    at: Timestamp,
    now: Timestamp,
) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLS} FROM access_grant
         WHERE status = 'active' AND updated_at < $1 AND ends_at > $2 ORDER BY account_id"
    ))
    .bind(at.millis())
    .bind(now.millis())
    .fetch_all(conn)
    .await?)
}

/// Whether any grant of (account, permission set, user) holds or is about to hold the
/// assignment right now.
pub async fn has_live_grant(
    conn: &mut AnyConnection,
    account_id: &str,
    permission_set_arn: &str,
    user_id: &str,
) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM access_grant
         WHERE account_id = $1 AND permission_set_arn = $2 AND principal_id = $3
           AND status IN ('scheduled', 'provisioning', 'active', 'deprovisioning')",
    )
    .bind(account_id)
    .bind(permission_set_arn)
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

// ------------------------------------------------------------------ maintenance runs

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunRow {
    pub run_id: String,
    pub kind: String,
    pub status: String,
    pub progress: String,
    pub summary: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

pub async fn start_run(conn: &mut AnyConnection, kind: JobKind, now: Timestamp) -> Result<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO maintenance_run (run_id, kind, status, progress, started_at)
         VALUES ($1, $2, 'running', 'starting', $3)",
    )
    .bind(&id)
    .bind(kind.as_str())
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn run_progress(conn: &mut AnyConnection, id: &str, progress: &str) -> Result<()> {
    sqlx::query("UPDATE maintenance_run SET progress = $1 WHERE run_id = $2")
        .bind(progress)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn finish_run(
    conn: &mut AnyConnection,
    id: &str,
    succeeded: bool,
    summary: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE maintenance_run SET status = $1, summary = $2, finished_at = $3 WHERE run_id = $4",
    )
    .bind(if succeeded { "succeeded" } else { "failed" })
    .bind(summary)
    .bind(now.millis())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The latest runs of one kind, newest first.
pub async fn recent_runs(
    conn: &mut AnyConnection,
    kind: JobKind,
    limit: i64,
) -> Result<Vec<RunRow>> {
    Ok(sqlx::query_as(
        "SELECT run_id, kind, status, progress, summary, started_at, finished_at FROM maintenance_run
         WHERE kind = $1 ORDER BY started_at DESC, run_id LIMIT $2",
    )
    .bind(kind.as_str())
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Puts a singleton job (catalog sync, reconciliation) in line at `run_at`, or brings the
/// one already there forward to it.
pub async fn schedule_singleton(
    conn: &mut AnyConnection,
    kind: JobKind,
    run_at: Timestamp,
    now: Timestamp,
) -> Result<()> {
    let subject = kind.as_str();
    // A unique index keeps it to one job per kind, whoever inserts at the same time.
    sqlx::query(
        "INSERT INTO job (job_id, kind, subject_id, run_at, attempts, alerted, created_at)
         VALUES ($1, $2, $2, $3, 0, 0, $4) ON CONFLICT DO NOTHING",
    )
    .bind(new_id())
    .bind(subject)
    .bind(run_at.millis())
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    // Bring it forward; one running now runs again when done (its new run_at differs from
    // the one it was claimed with, which `reschedule_job_after` keeps).
    sqlx::query(
        "UPDATE job SET run_at = $1 WHERE kind = $2 AND (run_at > $1 OR lease_until IS NOT NULL)",
    )
    .bind(run_at.millis())
    .bind(subject)
    .execute(conn)
    .await?;
    Ok(())
}

/// Open alerts of some kinds (the drift report).
pub async fn open_alerts_of(conn: &mut AnyConnection, kinds: &[&str]) -> Result<Vec<AlertRow>> {
    let list = kinds
        .iter()
        .map(|k| format!("'{}'", k.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(sqlx::query_as(&format!(
        "SELECT alert_id, kind, subject_id, message, created_at FROM alert
         WHERE resolved_at IS NULL AND kind IN ({list}) ORDER BY created_at DESC LIMIT 500"
    ))
    .fetch_all(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_hides_password() {
        let url = DatabaseUrl::new("postgres://portcullis:s3cret@db.internal:5432/portcullis");
        assert_eq!(
            format!("{url:?}"),
            "DatabaseUrl(postgres://portcullis:***@db.internal:5432/portcullis)"
        );
        assert!(!format!("{url}").contains("s3cret"));
        let plain = DatabaseUrl::new("sqlite://portcullis.db?mode=rwc");
        assert_eq!(plain.to_string(), "sqlite://portcullis.db?mode=rwc");
    }

    #[test]
    fn hash_is_stable_and_field_sensitive() {
        let e = |detail| Audit {
            actor_id: "a",
            actor_name: "A",
            action: "x",
            person_id: None,
            subject_kind: "request",
            subject_id: "1",
            entitlement_id: None,
            detail,
        };
        assert_eq!(
            chain_hash("0", 1, 5, &e("d")),
            chain_hash("0", 1, 5, &e("d"))
        );
        assert_ne!(
            chain_hash("0", 1, 5, &e("d")),
            chain_hash("0", 1, 5, &e("e"))
        );
        assert_ne!(
            chain_hash("0", 1, 5, &e("d")),
            chain_hash("1", 1, 5, &e("d"))
        );
    }
}
