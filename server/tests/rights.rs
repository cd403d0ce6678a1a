//! Rights that come from the last sign-in are checked again where it matters: approvals
//! are counted at completion against the approvers' current rights (both backends), admins'
//! sessions end sooner, "End all my sessions" ends every one, and deciding or revoking
//! needs a recent sign-in (demo mode through the router; the provider's `max_age` is in
//! `oidc.rs`).

mod common;

use app::domain::{ApproverRule, Policy};
use app::ssr::Portal;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::web::{app, cookie_pair, header_str, serial, App, HOST};
use common::*;
use leptos::server_fn::ServerFn;
use portcullis::seed::{PRODUCTION, PS_ADMIN};

both!(an_approval_counts_only_while_its_approver_keeps_the_right,);

/// Two approvals needed from `cloud-approvers`: erin approves, then loses the group (her
/// next sign-in says so). Carol's approval is then the first that counts: the request
/// stays pending until a third approver agrees.
async fn an_approval_counts_only_while_its_approver_keeps_the_right(b: Backend) {
    let env = TestEnv::new(b).await;
    let erin = extra_person("erin", &["cloud-approvers"]);
    let frank = extra_person("frank", &["cloud-approvers"]);
    env.upsert_user(&erin).await;
    env.upsert_user(&frank).await;
    let two = Policy {
        approvers: ApproverRule {
            groups: vec!["cloud-approvers".into()],
            ..Default::default()
        },
        approvals_required: 2,
        ..policy()
    };
    env.add_entitlement(&entitlement("two", PRODUCTION, PS_ADMIN, two))
        .await;
    let (alice, carol) = (person("alice"), person("carol"));
    let rid = env
        .portal
        .create_request(&alice, "two", draft("1h"))
        .await
        .unwrap();
    env.portal.decide(&erin, &rid, true, "one").await.unwrap();
    assert_eq!(env.request_status(&rid).await, "pending");

    // Erin leaves the approver group.
    env.upsert_user(&extra_person("erin", &["engineering"]))
        .await;
    env.portal.decide(&carol, &rid, true, "two").await.unwrap();
    assert_eq!(
        env.request_status(&rid).await,
        "pending",
        "erin's approval no longer counts"
    );
    assert!(env.grants(&rid).await.is_empty());

    env.portal
        .decide(&frank, &rid, true, "three")
        .await
        .unwrap();
    assert_eq!(env.request_status(&rid).await, "approved");
}

async fn sign_in(app: &App, persona: &str) -> (String, String) {
    let (set_cookie, _) = app.sign_in(persona, "/", None).await;
    (cookie_pair(&set_cookie), set_cookie)
}

fn max_age(set_cookie: &str) -> u64 {
    set_cookie
        .split(';')
        .find_map(|a| a.trim().strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn admins_sessions_end_sooner() {
    let _serial = serial().await;
    let app = app().await;
    let (_, alice) = sign_in(&app, "alice").await;
    let (dana_pair, dana) = sign_in(&app, "dana").await;
    assert_eq!(max_age(&alice), 24 * 3600);
    assert_eq!(max_age(&dana), 8 * 3600);
    // The server holds to it, whatever the browser keeps.
    let token = dana_pair.split_once('=').unwrap().1;
    let mut conn = app.store.conn().await.unwrap();
    let (created, expires): (i64, i64) =
        sqlx::query_as("SELECT created_at, expires_at FROM web_session WHERE session_hash = $1")
            .bind(portcullis::store::hash_token(token))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(expires - created, 8 * 3600 * 1000);
}

#[tokio::test]
async fn ending_all_my_sessions_ends_them_in_every_browser() {
    let _serial = serial().await;
    let app = app().await;
    let (first, _) = sign_in(&app, "alice").await;
    let (second, _) = sign_in(&app, "alice").await;
    let (bob, _) = sign_in(&app, "bob").await;
    for c in [&first, &second, &bob] {
        assert_eq!(app.get("/requests", Some(c)).await.status(), StatusCode::OK);
    }
    let req = Request::post("/auth/logout-everywhere")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, &app.origin)
        .header(header::COOKIE, &first)
        .body(Body::empty())
        .unwrap();
    let res = app.send(req).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(header_str(&res, "set-cookie").contains("Max-Age=0"));
    for c in [&first, &second] {
        assert_eq!(
            app.get("/requests", Some(c)).await.status(),
            StatusCode::SEE_OTHER,
            "alice's sessions are over"
        );
    }
    assert_eq!(
        app.get("/requests", Some(&bob)).await.status(),
        StatusCode::OK,
        "bob's is not"
    );
    assert!(app
        .audit_actions()
        .await
        .iter()
        .any(|a| a == "signout.everywhere"));
    // From another site it is refused like any other post.
    let (third, _) = sign_in(&app, "alice").await;
    let req = Request::post("/auth/logout-everywhere")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::COOKIE, &third)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/requests", Some(&third)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn deciding_and_revoking_need_a_recent_sign_in() {
    let _serial = serial().await;
    let app = app().await;
    let (alice, _) = sign_in(&app, "alice").await;
    let (bob, _) = sign_in(&app, "bob").await;
    let (dana, _) = sign_in(&app, "dana").await;
    let create = <app::api::CreateRequest as ServerFn>::PATH;
    let decide = <app::api::Decide as ServerFn>::PATH;
    let revoke = <app::api::RevokeGrant as ServerFn>::PATH;
    let (status, id) = app
        .call(
            create,
            "entitlement=prod-readonly&justification=needs+a+fresh+approver&duration=1h".into(),
            &alice,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{id}");
    let id: String = serde_json::from_str(&id).unwrap();

    app.age_sign_ins().await;
    let decisions = app.count_rows("decision").await;
    let (status, body) = app
        .call(
            decide,
            format!("request_id={id}&verdict=approve&comment="),
            &bob,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        serde_json::from_str::<app::error::AppError>(&body).unwrap(),
        app::error::AppError::ReauthRequired
    );
    assert_eq!(
        app.count_rows("decision").await,
        decisions,
        "nothing decided"
    );
    // Other actions do not ask for it.
    let list = <app::api::ApprovalQueue as ServerFn>::PATH;
    assert_eq!(app.call(list, String::new(), &bob).await.0, StatusCode::OK);
    // The page offers the fresh sign-in, which in demo mode is the persona page.
    let res = app.get("/auth/reauth?return_to=/approvals", None).await;
    assert_eq!(
        header_str(&res, "location"),
        "/demo/login?return_to=/approvals"
    );

    // Signed in again: the decision goes through.
    let (bob, _) = sign_in(&app, "bob").await;
    let (status, body) = app
        .call(
            decide,
            format!("request_id={id}&verdict=approve&comment="),
            &bob,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Revoking: the same rule for the admin.
    let grant_id: String = {
        let mut conn = app.store.conn().await.unwrap();
        sqlx::query_as::<_, (String,)>(
            "SELECT access_grant_id FROM access_grant WHERE access_request_id = $1",
        )
        .bind(&id)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .0
    };
    let (status, body) = app
        .call(revoke, format!("grant_id={grant_id}"), &dana)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (dana, _) = sign_in(&app, "dana").await;
    let (status, body) = app
        .call(revoke, format!("grant_id={grant_id}"), &dana)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
