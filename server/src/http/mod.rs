//! HTTP: the router, sessions, CSRF defence, demo sign-in, health endpoints.
//!
//! The router and its layers live here; beside it: `session` (sessions, CSRF, where to go
//! back to), `sign_in` (OpenID Connect and sign-out), `demo` (demo personas, loopback
//! only), `pages` (the plain HTML pages outside the app) and `export` (the audit export).

mod demo;
mod export;
mod pages;
mod session;
mod sign_in;

use demo::*;
use export::*;
use pages::*;
use session::*;
pub use session::{cross_site_reason, is_demo_host, safe_return_to, start_session};
use sign_in::*;

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
    /// The use cases: the pages reach them as [`SharedPortal`], the export route directly.
    pub portal: Arc<PortalService>,
    pub config: Arc<Config>,
    pub demo: bool,
    /// Sign-in with the OpenID provider (`serve`); `None` in demo mode.
    pub oidc: Option<Arc<Oidc>>,
    /// The grants worker's heartbeat (`Worker::heartbeat`); `None` where no worker runs
    /// in this process (tests of the router alone).
    pub worker_heartbeat: Option<Arc<std::sync::atomic::AtomicI64>>,
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
    let portal: SharedPortal = state.portal.clone();
    let options = state.leptos_options.clone();
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/auth/logout", post(logout))
        .route("/auth/login", get(oidc_login))
        .route("/auth/callback", get(oidc_callback))
        .route("/auth/signed-out", get(signed_out))
        .route("/admin/audit.csv", get(audit_export))
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
        .layer(middleware::from_fn_with_state(state.clone(), demo_host_only))
        .layer(middleware::from_fn_with_state(state.clone(), security_headers))
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
    let portal: SharedPortal = state.portal.clone();
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

async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Pages, server functions and exports carry who may do what: never kept by a browser
    // or a proxy. The compiled site's static files may be cached.
    let cacheable = req.uri().path().starts_with("/pkg/") || req.uri().path() == "/favicon.ico";
    let mut res = next.run(req).await;
    let h = res.headers_mut();
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
    // Behind https only: browsers then refuse plain http to the portal for a year.
    if state.config.secure_cookies() {
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
