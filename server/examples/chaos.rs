//! Chaos harness driver (run by `.ci/chaos`, which starts PostgreSQL, moto behind the
//! fault layer and the OpenID provider, and stops them by PID).
//!
//! It starts `CHAOS_REPLICAS` real `portcullis serve` processes on one PostgreSQL, arms
//! probabilistic faults on every AWS call (30 % ThrottlingException, 10 %
//! ConflictException, 150 ms latency), and drives request lifecycles through the
//! portal's own HTTP interface (sign-in through the OpenID provider, create request,
//! approval by the manager or automatic, expiry), while it SIGKILLs and restarts random
//! replicas and stops PostgreSQL once for a while. Then it checks, from moto's call log,
//! moto's final state and the portal's database:
//!
//! - no assignment deleted before its grant's `ends_at`;
//! - every assignment gone within `CHAOS_BOUND_SECS` of database time after `ends_at`
//!   (time PostgreSQL was down does not count against the bound);
//! - nothing created after a grant's `ends_at` (1 s for the check-to-call race);
//! - no assignment left in moto, every grant and request in a final state, no grant
//!   failed for a reason other than "its time was over", no replica that exited or
//!   panicked on its own, and the audit chain verified by `portcullis audit verify`.
//!
//! It prints lateness p50/p99/max and counts, and exits 1 on any violation.
//!
//! Rust rather than Python: the server functions' URLs carry a hash of the `app`
//! crate's location, which this example reads from `app::api` itself; the SDK seeds
//! moto and lists what is left, sqlx reads the database, and `cargo test` already
//! builds it.

use anyhow::{bail, Context, Result};
use leptos::server_fn::ServerFn;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::process::{Child, Command};

/// moto's permission set ARNs are not shaped like AWS's, and moto does not check an
/// assignment's ARN: the entitlements name a well-formed one (as e2e/aws/seed.py does).
const PERMISSION_SET_ARN: &str =
    "arn:aws:sso:::permissionSet/ssoins-c4a05000000000000/ps-c4a0500000000001";
const TIME_OVER: &str = "its time was over";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_str(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run .ci/chaos)"))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// What `.ci/chaos` passes, and the run's knobs.
#[derive(Clone, Debug)]
struct Settings {
    root: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
    pg_dir: String,
    pg_port: u16,
    pg_url: String,
    moto: String,
    oidc: String,
    oidc_accounts: PathBuf,
    public: String,
    ports: Vec<u16>,
    lifecycles: usize,
    kills: u32,
    kill_every: Duration,
    outage: Duration,
    /// The outage starts once this share (percent) of the lifecycles has started.
    outage_at_pct: u64,
    bound_secs: f64,
    users: usize,
    accounts: usize,
    in_flight: usize,
    min_grant_secs: u64,
    max_grant_secs: u64,
    seed: u64,
    rate: u64,
    /// Hard limit on the whole run (seconds).
    deadline: Duration,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let ports = env_str("CHAOS_REPLICA_PORTS")?
            .split(',')
            .map(|p| p.trim().parse::<u16>().context("CHAOS_REPLICA_PORTS"))
            .collect::<Result<Vec<_>>>()?;
        anyhow::ensure!(
            (1..=5).contains(&ports.len()),
            "1 to 5 replicas, not {}",
            ports.len()
        );
        Ok(Self {
            root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
            bin: env_str("CHAOS_BIN")?.into(),
            dir: env_str("CHAOS_DIR")?.into(),
            pg_dir: env_str("CHAOS_PG_DIR")?,
            pg_port: env_str("CHAOS_PG_PORT")?.parse()?,
            pg_url: env_str("CHAOS_PG_URL")?,
            moto: env_str("CHAOS_MOTO_URL")?,
            oidc: env_str("CHAOS_OIDC_URL")?,
            oidc_accounts: env_str("CHAOS_OIDC_ACCOUNTS")?.into(),
            public: format!("http://127.0.0.1:{}", ports[0]),
            ports,
            lifecycles: env_u64("CHAOS_LIFECYCLES", 100) as usize,
            kills: env_u64("CHAOS_KILLS", 4) as u32,
            kill_every: Duration::from_millis(env_u64("CHAOS_KILL_EVERY_MS", 15_000)),
            outage: Duration::from_secs(env_u64("CHAOS_OUTAGE_SECS", 20)),
            outage_at_pct: env_u64("CHAOS_OUTAGE_AT_PCT", 40).min(100),
            bound_secs: env_u64("CHAOS_BOUND_SECS", 30) as f64,
            users: env_u64("CHAOS_USERS", 12).clamp(1, 200) as usize,
            accounts: env_u64("CHAOS_ACCOUNTS", 3).clamp(1, 20) as usize,
            in_flight: env_u64("CHAOS_IN_FLIGHT", 24).max(1) as usize,
            min_grant_secs: env_u64("CHAOS_MIN_GRANT_SECS", 12),
            max_grant_secs: env_u64("CHAOS_MAX_GRANT_SECS", 24),
            seed: env_u64("CHAOS_SEED", 42),
            rate: env_u64("CHAOS_RATE", 10),
            deadline: Duration::from_secs(env_u64("CHAOS_DEADLINE_SECS", 900)),
        })
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("portcullis.toml")
    }
}

