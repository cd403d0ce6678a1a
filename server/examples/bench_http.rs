//! Benchmark: the pages over HTTP at a company's size, as issue #13 measures them. 10,000
//! people (one session each), 100,000 requests with their decisions and grants, on SQLite;
//! the portal's real router (`portcullis serve`'s, server-side rendering included) and a
//! bare axum + sqlx handler that runs the same reads for "My access" (the session, the
//! person's requests and grants) and writes its table by hand, both in this process on
//! loopback. `wrk` drives each in turn with a random session per request (alternating,
//! `BENCH_ROUNDS` x `BENCH_SECS` each), then at half the portal's peak for its p99, then
//! the admin overview and the audit log (first pages, as Dana). Prints the figures.
//!
//!   .ci/bench-http    # release build; installs wrk (Debian) if missing
//!   BENCH_PEOPLE=10000 BENCH_REQUESTS=100000 BENCH_ROUNDS=3 BENCH_SECS=15 .ci/bench-http

mod support;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Html;
use leptos::prelude::LeptosOptions;
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::Config;
use portcullis::http::{AppState, Limits, Site};
use portcullis::portal::PortalService;
use portcullis::store::{self, Store};
use rand::SeedableRng;
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const COOKIE: &str = "portcullis_session";

#[tokio::main]
async fn main() -> Result<()> {
    let people = env_or("BENCH_PEOPLE", 10_000) as usize;
    let requests = env_or("BENCH_REQUESTS", 100_000) as usize;
    let rounds = env_or("BENCH_ROUNDS", 3) as usize;
    let secs = env_or("BENCH_SECS", 15);
    let connections = env_or("BENCH_CONNECTIONS", 32);
    let dir = tempfile::TempDir::new()?;
    let (store, now) = demo_store(dir.path(), "http").await?;
    let loaded = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let ids = seed_company(&store, people, requests, now, &mut rng).await?;

    // One session per person, and one admin's.
    let admin = app::domain::Principal {
        user_id: "bench|admin".into(),
        email: "admin@bench.example.com".into(),
        email_verified: true,
        display_name: "Bench Admin".into(),
        groups: vec![],
        manager: None,
        is_admin: true,
    };
    let week = now.plus(Duration::from_secs(7 * 24 * 3600));
    let mut cookies = Vec::with_capacity(people);
    let admin_cookie;
    {
        let mut tx = store.begin().await?;
        store::upsert_user(&mut tx, &admin, now).await?;
        for id in ids.iter().map(String::as_str).chain(["bench|admin"]) {
            let token = hex::encode(rand::random::<[u8; 32]>());
            store::create_session_authenticated(&mut tx, &token, id, false, now, week, now).await?;
            cookies.push(format!("{COOKIE}={token}"));
        }
        tx.commit().await?;
        admin_cookie = cookies.pop().context("the admin's session")?;
    }
    // The audit log at size: an event for each request, on the chain as the portal writes
    // them.
    let events = env_or("BENCH_EVENTS", requests as u64) as usize;
    {
        let mut tx = store.begin().await?;
        let actor = store::Actor::system();
        for i in 0..events {
            let subject = format!("r{:07}", i % requests.max(1));
            let e = store::Event {
                action: "request.approved",
                person_id: Some(&ids[i % ids.len()]),
                subject_kind: "request",
                subject_id: &subject,
                entitlement_id: Some("prod-readonly"),
                detail: "benchmark".into(),
            };
            portcullis::audit::audit(&mut tx, &actor, e, now).await?;
        }
        tx.commit().await?;
    }
    println!(
        "bench-http: {people} people with a session each, {requests} requests (each decided, \
         each with a grant), {events} audit events, loaded in {:.1} s",
        loaded.elapsed().as_secs_f64()
    );

    let (router, portal) = portal_router(store.clone());
    let portal_addr = serve(router).await?;
    let bare_addr = serve(bare_router(store.clone())).await?;
    let cookie_file = dir.path().join("cookies.txt");
    std::fs::File::create(&cookie_file)?.write_all(cookies.join("\n").as_bytes())?;
    let script = dir.path().join("sessions.lua");
    std::fs::write(&script, LUA)?;
    let wrk = |addr: std::net::SocketAddr,
               path: &str,
               conns: u64,
               cookies: &std::path::Path,
               delay_ms: f64| {
        run_wrk(
            &script,
            cookies,
            &format!("http://{addr}{path}"),
            conns,
            secs,
            delay_ms,
        )
    };

    // Sanity: both answer a person's page, with rows.
    let probe = |addr: std::net::SocketAddr| {
        let cookie = cookies[7].clone();
        async move {
            let res = reqwest::Client::new()
                .get(format!("http://{addr}/requests"))
                .header("cookie", cookie)
                .send()
                .await?;
            anyhow::ensure!(res.status().is_success(), "{addr}: {}", res.status());
            Ok::<usize, anyhow::Error>(res.text().await?.len())
        }
    };
    println!(
        "  one page: portal {} bytes, bare {} bytes",
        probe(portal_addr).await?,
        probe(bare_addr).await?
    );

    println!("My access (/requests), {connections} connections, {secs} s a run, alternating:");
    let (mut portal_runs, mut bare_runs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let p = wrk(portal_addr, "/requests", connections, &cookie_file, 0.0)?;
        let b = wrk(bare_addr, "/requests", connections, &cookie_file, 0.0)?;
        println!(
            "  round {round}: portal {:>8.0} req/s (p99 {:>6.1} ms)   bare {:>8.0} req/s (p99 {:>6.1} ms)",
            p.rps, p.p99_ms, b.rps, b.p99_ms
        );
        portal_runs.push(p);
        bare_runs.push(b);
    }
    let median = |runs: &[Wrk]| {
        let mut v: Vec<f64> = runs.iter().map(|r| r.rps).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (peak, bare_peak) = (median(&portal_runs), median(&bare_runs));
    println!(
        "  median: portal {peak:.0} req/s, bare {bare_peak:.0} req/s: ratio {:.2} (goal 0.5)",
        peak / bare_peak
    );

    // Half the portal's peak: each connection waits so that all of them together ask
    // about half as often.
    let half = peak / 2.0;
    let delay = connections as f64 * 1000.0 / half;
    let at_half = wrk(portal_addr, "/requests", connections, &cookie_file, delay)?;
    println!(
        "  at half the peak: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms (goal p99 <= 50 ms)",
        at_half.rps, at_half.p50_ms, at_half.p99_ms
    );

    // The admin pages' use cases on their own (the page calls both).
    use app::ssr::Portal as _;
    let time = |label: &'static str, ms: Vec<f64>| {
        let mut ms = ms;
        ms.sort_by(f64::total_cmp);
        println!(
            "  {label}: p50 {:.1} ms, max {:.1} ms ({} calls)",
            pct(&ms, 0.5),
            pct(&ms, 1.0),
            ms.len()
        );
    };
    let (mut overview, mut dashboard) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let t = Instant::now();
        portal
            .admin_overview(&admin, Default::default())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        overview.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        portal
            .dashboard(&admin)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        dashboard.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("admin use cases, called directly:");
    time("admin_overview", overview);
    time("dashboard     ", dashboard);

    let admin_file = dir.path().join("admin.txt");
    std::fs::write(&admin_file, &admin_cookie)?;
    for (name, path) in [("admin overview", "/admin"), ("audit log", "/admin/audit")] {
        let probe = reqwest::Client::new()
            .get(format!("http://{portal_addr}{path}"))
            .header("cookie", &admin_cookie)
            .send()
            .await?;
        anyhow::ensure!(probe.status().is_success(), "{path}: {}", probe.status());
        let bytes = probe.text().await?.len();
        let r = wrk(portal_addr, path, 4, &admin_file, 0.0)?;
        println!(
            "{name} ({path}, first page, 4 connections): {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, \
             {bytes} bytes (goal p99 < 50 ms)",
            r.rps, r.p50_ms, r.p99_ms
        );
    }
    Ok(())
}

