//! HTTP: the router, sessions, CSRF defence, demo sign-in, health endpoints.
//!
//! The router and its layers live here; beside it: `session` (sessions, CSRF, where to go
//! back to), `sign_in` (OpenID Connect and sign-out), `demo` (demo personas, loopback
//! only), `pages` (the plain HTML pages outside the app) and `export` (the audit export).

mod demo;
mod export;
mod limits;
mod pages;
pub mod refusals;
mod serve;
mod session;
mod sign_in;
mod site;

use demo::*;
use export::*;
use limits::rate_limit;
pub use limits::Limits;
use pages::*;
pub use serve::{serve, serve_starting};
use session::*;
pub use session::{cross_site_reason, is_demo_host, safe_return_to, start_session};
use sign_in::*;
pub use site::Site;

use crate::audit::{self, Actor, Event};
use crate::clock::Clock;
use crate::config::Config;
use crate::notify::escape_html;
use crate::oidc::{Oidc, SignInError};
use crate::portal::{internal, PortalService};
use crate::seed;
use crate::store::{self, Store};
use app::domain::Timestamp;
use app::ssr::{Session, SharedPortal};
use app::{shell, App};
use axum::body::Body;
use axum::extract::{FromRef, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use leptos::nonce::Nonce;
use leptos::prelude::{provide_context, LeptosOptions};
use leptos_axum::{generate_route_list, LeptosRoutes};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    /// The compiled site (`/pkg/...`), whose hashed name `leptos_options` carries.
    pub site: Arc<Site>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// The use cases: the pages reach them as [`SharedPortal`], the export route directly.
    pub portal: Arc<PortalService>,
    pub config: Arc<Config>,
    pub demo: bool,
    /// Sign-in with the OpenID provider (`serve`); `None` in demo mode.
    pub oidc: Option<Arc<Oidc>>,
    /// The grants worker's heartbeat (`Worker::heartbeat`); `None` where no worker runs
    /// in this process (tests of the router alone).
    pub worker_heartbeat: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// Rate limits per client address (`[http]`).
    pub limits: Arc<Limits>,
    /// Answers and sign-ins are counted here (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> Self {
        s.leptos_options.clone()
    }
}

impl FromRef<AppState> for Arc<Site> {
    fn from_ref(s: &AppState) -> Self {
        s.site.clone()
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
    let portal: SharedPortal = state.portal.clone();
    let page_context = move || {
        provide_context(portal.clone());
        provide_request_nonce();
    };
    let options = state.leptos_options.clone();
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pkg/{*file}", get(site::site_file))
        .route("/favicon.ico", get(site::favicon))
        .route("/readyz", get(readyz))
        .route("/auth/logout", post(logout))
        .route("/auth/logout-everywhere", post(logout_everywhere))
        .route("/auth/login", get(oidc_login))
        .route("/auth/reauth", get(oidc_reauth))
        .route("/auth/callback", get(oidc_callback))
        .route("/auth/signed-out", get(signed_out))
        .route("/admin/audit.csv", get(audit_export))
        .route("/admin/access.csv", get(access_export))
        .route("/api/{*fn_name}", get(no_server_fn).post(no_server_fn));
    if state.demo {
        router = router.route("/demo/login", get(demo_login_page).post(demo_login));
    }
    router
        .leptos_routes_with_context(&state, routes, page_context.clone(), move || {
            shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(
            page_context,
            shell,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count_answers))
        .layer(middleware::from_fn_with_state(state.clone(), server_fn_edge))
        .layer(middleware::from_fn_with_state(state.clone(), url_errors))
        .layer(middleware::from_fn_with_state(state.clone(), csrf))
        .layer(middleware::from_fn_with_state(state.clone(), session))
        .layer(middleware::from_fn_with_state(state.clone(), demo_host_only))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        // Bodies beyond the limit are refused (413) before anything reads them, and a
        // request that takes too long, its body included, is answered 408.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            state.config.http.body_limit_bytes,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.http.request_timeout(),
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(SecurityHeaders::new(&state.config)),
            security_headers,
        ))
        // Server functions answer every error with 500, bad input included, so the trace
        // layer's failures are not worth an ERROR line: real internal errors are logged
        // with their cause and reference where they happen.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                // The path only: a query can carry an authorization code or a state.
                .make_span_with(|req: &Request| {
                    let id = req.extensions().get::<RequestId>().map_or("", |r| r.0.as_str());
                    tracing::info_span!("request", id, method = %req.method(), path = %req.uri().path())
                })
                .on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ),
        )
        // Outermost: the id is known to everything inside, the trace span included.
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Counts each answer by the route that matched (`/metrics`): the route's pattern, never
/// the path itself, so the labels stay few; what no route matched (files, 404s) is
/// `unmatched`.
async fn count_answers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    state.metrics.http(&route, res.status().as_u16());
    res
}

