//! Benchmark: N grants (default 1,000) that all end in the same second, revoked by the
//! grant workers (`BENCH_WORKERS`, default 4 as `worker.concurrency`) through the IAM
//! Identity Center provisioner against moto (behind the fault layer with a simulated
//! latency on every call), with the client-side budget at 10 calls/s.
//!
//!   .ci/bench-revocation            # or: cargo run -p portcullis --example bench_revocation
//!   BENCH_GRANTS=200 BENCH_LATENCY_MS=50 BENCH_RATE=10 BENCH_WORKERS=4 .ci/bench-revocation
//!   BENCH_REPLICAS=2 .ci/bench-revocation   # two replicas sharing the budget
//!
//! Prints the time until every grant is revoked, its ratio to the budget's lower bound
//! (the AWS calls the revocations needed, at the budget's rate), and the p50/p99 delay
//! from `ends_at` to the DeleteAccountAssignment call (from the fault layer's log).

mod support;

use anyhow::Result;
use app::domain::{Principal, RequestDraft};
use app::ssr::Portal as _;
use portcullis::config::WorkerSettings;
use portcullis::config::{AwsConfig, ProvisionerKind};
use portcullis::mailer::OutboxOnly;
use portcullis::portal::PortalService;
use portcullis::provisioner::sso_admin::SsoAdminProvisioner;
use portcullis::worker::Worker;
use serde_json::{json, Value};
use sqlx::Executor;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

#[tokio::main]
async fn main() -> Result<()> {
    let n = env_or("BENCH_GRANTS", 1000) as usize;
    let latency_ms = env_or("BENCH_LATENCY_MS", 50);
    let rate = env_or("BENCH_RATE", 10) as u32;
    let workers = env_or("BENCH_WORKERS", 4).max(1) as u32;
    let replicas = env_or("BENCH_REPLICAS", 1).max(1) as u32;
    // moto behind the fault layer, on a free loopback port; killed at the end.
    let moto = Moto::start().await?;
    run(n, latency_ms, rate, workers, replicas, &moto).await
}