// ------------------------------------------------------------------------- replicas

struct Replica {
    port: u16,
    child: Option<Child>,
    /// Set while the harness kills it on purpose.
    killing: bool,
}

/// The `serve` processes this harness started, by index; each killed only by its PID.
struct Fleet {
    settings: Settings,
    replicas: Mutex<Vec<Replica>>,
    starts: AtomicU32,
    kills: AtomicU32,
    unexpected_exits: Mutex<Vec<String>>,
}

impl Fleet {
    fn new(settings: &Settings) -> Self {
        Self {
            settings: settings.clone(),
            replicas: Mutex::new(
                settings
                    .ports
                    .iter()
                    .map(|&port| Replica {
                        port,
                        child: None,
                        killing: false,
                    })
                    .collect(),
            ),
            starts: AtomicU32::new(0),
            kills: AtomicU32::new(0),
            unexpected_exits: Mutex::new(Vec::new()),
        }
    }

    fn start(&self, i: usize) -> Result<()> {
        let s = &self.settings;
        let port = s.ports[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.dir.join(format!("replica-{i}.log")))?;
        let child = Command::new(&s.bin)
            .args(["serve", "--config"])
            .arg(s.config_path())
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS_WORKER__REPLICA_ID", format!("chaos-{i}"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info,sqlx=warn,tower_http=warn")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting portcullis serve")?;
        // The PIDs for .ci/chaos's clean-up, should this driver itself die.
        if let Some(pid) = child.id() {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(s.dir.join("replicas.pids"))?;
            writeln!(f, "{pid}")?;
        }
        let mut replicas = self.replicas.lock().unwrap();
        replicas[i].child = Some(child);
        replicas[i].killing = false;
        self.starts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// SIGKILLs replica `i` (the child this harness started) and waits for it.
    async fn kill(&self, i: usize) -> bool {
        let child = {
            let mut replicas = self.replicas.lock().unwrap();
            replicas[i].killing = true;
            replicas[i].child.take()
        };
        let Some(mut child) = child else { return false };
        let _ = child.start_kill(); // SIGKILL to this child's PID
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        self.kills.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Ports of the replicas currently running.
    fn live_ports(&self) -> Vec<u16> {
        self.replicas
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.child.is_some())
            .map(|r| r.port)
            .collect()
    }

    /// Records and restarts replicas that exited without being killed.
    fn check_exits(&self) -> Vec<usize> {
        let mut gone = Vec::new();
        let mut replicas = self.replicas.lock().unwrap();
        for (i, r) in replicas.iter_mut().enumerate() {
            if let Some(child) = r.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let tail = last_words(&self.settings.dir.join(format!("replica-{i}.log")));
                    self.unexpected_exits
                        .lock()
                        .unwrap()
                        .push(format!("replica {i} exited on its own ({status}): {tail}"));
                    r.child = None;
                    gone.push(i);
                }
            }
        }
        gone
    }

    async fn stop_all(&self) {
        for i in 0..self.settings.ports.len() {
            let child = self.replicas.lock().unwrap()[i].child.take();
            if let Some(mut child) = child {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            }
        }
    }
}

/// The last line of a replica's log that says why it stopped, without colours, short.
fn last_words(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("error"))
        .or_else(|| text.lines().last())
        .unwrap_or_default();
    let mut plain = String::new();
    let mut escape = false;
    for c in line.chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain.chars().take(300).collect()
}

// ------------------------------------------------------------------------- HTTP

/// The portal as a browser and a load balancer see it: requests go to any running
/// replica, with the public URL's `Origin` (CSRF) and the person's session cookie.
struct Web {
    http: reqwest::Client,
    fleet: Arc<Fleet>,
    public: String,
    rng: Mutex<StdRng>,
}

impl Web {
    fn base(&self) -> Option<String> {
        let ports = self.fleet.live_ports();
        if ports.is_empty() {
            return None;
        }
        let i = self.rng.lock().unwrap().gen_range(0..ports.len());
        Some(format!("http://127.0.0.1:{}", ports[i]))
    }

    async fn get(&self, path: &str, cookies: &str) -> Result<reqwest::Response> {
        let base = self.base().context("no replica running")?;
        Ok(self
            .http
            .get(format!("{base}{path}"))
            .header("cookie", cookies)
            .send()
            .await?)
    }

    /// Calls a server function; `Ok(body)` on 200, `Err` with the status and body otherwise.
    async fn server_fn(&self, path: &str, session: &str, form: &[(&str, &str)]) -> Result<String> {
        let base = self.base().context("no replica running")?;
        let res = self
            .http
            .post(format!("{base}{path}"))
            .header("origin", &self.public)
            .header("sec-fetch-site", "same-origin")
            .header("accept", "application/json")
            .header("cookie", session)
            .form(form)
            .send()
            .await?;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            bail!(
                "{path}: {status}: {}",
                body.chars().take(200).collect::<String>()
            )
        }
    }
}

