//! Start-up while the database is away: the portal waits for it (with backoff) instead
//! of exiting, answers `/readyz` 503 meanwhile, and comes up once the database answers.
//! The database "comes back" as a forwarder to the test's PostgreSQL server, opened on
//! the port the portal was told, when the test says so.

mod common;

use portcullis::config::{Config, Mode};
use portcullis::store::DatabaseUrl;
use std::time::{Duration, Instant};

/// A fresh PostgreSQL database behind a port where nothing listens yet.
struct AwayDatabase {
    /// The URL the portal is given (the away port).
    url: DatabaseUrl,
    port: u16,
    /// `host:port` of the real server.
    target: String,
}

impl AwayDatabase {
    async fn new() -> Self {
        let (real, _) = common::fresh_database(common::Backend::Postgres).await;
        let target = real
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("host:port in the test URL")
            .to_owned();
        let port = common::peers::free_port();
        let url = DatabaseUrl::new(real.replacen(&target, &format!("127.0.0.1:{port}"), 1));
        Self { url, port, target }
    }

    /// The database answers on its port from now on (until the handle is aborted).
    async fn come_back(&self) -> tokio::task::JoinHandle<()> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let target = self.target.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        })
    }
}

/// Here the database appears two seconds after start-up began.
#[tokio::test]
async fn start_up_waits_for_the_database() {
    if !common::postgres_or_skip() {
        return;
    }
    let db = AwayDatabase::new().await;
    let started = Instant::now();
    let url = db.url.clone();
    let waiting =
        tokio::spawn(async move { portcullis::connect_waiting(&url, common::audit_key()).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "still waiting while nothing listens"
    );
    let forwarder = db.come_back().await;
    let store = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("connected once the database answered")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(store.is_ready().await, "connected and migrated");
    forwarder.abort();
}

/// The whole process, started while its database is away: the socket answers at once,
/// `/healthz` 200 and `/readyz` 503 saying what it waits for, pages 503 with
/// `Retry-After`; once the database answers, the portal is ready.
#[tokio::test]
async fn readiness_says_starting_while_the_database_is_away() {
    if !common::postgres_or_skip() {
        return;
    }
    let db = AwayDatabase::new().await;
    let port = common::peers::free_port();
    let config = Config {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        database_url: Some(db.url.clone()),
        site_root: Some("target/site".into()),
        ..Config::default()
    };
    let portal = tokio::spawn(portcullis::run(config, Mode::Demo));
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { http.get(url).send().await }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let res = loop {
        match get("/readyz").await {
            Ok(res) => break res,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("nothing answers on {base}: {e}"),
        }
    };
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(
        res.text().await.unwrap(),
        "starting: waiting for the database"
    );
    let res = get("/healthz").await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let res = get("/requests").await.unwrap();
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(res.headers()["retry-after"], "5");

    let forwarder = db.come_back().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(res) = get("/readyz").await {
            if res.status().as_u16() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not ready 90 s after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!portal.is_finished(), "the portal is still running");
    portal.abort();
    forwarder.abort();
}