fn portal_router(store: Store) -> (axum::Router, Arc<PortalService>) {
    let config = Config::default();
    let portal = Arc::new(simulated_portal(&store));
    let clock = portal.clock.clone();
    let site = Arc::new(Site::empty());
    let leptos_options = LeptosOptions::builder()
        .output_name(site.output_name())
        .site_root("target/site")
        .site_pkg_dir("pkg")
        .build();
    let router = portcullis::http::router(AppState {
        leptos_options,
        site,
        store,
        clock,
        portal: portal.clone(),
        limits: Arc::new(Limits::new(&config.http)),
        config: Arc::new(config),
        demo: false,
        oidc: None,
        worker_heartbeat: None,
        metrics: Default::default(),
    });
    (router, portal)
}

/// "My access" by hand: the session, the person's requests and grants, one table each.
fn bare_router(store: Store) -> axum::Router {
    axum::Router::new()
        .route("/requests", axum::routing::get(bare_page))
        .with_state(store)
}

async fn bare_page(State(store): State<Store>, headers: HeaderMap) -> Result<Html<String>, String> {
    let token = headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("portcullis_session="))
        .ok_or("no session")?
        .to_owned();
    let mut conn = store.conn().await.map_err(|e| e.to_string())?;
    let now = SystemClock.now();
    let found = store::find_session_full(&mut conn, &token, now, Duration::from_secs(3600))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no such session")?;
    let who = found.principal.user_id;
    let requests = store::requests_by_requester(&mut conn, &who)
        .await
        .map_err(|e| e.to_string())?;
    let grants = store::grants_for_principal(&mut conn, &who)
        .await
        .map_err(|e| e.to_string())?;
    let mut html = String::with_capacity(16 * 1024);
    html.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>My access</title></head><body><main><h1>My access</h1><table><tbody>");
    for g in &grants {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&g.account_id),
            escape(&g.permission_set_arn),
            g.status,
            g.ends_at.format_utc()
        ));
    }
    html.push_str("</tbody></table><table><tbody>");
    for r in &requests {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.entitlement_id),
            escape(&r.justification),
            r.status,
            r.created_at.format_utc()
        ));
    }
    html.push_str("</tbody></table></main></body></html>");
    Ok(Html(html))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn serve(app: axum::Router) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    Ok(addr)
}

