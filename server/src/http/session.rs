//! Sessions and CSRF: the session cookie, the middleware that finds the caller's session,
//! the same-origin check on every state-changing request, and safe return paths.

use super::*;
pub(super) use app::url::encode as urlencode;

/// Resolves the session cookie into a [`Session`] in the request's extensions, and sends
/// people without one to sign in.
pub(super) async fn session(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    // Static files and probes never need to know who is asking: no database lookup.
    if is_static_path(req.uri().path()) {
        return next.run(req).await;
    }
    if let Some(token) = cookie_value(req.headers(), state.cookie_name()) {
        let idle = Duration::from_secs(state.config.session.idle_timeout_secs);
        let found = match state.store.conn().await {
            Ok(mut conn) => {
                store::find_session_full(&mut conn, &token, state.clock.now(), idle).await
            }
            Err(e) => Err(e),
        };
        match found {
            // A session is accepted only by the mode that made it (invariant 11): `serve`
            // never takes a demo session or a `demo|` persona, whatever the database holds.
            Ok(Some(found))
                if found.demo != state.demo
                    || found.principal.user_id.starts_with("demo|") != state.demo =>
            {
                tracing::warn!(
                    user = %found.principal.user_id,
                    "a session made by the other mode (demo or serve) was ignored"
                );
            }
            Ok(Some(found)) => {
                let age = found.authenticated_at.until(state.clock.now());
                req.extensions_mut().insert(Session {
                    principal: found.principal,
                    demo: found.demo,
                    recent_sign_in: age <= state.config.session.reauth_after(),
                });
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

/// Refuses state-changing requests that a browser marks as coming from another site.
pub(super) async fn csrf(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let origin = state.config.public_origin().unwrap_or_default();
    if let Some(reason) = cross_site_reason(req.headers(), &origin) {
        let who = req
            .extensions()
            .get::<Session>()
            .map(|s| s.principal.clone());
        let path = refusals::capped(req.uri().path());
        // Someone's session was used from another site: that person's audit trail shows it.
        // Without a session, anyone can send these at will: counted, not audited.
        let Some(who) = who else {
            refusals::count(refusals::Refusal::CrossSite, &format!("{path}: {reason}"));
            return (StatusCode::FORBIDDEN, "Cross-site request refused.").into_response();
        };
        let event = Event {
            action: "denied.csrf",
            person_id: Some(&who.user_id),
            subject_kind: "http",
            subject_id: &path,
            entitlement_id: None,
            detail: reason.clone(),
        };
        let audit =
            audit::audit_alone(&state.store, &Actor::of(&who), event, state.clock.now()).await;
        if let Err(e) = audit {
            let _ = internal(e);
        }
        tracing::warn!(path, reason, user = %who.user_id, "cross-site request refused");
        return (StatusCode::FORBIDDEN, "Cross-site request refused.").into_response();
    }
    next.run(req).await
}

/// Why a request looks cross-site, if it does. Browsers send `Sec-Fetch-Site` and `Origin`
/// on every state-changing request; clients that send neither are not browsers, and a
/// cross-site attacker cannot make a browser omit them. `Origin` must be exactly
/// `public_origin` (`Config::public_origin`): the `Host` header proves nothing, since a
/// rebound DNS name or a misrouted proxy makes it whatever the attacker's page is served as.
pub fn cross_site_reason(headers: &HeaderMap, public_origin: &str) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return Some(format!("Sec-Fetch-Site is {site}"));
        }
    }
    if let Some(origin) = headers.get("origin") {
        let origin = origin.to_str().unwrap_or("(not text)");
        if public_origin.is_empty() || origin != public_origin {
            return Some(format!(
                "Origin {} is not this site ({public_origin})",
                origin.chars().take(200).collect::<String>()
            ));
        }
    }
    None
}

/// Demo mode answers only to the loopback names of its own port: `127.0.0.1:PORT`,
/// `localhost:PORT`, `[::1]:PORT` (invariant 10). A page on another name that a DNS
/// rebinding points at 127.0.0.1 reaches the demo with its own name in `Host`, and is
/// refused before any session, sign-in or page.
pub(super) async fn demo_host_only(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if !state.demo {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    if is_demo_host(&host, state.config.listen.port()) {
        return next.run(req).await;
    }
    refusals::count(refusals::Refusal::ForeignHost, &format!("Host {host}"));
    (
        StatusCode::MISDIRECTED_REQUEST,
        "The Portcullis demo answers only at 127.0.0.1, localhost or [::1] on its own port.\n",
    )
        .into_response()
}

/// `127.0.0.1:PORT`, `localhost:PORT` (any case) or `[::1]:PORT`, and nothing else.
pub fn is_demo_host(host: &str, port: u16) -> bool {
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    p.parse::<u16>().ok() == Some(port)
        && !p.starts_with('0')
        && (name == "127.0.0.1" || name == "[::1]" || name.eq_ignore_ascii_case("localhost"))
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

pub(super) fn session_cookie(state: &AppState, token: &str, max_age: u64) -> String {
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
    authenticated_at: Option<Timestamp>,
) -> anyhow::Result<String> {
    let now = state.clock.now();
    let token = hex::encode(rand::random::<[u8; 32]>());
    let lifetime = state.config.session.lifetime(principal.is_admin);
    let mut tx = state.store.begin().await?;
    if let Some(old) = cookie_value(headers, state.cookie_name()) {
        store::delete_session(&mut tx, &old).await?;
    }
    store::upsert_user(&mut tx, principal, now).await?;
    store::create_session_authenticated(
        &mut tx,
        &token,
        &principal.user_id,
        demo,
        now,
        now.plus(lifetime),
        authenticated_at.unwrap_or(now),
    )
    .await?;
    audit::audit(
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
                ("origin", "https://evil.com"),
                ("host", "portal.example.com")
            ]),
            url
        )
        .is_some());
        assert!(cross_site_reason(&headers(&[("origin", "null")]), url).is_some());
        // Same-origin by Sec-Fetch-Site, but from another origin: a rebound name.
        assert!(cross_site_reason(
            &headers(&[
                ("origin", "http://rebound.example:3000"),
                ("sec-fetch-site", "same-origin")
            ]),
            "http://127.0.0.1:3000"
        )
        .is_some());
        // Exactly the origin: not a prefix, another port or scheme.
        for near in [
            "https://portal.example.com:8443",
            "http://portal.example.com",
            "https://portal.example.com.evil",
            "https://portal.example.com/",
        ] {
            let h = HeaderMap::from_iter([(header::ORIGIN, HeaderValue::from_str(near).unwrap())]);
            assert!(cross_site_reason(&h, url).is_some(), "{near}");
        }
        // No configured origin refuses every browser request.
        assert!(
            cross_site_reason(&headers(&[("origin", "https://portal.example.com")]), "").is_some()
        );
    }

    #[test]
    fn an_origin_equal_to_the_host_but_not_to_public_url_is_refused() {
        // Before: a match on the Host header was enough.
        let h = headers(&[
            ("origin", "http://127.0.0.1:3000"),
            ("host", "127.0.0.1:3000"),
        ]);
        assert!(cross_site_reason(&h, "https://portal.example.com").is_some());
        assert!(cross_site_reason(&h, "http://127.0.0.1:3000").is_none());
    }

    #[test]
    fn demo_hosts_are_loopback_names_on_its_port() {
        for ok in [
            "127.0.0.1:3100",
            "localhost:3100",
            "LocalHost:3100",
            "[::1]:3100",
        ] {
            assert!(is_demo_host(ok, 3100), "{ok}");
        }
        for bad in [
            "127.0.0.1:3000",
            "127.0.0.1",
            "localhost",
            "evil.example:3100",
            "127.0.0.2:3100",
            "localhost.evil.example:3100",
            "[::1]:03100",
            "127.0.0.1:3100:3100",
            "",
            ":3100",
        ] {
            assert!(!is_demo_host(bad, 3100), "{bad}");
        }
    }
}
