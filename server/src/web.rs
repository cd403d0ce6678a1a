//! HTTP: the router, sessions, CSRF defence, demo sign-in, health endpoints.

use crate::clock::Clock;
use crate::config::Config;
use crate::lifecycle::{self, Actor, Event};
use crate::notify::escape_html;
use crate::oidc::{Oidc, SignInError};
use crate::portal::internal;
use crate::seed;
use crate::store::{self, Store};
use app::ssr::{Session, SharedPortal};
use app::{shell, App};
use axum::body::Body;
use axum::extract::{FromRef, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use leptos::prelude::{provide_context, LeptosOptions};
use leptos_axum::{generate_route_list, handle_server_fns_with_context, LeptosRoutes};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub portal: SharedPortal,
    pub config: Arc<Config>,
    pub demo: bool,
    /// Sign-in with the OpenID provider (`serve`); `None` in demo mode.
    pub oidc: Option<Arc<Oidc>>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> Self {
        s.leptos_options.clone()
    }
}

impl AppState {
    fn cookie_name(&self) -> &'static str {
        // The __Host- prefix needs Secure, which plain-http loopback cannot have.
        if self.config.secure_cookies() {
            "__Host-portcullis"
        } else {
            "portcullis_session"
        }
    }

    fn login_cookie_name(&self) -> &'static str {
        if self.config.secure_cookies() {
            "__Host-portcullis-login"
        } else {
            "portcullis_login"
        }
    }

    fn sign_in_path(&self) -> &'static str {
        if self.demo {
            "/demo/login"
        } else {
            "/auth/login"
        }
    }
}

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let portal = state.portal.clone();
    let options = state.leptos_options.clone();
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/auth/logout", post(logout))
        .route("/auth/login", get(oidc_login))
        .route("/auth/callback", get(oidc_callback))
        .route("/auth/signed-out", get(signed_out))
        .route("/admin/audit.csv", get(audit_csv))
        .route("/api/{*fn_name}", get(server_fn).post(server_fn));
    if state.demo {
        router = router.route("/demo/login", get(demo_login_page).post(demo_login));
    }
    router
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(portal.clone()),
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn_with_state(state.clone(), csrf))
        .layer(middleware::from_fn_with_state(state.clone(), session))
        .layer(middleware::from_fn(security_headers))
        // Server functions answer every error with 500, bad input included, so the trace
        // layer's failures are not worth an ERROR line: real internal errors are logged
        // with their cause and reference where they happen.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                // The path only: a query can carry an authorization code or a state.
                .make_span_with(|req: &Request| {
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ),
        )
        .with_state(state)
}

async fn server_fn(State(state): State<AppState>, req: Request) -> impl IntoResponse {
    let portal = state.portal.clone();
    handle_server_fns_with_context(move || provide_context(portal.clone()), req).await
}

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.store.is_ready().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable or not migrated",
        )
            .into_response();
    }
    if !state.store.catalog_ready().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no catalog yet: the first catalog sync has not succeeded (see the AWS page and the logs)",
        )
            .into_response();
    }
    (StatusCode::OK, "ready").into_response()
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    res
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn is_static_path(path: &str) -> bool {
    path == "/healthz" || path == "/readyz" || path == "/favicon.ico" || path.starts_with("/pkg/")
}

fn is_public_path(path: &str) -> bool {
    is_static_path(path)
        || path.starts_with("/demo/")
        || path.starts_with("/auth/")
        || path.starts_with("/api/")
}

