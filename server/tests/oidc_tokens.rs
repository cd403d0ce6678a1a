//! ID tokens no real provider will issue, from a small signer of our own: wrong issuer,
//! wrong audience, expired, `alg: none`, HMAC, wrong nonce, a stranger's key; a callback
//! from another issuer, open redirects, secrets in logs, claims from userinfo, unverified
//! emails and other domains. The harness is `oidc_peer`.

mod common;
mod oidc_peer;

use oidc_peer::*;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use base64::Engine;
use openidconnect::core::{CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::OidcConfig;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
// ------------------------------------------------------------------ our own signer

/// A minimal provider whose token endpoint answers whatever ID token the test set.
struct Signer {
    issuer: String,
    id_token: Arc<Mutex<String>>,
    userinfo: Arc<Mutex<Value>>,
    key: CoreRsaPrivateSigningKey,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Signer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}")),
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    async fn start() -> Signer {
        let key = CoreRsaPrivateSigningKey::from_pem(
            &fixture("oidc-test-signer.pem"),
            Some(JsonWebKeyId::new("k1".into())),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let id_token = Arc::new(Mutex::new(String::new()));
        let userinfo = Arc::new(Mutex::new(json!({"sub": "u-mallory"})));
        let discovery = json!({
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        });
        let jwks = json!({ "keys": [serde_json::to_value(key.as_verification_key()).unwrap()] });
        let token = id_token.clone();
        let info = userinfo.clone();
        let app = Router::new()
            .route(
                "/userinfo",
                axum::routing::get(move |headers: axum::http::HeaderMap| async move {
                    // Only with the access token the token endpoint gave.
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some("Bearer opaque-access-token")
                    {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({}))).into_response();
                    }
                    axum::Json(info.lock().unwrap().clone()).into_response()
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(discovery) }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            )
            .route(
                "/token",
                axum::routing::post(move || async move {
                    let id_token = token.lock().unwrap().clone();
                    axum::Json(json!({
                        "access_token": "opaque-access-token",
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": id_token,
                    }))
                }),
            );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Signer {
            issuer,
            id_token,
            userinfo,
            key,
            task,
        }
    }

    fn claims(&self, nonce: &str) -> Value {
        let now = SystemClock.now().millis() / 1000;
        json!({
            "iss": self.issuer, "aud": CLIENT_ID, "sub": "u-mallory", "nonce": nonce,
            "iat": now, "exp": now + 300,
            "email": "mallory@example.com", "email_verified": true, "name": "Mallory",
            "groups": ["portcullis-admins"],
        })
    }

    fn rs256(&self, key: &CoreRsaPrivateSigningKey, claims: &Value) -> String {
        let header = b64(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let sig = key
            .sign(
                &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                input.as_bytes(),
            )
            .unwrap();
        format!("{input}.{}", b64(&sig))
    }
}

/// Starts a sign-in at the signer, has its token endpoint answer `make(nonce)`, and
/// returns the callback's response.
async fn callback_with(
    portal: &Portal,
    signer: &Signer,
    make: impl Fn(&Signer, &str) -> String,
) -> axum::response::Response {
    let (authorize, login_cookie) = portal.begin("/").await;
    let param = |name: &str| query_param(&authorize, name);
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let nonce = param("nonce");
    *signer.id_token.lock().unwrap() = make(signer, &nonce);
    portal
        .get(
            &format!("/auth/callback?code=c0de&state={}", param("state")),
            &[&login_cookie],
        )
        .await
}

#[tokio::test]
async fn id_tokens_that_fail_validation_are_refused() {
    let signer = Signer::start().await;
    let portal = start_portal(oidc_config(&signer.issuer)).await;

    // The control: a good token signs in, so every refusal below is the token's fault.
    let res = callback_with(&portal, &signer, |s, nonce| {
        s.rs256(&s.key, &s.claims(nonce))
    })
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        body_text(res).await
    );

    let stranger = CoreRsaPrivateSigningKey::from_pem(
        &fixture("oidc-test-stranger.pem"),
        Some(JsonWebKeyId::new("k1".into())),
    )
    .unwrap();
    type Make = Box<dyn Fn(&Signer, &str) -> String>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "wrong issuer",
            Box::new(|s, n| {
                let mut c = s.claims(n);
                c["iss"] = json!("http://127.0.0.1:1");
                s.rs256(&s.key, &c)
            }),
        ),
        (
            "wrong audience",
            Box::new(|s, n| {
                let mut c = s.claims(n);
                c["aud"] = json!("someone-else");
                s.rs256(&s.key, &c)
            }),
        ),
        (
            "expired",
            Box::new(|s, n| {
                let mut c = s.claims(n);
                let now = SystemClock.now().millis() / 1000;
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
                s.rs256(&s.key, &c)
            }),
        ),
        (
            "wrong nonce",
            Box::new(|s, _| s.rs256(&s.key, &s.claims("not-the-nonce"))),
        ),
        (
            "unsigned (alg none)",
            Box::new(|s, n| {
                format!(
                    "{}.{}.",
                    b64(br#"{"alg":"none","typ":"JWT"}"#),
                    b64(s.claims(n).to_string().as_bytes())
                )
            }),
        ),
        (
            "HS256 with the client secret",
            Box::new(|s, n| {
                use hmac::Mac;
                let input = format!(
                    "{}.{}",
                    b64(br#"{"alg":"HS256","typ":"JWT"}"#),
                    b64(s.claims(n).to_string().as_bytes())
                );
                let mut mac =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(CLIENT_SECRET.as_bytes()).unwrap();
                mac.update(input.as_bytes());
                format!("{input}.{}", b64(&mac.finalize().into_bytes()))
            }),
        ),
        (
            "signed by a stranger's key",
            Box::new(move |s, n| s.rs256(&stranger, &s.claims(n))),
        ),
    ];
    for (name, make) in &cases {
        let res = callback_with(&portal, &signer, make).await;
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY, "{name}");
        assert!(
            set_cookie(&res, "portcullis_session").is_none(),
            "{name}: no session"
        );
        let page = body_text(res).await;
        assert!(page.contains("could not be verified"), "{name}: {page}");
        assert!(page.contains("Try again"), "{name}: {page}");
    }
    let failures: Vec<String> = portal
        .audit()
        .await
        .into_iter()
        .filter(|(a, _)| a == "signin.failure")
        .map(|(_, d)| d)
        .collect();
    for why in [
        "Invalid issuer",
        "Invalid audiences",
        "Expired",
        "Invalid nonce",
        "No signature found",
        "Disallowed signature algorithm: algorithm `HS256`",
        "bad signature",
    ] {
        assert!(
            failures.iter().any(|d| d.contains(why)),
            "no refusal for {why:?}: {failures:#?}"
        );
    }
    assert_eq!(
        failures.len(),
        cases.len(),
        "each refusal audited: {failures:?}"
    );
    assert!(
        failures.iter().all(|d| d.contains("ID token was rejected")),
        "{failures:?}"
    );
    let sessions = portal
        .audit()
        .await
        .into_iter()
        .filter(|(a, _)| a == "signin.success")
        .count();
    assert_eq!(sessions, 1, "only the control signed in");
}

