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

async fn body_text(res: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 4 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
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