/// Resolves the session cookie into a [`Session`] in the request's extensions, and sends
/// people without one to sign in.
async fn session(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Static files and probes never need to know who is asking: no database lookup.
    if is_static_path(req.uri().path()) {
        return next.run(req).await;
    }
    if let Some(token) = cookie_value(req.headers(), state.cookie_name()) {
        let idle = Duration::from_secs(state.config.session.idle_timeout_secs);
        let found = match state.store.conn().await {
            Ok(mut conn) => store::find_session(&mut conn, &token, state.clock.now(), idle).await,
            Err(e) => Err(e),
        };
        match found {
            Ok(Some((principal, demo))) => {
                req.extensions_mut().insert(Session { principal, demo });
            }
            Ok(None) => {}
            Err(e) => {
                let _ = internal(e);
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Portcullis cannot reach its database right now.",
                )
                    .into_response();
            }
        }
    }
    let path = req.uri().path().to_owned();
    if req.extensions().get::<Session>().is_none()
        && req.method() == Method::GET
        && !is_public_path(&path)
    {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let location = format!("{}?return_to={}", state.sign_in_path(), urlencode(target));
        return Redirect::to(&location).into_response();
    }
    next.run(req).await
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Refuses state-changing requests that a browser marks as coming from another site.
async fn csrf(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if let Some(reason) = cross_site_reason(req.headers(), &state.config.public_url()) {
        let who = req
            .extensions()
            .get::<Session>()
            .map(|s| s.principal.clone());
        let path = req.uri().path().to_owned();
        let now = state.clock.now();
        let actor = who.as_ref().map(Actor::of).unwrap_or_else(Actor::anonymous);
        let event = Event {
            action: "denied.csrf",
            person_id: who.as_ref().map(|p| p.user_id.as_str()),
            subject_kind: "http",
            subject_id: &path,
            entitlement_id: None,
            detail: reason.clone(),
        };
        let audit = lifecycle::audit_alone(&state.store, &actor, event, now).await;
        if let Err(e) = audit {
            let _ = internal(e);
        }
        tracing::warn!(path, reason, "cross-site request refused");
        return (StatusCode::FORBIDDEN, "Cross-site request refused.").into_response();
    }
    next.run(req).await
}

/// Why a request looks cross-site, if it does. Browsers send `Sec-Fetch-Site` and `Origin`
/// on every state-changing request; clients that send neither are not browsers, and a
/// cross-site attacker cannot make a browser omit them.
pub fn cross_site_reason(headers: &HeaderMap, public_url: &str) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return Some(format!("Sec-Fetch-Site is {site}"));
        }
    }
    if let Some(origin) = get("origin") {
        let host = get("host").unwrap_or("");
        let same_host = origin == format!("http://{host}") || origin == format!("https://{host}");
        if !(same_host || origin == public_url) {
            return Some(format!("Origin {origin} is not this site"));
        }
    }
    None
}

/// Only same-origin relative paths: anything else falls back to `/`.
pub fn safe_return_to(raw: Option<&str>) -> String {
    match raw {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && !p.contains('\\')
                && !p.chars().any(|c| c.is_control() || c.is_whitespace())
                && p.len() <= 512 =>
        {
            p.to_owned()
        }
        _ => "/".into(),
    }
}

fn session_cookie(state: &AppState, token: &str, max_age: u64) -> String {
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        state.cookie_name()
    )
}

