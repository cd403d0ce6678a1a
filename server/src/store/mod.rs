//! The store: every query Portcullis runs, for SQLite and PostgreSQL alike.
//!
//! SQL here is written once for both (`$N` parameters, BIGINT epoch milliseconds, TEXT ids).
//! Write transactions on SQLite start with `BEGIN IMMEDIATE` so that concurrent writers
//! queue on the busy timeout instead of failing on lock upgrade; on PostgreSQL, rows are
//! locked by touching them first (`lock_*`), which serialises racing decisions and workers.

pub use crate::config::{AuditKey, DatabaseUrl};
use anyhow::{Context, Result};
use app::domain::{GrantStatus, Principal, RecordId, RequestStatus, Timestamp, Verdict};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Executor, Row};
use std::str::FromStr;
use std::time::Duration;

/// A write transaction ([`Store::begin`]). It is a database connection (`&mut tx` goes
/// wherever a `&mut AnyConnection` does) that also carries the audit chain's key, so an
/// audit event appended in it is keyed like every other (invariant 6).
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    audit_key: AuditKey,
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    pub fn audit_key(&self) -> &AuditKey {
        &self.audit_key
    }
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// At most this many ids go in one `IN (...)`: well under every database's limit.
pub(crate) const IDS_PER_QUERY: usize = 500;

/// `$start, $start+1, ...`: `n` numbered parameters for an `IN (...)`.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows `sql` selects for these ids, [`IDS_PER_QUERY`] ids a query: `sql` is given
/// the placeholders to put in its `IN (...)`.
pub(crate) async fn rows_for_ids(
    conn: &mut AnyConnection,
    ids: &[&str],
    sql: impl Fn(&str) -> String,
) -> Result<Vec<sqlx::any::AnyRow>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let sql = sql(&placeholders(1, chunk.len()));
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// The database's schema against this build's migrations ([`Store::schema`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// The latest migration applied; none on a database never migrated.
    pub applied: Option<i64>,
    /// This build's latest migration.
    pub latest: i64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The database, and the audit chain's key (from the configuration, never stored): every
/// write transaction hands it to the audit events appended in it.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    audit_key: AuditKey,
}

pub fn new_id() -> String {
    RecordId::from_random(rand::random()).to_string()
}

impl Store {
    #[tracing::instrument(skip_all, fields(url = %url))]
    pub async fn connect(url: &DatabaseUrl, audit_key: AuditKey) -> Result<Self> {
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
        Ok(Self {
            pool,
            dialect,
            audit_key,
        })
    }

    /// The key the audit chain is extended and verified with.
    pub fn audit_key(&self) -> &AuditKey {
        &self.audit_key
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
            .context("database migration failed")?;
        let mut conn = self.conn().await?;
        let filled = backfill_user_groups(&mut conn)
            .await
            .context("filling user_group from the people already known")?;
        if filled > 0 {
            tracing::info!(people = filled, "group memberships recorded as rows");
        }
        Ok(())
    }

    /// Where the database's schema stands against this build's migrations (the database
    /// must answer; a database never migrated has no applied version).
    pub async fn schema(&self) -> Result<Schema> {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&self.pool)
            .await
            .context("the database does not answer")?;
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(None);
        Ok(Schema {
            applied,
            latest: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
        })
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

    /// The database server's time: the one clock every replica compares due times and
    /// leases against (through `clock::DatabaseClock`).
    pub async fn database_time(&self) -> Result<Timestamp> {
        let sql = match self.dialect {
            Dialect::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
            }
            Dialect::Sqlite => "SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        };
        let ms: i64 = sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .context("reading the database's clock")?;
        Ok(Timestamp(ms))
    }

    /// A write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        };
        Ok(Tx {
            tx: tx.context("cannot start a database transaction")?,
            audit_key: self.audit_key.clone(),
        })
    }

    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        self.pool.acquire().await.context("no database connection")
    }
}

mod alerts;
mod audit;
mod catalog;
mod directory;
mod entitlements;
mod grants;
mod jobs;
mod managed;
mod mode;
mod outbox;
mod replicas;
mod requests;
mod runs;
mod sessions;
mod stats;
mod users;

pub use alerts::*;
pub use audit::*;
pub use catalog::*;
pub use directory::*;
pub use entitlements::*;
pub use grants::*;
pub use jobs::*;
pub use managed::*;
pub use mode::*;
pub use outbox::*;
pub use replicas::*;
pub use requests::*;
pub use runs::*;
pub use sessions::*;
pub use stats::*;
pub use users::*;
