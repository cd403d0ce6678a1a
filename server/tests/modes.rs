//! Demo and serve never mix (invariant 11), through the real router and start-up: the
//! demo answers only to loopback names on its port, `Origin` must equal `public_url`,
//! serve never takes a demo session, each refuses the other's database, and the
//! start-up refusals (demo with `[oidc]` or beyond loopback, serve without its settings).

mod common;

use common::web::*;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::{Config, Mode};
use portcullis::seed;
use portcullis::store::{self, DatabaseUrl, Store};
use std::time::Duration;
use tower::ServiceExt;

#[tokio::test]
async fn demo_answers_only_to_loopback_names_on_its_port() {
    let _serial = serial().await;
    let app = app().await;
    let with_host = |method: &str, path: &str, host: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
    };
    for ok in [
        "127.0.0.1:3000",
        "localhost:3000",
        "LOCALHOST:3000",
        "[::1]:3000",
    ] {
        let res = app
            .send(
                with_host("GET", "/healthz", ok)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{ok}");
    }
    // A rebound DNS name, another port, no port: refused before anything else happens.
    for bad in [
        "rebound.example:3000",
        "127.0.0.1:3001",
        "localhost",
        "127.0.0.2:3000",
    ] {
        let res = app
            .send(
                with_host("GET", "/demo/login", bad)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST, "{bad}");
        let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("answers only at 127.0.0.1"));
    }
    let before = app.audit_actions().await.len();
    let res = app
        .send(
            with_host("POST", "/demo/login", "rebound.example:3000")
                .header(header::ORIGIN, "http://rebound.example:3000")
                .header("sec-fetch-site", "same-origin")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("persona=dana&return_to=/"))
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(header_str(&res, "set-cookie").is_empty(), "no session");
    assert_eq!(app.audit_actions().await.len(), before, "nobody signed in");
}