/// Starts a session for `principal`, rotating away any session the browser had.
pub async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    principal: &app::domain::Principal,
    demo: bool,
) -> anyhow::Result<String> {
    let now = state.clock.now();
    let token = hex::encode(rand::random::<[u8; 32]>());
    let lifetime = Duration::from_secs(state.config.session.absolute_lifetime_secs);
    let mut tx = state.store.begin().await?;
    if let Some(old) = cookie_value(headers, state.cookie_name()) {
        store::delete_session(&mut tx, &old).await?;
    }
    store::upsert_user(&mut tx, principal, now).await?;
    store::create_session(
        &mut tx,
        &token,
        &principal.user_id,
        demo,
        now,
        now.plus(lifetime),
    )
    .await?;
    lifecycle::audit(
        &mut tx,
        &Actor::of(principal),
        Event {
            action: if demo {
                "signin.demo"
            } else {
                "signin.success"
            },
            person_id: Some(&principal.user_id),
            subject_kind: "session",
            subject_id: &principal.user_id,
            entitlement_id: None,
            detail: format!("groups: {}", principal.groups.join(", ")),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(session_cookie(state, &token, lifetime.as_secs()))
}

#[derive(Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

async fn demo_login_page(Query(q): Query<ReturnTo>) -> Html<String> {
    let return_to = escape_html(&safe_return_to(q.return_to.as_deref()));
    let mut buttons = String::new();
    for p in seed::personas() {
        let name = p.user_id.trim_start_matches("demo|").to_owned();
        buttons.push_str(&format!(
            r#"<form method="post" action="/demo/login" class="persona">
<input type="hidden" name="persona" value="{name}"><input type="hidden" name="return_to" value="{return_to}">
<button type="submit" data-testid="persona-{name}"><strong>{}</strong><span>{}</span><small>groups: {}</small></button></form>"#,
            escape_html(&p.display_name),
            escape_html(seed::persona_blurb(&name)),
            escape_html(&p.groups.join(", "))
        ));
    }
    Html(format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Portcullis demo</title><link rel="stylesheet" href="/pkg/portcullis.css"></head>
<body><header class="top"><a class="brand" href="/">Portcullis</a><span class="badge">demo</span></header>
<main class="signin"><h1>Sign in to the demo</h1>
<p class="lead">Demo mode: pick a persona. In production, people sign in with your identity provider.</p>
<div class="personas">{buttons}</div></main></body></html>"#
    ))
}

#[derive(Deserialize)]
struct DemoLogin {
    persona: String,
    return_to: Option<String>,
}

async fn demo_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<DemoLogin>,
) -> Response {
    let Some(principal) = seed::personas()
        .into_iter()
        .find(|p| p.user_id == format!("demo|{}", form.persona))
    else {
        return (
            StatusCode::BAD_REQUEST,
            Html("Unknown persona. <a href=\"/demo/login\">Try again</a>.".to_string()),
        )
            .into_response();
    };
    match start_session(&state, &headers, &principal, true).await {
        Ok(cookie) => {
            let mut res = Redirect::to(&safe_return_to(form.return_to.as_deref())).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => {
            let reference = internal(e);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(format!(
                    "{reference} <a href=\"/demo/login\">Try again</a>."
                )),
            )
                .into_response()
        }
    }
}

async fn logout(State(state): State<AppState>, req: Request<Body>) -> Response {
    let now = state.clock.now();
    if let Some(token) = cookie_value(req.headers(), state.cookie_name()) {
        let who = req
            .extensions()
            .get::<Session>()
            .map(|s| s.principal.clone());
        let result: anyhow::Result<()> = async {
            let mut tx = state.store.begin().await?;
            store::delete_session(&mut tx, &token).await?;
            if let Some(p) = &who {
                lifecycle::audit(
                    &mut tx,
                    &Actor::of(p),
                    Event {
                        action: "signout",
                        person_id: Some(&p.user_id),
                        subject_kind: "session",
                        subject_id: &p.user_id,
                        entitlement_id: None,
                        detail: String::new(),
                    },
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = internal(e);
        }
    }
    // Sign out at the provider too, where it offers that; it sends the browser back to
    // the signed-out page.
    let target = match &state.oidc {
        None => state.sign_in_path().to_owned(),
        Some(oidc) => {
            let back = format!("{}/auth/signed-out", state.config.public_url());
            oidc.end_session_url(&back)
                .await
                .unwrap_or_else(|| "/auth/signed-out".to_owned())
        }
    };
    let mut res = Redirect::to(&target).into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&state, "", 0)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn login_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    // SameSite=Lax: the provider sends the browser back with a top-level GET, which Lax allows.
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        state.login_cookie_name()
    ))
    .expect("cookie characters are hex and ASCII")
}

/// `GET /auth/login?return_to=/path`: starts sign-in with the OpenID provider.
async fn oidc_login(State(state): State<AppState>, Query(q): Query<ReturnTo>) -> Response {
    let return_to = safe_return_to(q.return_to.as_deref());
    let Some(oidc) = state.oidc.clone() else {
        return Redirect::to(&format!("/demo/login?return_to={}", urlencode(&return_to)))
            .into_response();
    };
    let started = match oidc.start().await {
        Ok(s) => s,
        Err(e) => return sign_in_failed(&state, e, &return_to).await,
    };
    // The browser that starts a sign-in must be the one that finishes it: a random value
    // in a cookie, its hash next to the state.
    let browser = hex::encode(rand::random::<[u8; 32]>());
    let now = state.clock.now();
    let timeout = oidc.config().login_timeout_secs;
    let flow = store::LoginFlow {
        browser_hash: store::hash_token(&browser),
        nonce: started.nonce,
        pkce_verifier: started.pkce_verifier,
        return_to,
        expires_at: now.plus(Duration::from_secs(timeout)),
    };
    let saved: anyhow::Result<()> = async {
        let mut conn = state.store.conn().await?;
        store::create_login_flow(&mut conn, &started.state, &flow, now).await
    }
    .await;
    if let Err(e) = saved {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &internal(e).to_string(),
            "/auth/login",
        );
    }
    let mut res = Redirect::to(&started.authorize_url).into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, login_cookie(&state, &browser, timeout));
    res
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// Why a callback signed nobody in.
enum CallbackFailure {
    /// The sign-in failed, with where the person was going (for the retry link).
    SignIn(SignInError, String),
    /// Our own trouble (the database).
    Internal(anyhow::Error),
}