/// A browser at the OpenID provider (as in tests/oidc.rs): keeps the provider's cookies,
/// follows its redirects, fills in its login form, stops at the redirect to the portal.
async fn sign_in(web: &Web, login: &str, password: &str) -> Result<String> {
    let res = web.get("/auth/login?return_to=%2F", "").await?;
    anyhow::ensure!(res.status().is_redirection(), "login: {}", res.status());
    let login_cookie = set_cookie(&res, "portcullis_login").context("no login cookie")?;
    let mut url = res.headers()["location"].to_str()?.to_owned();
    let mut jar: HashMap<String, String> = HashMap::new();
    let jar_header = |jar: &HashMap<String, String>| {
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let keep = |jar: &mut HashMap<String, String>, res: &reqwest::Response| {
        for v in res.headers().get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let Some((k, val)) = v.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            if val.is_empty() || v.contains("Max-Age=0") || v.contains("expires=Thu, 01 Jan 1970") {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), val.to_owned());
            }
        }
    };
    for _ in 0..20 {
        if let Some(path) = url.strip_prefix(&web.public) {
            let res = web.get(path, &login_cookie).await?;
            return set_cookie(&res, "portcullis_session")
                .with_context(|| format!("no session after the callback: {}", res.status()));
        }
        let res = web
            .http
            .get(&url)
            .header("cookie", jar_header(&jar))
            .send()
            .await?;
        keep(&mut jar, &res);
        let base = res.url().clone();
        if res.status().is_redirection() {
            url = base.join(res.headers()["location"].to_str()?)?.to_string();
            continue;
        }
        let body = res.text().await?;
        let action = body
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .with_context(|| format!("no form at {url}"))?
            .to_owned();
        let res = web
            .http
            .post(base.join(&action)?)
            .header("cookie", jar_header(&jar))
            .form(&[("login", login), ("password", password)])
            .send()
            .await?;
        keep(&mut jar, &res);
        anyhow::ensure!(
            res.status().is_redirection(),
            "login as {login}: {}",
            res.status()
        );
        url = base.join(res.headers()["location"].to_str()?)?.to_string();
    }
    bail!("too many redirects signing in {login}")
}

fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

// ------------------------------------------------------------------------- lifecycles

#[derive(Clone, Debug)]
struct Life {
    n: usize,
    user: usize,
    account: usize,
    auto: bool,
    secs: u64,
    request_id: Option<String>,
    /// The grant's final status, or what it was when the lifecycle gave up.
    outcome: String,
}

struct Ctx {
    s: Settings,
    web: Web,
    db: PgPool,
    sessions: Vec<String>,
    lead: String,
    busy: Mutex<HashSet<(usize, usize)>>,
    stop: AtomicBool,
    started: AtomicUsize,
}

