//! Sign-in with OpenID Connect through a real provider, `oidc-provider`
//! (e2e/oidc/provider.mjs, OpenID Certified), started per test on loopback with fixture
//! users in several groups and with managers: the happy path, state handling, rotation,
//! group changes, sign-out, refusals, re-authentication. ID tokens no real provider
//! would issue are in `oidc_tokens.rs`; the harness is `oidc_peer`.
//!
//! The portal is the real router, driven in-process; the provider is driven over HTTP
//! like a browser would (cookies kept by hand, redirects followed one at a time).

mod common;
mod oidc_peer;

use oidc_peer::*;
use portcullis::http::refusals::{total, Refusal};

use axum::http::StatusCode;
use common::peers::free_port;
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::OidcConfig;
use portcullis::store::{self};
use std::time::Duration;
// ------------------------------------------------------------------ real provider tests

#[tokio::test]
async fn signs_in_with_groups_and_manager_from_claims() {
    let idp = Provider::start().await;
    let portal = start_portal(oidc_config(&idp.issuer)).await;
    let mut browser = Browser::new();
    let (res, _, _) = sign_in(&portal, &mut browser, "alice", "/requests?tab=2", None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&res),
        "/requests?tab=2",
        "back where she asked to go"
    );
    let cookie = set_cookie(&res, "portcullis_session").unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain-http loopback: {cookie}");
    let value = pair(&cookie).split_once('=').unwrap().1.to_owned();
    assert_eq!(value.len(), 64, "256 random bits");
    let cleared = set_cookie(&res, "portcullis_login").expect("login cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let session = pair(&cookie);
    assert_eq!(
        portal.get("/requests", &[&session]).await.status(),
        StatusCode::OK
    );
    let alice = portal.principal(&session).await;
    assert_eq!(alice.user_id, format!("{}|u-alice", idp.issuer));
    assert_eq!(alice.email, "alice@example.com");
    assert_eq!(alice.display_name, "Alice Employee");
    assert_eq!(alice.groups, ["engineering"]);
    assert_eq!(alice.manager.as_deref(), Some("bob@example.com"));
    assert!(!alice.is_admin);

    // A manager given as a subject, and admin from an IdP group.
    let (res, _, _) = sign_in(&portal, &mut Browser::new(), "carol", "/", None).await;
    let carol = portal.principal(&session_of(&res)).await;
    assert_eq!(carol.manager, Some(format!("{}|u-bob", idp.issuer)));
    let (res, _, _) = sign_in(&portal, &mut Browser::new(), "dana", "/", None).await;
    assert!(portal.principal(&session_of(&res)).await.is_admin);

    let audit = portal.audit().await;
    let ok = audit.iter().filter(|(a, _)| a == "signin.success").count();
    assert_eq!(ok, 3, "{audit:?}");
}

#[tokio::test]
async fn state_is_single_use_and_bound_to_the_browser() {
    let refused_before = total(Refusal::SignIn);
    let idp = Provider::start().await;
    let portal = start_portal(oidc_config(&idp.issuer)).await;
    let mut browser = Browser::new();
    let (res, callback, login_cookie) = sign_in(&portal, &mut browser, "alice", "/", None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // Replayed: the same callback again.
    let res = portal.get(&callback, &[&login_cookie]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie(&res, "portcullis_session").is_none());
    let page = body_text(res).await;
    assert!(page.contains("no longer valid"), "{page}");
    assert!(
        page.contains("/auth/login?return_to="),
        "a retry link: {page}"
    );

    // Finished in another browser: no login cookie, or someone else's.
    let (authorize, _mine) = portal.begin("/").await;
    let callback = Browser::new()
        .follow_to_portal(authorize, "alice", "alice-pw")
        .await;
    let res = portal
        .get(&callback, &["portcullis_login=0123456789abcdef"])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie(&res, "portcullis_session").is_none());

    // Missing and made-up state.
    let res = portal
        .get("/auth/callback?code=abc", &[&login_cookie])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = portal
        .get("/auth/callback?code=abc&state=forged", &[&login_cookie])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Anyone can send such callbacks at will: they are counted and logged, not audited
    // one row each (the audit log must not be floodable by anonymous traffic).
    let rows: Vec<_> = portal
        .audit()
        .await
        .into_iter()
        .filter(|(a, _)| a.starts_with("signin."))
        .collect();
    assert!(rows.iter().all(|(a, _)| a == "signin.success"), "{rows:?}");
    assert!(total(Refusal::SignIn) >= refused_before + 4);
}

