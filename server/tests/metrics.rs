//! `/metrics`, read with the official Prometheus client's text-format parser (Python's
//! `prometheus_client.parser`, from the test venv): a grant's lifecycle against moto moves
//! the right counters, histograms and gauges (on SQLite and PostgreSQL), and the router
//! counts its answers by route and its sign-ins by outcome.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::moto::{aws_config, clients_with_alice, Moto};
use common::{person, settings, Backend, TestEnv};
use portcullis::clock::Clock;
use portcullis::metrics::Metrics;
use portcullis::provisioner::sso_admin::SsoAdminProvisioner;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Every sample of a scrape: (name, labels, value), as the official parser reads them.
struct Scrape(Vec<(String, serde_json::Map<String, Value>, f64)>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut child = std::process::Command::new(common::peers::python())
            .args([
                "-c",
                "import sys, json\n\
                 from prometheus_client.parser import text_string_to_metric_families as parse\n\
                 print(json.dumps([[s.name, s.labels, s.value] \
                 for f in parse(sys.stdin.read()) for s in f.samples]))",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the Prometheus parser refused the scrape: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let samples: Vec<(String, serde_json::Map<String, Value>, f64)> =
            serde_json::from_slice(&out.stdout).unwrap();
        Scrape(samples)
    }

    /// The value of the sample with this name and (at least) these labels; 0 when absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
            })
            .map_or(0.0, |(_, _, v)| *v)
    }
}

async fn scrape(env: &TestEnv, metrics: &Arc<Metrics>) -> Scrape {
    let clock: Arc<dyn Clock> = env.clock.clone();
    let router = portcullis::http::metrics_router(
        env.store.clone(),
        clock,
        metrics.clone(),
        Duration::from_secs(300),
    );
    let res = router
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Scrape::parse(std::str::from_utf8(&body).unwrap())
}

/// Alice's grant from approval to revocation, through IAM Identity Center (moto): each
/// step shows in the scrape, and a throttled call is counted as throttled.
async fn a_lifecycle_moves_the_metrics(b: Backend) {
    let env = TestEnv::new(b).await;
    let metrics = Arc::new(Metrics::default());
    let moto = Moto::start().await;
    clients_with_alice(&moto).await;
    let provisioner = Arc::new(
        SsoAdminProvisioner::connect(&aws_config(&moto))
            .await
            .unwrap()
            .with_metrics(metrics.clone()),
    );
    let s = scrape(&env, &metrics).await;
    assert_eq!(s.value("portcullis_database_up", &[]), 1.0);
    assert_eq!(s.value("portcullis_active_grants", &[]), 0.0);
    assert_eq!(
        s.value("portcullis_revocation_lateness_seconds_count", &[]),
        0.0
    );

    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    let g = env.only_grant(&rid).await;
    let s = scrape(&env, &metrics).await;
    assert_eq!(
        s.value("portcullis_jobs_due", &[("kind", "provision")]),
        1.0
    );
    let w = env
        .worker_with(provisioner.clone(), settings())
        .with_metrics(metrics.clone());
    env.settle(&w).await;
    let s = scrape(&env, &metrics).await;
    assert_eq!(s.value("portcullis_active_grants", &[]), 1.0);
    assert_eq!(
        s.value("portcullis_jobs_due", &[("kind", "provision")]),
        0.0
    );
    assert_eq!(
        s.value("portcullis_approval_to_grant_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        s.value(
            "portcullis_aws_calls_total",
            &[("api", "CreateAccountAssignment"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        s.value("portcullis_revocation_lateness_seconds_count", &[]),
        0.0
    );

    // Ended 2.0 s ago when the worker gets to it: lateness in the (1, 2.5] bucket.
    env.set_time(g.ends_at.millis() + 2_000);
    env.settle(&w).await;
    let s = scrape(&env, &metrics).await;
    assert_eq!(s.value("portcullis_active_grants", &[]), 0.0);
    assert_eq!(
        s.value("portcullis_revocation_lateness_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        s.value(
            "portcullis_revocation_lateness_seconds_bucket",
            &[("le", "1.0")]
        ),
        0.0
    );
    assert_eq!(
        s.value(
            "portcullis_revocation_lateness_seconds_bucket",
            &[("le", "2.5")]
        ),
        1.0
    );
    assert!((s.value("portcullis_revocation_lateness_seconds_sum", &[]) - 2.0).abs() < 0.01);
    assert_eq!(
        s.value(
            "portcullis_aws_calls_total",
            &[("api", "DeleteAccountAssignment"), ("outcome", "ok")]
        ),
        1.0
    );

    // AWS says "slow down": counted as throttled, not as an error.
    moto.fault(
        "arm",
        json!({"operation": "ListPermissionSets", "code": "ThrottlingException", "status": 400}),
    )
    .await;
    provisioner.probe().await.unwrap_err();
    let s = scrape(&env, &metrics).await;
    assert_eq!(
        s.value(
            "portcullis_aws_calls_total",
            &[("api", "ListPermissionSets"), ("outcome", "throttled")]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "portcullis_aws_calls_total",
            &[("api", "ListPermissionSets"), ("outcome", "error")]
        ),
        0.0
    );
}

both!(a_lifecycle_moves_the_metrics);

/// Answers are counted by the route that matched (never the raw path), sign-ins by
/// outcome.
#[tokio::test]
async fn answers_and_sign_ins_are_counted() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = portcullis::store::DatabaseUrl::new(format!(
        "sqlite://{}/m.db?mode=rwc",
        dir.path().display()
    ));
    let store = portcullis::store::Store::connect(&url, common::audit_key())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    portcullis::seed::seed_demo(&store, portcullis::clock::SystemClock.now())
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::default());
    let config = portcullis::config::Config::default();
    let origin = config.public_origin().unwrap();
    let (router, _) = common::web::router_with_metrics(&store, config, true, metrics.clone());
    let send = |req: Request<Body>| {
        let router = router.clone();
        async move { router.oneshot(req).await.unwrap() }
    };
    let get = |path: &str| {
        Request::get(path)
            .header(header::HOST, common::web::HOST)
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(send(get("/healthz")).await.status(), StatusCode::OK);
    }

    let login = |persona: &str| {
        Request::post("/demo/login")
            .header(header::HOST, common::web::HOST)
            .header(header::ORIGIN, &origin)
            .header("sec-fetch-site", "same-origin")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("persona={persona}&return_to=%2F")))
            .unwrap()
    };
    let signed_in = send(login("dana")).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = signed_in.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // A page no route answers: 404 (to someone signed in; others are sent to sign in).
    let mut nowhere = get("/no/such/page/123");
    nowhere
        .headers_mut()
        .insert(header::COOKIE, cookie.parse().unwrap());
    assert_eq!(send(nowhere).await.status(), StatusCode::NOT_FOUND);
    let text = Metrics::render(&metrics, &Default::default());
    let s = Scrape::parse(&text);
    assert_eq!(
        s.value(
            "portcullis_http_requests_total",
            &[("route", "/healthz"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        s.value(
            "portcullis_http_requests_total",
            &[("route", "/demo/login"), ("status", "303")]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "portcullis_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        !text.contains("/no/such/page/123"),
        "a raw path never becomes a label"
    );
    assert_eq!(
        s.value("portcullis_sign_ins_total", &[("outcome", "ok")]),
        1.0
    );
}
