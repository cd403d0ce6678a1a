//! Sign-in with OpenID Connect, end to end without a browser.
//!
//! Two providers:
//! - a real one, `oidc-provider` (e2e/oidc/provider.mjs, OpenID Certified), started per
//!   test on loopback with fixture users in several groups and with managers: the happy
//!   path, state handling, rotation, group changes, sign-out;
//! - a small signer of our own for ID tokens no real provider will issue (wrong issuer,
//!   wrong audience, expired, `alg: none`, HMAC, wrong nonce, a stranger's key).
//!
//! The portal is the real router, driven in-process; the provider is driven over HTTP
//! like a browser would (cookies kept by hand, redirects followed one at a time).

mod common;

use portcullis::http::refusals::{total, Refusal};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use base64::Engine;
use common::peers::{free_port, Peer};
use openidconnect::core::{CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::{ClaimNames, Config, OidcConfig};
use portcullis::oidc::Oidc;
use portcullis::portal::PortalService;
use portcullis::seed;
use portcullis::store::{self, DatabaseUrl, Store};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

const PUBLIC: &str = "http://127.0.0.1:3000";
const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef";

// ------------------------------------------------------------------ the real provider

struct Provider {
    child: Peer,
    issuer: String,
    accounts: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture_accounts() -> Value {
    json!([
        {"login": "alice", "password": "alice-pw", "sub": "u-alice", "email": "alice@example.com",
         "name": "Alice Employee", "groups": ["engineering"], "manager": "bob@example.com"},
        {"login": "bob", "password": "bob-pw", "sub": "u-bob", "email": "bob@example.com",
         "name": "Bob Manager", "groups": ["engineering", "engineering-leads"]},
        {"login": "carol", "password": "carol-pw", "sub": "u-carol", "email": "carol@example.com",
         "name": "Carol Approver", "groups": ["cloud-approvers"], "manager": "u-bob"},
        {"login": "dana", "password": "dana-pw", "sub": "u-dana", "email": "dana@example.com",
         "name": "Dana Admin", "groups": ["portcullis-admins", "security"]},
        // Another account with Alice's email (a second person, or a re-created account).
        {"login": "eve", "password": "eve-pw", "sub": "u-eve", "email": "Alice@Example.com",
         "name": "Eve Impostor", "groups": ["cloud-approvers"]},
        // The provider has not verified Frank's email.
        {"login": "frank", "password": "frank-pw", "sub": "u-frank", "email": "frank@example.com",
         "email_verified": false, "name": "Frank Unverified", "groups": ["engineering"]}
    ])
}

impl Provider {
    async fn start() -> Provider {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/oidc/provider.mjs");
        assert!(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../e2e/node_modules/oidc-provider")
                .exists(),
            "the OIDC tests need a real provider and are never skipped: run `npm ci` in e2e/ \
             (the README's test command does)"
        );
        let dir = tempfile::TempDir::new().unwrap();
        let accounts = dir.path().join("accounts.json");
        std::fs::write(&accounts, fixture_accounts().to_string()).unwrap();
        let clients = json!([{
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{PUBLIC}/auth/callback")],
            "post_logout_redirect_uris": [format!("{PUBLIC}/auth/signed-out")]
        }]);
        for _attempt in 0..3 {
            let port = free_port();
            let child = Command::new("node")
                .arg(&script)
                .env("OIDC_PORT", port.to_string())
                .env("OIDC_ACCOUNTS", &accounts)
                .env("OIDC_CLIENTS", clients.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("node must be installed (the README's test command installs it)");
            let mut p = Provider {
                child: Peer::new(child),
                issuer: format!("http://127.0.0.1:{port}"),
                accounts: accounts.clone(),
                _dir: tempfile::TempDir::new().unwrap(),
            };
            let url = format!("{}/.well-known/openid-configuration", p.issuer);
            for _ in 0..100 {
                if let Ok(r) = reqwest::get(&url).await {
                    if r.status().is_success() {
                        p._dir = dir;
                        return p;
                    }
                }
                if p.child.exited().is_some() {
                    break; // the port was taken: try another
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("the OIDC provider did not start");
    }

    fn set_groups(&self, login: &str, groups: &[&str]) {
        let mut accounts = fixture_accounts();
        for a in accounts.as_array_mut().unwrap() {
            if a["login"] == login {
                a["groups"] = json!(groups);
            }
        }
        let tmp = self.accounts.with_extension("tmp");
        std::fs::write(&tmp, accounts.to_string()).unwrap();
        std::fs::rename(&tmp, &self.accounts).unwrap();
    }
}

// ------------------------------------------------------------------ the portal

struct Portal {
    router: Router,
    store: Store,
    portal: Arc<PortalService>,
    _dir: tempfile::TempDir,
}

fn oidc_config(issuer: &str) -> OidcConfig {
    OidcConfig {
        issuer_url: issuer.to_owned(),
        client_id: CLIENT_ID.into(),
        client_secret: serde_json::from_value(json!(CLIENT_SECRET)).unwrap(),
        scopes: vec![
            "openid".into(),
            "email".into(),
            "profile".into(),
            "groups".into(),
        ],
        claims: ClaimNames::default(),
        admin_groups: vec!["portcullis-admins".into()],
        signing_algs: vec!["RS256".into(), "ES256".into()],
        login_timeout_secs: 600,
        require_verified_email: true,
        allowed_email_domains: vec![],
    }
}

/// Every log line of this test binary, at DEBUG for every crate (as with RUST_LOG=debug).
static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();

fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .init();
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn start_portal(oidc: OidcConfig) -> Portal {
    capture_logs();
    let dir = tempfile::TempDir::new().unwrap();
    let url = DatabaseUrl::new(format!("sqlite://{}/o.db?mode=rwc", dir.path().display()));
    let store = Store::connect(&url, common::audit_key()).await.unwrap();
    store.migrate().await.unwrap();
    seed::seed_catalog(&store, SystemClock.now()).await.unwrap();
    let config = Config {
        public_url: Some(PUBLIC.into()),
        oidc: Some(oidc.clone()),
        ..Config::default()
    };
    let oidc = Arc::new(Oidc::new(oidc, PUBLIC).unwrap());
    let (router, portal) = common::web::router(&store, config, false, Some(oidc));
    Portal {
        router,
        store,
        portal,
        _dir: dir,
    }
}

fn header_values(res: &axum::response::Response, name: header::HeaderName) -> Vec<String> {
    res.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn location(res: &axum::response::Response) -> String {
    header_values(res, header::LOCATION)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// `name=value` of the Set-Cookie for `name`, if any.
fn set_cookie(res: &axum::response::Response, name: &str) -> Option<String> {
    header_values(res, header::SET_COOKIE)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn body_text(res: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Portal {
    /// Sends a request with no body, with `cookies` if any.
    async fn send(
        &self,
        mut req: axum::http::request::Builder,
        cookies: &[&str],
    ) -> axum::response::Response {
        req = req.header(header::HOST, "127.0.0.1:3000");
        if !cookies.is_empty() {
            req = req.header(header::COOKIE, cookies.join("; "));
        }
        self.router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn get(&self, path: &str, cookies: &[&str]) -> axum::response::Response {
        self.send(Request::get(path), cookies).await
    }

    async fn post(&self, path: &str, cookies: &[&str]) -> axum::response::Response {
        let req = Request::post(path)
            .header(header::ORIGIN, PUBLIC)
            .header("sec-fetch-site", "same-origin");
        self.send(req, cookies).await
    }

    /// `GET /auth/login`: the provider URL to go to and the login cookie.
    async fn begin(&self, return_to: &str) -> (String, String) {
        let res = self
            .get(
                &format!("/auth/login?return_to={}", urlencode(return_to)),
                &[],
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "{}",
            body_text(res).await
        );
        let cookie = set_cookie(&res, "portcullis_login").expect("a login cookie");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        (location(&res), pair(&cookie))
    }

    async fn audit(&self) -> Vec<(String, String)> {
        let mut conn = self.store.conn().await.unwrap();
        store::query_audit(
            &mut conn,
            &store::AuditQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action, a.detail))
        .collect()
    }

    async fn users(&self) -> Vec<app::domain::Principal> {
        let mut conn = self.store.conn().await.unwrap();
        store::all_users(&mut conn).await.unwrap()
    }

    async fn principal(&self, session: &str) -> app::domain::Principal {
        let token = session.split_once('=').unwrap().1;
        let mut conn = self.store.conn().await.unwrap();
        store::find_session(
            &mut conn,
            token,
            SystemClock.now(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap()
        .expect("a live session")
        .0
    }
}

/// A parameter of a URL's query, as it appears there.
fn query_param(url: &str, name: &str) -> String {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
        .to_owned()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A browser at the provider: keeps the provider's cookies, follows its redirects, fills
/// in its login form, and stops at the redirect back to the portal.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (k, val) = v.split(';').next().unwrap().split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") || v.contains("expires=Thu, 01 Jan 1970") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    /// Follows `url` at the provider, signing in as `login` if asked, until the provider
    /// sends the browser to the portal; returns that portal path (with its query).
    async fn follow_to_portal(&mut self, mut url: String, login: &str, password: &str) -> String {
        for _ in 0..20 {
            if let Some(path) = url.strip_prefix(PUBLIC) {
                return path.to_owned();
            }
            let res = self
                .http
                .get(&url)
                .header("cookie", self.cookie_header())
                .send()
                .await
                .unwrap();
            self.keep(&res);
            let base = res.url().clone();
            if res.status().is_redirection() {
                let to = res.headers()["location"].to_str().unwrap();
                url = base.join(to).unwrap().to_string();
                continue;
            }
            let body = res.text().await.unwrap();
            let action = body
                .split("action=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_else(|| panic!("no form at {url}: {body}"))
                .to_owned();
            let res = self
                .http
                .post(base.join(&action).unwrap())
                .header("cookie", self.cookie_header())
                .form(&[("login", login), ("password", password)])
                .send()
                .await
                .unwrap();
            self.keep(&res);
            assert!(
                res.status().is_redirection(),
                "login as {login} failed: {}",
                res.status()
            );
            let to = res.headers()["location"].to_str().unwrap();
            url = base.join(to).unwrap().to_string();
        }
        panic!("too many redirects at the provider");
    }
}

/// Signs `login` in through the real provider; returns the callback response.
async fn sign_in(
    portal: &Portal,
    browser: &mut Browser,
    login: &str,
    return_to: &str,
    existing: Option<&str>,
) -> (axum::response::Response, String, String) {
    let (authorize, login_cookie) = portal.begin(return_to).await;
    let callback = browser
        .follow_to_portal(authorize, login, &format!("{login}-pw"))
        .await;
    assert!(callback.starts_with("/auth/callback?"), "{callback}");
    let mut cookies = vec![login_cookie.as_str()];
    if let Some(e) = existing {
        cookies.push(e);
    }
    let res = portal.get(&callback, &cookies).await;
    (res, callback, login_cookie)
}

fn session_of(res: &axum::response::Response) -> String {
    pair(&set_cookie(res, "portcullis_session").expect("a session cookie"))
}

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
