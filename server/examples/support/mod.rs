//! What the benchmarks share: moto behind the fault layer on a free loopback port (killed
//! on drop), AWS SDK clients for it, people in Identity Store and in the portal, and the
//! fault layer's call log.

#![allow(dead_code)]

use anyhow::{Context, Result};
use app::domain::{Principal, Timestamp};
use portcullis::clock::Clock;
use portcullis::store::Store;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// moto behind the fault layer; the process is killed when this is dropped.
pub struct Moto {
    child: Child,
    pub url: String,
    pub http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    pub async fn start() -> Result<Self> {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let venv = Command::new("bash")
            .arg(root.join(".ci/moto/venv"))
            .output()
            .context("bash")?;
        anyhow::ensure!(venv.status.success(), "cannot set up the moto venv");
        let python = PathBuf::from(String::from_utf8(venv.stdout)?.trim()).join("bin/python");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(python)
            .arg(root.join(".ci/moto/fault_server.py"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto")?;
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        while moto
            .http
            .get(format!("{}/_fault/", moto.url))
            .send()
            .await
            .is_err()
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(moto)
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await
    }

    /// `delay_ms` on every AWS call from now on.
    pub async fn latency(&self, delay_ms: u64) -> Result<()> {
        self.http
            .post(format!("{}/_fault/arm", self.url))
            .json(&serde_json::json!({"operation": "*", "always": true, "delay_ms": delay_ms}))
            .send()
            .await?;
        Ok(())
    }

    pub async fn clear_log(&self) -> Result<()> {
        self.http
            .post(format!("{}/_fault/clear_log", self.url))
            .send()
            .await?;
        Ok(())
    }

    /// The AWS calls the fault layer has seen (moto's own API left out).
    pub async fn calls(&self) -> Result<Vec<Value>> {
        let log: Value = self
            .http
            .get(format!("{}/_fault/log", self.url))
            .send()
            .await?
            .json()
            .await?;
        Ok(log
            .as_array()
            .or_else(|| log["entries"].as_array())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["operation"].as_str().is_some())
            .collect())
    }
}

/// What every benchmark starts from: Identity Store in moto, and a fresh SQLite portal
/// database, migrated and seeded with the demo catalog, on the system clock.
pub struct World {
    pub identity: aws_sdk_identitystore::Client,
    pub identity_store_id: String,
    pub store: Store,
    pub clock: std::sync::Arc<dyn Clock>,
    _dir: tempfile::TempDir,
}

impl World {
    pub async fn new(moto: &Moto) -> Result<Self> {
        let sdk = moto.sdk().await;
        let sso = aws_sdk_ssoadmin::Client::new(&sdk);
        let instances = sso.list_instances().send().await?;
        let identity_store_id = instances.instances()[0]
            .identity_store_id()
            .unwrap_or_default()
            .to_owned();
        let dir = tempfile::TempDir::new()?;
        let store = Store::connect(
            &portcullis::store::DatabaseUrl::new(format!(
                "sqlite://{}/bench.db?mode=rwc",
                dir.path().display()
            )),
            portcullis::config::AuditKey::demo(),
        )
        .await?;
        store.migrate().await?;
        let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(portcullis::clock::SystemClock);
        portcullis::seed::seed_demo(&store, clock.now()).await?;
        Ok(Self {
            identity: aws_sdk_identitystore::Client::new(&sdk),
            identity_store_id,
            store,
            clock,
            _dir: dir,
        })
    }