/// `GET /auth/callback`: where the provider sends the browser back.
async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let Some(oidc) = state.oidc.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (principal, return_to) = match verify_callback(&state, &oidc, &headers, &q).await {
        Ok(found) => found,
        Err(CallbackFailure::SignIn(e, back)) => return sign_in_failed(&state, e, &back).await,
        Err(CallbackFailure::Internal(e)) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &internal(e).to_string(),
                "/auth/login",
            )
        }
    };
    match start_session(&state, &headers, &principal, false).await {
        Ok(cookie) => {
            tracing::info!(user = %principal.user_id, "signed in");
            let mut res = Redirect::to(&return_to).into_response();
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                h.append(header::SET_COOKIE, v);
            }
            h.append(header::SET_COOKIE, login_cookie(&state, "", 0));
            res
        }
        Err(e) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &internal(e).to_string(),
            &retry_link(&return_to),
        ),
    }
}

/// Checks the callback against the sign-in it claims to finish, then has the provider
/// vouch for the person: their principal, and where they were going.
async fn verify_callback(
    state: &AppState,
    oidc: &Oidc,
    headers: &HeaderMap,
    q: &Callback,
) -> Result<(app::domain::Principal, String), CallbackFailure> {
    let fail = |e: SignInError, back: &str| Err(CallbackFailure::SignIn(e, back.to_owned()));
    let Some(st) = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
        return fail(SignInError::MissingState, "/");
    };
    // Taken (deleted) first: a state works once, whatever happens next.
    let flow = async {
        let mut conn = state.store.conn().await?;
        store::take_login_flow(&mut conn, st).await
    }
    .await
    .map_err(CallbackFailure::Internal)?;
    let Some(flow) = flow else {
        return fail(SignInError::UnknownState, "/");
    };
    let back = flow.return_to.as_str();
    let browser = cookie_value(headers, state.login_cookie_name());
    if browser.map(|b| store::hash_token(&b)).as_ref() != Some(&flow.browser_hash) {
        return fail(SignInError::OtherBrowser, back);
    }
    if state.clock.now() >= flow.expires_at {
        return fail(SignInError::Expired, back);
    }
    if let Some(error) = &q.error {
        let mut why = error.chars().take(100).collect::<String>();
        if let Some(d) = &q.error_description {
            why.push_str(": ");
            why.extend(d.chars().take(200));
        }
        return fail(SignInError::Refused(why), back);
    }
    // RFC 9207: a provider that names itself must be the one we asked.
    if q.iss
        .as_deref()
        .is_some_and(|iss| iss.trim_end_matches('/') != oidc.issuer())
    {
        return fail(
            SignInError::BadIdToken("the callback comes from another issuer (iss)".into()),
            back,
        );
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return fail(SignInError::MissingCode, back);
    };
    match oidc.finish(code, &flow.nonce, &flow.pkce_verifier).await {
        Ok(p) => Ok((p, flow.return_to.clone())),
        Err(e) => fail(e, back),
    }
}

fn retry_link(return_to: &str) -> String {
    format!("/auth/login?return_to={}", urlencode(return_to))
}