async fn request_by_token(db: &PgPool, token: &str) -> Result<Option<(String, String)>> {
    let row = sqlx::query(
        "SELECT access_request_id, status FROM access_request WHERE justification = $1 \
         ORDER BY created_at LIMIT 1",
    )
    .bind(token)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

async fn lifecycle(ctx: Arc<Ctx>, mut life: Life) -> Life {
    let deadline = Instant::now()
        + Duration::from_secs(life.secs)
        + ctx.s.outage * 2
        + Duration::from_secs_f64(ctx.s.bound_secs)
        + Duration::from_secs(180);
    let token = format!("chaos lifecycle {:05}: incident drill", life.n);
    let entitlement = format!(
        "acct{}-{}",
        life.account,
        if life.auto { "auto" } else { "mgr" }
    );
    let session = ctx.sessions[life.user].clone();
    let duration = format!("{}s", life.secs);
    // Create the request, once: before every try, look for it (a reply lost to a kill
    // may hide a request that was made).
    while life.request_id.is_none() && Instant::now() < deadline {
        match request_by_token(&ctx.db, &token).await {
            Ok(Some((id, _))) => {
                life.request_id = Some(id);
                break;
            }
            Ok(None) => {}
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(1000)).await;
                continue;
            }
        }
        let res = ctx
            .web
            .server_fn(
                app::api::CreateRequest::PATH,
                &session,
                &[
                    ("entitlement", &entitlement),
                    ("justification", &token),
                    ("duration", &duration),
                ],
            )
            .await;
        match res {
            Ok(body) => life.request_id = serde_json::from_str::<String>(&body).ok(),
            Err(_) => tokio::time::sleep(Duration::from_millis(700)).await,
        }
    }
    let Some(request_id) = life.request_id.clone() else {
        life.outcome = "request never created".into();
        return life;
    };
    // The manager approves (again only while it is still pending).
    if !life.auto {
        while Instant::now() < deadline {
            match request_by_token(&ctx.db, &token).await {
                Ok(Some((_, status))) if status != "pending" => break,
                Ok(_) => {}
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    continue;
                }
            }
            let res = ctx
                .web
                .server_fn(
                    app::api::Decide::PATH,
                    &ctx.lead,
                    &[
                        ("request_id", &request_id),
                        ("verdict", "approve"),
                        ("comment", "approved by the chaos harness"),
                    ],
                )
                .await;
            if res.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    }
    // Let it expire: wait for the grant to be over.
    life.outcome = "no grant".into();
    while Instant::now() < deadline {
        let row = sqlx::query("SELECT status FROM access_grant WHERE access_request_id = $1")
            .bind(&request_id)
            .fetch_optional(&ctx.db)
            .await;
        if let Ok(Some(row)) = row {
            let status: String = row.get(0);
            let done = status == "revoked" || status == "failed";
            life.outcome = status;
            if done {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    life
}

// ------------------------------------------------------------------------- main

#[tokio::main]
async fn main() -> Result<()> {
    let s = Settings::from_env()?;
    let fleet = Arc::new(Fleet::new(&s));
    let result = run(&s, fleet.clone()).await;
    fleet.stop_all().await;
    match result {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("chaos: harness error: {e:#}");
            std::process::exit(2)
        }
    }
}

async fn run(s: &Settings, fleet: Arc<Fleet>) -> Result<bool> {
    let began = Instant::now();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    println!(
        "chaos: {} lifecycles, {} replicas, {} kills every ~{} ms, PostgreSQL down {} s at {} % \
         of the lifecycles, bound {} s, grants {}-{} s, seed {}",
        s.lifecycles,
        s.ports.len(),
        s.kills,
        s.kill_every.as_millis(),
        s.outage.as_secs(),
        s.outage_at_pct,
        s.bound_secs,
        s.min_grant_secs,
        s.max_grant_secs,
        s.seed
    );

    // --- moto: an organization, accounts, people in Identity Store ----------------
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&s.moto)
        .credentials_provider(aws_sdk_ssoadmin::config::Credentials::new(
            "testing", "testing", None, None, "chaos",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let sso = aws_sdk_ssoadmin::Client::new(&sdk);
    let identity = aws_sdk_identitystore::Client::new(&sdk);
    let orgs = aws_sdk_organizations::Client::new(&sdk);
    let instance = sso.list_instances().send().await?.instances()[0].clone();
    let instance_arn = instance.instance_arn().unwrap_or_default().to_owned();
    let store_id = instance.identity_store_id().unwrap_or_default().to_owned();
    orgs.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await?;
    let mut accounts = Vec::new();
    for k in 0..s.accounts {
        let out = orgs
            .create_account()
            .account_name(format!("chaos-{k}"))
            .email(format!("chaos-{k}@example.com"))
            .send()
            .await?;
        accounts.push(
            out.create_account_status()
                .and_then(|c| c.account_id())
                .context("account id")?
                .to_owned(),
        );
    }
    sso.create_permission_set()
        .instance_arn(&instance_arn)
        .name("ChaosAccess")
        .session_duration("PT1H")
        .send()
        .await?;
    let mut people = vec![json!({
        "login": "lead", "password": "lead-pw", "sub": "chaos-lead",
        "email": "lead@example.com", "name": "Lea Lead", "groups": ["engineering-leads"]
    })];
    for u in 0..s.users {
        people.push(json!({
            "login": format!("u{u}"), "password": format!("u{u}-pw"), "sub": format!("chaos-u{u}"),
            "email": format!("u{u}@example.com"), "name": format!("User {u}"),
            "groups": ["engineering"], "manager": "lead@example.com"
        }));
    }
    // email -> Identity Store user id
    let mut aws_user: HashMap<String, String> = HashMap::new();
    for p in &people {
        let email = p["email"].as_str().unwrap_or_default();
        let name = p["name"].as_str().unwrap_or_default();
        let out = identity
            .create_user()
            .identity_store_id(&store_id)
            .user_name(email)
            .display_name(name)
            .name(
                aws_sdk_identitystore::types::Name::builder()
                    .given_name("Chaos")
                    .family_name(name)
                    .build(),
            )
            .send()
            .await?;
        aws_user.insert(email.to_owned(), out.user_id().to_owned());
    }
    let tmp = s.oidc_accounts.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&people)?)?;
    std::fs::rename(&tmp, &s.oidc_accounts)?;

    // --- the portal's configuration ----------------------------------------------
    let mut config = format!(
        r#"# Written by the chaos harness (server/examples/chaos.rs).
database_url = "{pg}"
public_url = "{public}"

[policy]
min_duration = "5s"

[worker]
poll_interval_ms = 500

[http]
# One client address (this harness) drives a whole company's load: the per-address and
# per-person rate limits would refuse it.
sign_in_per_minute = 1000000
server_fn_per_second = 1000000
server_fn_burst = 1000000
new_requests_per_hour = 1000000

[oidc]
issuer_url = "{oidc}"
client_id = "portcullis-chaos"
client_secret = "chaos-client-secret-not-for-production"
admin_groups = ["portcullis-admins"]

[audit]
key = "{key}"

[aws]
provisioner = "sso-admin"
region = "us-east-1"
endpoint_url = "{moto}"
call_timeout_secs = 5
requests_per_second = {rate}
"#,
        pg = s.pg_url,
        public = s.public,
        oidc = s.oidc,
        key = "c4a0".repeat(16),
        moto = s.moto,
        rate = s.rate,
    );
    for (k, account) in accounts.iter().enumerate() {
        for (kind, approval) in [
            ("auto", "auto_approve = true"),
            ("mgr", "approvers = { manager = true }"),
        ] {
            config.push_str(&format!(
                r#"
[[entitlements]]
id = "acct{k}-{kind}"
name = "Chaos {k} {kind}"
description = "Chaos harness entitlement."
targets = [{{ kind = "account", account_id = "{account}", permission_set_arn = "{PERMISSION_SET_ARN}" }}]
[entitlements.policy]
eligible_groups = ["engineering"]
{approval}
max_duration_secs = 3600
default_duration_secs = 60
"#
            ));
        }
    }
    std::fs::write(s.config_path(), &config)?;

    // --- replicas: the first syncs the catalog (no faults yet), then the others ---
    let web = Web {
        http: http.clone(),
        fleet: fleet.clone(),
        public: s.public.clone(),
        rng: Mutex::new(StdRng::seed_from_u64(s.seed)),
    };
    fleet.start(0)?;
    wait_ready(
        &http,
        s.ports[0],
        "/readyz",
        Duration::from_secs(180),
        &fleet,
    )
    .await?;
    for i in 1..s.ports.len() {
        fleet.start(i)?;
    }
    for &port in &s.ports[1..] {
        wait_ready(&http, port, "/healthz", Duration::from_secs(120), &fleet).await?;
    }
    let db = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&s.pg_url)
        .await?;
    let lead = sign_in(&web, "lead", "lead-pw").await?;
    let mut sessions = Vec::new();
    for u in 0..s.users {
        sessions.push(sign_in(&web, &format!("u{u}"), &format!("u{u}-pw")).await?);
    }
    println!(
        "chaos: {} replicas up, {} people signed in, catalog synced in {:.1} s",
        s.ports.len(),
        s.users + 1,
        began.elapsed().as_secs_f64()
    );

    // --- faults on every AWS call from now on ---------------------------------------
    let fault = |path: &'static str, body: Value| {
        let http = http.clone();
        let url = format!("{}/_fault/{path}", s.moto);
        async move {
            let r = http.post(url).json(&body).send().await?;
            anyhow::ensure!(r.status().is_success(), "fault layer: {}", r.status());
            anyhow::Ok(())
        }
    };
    fault("clear_log", json!({})).await?;
    fault("seed", json!({ "seed": s.seed })).await?;
    fault(
        "arm",
        json!({"operation": "*", "always": true, "delay_ms": 150}),
    )
    .await?;
    fault(
        "arm",
        json!({"operation": "*", "always": true, "probability": 0.3, "code": "ThrottlingException"}),
    )
    .await?;
    fault(
        "arm",
        json!({"operation": "*", "always": true, "probability": 0.1, "code": "ConflictException"}),
    )
    .await?;

    // --- the run ------------------------------------------------------------------
    let ctx = Arc::new(Ctx {
        s: s.clone(),
        web,
        db: db.clone(),
        sessions,
        lead,
        busy: Mutex::new(HashSet::new()),
        stop: AtomicBool::new(false),
        started: AtomicUsize::new(0),
    });
    let run_began = Instant::now();
    let hard_deadline = began + s.deadline;

    // Replicas that exit on their own are noted and started again.
    let watcher = {
        let fleet = fleet.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            while !ctx.stop.load(Ordering::Relaxed) {
                for i in fleet.check_exits() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Err(e) = fleet.start(i) {
                        eprintln!("chaos: restarting replica {i}: {e:#}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    // SIGKILL a random replica every few seconds, restart it a moment later.
    let killer = {
        let fleet = fleet.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(ctx.s.seed ^ 0x6b11);
            let mut restarts = Vec::new();
            while !ctx.stop.load(Ordering::Relaxed)
                && fleet.kills.load(Ordering::Relaxed) < ctx.s.kills
                && Instant::now() < hard_deadline
            {
                let every = ctx.s.kill_every.as_millis() as u64;
                let wait = rng.gen_range(every / 2..=every + every / 2);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                if ctx.stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = rng.gen_range(0..ctx.s.ports.len());
                let back_after = Duration::from_millis(rng.gen_range(300..2500));
                if fleet.kill(i).await {
                    let fleet = fleet.clone();
                    restarts.push(tokio::spawn(async move {
                        tokio::time::sleep(back_after).await;
                        if let Err(e) = fleet.start(i) {
                            eprintln!("chaos: restarting replica {i}: {e:#}");
                        }
                    }));
                }
            }
            for r in restarts {
                let _ = r.await;
            }
        })
    };
    // The database outage, once a share of the lifecycles has started.
    let outage = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let at = ctx.s.lifecycles * ctx.s.outage_at_pct as usize / 100;
            while ctx.started.load(Ordering::Relaxed) < at.max(1)
                && !ctx.stop.load(Ordering::Relaxed)
                && Instant::now() < hard_deadline
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if ctx.s.outage.is_zero() || ctx.stop.load(Ordering::Relaxed) {
                return None;
            }
            let script = ctx.s.root.join(".ci/postgres");
            let t0 = now_secs();
            let stop = Command::new("bash")
                .arg(&script)
                .args(["stop", &ctx.s.pg_dir])
                .status()
                .await;
            println!(
                "chaos: PostgreSQL stopped ({} lifecycles started)",
                ctx.started.load(Ordering::Relaxed)
            );
            tokio::time::sleep(ctx.s.outage).await;
            let resume = Command::new("bash")
                .arg(&script)
                .args(["resume", &ctx.s.pg_dir, &ctx.s.pg_port.to_string()])
                .status()
                .await;
            let up_at = now_secs();
            if !matches!(stop, Ok(s) if s.success()) || !matches!(resume, Ok(s) if s.success()) {
                eprintln!("chaos: stopping or resuming PostgreSQL failed: {stop:?} {resume:?}");
            }
            println!("chaos: PostgreSQL back after {:.1} s", up_at - t0);
            Some((t0, up_at))
        })
    };

    // Lifecycles: each on a (person, account) no other lifecycle holds, so grants of one
    // assignment do not overlap (the checks handle overlaps all the same).
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x11fe);
    let mut tasks = tokio::task::JoinSet::<Life>::new();
    let mut lives: Vec<Life> = Vec::new();
    for n in 0..s.lifecycles {
        if Instant::now() > hard_deadline {
            break;
        }
        let slot = loop {
            while tasks.len() >= s.in_flight {
                if let Some(Ok(life)) = tasks.join_next().await {
                    ctx.busy.lock().unwrap().remove(&(life.user, life.account));
                    lives.push(life);
                }
            }
            let free: Vec<(usize, usize)> = {
                let busy = ctx.busy.lock().unwrap();
                (0..s.users)
                    .flat_map(|u| (0..s.accounts).map(move |a| (u, a)))
                    .filter(|p| !busy.contains(p))
                    .collect()
            };
            if !free.is_empty() {
                break free[rng.gen_range(0..free.len())];
            }
            if let Some(Ok(life)) = tasks.join_next().await {
                ctx.busy.lock().unwrap().remove(&(life.user, life.account));
                lives.push(life);
            }
        };
        ctx.busy.lock().unwrap().insert(slot);
        let life = Life {
            n,
            user: slot.0,
            account: slot.1,
            auto: rng.gen_bool(0.5),
            secs: rng.gen_range(s.min_grant_secs..=s.max_grant_secs),
            request_id: None,
            outcome: String::new(),
        };
        ctx.started.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(lifecycle(ctx.clone(), life));
        // A steady stream rather than a burst at the start.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..400))).await;
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(life) = r {
            lives.push(life);
        }
    }
    let driving = run_began.elapsed();
    ctx.stop.store(true, Ordering::Relaxed);
    let _ = killer.await;
    let outage_window = outage.await.ok().flatten();
    let _ = watcher.await;
    // Every replica up for the end (a killed one restarted), then whatever is still due.
    for i in fleet.check_exits() {
        fleet.start(i)?;
    }
    for i in 0..s.ports.len() {
        if !fleet.live_ports().contains(&s.ports[i]) {
            fleet.start(i)?;
        }
    }
    let settle_until = Instant::now() + Duration::from_secs_f64(s.bound_secs + 60.0);
    while Instant::now() < settle_until {
        let open: i64 = sqlx::query(
            "SELECT count(*) FROM access_grant WHERE status NOT IN ('revoked', 'failed')",
        )
        .fetch_one(&db)
        .await
        .map(|r| r.get(0))
        .unwrap_or(1);
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    fault("disarm", json!({})).await?;
    for i in fleet.check_exits() {
        fleet.start(i)?;
    }

    // --- checks -------------------------------------------------------------------
    let report = check(
        s,
        &http,
        &db,
        &sso,
        &instance_arn,
        &accounts,
        &aws_user,
        &lives,
        outage_window,
    )
    .await?;
    let mut violations = report.violations;
    violations.extend(fleet.unexpected_exits.lock().unwrap().iter().cloned());
    for i in 0..s.ports.len() {
        let log =
            std::fs::read_to_string(s.dir.join(format!("replica-{i}.log"))).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("panicked at")) {
            violations.push(format!("replica {i} panicked: {line}"));
        }
    }
    // The audit chain, as an operator checks it.
    let verify = Command::new(&s.bin)
        .args(["audit", "verify", "--config"])
        .arg(s.config_path())
        .output()
        .await?;
    let verify_out = String::from_utf8_lossy(&verify.stdout).trim().to_owned();
    if !verify.status.success() {
        violations.push(format!(
            "audit verify: {verify_out} {}",
            String::from_utf8_lossy(&verify.stderr).trim()
        ));
    }

    let outage_secs = outage_window.map(|(a, b)| b - a).unwrap_or(0.0);
    let l = &report.lateness;
    println!("\nchaos: results");
    println!(
        "  lifecycles     {} started, {} requests made ({} auto-approved, {} approved by the manager)",
        lives.len(),
        lives.iter().filter(|l| l.request_id.is_some()).count(),
        lives.iter().filter(|l| l.auto && l.request_id.is_some()).count(),
        lives.iter().filter(|l| !l.auto && l.request_id.is_some()).count(),
    );
    println!(
        "  grants         {} revoked, {} failed ({} because their time was over before AWS could be asked); \
         {} never created in AWS; {} ended while PostgreSQL was down",
        report.revoked,
        report.failed,
        report.time_over,
        report.never_created,
        report.ended_in_outage
    );
    println!(
        "  kills          {} SIGKILLs, {} starts, {} unexpected exits",
        fleet.kills.load(Ordering::Relaxed),
        fleet.starts.load(Ordering::Relaxed),
        fleet.unexpected_exits.lock().unwrap().len()
    );
    println!("  outage         PostgreSQL down {outage_secs:.1} s");
    println!(
        "  AWS calls      {} ({} faults injected: {} throttled, {} conflicts; 150 ms each)",
        report.calls, report.faults, report.throttled, report.conflicts
    );
    println!(
        "  lateness       {} revocations after ends_at: p50 {:.2} s, p99 {:.2} s, max {:.2} s \
         (outage time excluded: p99 {:.2} s, max {:.2} s; bound {} s)",
        l.len(),
        pct(l, 50.0, |x| x.0),
        pct(l, 99.0, |x| x.0),
        pct(l, 100.0, |x| x.0),
        pct(l, 99.0, |x| x.1),
        pct(l, 100.0, |x| x.1),
        s.bound_secs
    );
    println!("  audit          {verify_out}");
    println!(
        "  duration       {:.0} s driving, {:.0} s in all",
        driving.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    if violations.is_empty() {
        println!("chaos: PASSED");
        Ok(true)
    } else {
        println!("chaos: FAILED, {} violations:", violations.len());
        for v in violations.iter().take(50) {
            println!("  - {v}");
        }
        Ok(false)
    }
}

