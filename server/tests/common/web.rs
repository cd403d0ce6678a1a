//! The portal's HTTP router for tests, wired as `portcullis::run` wires it: the simulated
//! provisioner (10 ms per operation), the system clock, `target/site` for assets; and
//! [`App`], a demo-mode portal on a fresh SQLite database driven request by request.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::Config;
use portcullis::oidc::Oidc;
use portcullis::portal::PortalService;
use portcullis::provisioner::simulated::SimulatedProvisioner;
use portcullis::seed;
use portcullis::store::Store;
use portcullis::store::{self, DatabaseUrl};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub fn router(
    store: &Store,
    config: Config,
    demo: bool,
    oidc: Option<Arc<Oidc>>,
) -> (axum::Router, Arc<PortalService>) {
    router_with_worker(store, config, demo, oidc, None)
}

/// [`router`] with a worker heartbeat for `/readyz` to watch.
pub fn router_with_worker(
    store: &Store,
    config: Config,
    demo: bool,
    oidc: Option<Arc<Oidc>>,
    worker_heartbeat: Option<Arc<std::sync::atomic::AtomicI64>>,
) -> (axum::Router, Arc<PortalService>) {
    wired(
        store,
        config,
        demo,
        oidc,
        worker_heartbeat,
        Default::default(),
    )
}

/// [`router`] counting its answers and sign-ins in `metrics`.
pub fn router_with_metrics(
    store: &Store,
    config: Config,
    demo: bool,
    metrics: Arc<portcullis::metrics::Metrics>,
) -> (axum::Router, Arc<PortalService>) {
    wired(store, config, demo, None, None, metrics)
}

fn wired(
    store: &Store,
    config: Config,
    demo: bool,
    oidc: Option<Arc<Oidc>>,
    worker_heartbeat: Option<Arc<std::sync::atomic::AtomicI64>>,
    metrics: Arc<portcullis::metrics::Metrics>,
) -> (axum::Router, Arc<PortalService>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let portal = Arc::new(PortalService {
        store: store.clone(),
        clock: clock.clone(),
        provisioner: Arc::new(SimulatedProvisioner::new(
            store.clone(),
            clock.clone(),
            Duration::from_millis(10),
        )),
        wake: Arc::new(tokio::sync::Notify::new()),
        upkeep_wake: Default::default(),
        min_duration: Duration::from_secs(60),
        start_horizon: portcullis::config::DEFAULT_START_HORIZON,
        new_requests_per_hour: config.http.new_requests_per_hour,
        metrics: Default::default(),
        public_url: config.public_url(),
    });
    // A test that names a site directory gets it; the others none.
    let site = Arc::new(match &config.site_root {
        Some(dir) => portcullis::http::Site::load(Some(dir)).expect("the test's site"),
        None => portcullis::http::Site::empty(),
    });
    let leptos_options = leptos::prelude::LeptosOptions::builder()
        .output_name(site.output_name())
        .site_root("target/site")
        .site_pkg_dir("pkg")
        .build();
    let router = portcullis::http::router(portcullis::http::AppState {
        leptos_options,
        site,
        store: store.clone(),
        clock,
        portal: portal.clone(),
        limits: Arc::new(portcullis::http::Limits::new(&config.http)),
        config: Arc::new(config),
        demo,
        oidc,
        worker_heartbeat,
        metrics,
    });
    (router, portal)
}

pub struct App {
    pub router: Router,
    /// The use cases behind the router (for setting up what a test needs).
    pub portal: Arc<PortalService>,
    pub store: Store,
    /// The Origin a browser on the portal's public URL sends.
    pub origin: String,
    pub _dir: tempfile::TempDir,
}

/// The tests in this file run one at a time. Each `#[tokio::test]` owns a runtime and an
/// app; when several rendered pages at once, about one run in twenty left a page render
/// waiting forever inside Leptos as another test's runtime shut down (a CI run hung for 80
/// minutes). Production has one runtime and one app: `concurrent_page_renders_all_complete`
/// covers many renders at once there.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub async fn app_with(config: Config, migrate: bool) -> App {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
            .with_thread_names(true)
            .try_init();
    }
    let dir = tempfile::TempDir::new().unwrap();
    let url = DatabaseUrl::new(format!("sqlite://{}/h.db?mode=rwc", dir.path().display()));
    let store = Store::connect(&url, super::audit_key()).await.unwrap();
    if migrate {
        store.migrate().await.unwrap();
        seed::seed_demo(&store, SystemClock.now()).await.unwrap();
    }
    let origin = config.public_origin().unwrap();
    let (router, portal) = router(&store, config, true, None);
    App {
        router,
        portal,
        store,
        origin,
        _dir: dir,
    }
}

pub async fn app() -> App {
    app_with(Config::default(), true).await
}

pub const HOST: &str = "127.0.0.1:3000";
pub const ORIGIN: &str = "http://127.0.0.1:3000";

impl App {
    pub async fn send(&self, req: Request<Body>) -> axum::response::Response {
        self.router.clone().oneshot(req).await.unwrap()
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> axum::response::Response {
        let mut req = Request::get(path).header(header::HOST, HOST);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// Signs a persona in through the demo form; returns the Set-Cookie header and Location.
    pub async fn sign_in(
        &self,
        persona: &str,
        return_to: &str,
        cookie: Option<&str>,
    ) -> (String, String) {
        let mut req = Request::post("/demo/login")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, &self.origin)
            .header("sec-fetch-site", "same-origin")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let body = format!("persona={persona}&return_to={}", urlencode(return_to));
        let res = self.send(req.body(Body::from(body)).unwrap()).await;
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "sign-in should redirect"
        );
        let set_cookie = header_str(&res, header::SET_COOKIE.as_str());
        let location = header_str(&res, header::LOCATION.as_str());
        (set_cookie, location)
    }

    /// Calls a server function (its path) as the holder of `cookie`, from the portal's
    /// own origin: the status and the body as text.
    pub async fn call(&self, path: &str, body: String, cookie: &str) -> (StatusCode, String) {
        let req = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, &self.origin)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let res = self.send(req).await;
        let status = res.status();
        (status, body_text(res).await)
    }

    /// Makes every session's last sign-in two hours old (past the default
    /// `reauth_after_secs`).
    pub async fn age_sign_ins(&self) {
        let mut conn = self.store.conn().await.unwrap();
        sqlx::query("UPDATE web_session SET authenticated_at = authenticated_at - $1")
            .bind(2 * 3600 * 1000_i64)
            .execute(&mut *conn)
            .await
            .unwrap();
    }

    pub async fn count_rows(&self, table: &str) -> i64 {
        let mut conn = self.store.conn().await.unwrap();
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        n
    }

    pub async fn audit_actions(&self) -> Vec<String> {
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
        .map(|a| a.action)
        .collect()
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn body_text(res: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn header_str(res: &axum::response::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// `name=value` from a Set-Cookie header, for sending back.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}
