//! Benchmark: provisioning through the IAM Identity Center provisioner against moto (the
//! fault layer adds `BENCH_LATENCY_MS`, default 150 ms, to every call), with the budget at
//! `BENCH_RATE` calls/s (default 10) and the grant workers as the server runs them
//! (`BENCH_WORKERS`, default 4 as `worker.concurrency`). Three measurements:
//!
//! 1. a burst: `BENCH_PEOPLE` (default 12) people approved at once for an OU of 10
//!    accounts (120 assignments): the time until all are active, against the bound of 2
//!    calls per assignment at the budget;
//! 2. approval to `CreateAccountAssignment` at idle (`BENCH_SAMPLES`, default 20, one at a
//!    time): p50 and max;
//! 3. a single expiry at idle (the same grants, ending one by one): the delay from
//!    `ends_at` to `DeleteAccountAssignment`, p50/p99/max.
//!
//!   .ci/bench-provisioning    # or: cargo run -p portcullis --example bench_provisioning

mod support;

use anyhow::{Context, Result};
use app::domain::{Entitlement, PermissionSetArn, Policy, RequestDraft, Target, TargetScope};
use app::ssr::Portal as _;
use portcullis::config::{AwsConfig, ProvisionerKind, WorkerSettings};
use portcullis::mailer::OutboxOnly;
use portcullis::portal::PortalService;
use portcullis::provisioner::sso_admin::SsoAdminProvisioner;
use portcullis::seed::{OU_WORKLOADS, PS_READONLY};
use portcullis::store::{AccountRow, Store};
use portcullis::worker::Worker;
use sqlx::Executor;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

