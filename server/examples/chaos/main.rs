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

mod check;
mod explain;
mod fleet;
mod lifecycle;
mod web;

use anyhow::{bail, Context, Result};
use check::*;
use explain::*;
use fleet::*;
use leptos::server_fn::ServerFn;
use lifecycle::*;
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
use web::*;

/// moto's permission set ARNs are not shaped like AWS's, and moto does not check an
/// assignment's ARN: the entitlements name a well-formed one (as e2e/aws/seed.py does).
pub(crate) const PERMISSION_SET_ARN: &str =
    "arn:aws:sso:::permissionSet/ssoins-c4a05000000000000/ps-c4a0500000000001";
pub(crate) const TIME_OVER: &str = "its time was over";

pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn env_str(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run .ci/chaos)"))
}

pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

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

pub(crate) async fn run(s: &Settings, fleet: Arc<Fleet>) -> Result<bool> {
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
        r#"# Written by the chaos harness (server/examples/chaos/ (main.rs: the run; fleet.rs, web.rs, lifecycle.rs, check.rs)).
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
        explain(s, &db, &fleet, &report.late_grants, outage_window).await;
        Ok(false)
    }
}

pub(crate) async fn wait_ready(
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