#[tokio::test]
async fn a_callback_from_another_issuer_is_refused() {
    let signer = Signer::start().await;
    let portal = start_portal(oidc_config(&signer.issuer)).await;
    let (authorize, login_cookie) = portal.begin("/").await;
    let state = query_param(&authorize, "state");
    let res = portal
        .get(
            &format!("/auth/callback?code=c&state={state}&iss=https%3A%2F%2Fevil.example"),
            &[&login_cookie],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(set_cookie(&res, "portcullis_session").is_none());
}

#[tokio::test]
async fn open_redirects_fall_back_to_the_home_page() {
    let signer = Signer::start().await;
    let portal = start_portal(oidc_config(&signer.issuer)).await;
    for evil in [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let (authorize, login_cookie) = portal.begin(evil).await;
        let param = |name: &str| query_param(&authorize, name);
        *signer.id_token.lock().unwrap() =
            signer.rs256(&signer.key, &signer.claims(&param("nonce")));
        let res = portal
            .get(
                &format!("/auth/callback?code=c&state={}", param("state")),
                &[&login_cookie],
            )
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{evil}");
        assert_eq!(location(&res), "/", "{evil}");
    }
}

#[tokio::test]
async fn no_token_code_or_cookie_in_any_log_line() {
    let logs = capture_logs();
    let idp = Provider::start().await;
    let portal = start_portal(oidc_config(&idp.issuer)).await;
    let mut browser = Browser::new();
    let (res, callback, login_cookie) = sign_in(&portal, &mut browser, "alice", "/", None).await;
    let session = session_of(&res);
    // A failure too: the replayed callback.
    let _ = portal.get(&callback, &[&login_cookie]).await;
    let _ = portal.get("/requests", &[&session]).await;
    let _ = portal.post("/auth/logout", &[&session]).await;

    let param = |name: &str| query_param(&callback, name);
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("signed in"), "the capture works: {text}");
    for (what, secret) in [
        ("authorization code", param("code")),
        ("state", param("state")),
        (
            "session cookie",
            session.split_once('=').unwrap().1.to_owned(),
        ),
        (
            "login cookie",
            login_cookie.split_once('=').unwrap().1.to_owned(),
        ),
        ("client secret", CLIENT_SECRET.to_owned()),
    ] {
        assert!(secret.len() >= 16, "{what} is a real secret");
        assert!(!text.contains(&secret), "the {what} is in the logs");
    }
    assert!(!text.contains("eyJ"), "no JWT in the logs");
}