#[tokio::test]
async fn signing_in_rotates_the_session_and_signing_out_ends_it() {
    let idp = Provider::start().await;
    let portal = start_portal(oidc_config(&idp.issuer)).await;
    let mut browser = Browser::new();
    let (res, _, _) = sign_in(&portal, &mut browser, "alice", "/", None).await;
    let first = session_of(&res);
    let (res, _, _) = sign_in(&portal, &mut browser, "alice", "/", Some(&first)).await;
    let second = session_of(&res);
    assert_ne!(first, second);
    assert_eq!(
        portal.get("/requests", &[&first]).await.status(),
        StatusCode::SEE_OTHER,
        "the old session ended at sign-in"
    );
    assert_eq!(
        portal.get("/requests", &[&second]).await.status(),
        StatusCode::OK
    );

    // Sign-out: the session is gone on the server, and the provider signs out too.
    let res = portal.post("/auth/logout", &[&second]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = location(&res);
    assert!(
        to.starts_with(&format!("{}/session/end?", idp.issuer)),
        "{to}"
    );
    assert!(to.contains("client_id=portcullis"), "{to}");
    assert!(
        to.contains(&format!(
            "post_logout_redirect_uri={}",
            urlencode(&format!("{PUBLIC}/auth/signed-out"))
        )),
        "{to}"
    );
    let res = portal.get("/requests", &[&second]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/auth/login?return_to="));
    assert_eq!(
        portal.get("/auth/signed-out", &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_denied_consent_and_a_provider_that_is_down_get_clear_pages() {
    let refused_before = total(Refusal::SignIn);
    let idp = Provider::start().await;
    let portal = start_portal(oidc_config(&idp.issuer)).await;
    let (authorize, login_cookie) = portal.begin("/approvals").await;
    let state = query_param(&authorize, "state");
    let res = portal
        .get(
            &format!(
                "/auth/callback?error=access_denied&error_description=User+said+no&state={state}"
            ),
            &[&login_cookie],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let page = body_text(res).await;
    assert!(page.contains("did not sign you in"), "{page}");
    assert!(page.contains("/auth/login?return_to=/approvals"), "{page}");
    // An error in the callback's URL is anyone's to send: counted, not audited.
    let audit = portal.audit().await;
    assert!(
        !audit.iter().any(|(a, _)| a == "signin.failure"),
        "{audit:?}"
    );
    assert!(total(Refusal::SignIn) > refused_before);
    let refused_before = total(Refusal::SignIn);

    // Nothing listens here.
    let down = start_portal(oidc_config(&format!("http://127.0.0.1:{}", free_port()))).await;
    let res = down.get("/auth/login", &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let page = body_text(res).await;
    assert!(
        page.contains("cannot reach your identity provider"),
        "{page}"
    );
    assert!(page.contains("Try again"), "{page}");
    assert!(
        !page.contains("error sending request"),
        "no internals: {page}"
    );
    let audit = down.audit().await;
    assert!(
        !audit.iter().any(|(a, _)| a == "signin.failure"),
        "{audit:?}"
    );
    assert!(total(Refusal::SignIn) > refused_before);
}

#[tokio::test]
async fn someone_removed_from_the_approver_group_can_no_longer_approve() {
    use app::ssr::Portal as _;
    let idp = Provider::start().await;
    let portal = start_portal(oidc_config(&idp.issuer)).await;
    let (res, _, _) = sign_in(&portal, &mut Browser::new(), "alice", "/", None).await;
    let alice = portal.principal(&session_of(&res)).await;
    let request_id = portal
        .portal
        .create_request(
            &alice,
            "prod-admin",
            app::domain::RequestDraft {
                justification: "Rotate the database credentials".into(),
                duration: "1h".into(),
                ticket: "CHG-1234".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let (res, _, _) = sign_in(&portal, &mut Browser::new(), "carol", "/", None).await;
    let carol = portal.principal(&session_of(&res)).await;
    let queue = portal.portal.approvals(&carol).await.unwrap();
    assert!(
        format!("{queue:?}").contains(&request_id),
        "Carol may approve while in cloud-approvers"
    );

    // The IdP drops her from the group; her next sign-in refreshes her groups.
    idp.set_groups("carol", &["engineering"]);
    let (res, _, _) = sign_in(&portal, &mut Browser::new(), "carol", "/", None).await;
    let carol = portal.principal(&session_of(&res)).await;
    assert_eq!(carol.groups, ["engineering"]);
    let err = portal
        .portal
        .decide(&carol, &request_id, true, "ok")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not an approver"), "{err}");
    let audit = portal.audit().await;
    assert!(
        audit.iter().any(|(a, _)| a.starts_with("denied.")),
        "the refusal is audited: {audit:?}"
    );
}

#[tokio::test]
async fn a_second_account_with_an_existing_email_is_refused_and_audited() {
    let idp = Provider::start().await;
    let portal = start_portal(oidc_config(&idp.issuer)).await;
    let (res, _, _) = sign_in(&portal, &mut Browser::new(), "alice", "/", None).await;
    let alice = portal.principal(&session_of(&res)).await;
    assert!(alice.email_verified);
    let users_before = portal.users().await;

    // Eve is another subject at the same provider, with Alice's email in another case.
    let (res, _, _) = sign_in(&portal, &mut Browser::new(), "eve", "/approvals", None).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(set_cookie(&res, "portcullis_session").is_none());
    let page = body_text(res).await;
    assert!(
        page.contains(
            "This email belongs to another account in Portcullis; ask your administrator."
        ),
        "{page}"
    );
    assert!(page.contains("/auth/login?return_to=/approvals"), "{page}");
    // Nothing changed: no account for Eve, Alice's as it was.
    assert_eq!(portal.users().await, users_before);
    let conflict: Vec<(String, String)> = portal
        .audit()
        .await
        .into_iter()
        .filter(|(a, _)| a == "signin.email_conflict")
        .collect();
    assert_eq!(conflict.len(), 1, "{conflict:?}");
    let detail = &conflict[0].1;
    assert!(
        detail.contains(&format!("{}|u-eve", idp.issuer)),
        "{detail}"
    );
    assert!(detail.contains(&alice.user_id), "{detail}");

    // Alice herself still signs in.
    let (res, _, _) = sign_in(&portal, &mut Browser::new(), "alice", "/", None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_unverified_email_is_refused_by_default() {
    let idp = Provider::start().await;
    let portal = start_portal(oidc_config(&idp.issuer)).await;
    let (res, _, _) = sign_in(&portal, &mut Browser::new(), "frank", "/", None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&res, "portcullis_session").is_none());
    let page = body_text(res).await;
    assert!(
        page.contains("has not verified your email address"),
        "{page}"
    );
    assert!(portal.users().await.is_empty(), "nothing stored");
    let audit = portal.audit().await;
    assert!(
        audit
            .iter()
            .any(|(a, d)| a == "signin.failure" && d.contains("frank@example.com is not verified")),
        "{audit:?}"
    );

    // Where the provider cannot verify emails, an administrator may turn the check off:
    // Frank signs in, and his email is recorded as unverified (it names nobody).
    let lax = start_portal(OidcConfig {
        require_verified_email: false,
        ..oidc_config(&idp.issuer)
    })
    .await;
    let (res, _, _) = sign_in(&lax, &mut Browser::new(), "frank", "/", None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let frank = lax.principal(&session_of(&res)).await;
    assert!(!frank.email_verified);
}

/// `/auth/reauth` asks the provider for a fresh authentication (`max_age=0`); the session
/// that comes back records the provider's `auth_time`, which deciding and revoking check
/// (`rights.rs`).
#[tokio::test]
async fn a_fresh_sign_in_is_asked_of_the_provider_with_max_age() {
    let idp = Provider::start().await;
    let portal = start_portal(oidc_config(&idp.issuer)).await;
    let mut browser = Browser::new();
    let (res, _, _) = sign_in(&portal, &mut browser, "alice", "/", None).await;
    let first = session_of(&res);

    let res = portal.get("/auth/reauth?return_to=/approvals", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let authorize = location(&res);
    assert_eq!(query_param(&authorize, "max_age"), "0");
    let login_cookie = pair(&set_cookie(&res, "portcullis_login").expect("a login cookie"));
    let callback = browser
        .follow_to_portal(authorize, "alice", "alice-pw")
        .await;
    let res = portal.get(&callback, &[&login_cookie, &first]).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        body_text(res).await
    );
    assert_eq!(location(&res), "/approvals");
    let second = session_of(&res);
    let token = second.split_once('=').unwrap().1;
    let mut conn = portal.store.conn().await.unwrap();
    let found = store::find_session_full(
        &mut conn,
        token,
        SystemClock.now(),
        Duration::from_secs(3600),
    )
    .await
    .unwrap()
    .expect("a live session");
    let age = found.authenticated_at.until(SystemClock.now());
    assert!(age < Duration::from_secs(60), "auth_time {age:?} ago");
}
