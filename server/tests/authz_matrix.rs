//! The authorization matrix: every server function and every route, called by every kind
//! of caller, with the status each must get, from one table. The server functions are
//! enumerated from the running registry and the pages from the app's route list, so a new
//! server function or page without a row here fails the test.
//!
//! Callers: anonymous; alice (the requester); erin (another employee, same group, no
//! relation to the request); carol (an approver, but not for the manager-approved
//! `prod-readonly`); bob (alice's manager, who approves it); dana (admin); and a session
//! made by demo mode presented to `serve`, which must count for nothing.

mod common;

use app::ssr::Portal;
use axum::body::Body;
use axum::http::{header, Request};
use common::web::{app_with, cookie_pair, serial, App, HOST};
use portcullis::clock::{Clock, SystemClock};
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    Anonymous,
    Requester,
    OtherEmployee,
    Approver,
    Manager,
    Admin,
    DemoSessionInServe,
}

use Caller::*;
const CALLERS: [Caller; 7] = [
    Anonymous,
    Requester,
    OtherEmployee,
    Approver,
    Manager,
    Admin,
    DemoSessionInServe,
];

/// What a call is about: made fresh for every call, so that one caller's success does not
/// change what the next one meets.
#[derive(Clone, Copy, Debug)]
enum Target {
    Nothing,
    /// A pending `prod-readonly` request of alice's (approved by her manager).
    PendingRequest,
    /// An approved `sandbox-admin` grant of alice's.
    Grant,
    Fixed(&'static str),
}

const OK: u16 = 200;
const SIGN_IN: u16 = 303;
const BAD_REQUEST: u16 = 400;
const UNAUTH: u16 = 401;
const FORBIDDEN: u16 = 403;
const NOT_FOUND: u16 = 404;
const CONFLICT: u16 = 409;

/// Statuses for [Anonymous, Requester, OtherEmployee, Approver, Manager, Admin,
/// DemoSessionInServe].
type Row = [u16; 7];
const SIGNED_IN: Row = [UNAUTH, OK, OK, OK, OK, OK, UNAUTH];
const ADMIN_ONLY: Row = [
    UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, UNAUTH,
];

/// Server functions: (name, target, how the arguments are written, expected statuses).
fn server_functions() -> Vec<(&'static str, Target, &'static str, Row)> {
    vec![
        ("whoami", Target::Nothing, "", [OK; 7]),
        ("list_entitlements", Target::Nothing, "", SIGNED_IN),
        (
            "create_request",
            Target::Nothing,
            "entitlement=prod-readonly&justification=the+authorization+matrix&duration=1h",
            // Dana (admins only) and carol (security, cloud-approvers) are not in
            // engineering, which prod-readonly is for.
            [UNAUTH, OK, OK, FORBIDDEN, OK, FORBIDDEN, UNAUTH],
        ),
        (
            "create_bundle",
            Target::Nothing,
            // As a browser sends the form's checkboxes (`entitlements[{id}]=on`).
            "entitlements%5Bsandbox-admin%5D=on&entitlements%5Bprod-readonly%5D=on\
             &justification=the+authorization+matrix&duration=1h",
            [UNAUTH, OK, OK, FORBIDDEN, OK, FORBIDDEN, UNAUTH],
        ),
        ("load_my_access", Target::Nothing, "", SIGNED_IN),
        (
            "cancel_request",
            Target::PendingRequest,
            "request_id={}",
            [
                UNAUTH, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTH,
            ],
        ),
        (
            "end_grant",
            Target::Grant,
            "grant_id={}",
            [
                UNAUTH, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTH,
            ],
        ),
        // Only the holder; hers is not active yet (no worker runs here): a conflict.
        (
            "extend_grant",
            Target::Grant,
            "grant_id={}&justification=more+time&duration=30m",
            [
                UNAUTH, CONFLICT, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTH,
            ],
        ),
        ("approval_queue", Target::Nothing, "", SIGNED_IN),
        // Its requester, its approver (her manager) and admins; anyone else is told it
        // does not exist.
        (
            "load_request",
            Target::PendingRequest,
            "request_id={}",
            [UNAUTH, OK, NOT_FOUND, NOT_FOUND, OK, OK, UNAUTH],
        ),
        (
            "decide",
            Target::PendingRequest,
            "request_id={}&verdict=approve&comment=matrix",
            [
                UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, FORBIDDEN, UNAUTH,
            ],
        ),
        ("load_admin_overview", Target::Nothing, "", ADMIN_ONLY),
        ("load_admin_entitlements", Target::Nothing, "", ADMIN_ONLY),
        ("load_dashboard", Target::Nothing, "", ADMIN_ONLY),
        ("load_access", Target::Nothing, "", ADMIN_ONLY),
        // Admins only, before the definition is read: an admin is told it is not one.
        (
            "what_if",
            Target::Nothing,
            "definition=x",
            [
                UNAUTH,
                FORBIDDEN,
                FORBIDDEN,
                FORBIDDEN,
                FORBIDDEN,
                BAD_REQUEST,
                UNAUTH,
            ],
        ),
        ("revoke_grant", Target::Grant, "grant_id={}", ADMIN_ONLY),
        // Admins only; no break-glass use has this id.
        (
            "review_break_glass",
            Target::Fixed("00000000000000000000000000000000"),
            "request_id={}&comment=checked",
            [
                UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH,
            ],
        ),
        ("audit_log", Target::Nothing, "", ADMIN_ONLY),
        ("aws_assignments", Target::Nothing, "", ADMIN_ONLY),
        ("load_aws_overview", Target::Nothing, "", ADMIN_ONLY),
        (
            "run_upkeep",
            Target::Fixed("reconcile"),
            "what={}",
            ADMIN_ONLY,
        ),
        (
            "resend_mail",
            Target::Fixed("00000000-0000-0000-0000-000000000000"),
            "mail_id={}",
            [
                UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH,
            ],
        ),
        // Demo mode shows everyone their own mail.
        ("mail_outbox", Target::Nothing, "", SIGNED_IN),
    ]
}

/// Pages (GET): anonymous callers are sent to sign in; a page a caller may not use renders
/// its refusal inside (the data behind it is refused by its server function, above).
/// `{id}` in a path is a fresh pending request of alice's.
fn pages() -> Vec<(&'static str, Row)> {
    let any = [SIGN_IN, OK, OK, OK, OK, OK, SIGN_IN];
    vec![
        ("/", any),
        ("/requests", any),
        (
            "/requests/{id}",
            [SIGN_IN, OK, NOT_FOUND, NOT_FOUND, OK, OK, SIGN_IN],
        ),
        ("/approvals", any),
        ("/admin", any),
        ("/admin/audit", any),
        ("/admin/aws", any),
        ("/admin/entitlements", any),
        ("/admin/access", any),
        ("/outbox", any),
    ]
}

/// The routes outside the app, with their method.
fn routes() -> Vec<(&'static str, &'static str, Row)> {
    vec![
        ("GET", "/healthz", [OK; 7]),
        (
            "GET",
            "/admin/audit.csv",
            [
                SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, SIGN_IN,
            ],
        ),
        (
            "GET",
            "/admin/access.csv",
            [
                SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, SIGN_IN,
            ],
        ),
        ("GET", "/auth/signed-out", [OK; 7]),
        // Demo mode: the persona page; `serve` has no such route.
        ("GET", "/demo/login", [OK, OK, OK, OK, OK, OK, NOT_FOUND]),
        // Sign-out works for anyone (it ends whatever session there is).
        ("POST", "/auth/logout", [SIGN_IN; 7]),
        // (Last: they end the sessions.)
        ("POST", "/auth/logout-everywhere", [SIGN_IN; 7]),
    ]
}

struct Fixture {
    app: App,
    /// A router in `serve` mode on the same database.
    serve: axum::Router,
    cookies: Vec<(Caller, Option<String>)>,
}

impl Fixture {
    async fn new() -> Self {
        let mut config = portcullis::config::Config::default();
        config.http.new_requests_per_hour = 100_000;
        let app = app_with(config.clone(), true).await;
        let (serve, _) = common::web::router(&app.store, config, false, None);
        let mut cookies = vec![(Anonymous, None)];
        for (caller, persona) in [
            (Requester, "alice"),
            (Approver, "carol"),
            (Manager, "bob"),
            (Admin, "dana"),
            (DemoSessionInServe, "dana"),
        ] {
            let (set_cookie, _) = app.sign_in(persona, "/", None).await;
            cookies.push((caller, Some(cookie_pair(&set_cookie))));
        }
        // Erin: in engineering like alice, nobody's manager or approver.
        // Demo mode takes only `demo|` people.
        let erin = app::domain::Principal {
            user_id: "demo|erin".into(),
            ..common::extra_person("erin", &["engineering"])
        };
        let now = SystemClock.now();
        let mut conn = app.store.conn().await.unwrap();
        portcullis::store::upsert_user(&mut conn, &erin, now)
            .await
            .unwrap();
        portcullis::store::create_session(
            &mut conn,
            "erins-session",
            &erin.user_id,
            true,
            now,
            now.plus(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
        cookies.push((
            OtherEmployee,
            Some("portcullis_session=erins-session".into()),
        ));
        Fixture {
            app,
            serve,
            cookies,
        }
    }

    fn cookie(&self, caller: Caller) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(c, _)| *c == caller)
            .and_then(|(_, v)| v.as_deref())
    }

