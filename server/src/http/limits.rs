//! Rate limits per client address (`governor`'s keyed GCRA limiters): sign-in
//! (`/auth/*`, `/demo/login`) and server functions (`/api/*`). The per-person limit on new
//! requests is counted in the database by the portal (see `portal::requests`).
//!
//! The client's address is the TCP peer's, or behind a proxy the last address of the
//! configured header (`[http] client_ip_header`), the one the proxy itself appended.

use super::refusals::{self, Refusal};
use super::*;
use crate::config::HttpSettings;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Limits {
    sign_in: DefaultKeyedRateLimiter<IpAddr>,
    server_fn: DefaultKeyedRateLimiter<IpAddr>,
    client_ip_header: Option<String>,
    seen: AtomicU64,
}

impl Limits {
    pub fn new(settings: &HttpSettings) -> Self {
        let nz = |n: u32| NonZeroU32::new(n.max(1)).expect("at least 1");
        Self {
            sign_in: RateLimiter::keyed(
                Quota::per_minute(nz(settings.sign_in_per_minute))
                    .allow_burst(nz(settings.sign_in_per_minute.div_ceil(2))),
            ),
            server_fn: RateLimiter::keyed(
                Quota::per_second(nz(settings.server_fn_per_second))
                    .allow_burst(nz(settings.server_fn_burst)),
            ),
            client_ip_header: settings
                .client_ip_header
                .as_ref()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
            seen: AtomicU64::new(0),
        }
    }

    /// The client's address; `None` when it cannot be told (then no per-address limit
    /// applies: a test router without a socket, or a proxy that sent no header).
    pub fn client(&self, req: &Request) -> Option<IpAddr> {
        match &self.client_ip_header {
            Some(name) => req
                .headers()
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|a| a.trim().parse().ok()),
            None => req
                .extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        }
    }

    fn limiter(&self, path: &str) -> Option<(&DefaultKeyedRateLimiter<IpAddr>, &'static str)> {
        if path.starts_with("/auth/") || path == "/demo/login" {
            Some((&self.sign_in, "sign-in attempts"))
        } else if path.starts_with("/api/") {
            Some((&self.server_fn, "requests"))
        } else {
            None
        }
    }

    /// Forgets addresses that have been quiet, every few thousand requests, so the
    /// table cannot grow without bound.
    fn tidy(&self) {
        if self.seen.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.sign_in.retain_recent();
            self.server_fn.retain_recent();
        }
    }
}

/// Answers 429 (with `Retry-After`) to a client over its limit. Server functions get the
/// portal's own error, so the page shows it like any other.
pub(super) async fn rate_limit(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let limits = &state.limits;
    let Some((limiter, what)) = limits.limiter(req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(client) = limits.client(&req) else {
        return next.run(req).await;
    };
    limits.tidy();
    let Err(not_until) = limiter.check_key(&client) else {
        return next.run(req).await;
    };
    let wait = not_until
        .wait_time_from(governor::clock::Clock::now(limiter.clock()))
        .as_secs()
        .max(1);
    refusals::count(
        Refusal::RateLimited,
        &format!("{client} on {}", req.uri().path()),
    );
    let message = format!("Too many {what} from your address; try again in {wait} s.");
    let mut res = if req.uri().path().starts_with("/api/") {
        let body =
            serde_json::to_vec(&app::error::AppError::RateLimited(message)).unwrap_or_default();
        let mut res = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(path) = HeaderValue::from_str(req.uri().path()) {
            res.headers_mut().insert("serverfnerror", path);
        }
        res
    } else {
        (StatusCode::TOO_MANY_REQUESTS, message).into_response()
    };
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    res
}
