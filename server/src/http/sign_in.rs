//! Sign-in with OpenID Connect (start, callback, failure) and sign-out.

use super::*;

#[derive(Deserialize)]
pub(super) struct ReturnTo {
    pub(super) return_to: Option<String>,
}

pub(super) async fn logout(State(state): State<AppState>, req: Request<Body>) -> Response {
    sign_out(state, req, false).await
}

/// "End all my sessions": every session of the caller, in every browser, ends now.
pub(super) async fn logout_everywhere(
    State(state): State<AppState>,
    req: Request<Body>,
) -> Response {
    sign_out(state, req, true).await
}

async fn sign_out(state: AppState, req: Request<Body>, everywhere: bool) -> Response {
    let now = state.clock.now();
    if let Some(token) = cookie_value(req.headers(), state.cookie_name()) {
        let who = req
            .extensions()
            .get::<Session>()
            .map(|s| s.principal.clone());
        let result: anyhow::Result<()> = async {
            let mut tx = state.store.begin().await?;
            let mut ended = 1;
            match &who {
                Some(p) if everywhere => {
                    ended = store::delete_sessions_of(&mut tx, &p.user_id).await?;
                }
                _ => store::delete_session(&mut tx, &token).await?,
            }
            if let Some(p) = &who {
                audit::audit(
                    &mut tx,
                    &Actor::of(p),
                    Event {
                        action: if everywhere {
                            "signout.everywhere"
                        } else {
                            "signout"
                        },
                        person_id: Some(&p.user_id),
                        subject_kind: "session",
                        subject_id: &p.user_id,
                        entitlement_id: None,
                        detail: if everywhere {
                            format!("{ended} session(s) ended")
                        } else {
                            String::new()
                        },
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

pub(super) fn login_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
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
pub(super) async fn oidc_login(state: State<AppState>, q: Query<ReturnTo>) -> Response {
    begin_sign_in(state, q, None).await
}

/// `GET /auth/reauth?return_to=/path`: a sign-in in which the provider must authenticate
/// the person again (`max_age=0`), for the actions that need a recent one.
pub(super) async fn oidc_reauth(state: State<AppState>, q: Query<ReturnTo>) -> Response {
    begin_sign_in(state, q, Some(Duration::ZERO)).await
}

async fn begin_sign_in(
    State(state): State<AppState>,
    Query(q): Query<ReturnTo>,
    max_age: Option<Duration>,
) -> Response {
    let return_to = safe_return_to(q.return_to.as_deref());
    // Demo mode: picking a persona again is a fresh sign-in.
    let Some(oidc) = state.oidc.clone() else {
        return Redirect::to(&format!("/demo/login?return_to={}", urlencode(&return_to)))
            .into_response();
    };
    let started = match oidc.start(max_age).await {
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
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// Why a callback signed nobody in.
pub(super) enum CallbackFailure {
    /// The sign-in failed, with where the person was going (for the retry link).
    SignIn(SignInError, String),
    /// Our own trouble (the database).
    Internal(anyhow::Error),
}

/// `GET /auth/callback`: where the provider sends the browser back.
pub(super) async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let Some(oidc) = state.oidc.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let SignedIn {
        principal,
        auth_time,
        return_to,
    } = match verify_callback(&state, &oidc, &headers, &q).await {
        Ok(found) => found,
        Err(CallbackFailure::SignIn(e, back)) => {
            state.metrics.sign_in("refused");
            return sign_in_failed(&state, e, &back).await;
        }
        Err(CallbackFailure::Internal(e)) => {
            state.metrics.sign_in("error");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &internal(e).to_string(),
                "/auth/login",
            );
        }
    };
    match start_session(&state, &headers, &principal, false, auth_time).await {
        Ok(cookie) => {
            state.metrics.sign_in("ok");
            tracing::info!(user = %principal.user_id, "signed in");
            let mut res = Redirect::to(&return_to).into_response();
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                h.append(header::SET_COOKIE, v);
            }
            h.append(header::SET_COOKIE, login_cookie(&state, "", 0));
            res
        }
        Err(e) => {
            state.metrics.sign_in("error");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &internal(e).to_string(),
                &retry_link(&return_to),
            )
        }
    }
}

/// Who the provider vouched for, when it last authenticated them, and where they go next.
pub(super) struct SignedIn {
    principal: app::domain::Principal,
    auth_time: Option<Timestamp>,
    return_to: String,
}

/// Checks the callback against the sign-in it claims to finish, then has the provider
/// vouch for the person: their principal, and where they were going.
pub(super) async fn verify_callback(
    state: &AppState,
    oidc: &Oidc,
    headers: &HeaderMap,
    q: &Callback,
) -> Result<SignedIn, CallbackFailure> {
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
    let (p, auth_time) = match oidc.finish(code, &flow.nonce, &flow.pkce_verifier).await {
        Ok(found) => found,
        Err(e) => return fail(e, back),
    };
    // Emails are unique: one that another account has never signs a second person in
    // (the `app_user_email_unique` index refuses it anyway; this says so clearly).
    let owner = async {
        let mut conn = state.store.conn().await?;
        store::email_owner(&mut conn, &p.email).await
    }
    .await
    .map_err(CallbackFailure::Internal)?;
    if let Some(owner) = owner.filter(|o| *o != p.user_id) {
        return fail(
            SignInError::EmailConflict {
                user: p.user_id,
                email: p.email,
                owner,
            },
            back,
        );
    }
    Ok(SignedIn {
        principal: p,
        auth_time,
        return_to: flow.return_to.clone(),
    })
}

pub(super) fn retry_link(return_to: &str) -> String {
    format!("/auth/login?return_to={}", urlencode(return_to))
}

/// Audits (or, when anyone could have caused it, counts) a failed sign-in, and shows a page
/// that says what to do.
pub(super) async fn sign_in_failed(state: &AppState, e: SignInError, return_to: &str) -> Response {
    let reason = refusals::capped(&e.to_string());
    if e.is_attributable() {
        tracing::warn!(reason = %reason, "sign-in failed");
        // An email conflict concerns the account that has the email.
        let concerns = match &e {
            SignInError::EmailConflict { owner, .. } => Some(owner.as_str()),
            _ => None,
        };
        let event = Event {
            action: e.audit_action(),
            person_id: concerns,
            subject_kind: "session",
            subject_id: "anonymous",
            entitlement_id: None,
            detail: reason,
        };
        if let Err(err) =
            audit::audit_alone(&state.store, &Actor::anonymous(), event, state.clock.now()).await
        {
            let _ = internal(err);
        }
    } else {
        refusals::count(refusals::Refusal::SignIn, &reason);
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut res = error_page(status, e.user_message(), &retry_link(return_to));
    res.headers_mut()
        .append(header::SET_COOKIE, login_cookie(state, "", 0));
    res
}
