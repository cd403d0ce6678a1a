//! The HTTP layer through the real router: health and readiness, request ids, sign-in
//! redirects, session cookies (attributes, rotation, sign-out), open-redirect defence,
//! CSRF refusal. Demo and serve modes apart: `modes.rs`.

mod common;

use common::web::*;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::Config;
use portcullis::store;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn health_and_readiness() {
    let _serial = serial().await;
    let app = app().await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    // A database that is reachable but not migrated is not ready.
    let bare = app_with(Config::default(), false).await;
    assert_eq!(bare.get("/healthz", None).await.status(), StatusCode::OK);
    assert_eq!(
        bare.get("/readyz", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Migrated but with no catalog yet (a first start before its first sync): not ready,
    // and it says why; a succeeded sync (of an empty organization, even) makes it ready.
    bare.store.migrate().await.unwrap();
    let res = bare.get("/readyz", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("no catalog yet"));
    let run = {
        let mut conn = bare.store.conn().await.unwrap();
        let now = SystemClock.now();
        let run =
            portcullis::store::start_run(&mut conn, portcullis::store::JobKind::SyncCatalog, now)
                .await
                .unwrap();
        portcullis::store::finish_run(&mut conn, &run, true, "empty organization", now)
            .await
            .unwrap();
        run
    };
    assert!(!run.is_empty());
    assert_eq!(bare.get("/readyz", None).await.status(), StatusCode::OK);
}

/// Every answer carries `X-Request-Id` (a load balancer's own when well-formed), and an
/// internal error met while answering shows that id as its reference, so the reference a
/// person reports finds the request's log lines.
#[tokio::test]
async fn every_answer_has_a_request_id_and_an_internal_error_names_it() {
    let _serial = serial().await;
    let app = app().await;
    let first = header_str(&app.get("/healthz", None).await, "x-request-id");
    let second = header_str(&app.get("/healthz", None).await, "x-request-id");
    assert_eq!(first.len(), 16, "{first}");
    assert_ne!(first, second);
    let long = "x".repeat(65);
    for (given, kept) in [
        ("lb-1234.abc_Z", true),
        ("two words", false),
        ("<script>", false),
        (long.as_str(), false),
    ] {
        let req = Request::get("/healthz")
            .header(header::HOST, HOST)
            .header("x-request-id", given)
            .body(Body::empty())
            .unwrap();
        let id = header_str(&app.send(req).await, "x-request-id");
        assert_eq!(id == given, kept, "{given:?} -> {id:?}");
        assert!(!id.is_empty());
    }
    // A sign-in meets a database that lost its sessions table: a 500 whose reference is
    // the request's id, and nothing of the cause.
    sqlx::query("DROP TABLE web_session")
        .execute(app.store.pool())
        .await
        .unwrap();
    let req = Request::post("/demo/login")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, &app.origin)
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("persona=alice&return_to=%2F"))
        .unwrap();
    let res = app.send(req).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let id = header_str(&res, "x-request-id");
    let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains(&id), "{body} should name {id}");
    assert!(!body.contains("web_session"), "{body}");
}

/// Access must end on time: a revocation overdue beyond `worker.overdue_after_secs`
/// makes the replica not ready, and so does a worker that stopped coming round its loop.
#[tokio::test]
async fn readiness_reports_overdue_revocations_and_a_stopped_worker() {
    let _serial = serial().await;
    let app = app().await;
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    let now = SystemClock.now();
    {
        let mut conn = app.store.conn().await.unwrap();
        // Due 4 minutes ago: late, but within the 5-minute bound.
        let recent = now.minus(Duration::from_secs(240));
        store::insert_job(
            &mut conn,
            store::JobKind::Deprovision,
            "g-late",
            recent,
            recent,
        )
        .await
        .unwrap();
    }
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    {
        let mut conn = app.store.conn().await.unwrap();
        let old = now.minus(Duration::from_secs(600));
        store::insert_job(
            &mut conn,
            store::JobKind::Deprovision,
            "g-overdue",
            old,
            old,
        )
        .await
        .unwrap();
    }
    let res = app.get("/readyz", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("1 revocation(s) overdue"), "{body}");
    {
        let mut conn = app.store.conn().await.unwrap();
        let jobs = store::jobs_for(&mut conn, "g-overdue").await.unwrap();
        store::delete_job(&mut conn, &jobs[0].job_id).await.unwrap();
    }
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);

    // A worker whose last round was 10 minutes ago (settings: 30 s idle, 60 s lease).
    let beat = Arc::new(std::sync::atomic::AtomicI64::new(
        now.minus(Duration::from_secs(600)).millis(),
    ));
    let (router, portal) = common::web::router_with_worker(
        &app.store,
        Config::default(),
        true,
        None,
        Some(beat.clone()),
    );
    let stalled = App {
        router,
        portal,
        store: app.store.clone(),
        origin: app.origin.clone(),
        _dir: tempfile::TempDir::new().unwrap(),
    };
    let res = stalled.get("/readyz", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("the worker has not run"));
    beat.store(
        SystemClock.now().millis(),
        std::sync::atomic::Ordering::Relaxed,
    );
    assert_eq!(stalled.get("/readyz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn pages_need_a_session() {
    let _serial = serial().await;
    let app = app().await;
    let res = app.get("/requests?tab=1", None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header_str(&res, "location"),
        "/demo/login?return_to=/requests%3Ftab%3D1"
    );
    // A forged cookie is no session either.
    let res = app
        .get("/requests", Some("portcullis_session=deadbeef"))
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn session_cookie_attributes_and_rotation() {
    let _serial = serial().await;
    let app = app().await;
    let (set_cookie, location) = app.sign_in("alice", "/approvals", None).await;
    assert_eq!(location, "/approvals");
    let pair = cookie_pair(&set_cookie);
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(
        name, "portcullis_session",
        "plain-http loopback: no __Host- prefix"
    );
    assert_eq!(value.len(), 64, "256 random bits, hex");
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            set_cookie.contains(attr),
            "{attr} missing from {set_cookie}"
        );
    }
    assert!(
        !set_cookie.contains("Secure"),
        "http loopback cannot set Secure"
    );
    assert_eq!(
        app.get("/requests", Some(&pair)).await.status(),
        StatusCode::OK
    );

    // Signing in again rotates the session: the old cookie stops working.
    let (set_cookie2, _) = app.sign_in("alice", "/", Some(&pair)).await;
    let pair2 = cookie_pair(&set_cookie2);
    assert_ne!(pair, pair2);
    assert_eq!(
        app.get("/requests", Some(&pair)).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        app.get("/requests", Some(&pair2)).await.status(),
        StatusCode::OK
    );
    assert!(app.audit_actions().await.iter().any(|a| a == "signin.demo"));
}

