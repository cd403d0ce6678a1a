//! Sessions and CSRF: the session cookie, the middleware that finds the caller's session,
//! the same-origin check on every state-changing request, and safe return paths.

use super::*;

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

pub(super) fn urlencode(s: &str) -> String {
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
pub(super) async fn csrf(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
        let audit = audit::audit_alone(&state.store, &actor, event, now).await;
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
}