#[tokio::main]
async fn main() -> Result<()> {
    let people_n = env_or("BENCH_PEOPLE", 12) as usize;
    let samples = env_or("BENCH_SAMPLES", 20) as usize;
    let latency_ms = env_or("BENCH_LATENCY_MS", 150);
    let rate = env_or("BENCH_RATE", 10) as u32;
    let workers = env_or("BENCH_WORKERS", 4).max(1) as u32;
    let moto = Moto::start().await?;
    // --- the world: an OU of 10 accounts, people, an auto-approved OU entitlement ----
    let world = World::new(&moto).await?;
    let (store, clock) = (world.store.clone(), world.clock.clone());
    {
        let mut conn = store.conn().await?;
        let ou_path = format!("/r-demo/{OU_WORKLOADS}/");
        let existing = portcullis::store::accounts_under_ou(&mut conn, OU_WORKLOADS).await?;
        for i in existing.len()..10 {
            portcullis::store::upsert_account(
                &mut conn,
                &AccountRow {
                    account_id: format!("9000000000{i:02}"),
                    name: format!("workload-{i}"),
                    ou_id: OU_WORKLOADS.into(),
                    ou_path: ou_path.clone(),
                },
                clock.now(),
            )
            .await?;
        }
        let accounts = portcullis::store::accounts_under_ou(&mut conn, OU_WORKLOADS).await?;
        anyhow::ensure!(
            accounts.len() == 10,
            "{} accounts in the OU",
            accounts.len()
        );
        // The demo's sandbox policy: engineering, approved at once.
        let sandbox = portcullis::store::get_entitlement(&mut conn, "sandbox-admin")
            .await?
            .context("the demo seed has sandbox-admin")?;
        let policy = Policy {
            auto_approve: true,
            ..sandbox.policy
        };
        for (id, scope) in [
            (
                "bench-ou",
                TargetScope::Ou {
                    ou_id: app::domain::OuId::parse(OU_WORKLOADS).map_err(anyhow::Error::msg)?,
                },
            ),
            (
                "bench-one",
                TargetScope::Account {
                    account_id: app::domain::AccountId::parse(portcullis::seed::SANDBOX)
                        .map_err(anyhow::Error::msg)?,
                },
            ),
        ] {
            portcullis::store::upsert_entitlement(
                &mut conn,
                &Entitlement {
                    id: id.into(),
                    name: id.into(),
                    description: "benchmark".into(),
                    targets: vec![Target {
                        scope,
                        permission_set_arn: PermissionSetArn::parse(PS_READONLY)
                            .map_err(anyhow::Error::msg)?,
                    }],
                    policy: policy.clone(),
                },
                clock.now(),
            )
            .await?;
        }
    }
    let burst_people = world.people("b", people_n).await?;
    let idle_people = world.people("i", samples).await?;

    let aws = AwsConfig {
        provisioner: ProvisionerKind::SsoAdmin,
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto.url.clone()),
        requests_per_second: rate,
        max_outstanding_creations: env_or(
            "BENCH_CREATIONS",
            AwsConfig::default().max_outstanding_creations as u64,
        ) as u32,
        ..AwsConfig::default()
    };
    let provisioner = SsoAdminProvisioner::connect(&aws).await?;
    // The user cache warm, as it is once people have signed in and asked before.
    for p in burst_people.iter().chain(&idle_people) {
        provisioner
            .user_id(&p.email)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let provisioner = Arc::new(provisioner);
    let wake = Arc::new(tokio::sync::Notify::new());
    let portal = Arc::new(PortalService {
        store: store.clone(),
        clock: clock.clone(),
        provisioner: provisioner.clone(),
        wake: wake.clone(),
        upkeep_wake: Default::default(),
        min_duration: Duration::from_secs(60),
        start_horizon: portcullis::config::DEFAULT_START_HORIZON,
        new_requests_per_hour: 10_000,
        metrics: Default::default(),
        public_url: "http://127.0.0.1:3000".into(),
    });
    let settings = WorkerSettings {
        concurrency: workers,
        ..WorkerSettings::default()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            let worker = Worker::new(
                store.clone(),
                provisioner.clone(),
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
    moto.latency(latency_ms).await?;
    // Let the workers settle into their idle wait, and the budget fill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let draft = || RequestDraft {
        justification: "Benchmark of provisioning".into(),
        duration: "1h".into(),
        ticket: String::new(),
        ..Default::default()
    };

    // --- 1. the burst ------------------------------------------------------------------
    moto.clear_log().await?;
    let assignments = (people_n * 10) as i64;
    let t0 = Instant::now();
    let asks: Vec<_> = burst_people
        .iter()
        .map(|p| {
            let portal = portal.clone();
            let p = p.clone();
            let d = draft();
            tokio::spawn(async move { portal.create_request(&p, "bench-ou", d).await })
        })
        .collect();
    for a in asks {
        a.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    loop {
        if count_grants(&store, "status = 'active'").await? >= assignments {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(900),
            "the burst did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let burst = t0.elapsed().as_secs_f64();
    let burst_calls = moto.calls().await?;
    let calls = burst_calls.len();
    let mut by_operation = std::collections::BTreeMap::<String, usize>::new();
    for c in &burst_calls {
        let op = c["operation"].as_str().unwrap_or("?").to_owned();
        let fault = c["fault"]
            .as_str()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        *by_operation.entry(format!("{op}{fault}")).or_default() += 1;
    }
    let bound = (2 * assignments) as f64 / f64::from(rate);

    // --- 2. approval to CreateAccountAssignment, one at a time at idle ------------------
    let mut approvals = Vec::new();
    for p in &idle_people {
        moto.clear_log().await?;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let before = before_count(&store).await?;
        let asked = portal
            .create_request(p, "bench-one", draft())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let approved_at = unix_now();
        let _ = asked;
        let deadline = Instant::now() + Duration::from_secs(60);
        let created_at = loop {
            let calls = moto.calls().await?;
            if let Some(t) = calls
                .iter()
                .find(|c| c["operation"] == "CreateAccountAssignment")
                .and_then(|c| c["time"].as_f64())
            {
                break t;
            }
            anyhow::ensure!(Instant::now() < deadline, "no creation within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        approvals.push((created_at - approved_at) * 1000.0);
        while count_grants(&store, "status = 'active'").await? < before + 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    approvals.sort_by(|a, b| a.partial_cmp(b).unwrap());

    // --- 3. expiries at idle, one at a time ------------------------------------------
    moto.clear_log().await?;
    let first = clock.now().millis() + 3_000;
    let mut ends = Vec::new();
    {
        let mut conn = store.conn().await?;
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT g.access_grant_id FROM access_grant g JOIN access_request r
               ON r.access_request_id = g.access_request_id
             WHERE r.entitlement_id = 'bench-one' AND g.status = 'active' ORDER BY g.access_grant_id",
        )
        .fetch_all(&mut *conn)
        .await?;
        for (i, (id,)) in ids.iter().enumerate() {
            let at = first + (i as i64) * 2_000;
            conn.execute(
                format!("UPDATE access_grant SET ends_at = {at} WHERE access_grant_id = '{id}'")
                    .as_str(),
            )
            .await?;
            conn.execute(
                format!(
                    "UPDATE job SET run_at = {at} WHERE kind = 'deprovision' AND subject_id = '{id}'"
                )
                .as_str(),
            )
            .await?;
            ends.push(at as f64 / 1000.0);
        }
    }
    // The server's own paths would wake the workers (a change of end time is a use case
    // that does); here the rows were changed under them.
    wake.notify_waiters();
    let deadline = Instant::now() + Duration::from_secs(120 + 2 * samples as u64);
    loop {
        if count_grants(&store, "status = 'revoked'").await? >= samples as i64 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the expiries did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut deletes: Vec<f64> = moto
        .calls()
        .await?
        .iter()
        .filter(|c| c["operation"] == "DeleteAccountAssignment")
        .filter_map(|c| c["time"].as_f64())
        .collect();
    deletes.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut lateness: Vec<f64> = deletes.iter().zip(&ends).map(|(d, e)| d - e).collect();
    lateness.sort_by(|a, b| a.partial_cmp(b).unwrap());

    let _ = stop.send(true);
    wake.notify_waiters();
    for t in tasks {
        let _ = t.await;
    }

    println!(
        "latency per AWS call: {latency_ms} ms, budget: {rate} calls/s, grant workers: {workers}"
    );
    println!(
        "1. burst: {people_n} people x 10 accounts = {assignments} assignments active after {burst:.1} s; \
         {calls} AWS calls ({:.2} per assignment); bound at 2 calls each: {bound:.1} s; ratio {:.2} (target <= 1.05)",
        calls as f64 / assignments as f64,
        burst / bound
    );
    println!("   burst calls by operation: {by_operation:?}");
    println!(
        "2. approval -> CreateAccountAssignment at idle ({} samples): p50 {:.0} ms, max {:.0} ms (target p50 <= 200 ms)",
        approvals.len(),
        pct(&approvals, 0.5),
        pct(&approvals, 1.0)
    );
    println!(
        "3. expiry at idle -> DeleteAccountAssignment ({} samples): p50 {:.3} s, p99 {:.3} s, max {:.3} s, min {:.3} s (target p99 <= 1 s, never < 0)",
        lateness.len(),
        pct(&lateness, 0.5),
        pct(&lateness, 0.99),
        pct(&lateness, 1.0),
        pct(&lateness, 0.0)
    );
    Ok(())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

async fn before_count(store: &Store) -> Result<i64> {
    count_grants(store, "status = 'active'").await
}