/// Audits and logs a failed sign-in, and shows a page that says what to do.
async fn sign_in_failed(state: &AppState, e: SignInError, return_to: &str) -> Response {
    tracing::warn!(reason = %e, "sign-in failed");
    let reason = e.to_string().chars().take(500).collect::<String>();
    let event = Event {
        action: "signin.failure",
        person_id: None,
        subject_kind: "session",
        subject_id: "anonymous",
        entitlement_id: None,
        detail: reason,
    };
    if let Err(err) =
        lifecycle::audit_alone(&state.store, &Actor::anonymous(), event, state.clock.now()).await
    {
        let _ = internal(err);
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut res = error_page(status, e.user_message(), &retry_link(return_to));
    res.headers_mut()
        .append(header::SET_COOKIE, login_cookie(state, "", 0));
    res
}

fn error_page(status: StatusCode, message: &str, retry: &str) -> Response {
    let body = format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign-in failed · Portcullis</title><link rel="stylesheet" href="/pkg/portcullis.css"></head>
<body><header class="top"><a class="brand" href="/">Portcullis</a></header>
<main class="signin"><h1>Sign-in failed</h1>
<p class="lead" data-testid="signin-error">{}</p>
<p><a class="button" href="{}" data-testid="signin-retry">Try again</a></p></main></body></html>"#,
        escape_html(message),
        escape_html(retry)
    );
    (status, Html(body)).into_response()
}

/// `GET /auth/signed-out`: where sign-out ends (the provider sends the browser here).
async fn signed_out() -> Html<&'static str> {
    Html(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Signed out · Portcullis</title><link rel="stylesheet" href="/pkg/portcullis.css"></head>
<body><header class="top"><a class="brand" href="/">Portcullis</a></header>
<main class="signin"><h1>You are signed out</h1>
<p class="lead">Your Portcullis session has ended.</p>
<p><a class="button" href="/auth/login" data-testid="sign-in-again">Sign in again</a></p></main></body></html>"#,
    )
}

#[derive(Deserialize)]
struct AuditCsvQuery {
    person: Option<String>,
    entitlement: Option<String>,
    action: Option<String>,
}

fn csv_field(s: &str) -> String {
    // Quote everything; neutralise spreadsheet formulas.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn audit_csv(
    State(state): State<AppState>,
    Query(q): Query<AuditCsvQuery>,
    req: Request<Body>,
) -> Response {
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let filter = app::api::AuditFilter {
        person: q.person,
        entitlement: q.entitlement,
        action: q.action,
    };
    match state.portal.audit_log(&session.principal, filter).await {
        Ok(rows) => {
            let mut out = String::from("seq,at,actor,action,subject,entitlement,detail\n");
            for r in rows {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{}\n",
                    r.seq,
                    csv_field(&r.at),
                    csv_field(&r.actor),
                    csv_field(&r.action),
                    csv_field(&r.subject),
                    csv_field(&r.entitlement),
                    csv_field(&r.detail)
                ));
            }
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"portcullis-audit.csv\"",
                    ),
                ],
                out,
            )
                .into_response()
        }
        Err(e @ app::error::AppError::Forbidden(_)) => {
            (StatusCode::FORBIDDEN, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_only_same_origin_paths() {
        assert_eq!(safe_return_to(Some("/requests?x=1")), "/requests?x=1");
        for bad in [
            "//evil.com",
            "https://evil.com",
            "/\\evil.com",
            "evil",
            "/a\\b",
            "/\t/evil",
            "",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/");
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_detection() {
        let url = "https://portal.example.com";
        assert!(cross_site_reason(&headers(&[]), url).is_none());
        assert!(cross_site_reason(&headers(&[("sec-fetch-site", "same-origin")]), url).is_none());
        assert!(cross_site_reason(&headers(&[("sec-fetch-site", "cross-site")]), url).is_some());
        assert!(cross_site_reason(&headers(&[("sec-fetch-site", "same-site")]), url).is_some());
        assert!(
            cross_site_reason(&headers(&[("origin", "https://portal.example.com")]), url).is_none()
        );
        assert!(cross_site_reason(
            &headers(&[
                ("origin", "http://127.0.0.1:3000"),
                ("host", "127.0.0.1:3000")
            ]),
            url
        )
        .is_none());
        assert!(cross_site_reason(
            &headers(&[
                ("origin", "https://evil.com"),
                ("host", "portal.example.com")
            ]),
            url
        )
        .is_some());
        assert!(cross_site_reason(&headers(&[("origin", "null")]), url).is_some());
    }

    #[test]
    fn csv_is_quoted_and_formula_safe() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=SUM(A1)"), "\"'=SUM(A1)\"");
    }
}