/// `GET /metrics` on `metrics.listen`: this process's counters and the deployment's
/// state from the database (`portcullis_database_up 0` and no gauges when it does not
/// answer).
pub fn metrics_router(
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<crate::metrics::Metrics>,
    overdue_after: std::time::Duration,
) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let (store, clock, metrics) = (store.clone(), clock.clone(), metrics.clone());
            async move {
                let gauges = async {
                    let mut conn = store.conn().await?;
                    store::metric_gauges(&mut conn, clock.now(), overdue_after).await
                }
                .await;
                let (up, gauges) = match gauges {
                    Ok(g) => (1, g),
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "metrics: cannot read the database"
                        );
                        (0, Default::default())
                    }
                };
                let mut text = metrics.render(&gauges);
                text.push_str(&format!(
                    "# HELP portcullis_database_up Whether the database answered this scrape.
                     # TYPE portcullis_database_up gauge
portcullis_database_up {up}
"
                ));
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    )
}

/// The request's id (`X-Request-Id`), in the request's extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// `X-Request-Id`: the caller's own when it is well-formed (a load balancer's, so its logs
/// and ours line up), else a new one. Sent back on every answer, kept on the request's log
/// lines (the `request` span), and the reference of an internal error met on the way.
async fn request_id(mut req: Request, next: Next) -> Response {
    const X_REQUEST_ID: &str = "x-request-id";
    let given = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| store::new_id()[..16].to_owned());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = crate::portal::REQUEST_ID
        .scope(id.clone(), next.run(req))
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID, v);
    }
    res
}

/// Server functions (Leptos routes each to its handler), with two things added at the
/// edge: an error answers with the status its kind calls for (400, 401, 403, 404, 409, 429;
/// 500 only for an internal error), and an error sent back in the URL (a form posted
/// without JavaScript) is signed for the caller's session, so a page shows only error
/// messages the portal wrote for that person (see [`url_errors`]).
async fn server_fn_edge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let session_token = cookie_value(req.headers(), state.cookie_name());
    let res = next.run(req).await;
    if res.status().is_redirection() {
        return sign_url_error(res, session_token.as_deref());
    }
    if res.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !res.headers().contains_key("serverfnerror")
    {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match axum::body::to_bytes(body, 256 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a server function's error answer");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if let Ok(error) = serde_json::from_slice::<app::error::AppError>(&bytes) {
        parts.status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The query parameters that carry a server function's error back to a page.
const URL_ERROR_PARAMS: [&str; 3] = ["__path", "__err", "__sig"];

/// The tag that binds an error in a URL to the session it was written for: an HMAC keyed
/// with the session token, which only that browser holds.
fn url_error_tag(session_token: &str, path: &str, err: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(session_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"portcullis url error\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(err.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Adds the session's tag to the error a redirect carries back to the form's page; without
/// a session the error is dropped from the URL.
fn sign_url_error(mut res: Response, session_token: Option<&str>) -> Response {
    let Some(location) = res
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
    else {
        return res;
    };
    let Ok(mut url) = url::Url::parse(location) else {
        return res;
    };
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let find = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(path), Some(err)) = (find("__path"), find("__err")) else {
        return res;
    };
    {
        let mut query = url.query_pairs_mut();
        query.clear();
        for (k, v) in pairs
            .iter()
            .filter(|(k, _)| !URL_ERROR_PARAMS.contains(&k.as_str()))
        {
            query.append_pair(k, v);
        }
        if let Some(token) = session_token {
            query.append_pair("__path", &path);
            query.append_pair("__err", &err);
            query.append_pair("__sig", &url_error_tag(token, &path, &err));
        }
    }
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// A page shows a server function's error from its URL only when the portal signed it for
/// this session ([`sign_url_error`]); anything else in `__path`/`__err` (a crafted link) is
/// taken out of the address (a redirect to the same page without it), so no text from a
/// URL ever shows as one of the portal's messages.
pub(super) async fn url_errors(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(query) = req.uri().query() else {
        return next.run(req).await;
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if !pairs
        .iter()
        .any(|(k, _)| URL_ERROR_PARAMS.contains(&k.as_str()))
    {
        return next.run(req).await;
    }
    let find = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let genuine = match (
        cookie_value(req.headers(), state.cookie_name()),
        find("__path"),
        find("__err"),
        find("__sig"),
    ) {
        (Some(token), Some(path), Some(err), Some(sig)) => {
            let expected = url_error_tag(&token, path, err);
            expected.len() == sig.len()
                && expected
                    .bytes()
                    .zip(sig.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }
        _ => false,
    };
    if genuine {
        return next.run(req).await;
    }
    refusals::count(
        refusals::Refusal::UrlError,
        &format!(
            "an error in the URL of {} that the portal did not write for this session",
            req.uri().path()
        ),
    );
    let kept: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            pairs
                .iter()
                .filter(|(k, _)| !URL_ERROR_PARAMS.contains(&k.as_str())),
        )
        .finish();
    let path = req.uri().path().to_owned();
    let target = if kept.is_empty() {
        path
    } else {
        format!("{path}?{kept}")
    };
    // Sent on to the same page without it, so that neither the server's rendering nor the
    // browser's (hydration reads the address bar) ever sees it.
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Redirect::to(&target).into_response();
    }
    if let Ok(uri) = target.parse() {
        *req.uri_mut() = uri;
    }
    next.run(req).await
}

/// A path under `/api/` that names no server function.
async fn no_server_fn() -> Response {
    (StatusCode::NOT_FOUND, "There is no such server function.").into_response()
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
    let now = state.clock.now();
    let worker = &state.config.worker;
    if let Some(beat) = &state.worker_heartbeat {
        let last = Timestamp(beat.load(std::sync::atomic::Ordering::Relaxed));
        let quiet = last.until(now);
        if last.millis() > 0 && quiet > worker.heartbeat_stale_after() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the worker has not run for {}s (stuck or stopped)",
                    quiet.as_secs()
                ),
            )
                .into_response();
        }
    }
    // Access must end on time: a revocation overdue beyond the bound makes this replica
    // not ready, so that a load balancer and the on-call hear about it.
    let bound = Duration::from_secs(worker.overdue_after_secs);
    let overdue = match state.store.conn().await {
        Ok(mut conn) => store::overdue_revocations(&mut conn, now.minus(bound)).await,
        Err(e) => Err(e),
    };
    match overdue {
        Ok((0, _)) => {}
        Ok((n, oldest)) => {
            let late = oldest.map(|t| t.until(now).as_secs()).unwrap_or_default();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{n} revocation(s) overdue, the oldest by {late}s (see the admin page)"),
            )
                .into_response();
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "readiness: cannot count overdue revocations"
            );
            return (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response();
        }
    }
    (StatusCode::OK, "ready").into_response()
}