#[tokio::test]
async fn secure_cookie_behind_https() {
    let _serial = serial().await;
    let config = Config {
        public_url: Some("https://access.example.com".into()),
        ..Config::default()
    };
    let app = app_with(config, true).await;
    let (set_cookie, _) = app.sign_in("bob", "/", None).await;
    assert!(set_cookie.starts_with("__Host-portcullis="), "{set_cookie}");
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
}

/// Pages, server functions and exports are never cached (the compiled site's files are:
/// `compiled_site_*`). Every answer carries the browser-feature lock-down, and HSTS only behind https.
#[tokio::test]
async fn pages_are_never_cached_and_hsts_only_behind_https() {
    let _serial = serial().await;
    let app = app().await;
    let (set_cookie, _) = app.sign_in("alice", "/", None).await;
    let pair = cookie_pair(&set_cookie);
    for path in ["/requests", "/demo/login", "/readyz"] {
        let res = app.get(path, Some(&pair)).await;
        let h = res.headers();
        assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-store", "{path}");
        assert!(
            h.get("permissions-policy")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("camera=()"),
            "{path}"
        );
        assert!(
            h.get(header::STRICT_TRANSPORT_SECURITY).is_none(),
            "plain http: {path}"
        );
    }
    let https = app_with(
        Config {
            public_url: Some("https://access.example.com".into()),
            ..Config::default()
        },
        true,
    )
    .await;
    let res = https.get("/healthz", None).await;
    assert_eq!(
        res.headers()
            .get(header::STRICT_TRANSPORT_SECURITY)
            .unwrap(),
        "max-age=31536000; includeSubDomains"
    );
}

#[tokio::test]
async fn return_to_never_leaves_the_site() {
    let _serial = serial().await;
    let app = app().await;
    for evil in [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let (_, location) = app.sign_in("alice", evil, None).await;
        assert_eq!(location, "/", "{evil}");
    }
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let _serial = serial().await;
    let app = app().await;
    let (set_cookie, _) = app.sign_in("carol", "/", None).await;
    let pair = cookie_pair(&set_cookie);
    let res = app
        .send(
            Request::post("/auth/logout")
                .header(header::HOST, HOST)
                .header(header::ORIGIN, ORIGIN)
                .header(header::COOKIE, &pair)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(header_str(&res, "set-cookie").contains("Max-Age=0"));
    // Replaying the old cookie gets nobody in.
    assert_eq!(
        app.get("/requests", Some(&pair)).await.status(),
        StatusCode::SEE_OTHER
    );
    assert!(app.audit_actions().await.iter().any(|a| a == "signout"));
}

#[tokio::test]
async fn cross_site_posts_are_refused_and_audited() {
    let _serial = serial().await;
    let app = app().await;
    let (set_cookie, _) = app.sign_in("alice", "/", None).await;
    let pair = cookie_pair(&set_cookie);
    let post = |origin: Option<&'static str>, site: Option<&'static str>| {
        let mut req = Request::post("/auth/logout")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &pair);
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        req.body(Body::empty()).unwrap()
    };
    let res = app.send(post(None, Some("cross-site"))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app.send(post(Some("https://evil.example"), None)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Refused requests changed nothing: the session still works.
    assert_eq!(
        app.get("/requests", Some(&pair)).await.status(),
        StatusCode::OK
    );
    let denied = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|a| a == "denied.csrf")
        .count();
    assert_eq!(denied, 2);
    // Same-origin passes.
    let res = app.send(post(Some(ORIGIN), Some("same-origin"))).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

/// Many pages rendered at once, on one multi-threaded runtime as in production:
/// every render completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_page_renders_all_complete() {
    let _serial = serial().await;
    let app = Arc::new(app().await);
    let (set_cookie, _) = app.sign_in("alice", "/", None).await;
    let pair = cookie_pair(&set_cookie);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..192 {
        let app = app.clone();
        let pair = pair.clone();
        let path = ["/requests", "/", "/approvals"][i % 3];
        tasks.spawn(async move { app.get(path, Some(&pair)).await.status() });
    }
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        let mut statuses = Vec::new();
        while let Some(s) = tasks.join_next().await {
            statuses.push(s.unwrap());
        }
        statuses
    })
    .await
    .expect("every concurrent render finishes");
    assert_eq!(all.len(), 192);
    assert!(all.iter().all(|s| *s == StatusCode::OK), "{all:?}");
}