async fn wait_ready(
    http: &reqwest::Client,
    port: u16,
    path: &str,
    within: Duration,
    fleet: &Fleet,
) -> Result<()> {
    let until = Instant::now() + within;
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
        {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if !fleet.check_exits().is_empty() {
            bail!(
                "a replica exited while starting: {:?}",
                fleet.unexpected_exits.lock().unwrap()
            );
        }
        anyhow::ensure!(
            Instant::now() < until,
            "127.0.0.1:{port}{path} not ready in {} s",
            within.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn pct<T>(v: &[T], p: f64, f: impl Fn(&T) -> f64) -> f64 {
    let mut xs: Vec<f64> = v.iter().map(f).collect();
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

struct Report {
    violations: Vec<String>,
    /// (seconds after ends_at, the same without the time PostgreSQL was down)
    lateness: Vec<(f64, f64)>,
    revoked: usize,
    failed: usize,
    time_over: usize,
    calls: usize,
    faults: usize,
    throttled: usize,
    conflicts: usize,
    /// Grants whose assignment was never created (their time ran out first).
    never_created: usize,
    /// Grants whose `ends_at` fell while PostgreSQL was down.
    ended_in_outage: usize,
}

/// An assignment: (Identity Store principal, account, permission set).
type Key = (String, String, String);

/// One successful assignment call in moto's log.
struct Call {
    arrived: f64,
    done: f64,
    create: bool,
}

/// Grants of one assignment whose times overlap, merged: access must hold from the
/// first request to the last end.
struct Episode {
    from: f64,
    until: f64,
    grants: Vec<String>,
    created: bool,
    gone_at: Option<f64>,
}

#[allow(clippy::too_many_arguments)]
async fn check(
    s: &Settings,
    http: &reqwest::Client,
    db: &PgPool,
    sso: &aws_sdk_ssoadmin::Client,
    instance_arn: &str,
    accounts: &[String],
    aws_user: &HashMap<String, String>,
    lives: &[Life],
    outage: Option<(f64, f64)>,
) -> Result<Report> {
    let mut violations = Vec::new();
    // The database, after the run.
    let grants = sqlx::query(
        "SELECT g.access_grant_id, u.email, g.account_id, g.permission_set_arn, g.created_at, \
         g.ends_at, g.status, coalesce(g.failure_reason, ''), r.status \
         FROM access_grant g JOIN app_user u ON u.user_id = g.principal_id \
         JOIN access_request r ON r.access_request_id = g.access_request_id",
    )
    .fetch_all(db)
    .await?;
    let (mut revoked, mut failed, mut time_over) = (0, 0, 0);
    // (principal, account, permission set) -> (from, until, grant id)
    let mut by_triple: BTreeMap<Key, Vec<(f64, f64, String)>> = BTreeMap::new();
    for g in &grants {
        let id: String = g.get(0);
        let email: String = g.get(1);
        let status: String = g.get(6);
        let reason: String = g.get(7);
        let request_status: String = g.get(8);
        match status.as_str() {
            "revoked" => revoked += 1,
            "failed" if reason.contains(TIME_OVER) => {
                failed += 1;
                time_over += 1;
            }
            "failed" => {
                failed += 1;
                violations.push(format!("grant {id} failed: {reason}"));
            }
            other => violations.push(format!("grant {id} stuck in {other}")),
        }
        if matches!(request_status.as_str(), "pending" | "approved" | "active") {
            violations.push(format!(
                "the request of grant {id} stuck in {request_status}"
            ));
        }
        let principal = aws_user.get(&email).cloned().unwrap_or(email);
        by_triple
            .entry((principal, g.get(2), g.get(3)))
            .or_default()
            .push((
                g.get::<i64, _>(4) as f64 / 1000.0,
                g.get::<i64, _>(5) as f64 / 1000.0,
                id,
            ));
    }
    let pending: i64 = sqlx::query(
        "SELECT count(*) FROM access_request WHERE status IN ('pending', 'approved', 'active')",
    )
    .fetch_one(db)
    .await?
    .get(0);
    if pending > 0 {
        violations.push(format!("{pending} requests not in a final state"));
    }
    for life in lives {
        if life.request_id.is_none() {
            violations.push(format!(
                "lifecycle {} could not make its request through the portal",
                life.n
            ));
        }
    }

    // moto's log: every call, and the successful assignment calls per assignment.
    let log: Vec<Value> = http
        .get(format!("{}/_fault/log", s.moto))
        .send()
        .await?
        .json()
        .await?;
    let mut calls_by_triple: BTreeMap<Key, Vec<Call>> = BTreeMap::new();
    let (mut calls, mut faults, mut throttled, mut conflicts) = (0, 0, 0, 0);
    for e in &log {
        let Some(op) = e["operation"].as_str() else {
            continue;
        };
        calls += 1;
        if e["fault"] == "error" {
            faults += 1;
            match e["error_code"].as_str() {
                Some("ThrottlingException") => throttled += 1,
                Some("ConflictException") => conflicts += 1,
                _ => {}
            }
        }
        let create = match op {
            "CreateAccountAssignment" => true,
            "DeleteAccountAssignment" => false,
            _ => continue,
        };
        if e["status"] != 200 {
            continue;
        }
        let r = &e["request"];
        let key = (
            r["PrincipalId"].as_str().unwrap_or_default().to_owned(),
            r["TargetId"].as_str().unwrap_or_default().to_owned(),
            r["PermissionSetArn"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let arrived = e["time"].as_f64().unwrap_or_default();
        calls_by_triple.entry(key).or_default().push(Call {
            arrived,
            done: arrived + e["duration_ms"].as_f64().unwrap_or_default() / 1000.0,
            create,
        });
    }

    // Replay each assignment's calls against its grants' times.
    let mut lateness = Vec::new();
    let mut never_created = 0;
    let ended_in_outage = by_triple
        .values()
        .flatten()
        .filter(|(_, until, _)| outage.is_some_and(|(a, b)| (a..b).contains(until)))
        .count();
    let empty = Vec::new();
    let keys: HashSet<_> = by_triple
        .keys()
        .chain(calls_by_triple.keys())
        .cloned()
        .collect();
    for key in keys {
        let mut spans = by_triple.get(&key).cloned().unwrap_or_default();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut episodes: Vec<Episode> = Vec::new();
        for (from, until, id) in spans {
            match episodes.last_mut() {
                Some(e) if from <= e.until => {
                    e.until = e.until.max(until);
                    e.grants.push(id);
                }
                _ => episodes.push(Episode {
                    from,
                    until,
                    grants: vec![id],
                    created: false,
                    gone_at: None,
                }),
            }
        }
        let who = format!("{} on {}", key.0, key.1);
        let mut copies = 0u32;
        for c in calls_by_triple.get(&key).unwrap_or(&empty) {
            // The episode this call falls in, or the last one it follows.
            let inside = episodes
                .iter()
                .position(|e| e.from <= c.arrived && c.arrived < e.until);
            let after = episodes.iter().rposition(|e| e.until <= c.arrived);
            if c.create {
                copies += 1;
                match (inside, after) {
                    (Some(i), _) => episodes[i].created = true,
                    (None, Some(i)) => {
                        let late = c.arrived - episodes[i].until;
                        if late > 1.0 {
                            violations.push(format!(
                                "{who}: created {late:.1} s after the end of grant(s) {:?}",
                                episodes[i].grants
                            ));
                        }
                        episodes[i].created = true;
                    }
                    (None, None) => violations.push(format!("{who}: created with no grant for it")),
                }
            } else {
                copies = copies.saturating_sub(1);
                if copies > 0 {
                    continue;
                }
                if let Some(i) = inside {
                    violations.push(format!(
                        "{who}: deleted {:.1} s before the end of grant(s) {:?}",
                        episodes[i].until - c.arrived,
                        episodes[i].grants
                    ));
                } else if let Some(i) = after {
                    if episodes[i].gone_at.is_none() {
                        episodes[i].gone_at = Some(c.done);
                    }
                }
            }
        }
        for e in &episodes {
            match (e.created, e.gone_at) {
                (true, Some(gone)) => {
                    let late = gone - e.until;
                    let down = outage
                        .map(|(a, b)| (b.min(gone) - a.max(e.until)).max(0.0))
                        .unwrap_or(0.0);
                    if late - down > s.bound_secs {
                        violations.push(format!(
                            "{who}: revoked {late:.1} s after ends_at ({:.1} s without the outage), \
                             over the {} s bound: {:?}",
                            late - down,
                            s.bound_secs,
                            e.grants
                        ));
                    }
                    lateness.push((late, late - down));
                }
                (true, None) => violations.push(format!(
                    "{who}: assignment of grant(s) {:?} never deleted",
                    e.grants
                )),
                (false, _) => never_created += e.grants.len(),
            }
        }
    }

    // moto's final state: nothing assigned.
    for account in accounts {
        let out = sso
            .list_account_assignments()
            .instance_arn(instance_arn)
            .account_id(account)
            .permission_set_arn(PERMISSION_SET_ARN)
            .send()
            .await?;
        for a in out.account_assignments() {
            violations.push(format!(
                "left in AWS at the end: {} on {account}",
                a.principal_id().unwrap_or_default()
            ));
        }
    }
    Ok(Report {
        violations,
        lateness,
        revoked,
        failed,
        time_over,
        calls,
        faults,
        throttled,
        conflicts,
        never_created,
        ended_in_outage,
    })
}