#[tokio::test]
async fn an_origin_equal_to_the_host_but_not_to_public_url_is_refused() {
    let _serial = serial().await;
    // The demo is at http://127.0.0.1:3000 (its public URL); a page at localhost:3000 is
    // another origin, even though its Origin matches the Host it sends.
    let app = app().await;
    let (set_cookie, _) = app.sign_in("alice", "/", None).await;
    let pair = cookie_pair(&set_cookie);
    let logout = |host: &str, origin: &str| {
        Request::post("/auth/logout")
            .header(header::HOST, host)
            .header(header::ORIGIN, origin)
            .header("sec-fetch-site", "same-origin")
            .header(header::COOKIE, &pair)
            .body(Body::empty())
            .unwrap()
    };
    let res = app
        .send(logout("localhost:3000", "http://localhost:3000"))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app.send(logout(HOST, "http://127.0.0.1:3000/")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "exactly the origin");
    assert_eq!(
        app.get("/requests", Some(&pair)).await.status(),
        StatusCode::OK,
        "still signed in"
    );
    let denied = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|a| a == "denied.csrf")
        .count();
    assert_eq!(denied, 2);
    let res = app.send(logout("localhost:3000", ORIGIN)).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "the public origin passes"
    );

    // Behind https, the same: only the public URL's origin.
    let config = Config {
        public_url: Some("https://access.example.com/".into()),
        ..Config::default()
    };
    let app = app_with(config, true).await;
    let post = |origin: &str| {
        Request::post("/auth/logout")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap()
    };
    let res = app.send(post(ORIGIN)).await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "Origin = Host, not public_url"
    );
    let res = app.send(post("https://access.example.com")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn serve_never_accepts_a_demo_session() {
    let _serial = serial().await;
    let dir = tempfile::TempDir::new().unwrap();
    let url = DatabaseUrl::new(format!("sqlite://{}/s.db?mode=rwc", dir.path().display()));
    let store = Store::connect(&url, common::audit_key()).await.unwrap();
    store.migrate().await.unwrap();
    seed::seed_demo(&store, SystemClock.now()).await.unwrap();
    let real = app::domain::Principal {
        user_id: "https://idp.example.com|u-1".into(),
        email: "real@example.com".into(),
        email_verified: true,
        display_name: "Real Person".into(),
        groups: vec!["engineering".into()],
        manager: None,
        is_admin: false,
    };
    let now = SystemClock.now();
    let later = now.plus(Duration::from_secs(3600));
    {
        let mut conn = store.conn().await.unwrap();
        store::upsert_user(&mut conn, &real, now).await.unwrap();
        store::create_session(&mut conn, "demo-made", "demo|dana", true, now, later)
            .await
            .unwrap();
        store::create_session(&mut conn, "persona", "demo|dana", false, now, later)
            .await
            .unwrap();
        store::create_session(&mut conn, "real", &real.user_id, false, now, later)
            .await
            .unwrap();
    }
    let (router, _) = common::web::router(&store, Config::default(), false, None);
    let get = |token: &str| {
        Request::get("/requests")
            .header(header::HOST, HOST)
            .header(header::COOKIE, format!("portcullis_session={token}"))
            .body(Body::empty())
            .unwrap()
    };
    for token in ["demo-made", "persona"] {
        let res = router.clone().oneshot(get(token)).await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{token}");
        assert!(
            header_str(&res, "location").starts_with("/auth/login?"),
            "{token}"
        );
    }
    let res = router.clone().oneshot(get("real")).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the control: a serve session works"
    );
    // And serve has no demo sign-in to make one.
    let res = router
        .clone()
        .oneshot(
            Request::post("/demo/login")
                .header(header::HOST, HOST)
                .header(header::ORIGIN, ORIGIN)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("persona=dana"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(header_str(&res, "set-cookie").is_empty());
}

/// A configuration `serve` accepts, on this SQLite file (the provider is never called).
fn serve_config(db: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(DatabaseUrl::new(format!(
            "sqlite://{}?mode=rwc",
            db.display()
        ))),
        public_url: Some("http://127.0.0.1:3000".into()),
        oidc: Some(
            serde_json::from_value(serde_json::json!({
                "issuer_url": "http://127.0.0.1:1",
                "client_id": "portcullis",
                "client_secret": "s3cret",
            }))
            .unwrap(),
        ),
        audit: serde_json::from_value(serde_json::json!({
            "key": hex::encode(b"the Portcullis test suites' audit key: 32 bytes and more"),
        }))
        .unwrap(),
        ..Config::default()
    }
}

#[tokio::test]
async fn demo_and_serve_refuse_each_others_database() {
    let _serial = serial().await;
    let dir = tempfile::TempDir::new().unwrap();
    // A database the demo has used (its personas, its mode).
    let demo_db = dir.path().join("demo.db");
    let config = serve_config(&demo_db);
    let store = Store::connect(config.database_url.as_ref().unwrap(), common::audit_key())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    seed::seed_demo(&store, SystemClock.now()).await.unwrap();
    portcullis::claim_database(&store, Mode::Demo, SystemClock.now())
        .await
        .unwrap();
    let err = portcullis::run(config, Mode::Serve).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("`portcullis serve` refuses this database"),
        "{err:#}"
    );

    // A database serve has used.
    let serve_db = dir.path().join("serve.db");
    let config = serve_config(&serve_db);
    let store = Store::connect(config.database_url.as_ref().unwrap(), common::audit_key())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    portcullis::claim_database(&store, Mode::Serve, SystemClock.now())
        .await
        .unwrap();
    let demo = Config {
        oidc: None,
        public_url: None,
        ..config
    };
    let err = portcullis::run(demo, Mode::Demo).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("demo mode refuses this database"),
        "{err:#}"
    );
}

#[tokio::test]
async fn demo_refuses_an_oidc_section() {
    let _serial = serial().await;
    let dir = tempfile::TempDir::new().unwrap();
    let config = Config {
        public_url: None,
        ..serve_config(&dir.path().join("x.db"))
    };
    let err = portcullis::run(config, Mode::Demo).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("refuses an [oidc] section"),
        "{err:#}"
    );
    assert!(
        !dir.path().join("x.db").exists(),
        "refused before opening anything"
    );
}

#[tokio::test]
async fn demo_refuses_to_listen_beyond_loopback() {
    let _serial = serial().await;
    let config = Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..Config::default()
    };
    let err = portcullis::run(config, Mode::Demo).await.unwrap_err();
    assert!(format!("{err:#}").contains("refuses to listen"), "{err:#}");
}

#[tokio::test]
async fn serve_names_missing_settings() {
    let _serial = serial().await;
    let err = portcullis::run(Config::default(), Mode::Serve)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    for needed in [
        "PORTCULLIS_DATABASE_URL",
        "PORTCULLIS_PUBLIC_URL",
        "PORTCULLIS_OIDC__ISSUER_URL",
        "PORTCULLIS_AUDIT__KEY",
    ] {
        assert!(msg.contains(needed), "{needed} not named in: {msg}");
    }
}