    /// `n` people in engineering, `bench|{prefix}{i}`, in Identity Store and the portal.
    pub async fn people(&self, prefix: &str, n: usize) -> Result<Vec<Principal>> {
        people(
            &self.identity,
            &self.identity_store_id,
            &self.store,
            self.clock.as_ref(),
            prefix,
            n,
        )
        .await
    }
}

/// `n` people in engineering, `bench|{prefix}{i}`, in Identity Store and in the portal.
pub async fn people(
    identity: &aws_sdk_identitystore::Client,
    identity_store_id: &str,
    store: &Store,
    clock: &dyn Clock,
    prefix: &str,
    n: usize,
) -> Result<Vec<Principal>> {
    let people: Vec<Principal> = (0..n)
        .map(|i| Principal {
            user_id: format!("bench|{prefix}{i}"),
            email: format!("{prefix}{i}@example.com"),
            email_verified: true,
            display_name: format!("User {prefix}{i}"),
            groups: vec!["engineering".into()],
            manager: None,
            is_admin: false,
        })
        .collect();
    let mut conn = store.conn().await?;
    for p in &people {
        identity
            .create_user()
            .identity_store_id(identity_store_id)
            .user_name(&p.email)
            .display_name(&p.display_name)
            .name(
                aws_sdk_identitystore::types::Name::builder()
                    .given_name("User")
                    .family_name(&p.display_name)
                    .build(),
            )
            .send()
            .await?;
        portcullis::store::upsert_user(&mut conn, p, clock.now()).await?;
    }
    Ok(people)
}

pub async fn count_grants(store: &Store, filter: &str) -> Result<i64> {
    let mut conn = store.conn().await?;
    Ok(
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM access_grant WHERE {filter}"))
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The value at fraction `p` (0..=1) of sorted `xs`.
pub fn pct(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs[((xs.len() as f64 - 1.0) * p).round() as usize]
}

/// A company's history in the portal: `people` people (`bench|p{i}`, one in a hundred a
/// cloud approver, each managed by `p{i/10}`) and `requests` requests, one a minute up to
/// `now`, each approved with a grant that ended. Returns the people's ids.
pub async fn seed_company(
    store: &Store,
    people: usize,
    requests: usize,
    now: Timestamp,
    rng: &mut impl rand::Rng,
) -> Result<Vec<String>> {
    let entitlements: Vec<String> = portcullis::seed::entitlements()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let accounts: Vec<(String,)> = sqlx::query_as("SELECT account_id FROM account")
        .fetch_all(store.pool())
        .await?;
    let (ps,): (String,) = sqlx::query_as("SELECT permission_set_arn FROM permission_set LIMIT 1")
        .fetch_one(store.pool())
        .await?;
    let ids: Vec<String> = (0..people).map(|i| format!("bench|p{i}")).collect();
    {
        let mut tx = store.begin().await?;
        for (i, id) in ids.iter().enumerate() {
            let groups = if i % 100 == 0 {
                vec!["cloud-approvers".to_owned()]
            } else {
                vec!["engineering".to_owned()]
            };
            let p = app::domain::Principal {
                user_id: id.clone(),
                email: format!("p{i}@bench.example.com"),
                email_verified: true,
                display_name: format!("Person {i}"),
                groups,
                manager: Some(format!("p{}@bench.example.com", i / 10)),
                is_admin: false,
            };
            portcullis::store::upsert_user(&mut tx, &p, now).await?;
        }
        for r in 0..requests {
            let requester = &ids[rng.gen_range(0..people)];
            let approver = &ids[rng.gen_range(0..people)];
            let ent = &entitlements[rng.gen_range(0..entitlements.len())];
            let (account,) = &accounts[rng.gen_range(0..accounts.len())];
            let at = now.millis() - (requests - r) as i64 * 60_000;
            let rid = format!("r{r:07}");
            sqlx::query(
                "INSERT INTO access_request (access_request_id, requester_id, entitlement_id,
                     justification, ticket, duration_secs, starts_at, decision_due_at, status,
                     created_at, updated_at)
                 VALUES ($1, $2, $3, 'benchmark work', NULL, 3600, $4, $4, 'ended', $4, $4)",
            )
            .bind(&rid)
            .bind(requester)
            .bind(ent)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO decision (decision_id, access_request_id, approver_id, verdict,
                     comment, created_at) VALUES ($1, $2, $3, 'approved', 'ok', $4)",
            )
            .bind(format!("d{r:07}"))
            .bind(&rid)
            .bind(approver)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO access_grant (access_grant_id, access_request_id, principal_id,
                     account_id, permission_set_arn, starts_at, ends_at, status, created_at,
                     updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'revoked', $6, $7)",
            )
            .bind(format!("g{r:07}"))
            .bind(&rid)
            .bind(requester)
            .bind(account)
            .bind(&ps)
            .bind(at)
            .bind(at + 3_600_000)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    Ok(ids)
}

/// The use cases on `store` with the simulated AWS, as the page benchmarks call them.
pub fn simulated_portal(store: &Store) -> portcullis::portal::PortalService {
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(portcullis::clock::SystemClock);
    portcullis::portal::PortalService {
        store: store.clone(),
        clock: clock.clone(),
        provisioner: std::sync::Arc::new(
            portcullis::provisioner::simulated::SimulatedProvisioner::new(
                store.clone(),
                clock.clone(),
                Duration::from_millis(10),
            ),
        ),
        wake: Default::default(),
        upkeep_wake: Default::default(),
        min_duration: Duration::from_secs(60),
        start_horizon: portcullis::config::DEFAULT_START_HORIZON,
        new_requests_per_hour: 30,
        metrics: Default::default(),
        public_url: "http://127.0.0.1:3000".into(),
    }
}

/// A fresh SQLite database `<name>.db` in `dir`, migrated and seeded as the demo is, and
/// the time it was seeded at.
pub async fn demo_store(dir: &std::path::Path, name: &str) -> Result<(Store, Timestamp)> {
    let url = portcullis::store::DatabaseUrl::new(format!(
        "sqlite://{}/{name}.db?mode=rwc",
        dir.display()
    ));
    let store = Store::connect(&url, portcullis::config::AuditKey::demo()).await?;
    store.migrate().await?;
    let now = portcullis::clock::SystemClock.now();
    portcullis::seed::seed_demo(&store, now).await?;
    Ok((store, now))
}
