//! Hardening at the HTTP edge, through the real router: the Content-Security-Policy and its
//! per-request nonce, the status of every kind of refusal from a server function, and
//! error messages in the URL (the no-JavaScript round trip) shown only when the portal
//! wrote them for this session.

mod common;

use app::error::AppError;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::web::*;
use leptos::server_fn::ServerFn;

/// Calls a server function the way the hydrated app does (a form-encoded POST, JSON back).
async fn call(
    app: &App,
    path: &str,
    body: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let mut req = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, &app.origin)
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let res = app
        .send(req.body(Body::from(body.to_owned())).unwrap())
        .await;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    )
}

async fn signed_in(app: &App, persona: &str) -> String {
    let (set_cookie, _) = app.sign_in(persona, "/", None).await;
    cookie_pair(&set_cookie)
}

#[tokio::test]
async fn pages_carry_a_csp_whose_nonce_the_scripts_carry() {
    let _serial = serial().await;
    let app = app().await;
    let alice = signed_in(&app, "alice").await;
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let res = app.get("/requests", Some(&alice)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let csp = header_str(&res, "content-security-policy");
        for directive in [
            "default-src 'self'",
            "'wasm-unsafe-eval'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{directive} missing from {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .expect("a nonce in the policy")
            .to_owned();
        assert!(nonce.len() >= 16, "{nonce}");
        let html = body_text(res).await;
        let scripts: Vec<&str> = html
            .match_indices("<script")
            .map(|(i, _)| &html[i..])
            .collect();
        assert!(!scripts.is_empty(), "the page has its hydration scripts");
        for s in scripts {
            let tag = &s[..s.find('>').unwrap()];
            assert!(
                tag.contains(&format!("nonce=\"{nonce}\"")),
                "{tag} lacks {nonce}"
            );
        }
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a fresh nonce for every answer");
    // The plain pages and the probes carry the policy too.
    let res = app.get("/demo/login", None).await;
    assert!(header_str(&res, "content-security-policy").contains("script-src"));
}

#[tokio::test]
async fn server_functions_answer_with_the_status_of_their_error() {
    let _serial = serial().await;
    let app = app().await;
    let alice = signed_in(&app, "alice").await;
    let create = <app::api::CreateRequest as ServerFn>::PATH;
    let cancel = <app::api::CancelRequest as ServerFn>::PATH;
    let admin = <app::api::LoadAdminOverview as ServerFn>::PATH;

    // 401: nobody signed in.
    let (status, body, _) = call(&app, admin, "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        serde_json::from_str::<AppError>(&body).unwrap(),
        AppError::Unauthenticated
    );
    // 403: signed in, not an admin.
    let (status, body, _) = call(&app, admin, "", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // 400: invalid fields, and arguments that are missing altogether.
    let (status, body, _) = call(
        &app,
        create,
        "entitlement=prod-readonly&justification=&duration=100h",
        Some(&alice),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(matches!(
        serde_json::from_str::<AppError>(&body).unwrap(),
        AppError::Invalid(_)
    ));
    let (status, body, _) = call(&app, create, "entitlement=prod-readonly", Some(&alice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(matches!(
        serde_json::from_str::<AppError>(&body).unwrap(),
        AppError::BadRequest(_)
    ));
    // 404: a request that does not exist.
    let (status, body, _) = call(
        &app,
        cancel,
        "request_id=00000000-0000-0000-0000-000000000000",
        Some(&alice),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // 409: cancelling a request twice.
    let (status, id, _) = call(
        &app,
        create,
        "entitlement=prod-readonly&justification=checking+the+status+codes&duration=1h",
        Some(&alice),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{id}");
    let id: String = serde_json::from_str(&id).unwrap();
    let (status, _, _) = call(&app, cancel, &format!("request_id={id}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = call(&app, cancel, &format!("request_id={id}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A path that names no server function.
    let (status, _, _) = call(&app, "/api/no_such_function", "", Some(&alice)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Posts a form without JavaScript (the browser wants HTML back, the server redirects to
/// the page with the error in the URL); returns the Location.
async fn post_form(app: &App, path: &str, body: &str, cookie: &str) -> String {
    let req = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, &app.origin)
        .header(header::ACCEPT, "text/html")
        .header(header::REFERER, format!("{ORIGIN}/"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let res = app.send(req).await;
    assert!(res.status().is_redirection(), "{}", res.status());
    header_str(&res, header::LOCATION.as_str())
}

fn path_and_query(location: &str) -> String {
    let url = url::Url::parse(location).unwrap();
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

#[tokio::test]
async fn an_error_in_the_url_shows_only_when_the_portal_wrote_it_for_this_session() {
    let _serial = serial().await;
    let app = app().await;
    let alice = signed_in(&app, "alice").await;
    let create = <app::api::CreateRequest as ServerFn>::PATH;

    // The portal's own round trip: the field errors come back, signed, and show.
    let location = post_form(
        &app,
        create,
        "entitlement=prod-readonly&justification=&duration=100h",
        &alice,
    )
    .await;
    assert!(location.contains("__sig="), "{location}");
    let back = path_and_query(&location);
    let res = app.get(&back, Some(&alice)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body_text(res).await;
    assert!(
        html.contains("the maximum for this entitlement is 8h"),
        "the field error shows"
    );

    // A crafted link: text of the attacker's choosing in __err. It never reaches the page:
    // the browser is sent to the same page without it.
    use base64::Engine;
    let crafted = base64::engine::general_purpose::URL_SAFE.encode(
        serde_json::to_vec(&AppError::Conflict(
            "Your account is locked. Call +1 555 0100 now".into(),
        ))
        .unwrap(),
    );
    let crafted_url = format!(
        "/requests?tab=x&__path={}&__err={crafted}",
        urlencode(create)
    );
    for sig in ["", "&__sig=00000000000000000000000000000000"] {
        let res = app.get(&format!("{crafted_url}{sig}"), Some(&alice)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(header_str(&res, "location"), "/requests?tab=x");
    }

    // The genuine link, sent to someone else (another session), does not show either.
    let bob = signed_in(&app, "bob").await;
    let res = app.get(&back, Some(&bob)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(!header_str(&res, "location").contains("__err"));
}

fn from(req: axum::http::request::Builder, ip: &str) -> axum::http::request::Builder {
    req.extension(axum::extract::ConnectInfo(std::net::SocketAddr::new(
        ip.parse().unwrap(),
        40000,
    )))
}

#[tokio::test]
async fn sign_in_and_server_functions_are_rate_limited_per_client_address() {
    let _serial = serial().await;
    let mut config = portcullis::config::Config::default();
    config.http.sign_in_per_minute = 4; // a burst of 2
    config.http.server_fn_per_second = 1;
    config.http.server_fn_burst = 3;
    let app = app_with(config, true).await;
    let login = |ip: &str| {
        from(Request::get("/demo/login"), ip)
            .header(header::HOST, HOST)
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(app.send(login("10.0.0.1")).await.status(), StatusCode::OK);
    }
    let refused_before =
        portcullis::http::refusals::total(portcullis::http::refusals::Refusal::RateLimited);
    let res = app.send(login("10.0.0.1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header_str(&res, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another address has its own allowance.
    assert_eq!(app.send(login("10.0.0.2")).await.status(), StatusCode::OK);

    // Server functions: a burst of 3, then the portal's own error with 429.
    let alice = signed_in(&app, "alice").await;
    let whoami = <app::api::Whoami as ServerFn>::PATH;
    let call_from = |ip: &str| {
        from(Request::post(whoami), ip)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, &app.origin)
            .header(header::COOKIE, &alice)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(
            app.send(call_from("10.0.0.3")).await.status(),
            StatusCode::OK
        );
    }
    let res = app.send(call_from("10.0.0.3")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let error: AppError = serde_json::from_str(&body_text(res).await).unwrap();
    assert!(
        matches!(&error, AppError::RateLimited(m) if m.contains("try again")),
        "{error:?}"
    );
    assert!(
        portcullis::http::refusals::total(portcullis::http::refusals::Refusal::RateLimited)
            >= refused_before + 2
    );
    // Pages are not limited.
    let page = from(Request::get("/requests"), "10.0.0.3")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &alice)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(page).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn behind_a_proxy_the_last_forwarded_address_is_the_client() {
    let _serial = serial().await;
    let mut config = portcullis::config::Config::default();
    config.http.sign_in_per_minute = 2; // a burst of 1
    config.http.client_ip_header = Some("X-Forwarded-For".into());
    let app = app_with(config, true).await;
    // All through one proxy (the TCP peer); the client chose the first address itself.
    let login = |forwarded: &str| {
        from(Request::get("/demo/login"), "10.9.9.9")
            .header(header::HOST, HOST)
            .header("x-forwarded-for", forwarded)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.send(login("1.1.1.1, 10.0.0.7")).await.status(),
        StatusCode::OK
    );
    // A different spoofed first address does not buy a new allowance.
    assert_eq!(
        app.send(login("2.2.2.2, 10.0.0.7")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(app.send(login("10.0.0.8")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_person_can_make_only_so_many_requests_an_hour() {
    let _serial = serial().await;
    let mut config = portcullis::config::Config::default();
    config.http.new_requests_per_hour = 2;
    let app = app_with(config, true).await;
    let alice = signed_in(&app, "alice").await;
    let bob = signed_in(&app, "bob").await;
    let create = <app::api::CreateRequest as ServerFn>::PATH;
    let body = "entitlement=prod-readonly&justification=an+hourly+limit+check&duration=1h";
    for _ in 0..2 {
        let (status, b, _) = call(&app, create, body, Some(&alice)).await;
        assert_eq!(status, StatusCode::OK, "{b}");
    }
    let requests = app.count_rows("access_request").await;
    let (status, b, _) = call(&app, create, body, Some(&alice)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert!(b.contains("last hour"), "{b}");
    assert_eq!(
        app.count_rows("access_request").await,
        requests,
        "nothing created"
    );
    // Someone else is not held back by alice's requests.
    let (status, b, _) = call(&app, create, body, Some(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read() {
    let _serial = serial().await;
    let app = app().await;
    let alice = signed_in(&app, "alice").await;
    let create = <app::api::CreateRequest as ServerFn>::PATH;
    let requests = app.count_rows("access_request").await;
    let huge = format!(
        "entitlement=prod-readonly&duration=1h&justification={}",
        "x".repeat(200 * 1024)
    );
    let (status, _, _) = call(&app, create, &huge, Some(&alice)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.count_rows("access_request").await, requests);
}

#[tokio::test]
async fn anonymous_refusals_are_counted_not_audited() {
    use portcullis::http::refusals::{total, Refusal};
    let _serial = serial().await;
    let app = app().await;
    let audit_before = app.audit_actions().await.len();
    let cross_before = total(Refusal::CrossSite);
    let long_path = format!("/auth/logout?{}", "a".repeat(10_000));
    for i in 0..50 {
        let path = if i == 0 {
            long_path.as_str()
        } else {
            "/auth/logout"
        };
        let req = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "https://evil.example")
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.send(req).await.status(), StatusCode::FORBIDDEN);
    }
    assert!(total(Refusal::CrossSite) >= cross_before + 50);
    assert_eq!(
        app.audit_actions().await.len(),
        audit_before,
        "no audit row for anonymous refusals"
    );
    // A signed-in person's session used from another site is audited, with the path
    // capped in length.
    let alice = signed_in(&app, "alice").await;
    let req = Request::post(long_path.as_str())
        .header(header::HOST, HOST)
        .header(header::COOKIE, &alice)
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status(), StatusCode::FORBIDDEN);
    assert!(app.audit_actions().await.iter().any(|a| a == "denied.csrf"));
}

/// A real socket: the server loop's header timeout and the whole-request timeout.
#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _serial = serial().await;
    let mut config = portcullis::config::Config::default();
    config.http.request_timeout_secs = 1;
    let app = app_with(config, true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(portcullis::http::serve(
        listener,
        app.router.clone(),
        std::time::Duration::from_secs(1),
        async {
            let _ = stopped.await;
        },
    ));
    let bound = std::time::Duration::from_secs(15);

    // Headers that never end: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(bound, slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a half-sent request open");

    // A body that never arrives: 408.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let create = <app::api::CreateRequest as ServerFn>::PATH;
    slow.write_all(
        format!(
            "POST {create} HTTP/1.1\r\nHost: {HOST}\r\nOrigin: {ORIGIN}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nentitlement="
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(bound, slow.read_exact(&mut head))
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");

    // And a normal request still works.
    let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
    ok.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(bound, ok.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    let _ = stop.send(());
    tokio::time::timeout(bound, server).await.unwrap().unwrap();
}