async fn run(
    n: usize,
    latency_ms: u64,
    rate: u32,
    workers: u32,
    replicas: u32,
    moto: &Moto,
) -> Result<()> {
    let url = moto.url.clone();
    let http = moto.http.clone();

    // --- the world: N people in Identity Store and in the portal ---------------
    let world = World::new(moto).await?;
    let (store, clock) = (world.store.clone(), world.clock.clone());
    let people: Vec<Principal> = world.people("user", n).await?;
    let config = AwsConfig {
        provisioner: ProvisionerKind::SsoAdmin,
        region: Some("us-east-1".into()),
        endpoint_url: Some(url.clone()),
        requests_per_second: 100_000,
        // Setup only: creations are not what this measures.
        max_outstanding_creations: 100_000,
        ..AwsConfig::default()
    };
    let mut provisioner = SsoAdminProvisioner::connect(&config).await?;
    for p in &people {
        provisioner
            .user_id(&p.email)
            .await
            .map_err(anyhow::Error::msg)?;
    }

    // --- N grants, provisioned without a budget ---------------------------------
    let wake = Arc::new(tokio::sync::Notify::new());
    let settings = WorkerSettings {
        poll_interval_ms: 200,
        ..WorkerSettings::default()
    };
    let setup_started = Instant::now();
    let provisioner_arc: Arc<SsoAdminProvisioner>;
    {
        // The portal and the worker share the provisioner (and its user cache).
        provisioner.set_requests_per_second(100_000);
        provisioner_arc = Arc::new(provisioner);
        let portal = PortalService {
            store: store.clone(),
            clock: clock.clone(),
            provisioner: provisioner_arc.clone(),
            wake: wake.clone(),
            upkeep_wake: Default::default(),
            min_duration: Duration::from_secs(60),
            start_horizon: portcullis::config::DEFAULT_START_HORIZON,
            new_requests_per_hour: 10_000,
            metrics: Default::default(),
            public_url: "http://127.0.0.1:3000".into(),
        };
        for p in &people {
            portal
                .create_request(
                    p,
                    "sandbox-admin",
                    RequestDraft {
                        justification: "Benchmark of mass revocation".into(),
                        duration: "1h".into(),
                        ticket: String::new(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let worker = Worker::new(
            store.clone(),
            provisioner_arc.clone(),
            Arc::new(OutboxOnly),
            clock.clone(),
            wake.clone(),
            settings.clone(),
            "http://127.0.0.1:3000".into(),
        );
        loop {
            worker.drain().await?;
            if count_grants(&store, "status = 'active'").await? == n as i64 {
                break;
            }
            anyhow::ensure!(
                setup_started.elapsed() < Duration::from_secs(600),
                "provisioning did not finish"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!(
        "setup: {n} grants active in {:.1} s",
        setup_started.elapsed().as_secs_f64()
    );

    // --- all end in the same second; one worker revokes them under the budget ----
    let mut provisioner = Arc::try_unwrap(provisioner_arc)
        .map_err(|_| anyhow::anyhow!("the provisioner is still shared"))?;
    provisioner.set_requests_per_second(rate);
    // `BENCH_REPLICAS` replicas, each with its own provisioner taking its share of the
    // budget (as their heartbeats make them do in `serve`) and its own grant workers.
    let mut provisioners = vec![Arc::new(provisioner)];
    for _ in 1..replicas {
        let mut p = SsoAdminProvisioner::connect(&config).await?;
        p.set_requests_per_second(rate);
        provisioners.push(Arc::new(p));
    }
    for p in &provisioners {
        portcullis::provisioner::Assignments::share_budget(p.as_ref(), replicas);
    }
    let ends_at = clock.now().millis() + 3_000;
    {
        let mut conn = store.conn().await?;
        conn.execute(
            format!("UPDATE access_grant SET ends_at = {ends_at} WHERE status = 'active'").as_str(),
        )
        .await?;
        conn.execute(
            format!("UPDATE job SET run_at = {ends_at} WHERE kind = 'deprovision'").as_str(),
        )
        .await?;
    }
    for call in [json!({"operation": "*", "always": true, "delay_ms": latency_ms})] {
        http.post(format!("{url}/_fault/arm"))
            .json(&call)
            .send()
            .await?;
    }
    http.post(format!("{url}/_fault/clear_log")).send().await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // As the server runs them: `worker.concurrency` grant workers sharing the budget.
    let tasks: Vec<_> = (0..workers * replicas)
        .map(|i| {
            let worker = Worker::new(
                store.clone(),
                provisioners[(i / workers) as usize].clone(),
                Arc::new(OutboxOnly),
                clock.clone(),
                wake.clone(),
                settings.clone(),
                "http://127.0.0.1:3000".into(),
            )
            .in_lane(portcullis::store::Lane::Grants)
            .instance(i);
            tokio::spawn(worker.run(stopped.clone()))
        })
        .collect();
    let done_at = loop {
        if count_grants(&store, "status = 'revoked'").await? == n as i64 {
            break clock.now().millis();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = stop.send(true);
    wake.notify_waiters();
    for task in tasks {
        let _ = task.await;
    }

    // --- numbers -------------------------------------------------------------------
    let log: Value = http
        .get(format!("{url}/_fault/log"))
        .send()
        .await?
        .json()
        .await?;
    let entries = log
        .as_array()
        .or_else(|| log["entries"].as_array())
        .cloned()
        .unwrap_or_default();
    let calls = entries
        .iter()
        .filter(|e| e["operation"].as_str().is_some())
        .count();
    let mut delays: Vec<f64> = entries
        .iter()
        .filter(|e| e["operation"] == "DeleteAccountAssignment")
        .filter_map(|e| e["time"].as_f64())
        .map(|t| t - ends_at as f64 / 1000.0)
        .collect();
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| pct(&delays, p);
    let total = (done_at - ends_at) as f64 / 1000.0;
    let bound = calls as f64 / f64::from(rate);
    let ideal = (2 * n) as f64 / f64::from(rate);
    println!("grants: {n}, latency per AWS call: {latency_ms} ms, budget: {rate} calls/s shared by {replicas} replica(s), workers: {workers} per replica");
    println!(
        "AWS calls during revocation: {calls} ({:.1} per grant; Delete + its status = 2 at least)",
        calls as f64 / n as f64
    );
    println!("all revoked after: {total:.1} s from ends_at");
    println!(
        "budget lower bound for these calls: {bound:.1} s; ratio: {:.2}",
        total / bound
    );
    println!(
        "lower bound with 2 calls per grant: {ideal:.1} s; ratio: {:.2}",
        total / ideal
    );
    println!(
        "delay from ends_at to DeleteAccountAssignment: p50 {:.1} s, p99 {:.1} s, max {:.1} s ({} deletes)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        delays.len()
    );
    Ok(())
}