/// A site directory as `cargo leptos build --release --precompress` leaves it.
fn site_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap();
    for (name, body) in [
        ("portcullis.wasm", &b"\0asm-plain"[..]),
        ("portcullis.wasm.br", b"brotli-bytes"),
        ("portcullis.wasm.gz", b"gzip-bytes"),
        ("portcullis.js", b"export default 1;"),
        ("portcullis.css", b"body{}"),
    ] {
        std::fs::write(pkg.join(name), body).unwrap();
    }
    dir
}

/// Pages name the bundle by its content hash; those names are cached for a year, the
/// plain names are revalidated, a stale hash is not found, and the precompressed copy
/// goes to a browser that accepts it.
#[tokio::test]
async fn compiled_site_has_hashed_names_cache_lifetimes_and_encodings() {
    let _serial = serial().await;
    let dir = site_dir();
    let config = Config {
        site_root: Some(dir.path().to_string_lossy().into_owned()),
        ..Config::default()
    };
    let app = app_with(config, true).await;
    let (set_cookie, _) = app.sign_in("alice", "/requests", None).await;
    let page = body_text(app.get("/requests", Some(&cookie_pair(&set_cookie))).await).await;
    let name = page
        .split("/pkg/portcullis.")
        .nth(1)
        .and_then(|rest| rest.get(..16))
        .expect("the page names the bundle")
        .to_owned();
    assert!(name.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    // (The WebAssembly is `_bg.wasm` where cargo-leptos did not build the server.)
    for ext in ["css", "js", "wasm"] {
        assert!(
            page.contains(&format!("/pkg/portcullis.{name}.{ext}"))
                || page.contains(&format!("/pkg/portcullis.{name}_bg.{ext}")),
            "{ext} by its hashed name"
        );
    }

    let get = |path: String, accept: &'static str, etag: Option<String>| {
        let mut req = Request::get(path)
            .header(header::HOST, HOST)
            .header(header::ACCEPT_ENCODING, accept);
        if let Some(e) = etag {
            req = req.header(header::IF_NONE_MATCH, e);
        }
        app.send(req.body(Body::empty()).unwrap())
    };
    let wasm = format!("/pkg/portcullis.{name}.wasm");
    let res = get(wasm.clone(), "gzip, deflate, br", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header_str(&res, "content-encoding"), "br");
    assert_eq!(header_str(&res, "content-type"), "application/wasm");
    assert_eq!(
        header_str(&res, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header_str(&res, "vary"), "Accept-Encoding");
    assert_eq!(body_text(res).await, "brotli-bytes");
    let res = get(wasm.clone(), "gzip", None).await;
    assert_eq!(header_str(&res, "content-encoding"), "gzip");
    assert_eq!(body_text(res).await, "gzip-bytes");
    let res = get(wasm.clone(), "identity", None).await;
    assert!(res.headers().get("content-encoding").is_none());
    let etag = header_str(&res, "etag");
    assert_eq!(body_text(res).await, "\0asm-plain");
    // wasm-bindgen's name for the same file.
    let res = get(format!("/pkg/portcullis.{name}_bg.wasm"), "", None).await;
    assert_eq!(res.status(), StatusCode::OK);

    // The plain name: revalidated, and unchanged content is a 304.
    let res = get("/pkg/portcullis.css".into(), "", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header_str(&res, "cache-control"), "no-cache");
    assert_eq!(header_str(&res, "content-type"), "text/css; charset=utf-8");
    let css_etag = header_str(&res, "etag");
    let res = get("/pkg/portcullis.css".into(), "", Some(css_etag)).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    let res = get(wasm.clone(), "identity", Some(etag.clone())).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    // The brotli copy has its own tag: the plain one does not match it.
    let res = get(wasm, "br", Some(etag)).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Another build's hash, a file that is not there, a way out of the directory.
    for path in [
        "/pkg/portcullis.0123456789abcdef.wasm",
        "/pkg/nothing.js",
        "/pkg/../Cargo.toml",
        "/pkg/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let res = get(path.into(), "br", None).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