#[tokio::test]
async fn claims_missing_from_the_id_token_are_read_from_userinfo() {
    let signer = Signer::start().await;
    let portal = start_portal(oidc_config(&signer.issuer)).await;
    let slim = |s: &Signer, nonce: &str| {
        let mut c = s.claims(nonce);
        let o = c.as_object_mut().unwrap();
        for k in ["email", "name", "groups"] {
            o.remove(k);
        }
        s.rs256(&s.key, &c)
    };
    *signer.userinfo.lock().unwrap() = json!({
        "sub": "u-mallory", "email": "mallory@example.com", "email_verified": true,
        "name": "Mallory From Userinfo", "groups": ["engineering"], "manager": "bob@example.com"
    });
    let res = callback_with(&portal, &signer, slim).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        body_text(res).await
    );
    let p = portal.principal(&session_of(&res)).await;
    assert_eq!(p.email, "mallory@example.com");
    assert_eq!(p.display_name, "Mallory From Userinfo");
    assert_eq!(p.groups, ["engineering"]);
    assert_eq!(p.manager.as_deref(), Some("bob@example.com"));
    assert!(!p.is_admin, "admin only from the groups actually sent");

    // Userinfo about someone else is refused (OpenID Connect Core 5.3.2).
    *signer.userinfo.lock().unwrap() = json!({"sub": "u-someone-else", "email": "x@example.com"});
    let res = callback_with(&portal, &signer, slim).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie(&res, "portcullis_session").is_none());
    let page = body_text(res).await;
    assert!(
        page.contains("did not send what Portcullis needs"),
        "{page}"
    );
}

#[tokio::test]
async fn unverified_emails_and_other_domains_are_refused() {
    let signer = Signer::start().await;
    let portal = start_portal(oidc_config(&signer.issuer)).await;
    type Make = Box<dyn Fn(&Signer, &str) -> String>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "email_verified false",
            Box::new(|s, n| {
                let mut c = s.claims(n);
                c["email_verified"] = json!(false);
                s.rs256(&s.key, &c)
            }),
        ),
        (
            "email_verified absent",
            Box::new(|s, n| {
                let mut c = s.claims(n);
                c.as_object_mut().unwrap().remove("email_verified");
                s.rs256(&s.key, &c)
            }),
        ),
        (
            // The ID token vouches for an email it does not carry; the one from userinfo
            // is not said to be verified.
            "verified in the ID token, email from userinfo",
            Box::new(|s, n| {
                let mut c = s.claims(n);
                c.as_object_mut().unwrap().remove("email");
                *s.userinfo.lock().unwrap() =
                    json!({"sub": "u-mallory", "email": "mallory@example.com"});
                s.rs256(&s.key, &c)
            }),
        ),
    ];
    for (name, make) in &cases {
        let res = callback_with(&portal, &signer, make).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{name}");
        assert!(set_cookie(&res, "portcullis_session").is_none(), "{name}");
        let page = body_text(res).await;
        assert!(
            page.contains("has not verified your email"),
            "{name}: {page}"
        );
        assert!(page.contains("Try again"), "{name}: {page}");
    }
    assert!(portal.users().await.is_empty(), "nothing stored");
    let failures = portal
        .audit()
        .await
        .into_iter()
        .filter(|(a, d)| a == "signin.failure" && d.contains("is not verified"))
        .count();
    assert_eq!(failures, cases.len());

    // A verified email from userinfo is fine.
    *signer.userinfo.lock().unwrap() =
        json!({"sub": "u-mallory", "email": "mallory@example.com", "email_verified": true});
    let res = callback_with(&portal, &signer, |s, n| {
        let mut c = s.claims(n);
        let o = c.as_object_mut().unwrap();
        o.remove("email");
        o.remove("email_verified");
        s.rs256(&s.key, &c)
    })
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        body_text(res).await
    );

    // Domains: only those listed, exactly.
    let corp = start_portal(OidcConfig {
        allowed_email_domains: vec!["corp.example".into()],
        ..oidc_config(&signer.issuer)
    })
    .await;
    let res = callback_with(&corp, &signer, |s, n| s.rs256(&s.key, &s.claims(n))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&res, "portcullis_session").is_none());
    let page = body_text(res).await;
    assert!(
        page.contains("not in a domain that may use Portcullis"),
        "{page}"
    );
    assert!(corp.users().await.is_empty());
    assert!(corp
        .audit()
        .await
        .iter()
        .any(|(a, d)| a == "signin.failure" && d.contains("allowed_email_domains")));
    let example = start_portal(OidcConfig {
        allowed_email_domains: vec!["corp.example".into(), "Example.COM".into()],
        ..oidc_config(&signer.issuer)
    })
    .await;
    let res = callback_with(&example, &signer, |s, n| s.rs256(&s.key, &s.claims(n))).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        body_text(res).await
    );
}
