//! The OpenID Connect test peer and the portal around it, for `oidc.rs` (sign-in through
//! the real `oidc-provider`) and `oidc_tokens.rs` (ID tokens from our own signer): the
//! provider process with fixture users, the portal's router in-process with captured
//! logs, and a browser driven by hand (cookies kept, redirects followed one at a time).

#![allow(dead_code)]

use crate::common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::peers::{free_port, Peer};
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
pub const PUBLIC: &str = "http://127.0.0.1:3000";
pub const CLIENT_ID: &str = "portcullis";
pub const CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef";

// ------------------------------------------------------------------ the real provider

pub struct Provider {
    pub child: Peer,
    pub issuer: String,
    pub accounts: PathBuf,
    pub _dir: tempfile::TempDir,
}

pub fn fixture_accounts() -> Value {
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
    pub async fn start() -> Provider {
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

    pub fn set_groups(&self, login: &str, groups: &[&str]) {
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

pub struct Portal {
    pub router: Router,
    pub store: Store,
    pub portal: Arc<PortalService>,
    pub _dir: tempfile::TempDir,
}

pub fn oidc_config(issuer: &str) -> OidcConfig {
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

pub fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
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

pub struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub async fn start_portal(oidc: OidcConfig) -> Portal {
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

pub fn header_values(res: &axum::response::Response, name: header::HeaderName) -> Vec<String> {
    res.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

pub fn location(res: &axum::response::Response) -> String {
    header_values(res, header::LOCATION)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// `name=value` of the Set-Cookie for `name`, if any.
pub fn set_cookie(res: &axum::response::Response, name: &str) -> Option<String> {
    header_values(res, header::SET_COOKIE)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

pub fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

pub async fn body_text(res: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Portal {
    /// Sends a request with no body, with `cookies` if any.
    pub async fn send(
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

    pub async fn get(&self, path: &str, cookies: &[&str]) -> axum::response::Response {
        self.send(Request::get(path), cookies).await
    }

    pub async fn post(&self, path: &str, cookies: &[&str]) -> axum::response::Response {
        let req = Request::post(path)
            .header(header::ORIGIN, PUBLIC)
            .header("sec-fetch-site", "same-origin");
        self.send(req, cookies).await
    }

    /// `GET /auth/login`: the provider URL to go to and the login cookie.
    pub async fn begin(&self, return_to: &str) -> (String, String) {
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

    pub async fn audit(&self) -> Vec<(String, String)> {
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

    pub async fn users(&self) -> Vec<app::domain::Principal> {
        let mut conn = self.store.conn().await.unwrap();
        store::all_users(&mut conn).await.unwrap()
    }

    pub async fn principal(&self, session: &str) -> app::domain::Principal {
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
pub fn query_param(url: &str, name: &str) -> String {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
        .to_owned()
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A browser at the provider: keeps the provider's cookies, follows its redirects, fills
/// in its login form, and stops at the redirect back to the portal.
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: HashMap<String, String>,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn keep(&mut self, res: &reqwest::Response) {
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
    pub async fn follow_to_portal(
        &mut self,
        mut url: String,
        login: &str,
        password: &str,
    ) -> String {
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
pub async fn sign_in(
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

pub fn session_of(res: &axum::response::Response) -> String {
    pair(&set_cookie(res, "portcullis_session").expect("a session cookie"))
}