    async fn target(&self, target: Target) -> String {
        let alice = common::person("alice");
        let p = &self.app.portal;
        match target {
            Target::Nothing => String::new(),
            Target::Fixed(v) => v.to_owned(),
            Target::PendingRequest => p
                .create_request(&alice, "prod-readonly", common::draft("1h"))
                .await
                .unwrap(),
            Target::Grant => {
                let rid = p
                    .create_request(&alice, "sandbox-admin", common::draft("1h"))
                    .await
                    .unwrap();
                let mut conn = self.app.store.conn().await.unwrap();
                sqlx::query_as::<_, (String,)>(
                    "SELECT access_grant_id FROM access_grant WHERE access_request_id = $1",
                )
                .bind(&rid)
                .fetch_one(&mut *conn)
                .await
                .unwrap()
                .0
            }
        }
    }

    async fn send(&self, caller: Caller, method: &str, path: &str, body: String) -> u16 {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, &self.app.origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = self.cookie(caller) {
            req = req.header(header::COOKIE, c);
        }
        let req = req.body(Body::from(body)).unwrap();
        let router = if caller == DemoSessionInServe {
            self.serve.clone()
        } else {
            self.app.router.clone()
        };
        use tower::ServiceExt;
        router.oneshot(req).await.unwrap().status().as_u16()
    }
}

#[tokio::test]
async fn every_server_function_and_route_for_every_caller() {
    let _serial = serial().await;
    let f = Fixture::new().await;

    // Every registered server function has a row, and every row a function.
    let registered: BTreeSet<(String, String)> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, method)| (path.to_owned(), method.to_string()))
        .collect();
    let table = server_functions();
    let name_of = |path: &str| -> String {
        path.trim_start_matches("/api/")
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_owned()
    };
    let names: BTreeSet<String> = registered.iter().map(|(p, _)| name_of(p)).collect();
    let rows: BTreeSet<String> = table.iter().map(|r| r.0.to_owned()).collect();
    assert_eq!(
        names, rows,
        "every server function needs a row in the authorization matrix (and no row may \
         name one that does not exist)"
    );
    let pages_in_app: BTreeSet<String> = leptos_axum::generate_route_list(app::App)
        .iter()
        .map(|r| r.path().to_owned())
        .collect();
    let page_rows: BTreeSet<String> = pages().iter().map(|p| p.0.to_owned()).collect();
    assert_eq!(pages_in_app, page_rows, "every page needs a row");

    let mut wrong = Vec::new();
    for (name, target, args, expected) in &table {
        let (path, method) = registered
            .iter()
            .find(|(p, _)| name_of(p) == *name)
            .unwrap();
        for (i, caller) in CALLERS.iter().enumerate() {
            let value = f.target(*target).await;
            let body = args.replace("{}", &value);
            let got = f.send(*caller, method, path, body).await;
            if got != expected[i] {
                wrong.push(format!(
                    "{name} as {caller:?}: {got}, expected {}",
                    expected[i]
                ));
            }
        }
    }
    for (path, expected) in pages() {
        for (i, caller) in CALLERS.iter().enumerate() {
            let path = if path.contains("{id}") {
                path.replace("{id}", &f.target(Target::PendingRequest).await)
            } else {
                path.to_owned()
            };
            let got = f.send(*caller, "GET", &path, String::new()).await;
            if got != expected[i] {
                wrong.push(format!(
                    "page {path} as {caller:?}: {got}, expected {}",
                    expected[i]
                ));
            }
        }
    }
    for (method, path, expected) in routes() {
        for (i, caller) in CALLERS.iter().enumerate() {
            let got = f.send(*caller, method, path, String::new()).await;
            if got != expected[i] {
                wrong.push(format!(
                    "{method} {path} as {caller:?}: {got}, expected {}",
                    expected[i]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