/// Picks a random session for each request; with `delay_ms` set, each connection waits
/// that long between requests (a rate below the peak).
const LUA: &str = r#"
local cookies = {}
for line in io.lines(os.getenv("BENCH_COOKIES")) do cookies[#cookies + 1] = line end
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local n = 0
init = function(args)
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end
request = function()
  local c = cookies[math.random(#cookies)]
  return wrk.format("GET", nil, { ["Cookie"] = c })
end
if pause > 0 then
  delay = function() return math.random(math.floor(pause / 2), math.floor(pause * 3 / 2)) end
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH %d %.3f %.3f %.3f %d\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.duration / 1e6,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"#;

struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn run_wrk(
    script: &std::path::Path,
    cookies: &std::path::Path,
    url: &str,
    connections: u64,
    secs: u64,
    delay_ms: f64,
) -> Result<Wrk> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--timeout",
            "10s",
        ])
        .arg("-s")
        .arg(script)
        .arg(url)
        .env("BENCH_COOKIES", cookies)
        .env("BENCH_DELAY_MS", format!("{delay_ms:.0}"))
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .with_context(|| {
            format!(
                "no summary from wrk: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let f: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    anyhow::ensure!(f.len() == 5, "wrk summary: {line}");
    anyhow::ensure!(f[4] == 0.0, "{url}: {} failed answers: {text}", f[4]);
    Ok(Wrk {
        rps: f[0] / f[3],
        p50_ms: f[1],
        p99_ms: f[2],
    })
}