/// The nonce the security headers layer made for this request, given to Leptos so that its
/// hydration scripts carry the one the Content-Security-Policy allows.
fn provide_request_nonce() {
    let nonce = leptos::prelude::use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Nonce>().cloned());
    if let Some(nonce) = nonce {
        provide_context(nonce);
    }
}

/// The headers every answer carries, worked out once from the configuration.
struct SecurityHeaders {
    /// The Content-Security-Policy before and after the request's nonce.
    csp: (String, String),
    /// Behind https only: browsers then refuse plain http to the portal for a year.
    hsts: bool,
}

impl SecurityHeaders {
    /// The Content-Security-Policy of every answer: scripts only from the portal itself or
    /// carrying this request's nonce (Leptos' hydration scripts), WebAssembly compiled by
    /// the browser, no plugins, no framing, no `<base>`, and forms that post only to the
    /// portal (or to the provider's sign-out, where sign-out sends the browser).
    fn new(config: &Config) -> Self {
        let provider = config
            .oidc
            .as_ref()
            .and_then(|o| url::Url::parse(&o.issuer_url).ok())
            .map(|u| format!(" {}", u.origin().ascii_serialization()))
            .unwrap_or_default();
        Self {
            csp: (
                "default-src 'self'; script-src 'self' 'nonce-".to_owned(),
                format!(
                    "' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; \
                     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
                     frame-ancestors 'none'; form-action 'self'{provider}"
                ),
            ),
            hsts: config.secure_cookies(),
        }
    }

    fn content_security_policy(&self, nonce: &Nonce) -> String {
        format!("{}{nonce}{}", self.csp.0, self.csp.1)
    }
}

async fn security_headers(
    State(headers): State<Arc<SecurityHeaders>>,
    mut req: Request,
    next: Next,
) -> Response {
    // Pages, server functions and exports carry who may do what: never kept by a browser
    // or a proxy. The compiled site's static files may be cached.
    let cacheable = req.uri().path().starts_with("/pkg/") || req.uri().path() == "/favicon.ico";
    let nonce = Nonce::new();
    req.extensions_mut().insert(nonce.clone());
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // Fails closed: a policy that cannot be written as a header is replaced by one that
    // allows no script at all.
    let csp = HeaderValue::from_str(&headers.content_security_policy(&nonce)).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot write the Content-Security-Policy header");
        HeaderValue::from_static("default-src 'self'; script-src 'none'; object-src 'none'")
    });
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static(
            "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
        ),
    );
    if !cacheable {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if headers.hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
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
