//! A request's own page (issue #12, item 8): every mail about a request links to
//! `/requests/{id}`, which shows its requester, the people who may decide it (or did) and
//! admins who asked and why, each decision, each grant and the audit trail, and to anyone
//! else answers as if it did not exist. Deciding there is the same `decide` as anywhere:
//! a signed-in approver with a recent sign-in, every check made again.
//! The use case runs on SQLite and PostgreSQL; the page and the fresh sign-in go through
//! the router in demo mode.

mod common;

use app::error::AppError;
use app::ssr::Portal;
use axum::http::StatusCode;
use common::web::{app, body_text, cookie_pair, header_str, serial, App};
use common::*;
use leptos::server_fn::ServerFn;
use std::time::Duration;

both!(the_page_shows_everything_to_the_parties_and_nothing_to_others,);

async fn the_page_shows_everything_to_the_parties_and_nothing_to_others(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, carol, dana) = (
        person("alice"),
        person("bob"),
        person("carol"),
        person("dana"),
    );
    let erin = extra_person("erin", &["engineering"]);
    env.upsert_user(&erin).await;
    let rid = env
        .portal
        .create_request(&alice, "prod-readonly", draft("1h"))
        .await
        .unwrap();
    let link = format!("{PUBLIC_URL}/requests/{rid}");

    // The approver's mail leads to the request itself.
    let asked = env.mail_to("bob@example.com").await;
    assert_eq!(asked.len(), 1);
    assert!(asked[0].body_text.contains(&link), "{}", asked[0].body_text);
    assert!(
        asked[0].body_html.contains(&format!("href=\"{link}\"")),
        "{}",
        asked[0].body_html
    );

    // The requester: everything, the way to cancel, who decides; no decision of theirs.
    let mine = env.portal.request_detail(&alice, &rid).await.unwrap();
    assert_eq!(mine.viewer, "requester");
    assert!(mine.may_cancel && !mine.may_decide);
    assert_eq!(mine.request.status, "pending");
    assert_eq!(
        mine.request.deciders.as_deref(),
        Some("Decided by your manager (bob@example.com)")
    );
    assert_eq!(actions(&mine), ["request.created"]);

    // The manager may decide it; an admin sees it but may not.
    let managers = env.portal.request_detail(&bob, &rid).await.unwrap();
    assert_eq!(managers.viewer, "approver");
    assert!(managers.may_decide && !managers.may_cancel);
    // Exactly what approving grants, as on the approval card.
    let target = &managers.request.targets[0];
    assert_eq!(target.permission_set, "ReadOnlyAccess");
    assert!(target.scope.contains("333333333333"), "{}", target.scope);
    assert!(
        target
            .tail
            .as_deref()
            .is_some_and(|t| t.contains("can stay open 4h after it")),
        "{target:?}"
    );
    assert!(managers
        .request
        .window
        .as_deref()
        .is_some_and(|w| w.ends_with("from approval")));
    assert_eq!(
        managers.request.deciders, None,
        "worded for the requester only"
    );
    let admins = env.portal.request_detail(&dana, &rid).await.unwrap();
    assert_eq!(admins.viewer, "admin");
    assert!(!admins.may_decide && !admins.may_cancel);

    // Anyone else, an approver of other entitlements included, is told it does not
    // exist: the same answer as for an id that does not, or one that is not an id.
    for stranger in [&carol, &erin] {
        let err = env.portal.request_detail(stranger, &rid).await.unwrap_err();
        assert_eq!(
            err,
            AppError::NotFound("That request".into()),
            "{}",
            stranger.user_id
        );
    }
    for bad in [
        "0193a5b0-0000-7000-8000-000000000000",
        "not-an-id",
        "../admin",
    ] {
        let err = env.portal.request_detail(&bob, bad).await.unwrap_err();
        assert_eq!(err, AppError::NotFound("That request".into()), "{bad}");
    }

    // Carol tries to decide it anyway: refused and audited, which admins see on the page
    // and the requester does not.
    assert!(matches!(
        env.portal.decide(&carol, &rid, true, "not mine").await,
        Err(AppError::Forbidden(_))
    ));
    env.portal
        .decide(&bob, &rid, true, "fine by me")
        .await
        .unwrap();
    env.settle(&env.worker()).await;

    let after = env.portal.request_detail(&bob, &rid).await.unwrap();
    assert_eq!(after.viewer, "approver", "who decided it still sees it");
    assert!(!after.may_decide, "decided once");
    assert_eq!(after.request.status, "active");
    let d = &after.request.decisions;
    assert_eq!(d.len(), 1);
    assert_eq!(
        (
            d[0].approver.as_str(),
            d[0].verdict.as_str(),
            d[0].comment.as_str()
        ),
        ("Bob Manager", "approved", "fine by me")
    );
    let grants = env.grants(&rid).await;
    assert!(!grants.is_empty());
    assert_eq!(after.grants.len(), grants.len());
    assert!(
        after.grants.iter().all(|g| g.status == "active"),
        "{:?}",
        after.grants
    );

    let requester_sees = actions(&env.portal.request_detail(&alice, &rid).await.unwrap());
    let admin_sees = actions(&env.portal.request_detail(&dana, &rid).await.unwrap());
    for a in ["request.created", "request.approved", "grant.activated"] {
        assert!(
            requester_sees.iter().any(|x| x == a),
            "{a}: {requester_sees:?}"
        );
    }
    assert!(
        !requester_sees.iter().any(|x| x.starts_with("denied.")),
        "{requester_sees:?}"
    );
    assert!(
        admin_sees.iter().any(|x| x == "denied.decide"),
        "{admin_sees:?}"
    );
    assert_eq!(
        admin_sees.len(),
        requester_sees.len() + 1,
        "{admin_sees:?} / {requester_sees:?}"
    );
    let seqs: Vec<i64> = env
        .portal
        .request_detail(&dana, &rid)
        .await
        .unwrap()
        .history
        .iter()
        .map(|a| a.seq)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );

    // The requester's mail about the approval leads to the same page.
    let told = env.mail_to("alice@example.com").await;
    let approved = told
        .iter()
        .find(|m| m.subject.starts_with("Request approved"))
        .expect("approval mail");
    assert!(approved.body_text.contains(&link), "{}", approved.body_text);

    // Still the page of its parties once it is over.
    env.advance(Duration::from_secs(2 * 3600));
    env.settle(&env.worker()).await;
    let ended = env.portal.request_detail(&alice, &rid).await.unwrap();
    assert!(
        ended.grants.iter().all(|g| g.status == "revoked"),
        "{:?}",
        ended.grants
    );
    assert!(!ended.may_cancel);
    assert!(actions(&ended).iter().any(|a| a == "grant.revoked"));
}

fn actions(d: &app::views::RequestDetail) -> Vec<String> {
    d.history.iter().map(|a| a.action.clone()).collect()
}

async fn session(app: &App, persona: &str) -> String {
    let (set_cookie, _) = app.sign_in(persona, "/", None).await;
    cookie_pair(&set_cookie)
}

/// Through the router: the page renders for its parties (404 for anyone else, sign-in
/// first for nobody signed in), offers the fresh sign-in before an approver whose sign-in
/// is old writes anything, refuses such a decision, and takes it once they signed in again.
#[tokio::test]
async fn deciding_from_the_page_needs_a_recent_sign_in() {
    let _serial = serial().await;
    let app = app().await;
    let alice = session(&app, "alice").await;
    let bob = session(&app, "bob").await;
    let carol = session(&app, "carol").await;
    let create = <app::api::CreateRequest as ServerFn>::PATH;
    let load = <app::api::LoadRequest as ServerFn>::PATH;
    let decide = <app::api::Decide as ServerFn>::PATH;
    let (status, id) = app
        .call(
            create,
            "entitlement=prod-readonly&justification=look+at+the+logs+of+incident+7&duration=1h"
                .into(),
            &alice,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{id}");
    let id: String = serde_json::from_str(&id).unwrap();
    let page = format!("/requests/{id}");

    let res = app.get(&page, Some(&bob)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body_text(res).await;
    assert!(html.contains("look at the logs of incident 7"), "{html}");
    assert!(html.contains("data-testid=\"decide-here\""), "{html}");

    let res = app.get(&page, Some(&carol)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let html = body_text(res).await;
    assert!(!html.contains("incident 7"), "nothing of it shows");
    assert!(html.contains("That request was not found."), "{html}");

    let res = app.get(&page, None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        header_str(&res, "location").ends_with(&format!("return_to=/requests/{id}")),
        "{}",
        header_str(&res, "location")
    );

    // An old sign-in: the page says so up front, and the decision is refused.
    app.age_sign_ins().await;
    let (status, body) = app.call(load, format!("request_id={id}"), &bob).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let detail: app::views::RequestDetail = serde_json::from_str(&body).unwrap();
    assert!(detail.may_decide && detail.reauth_needed);
    let html = body_text(app.get(&page, Some(&bob)).await).await;
    assert!(
        html.contains(&format!("href=\"/auth/reauth?return_to=/requests/{id}\"")),
        "{html}"
    );
    let decisions = app.count_rows("decision").await;
    let (status, _) = app
        .call(
            decide,
            format!("request_id={id}&verdict=approve&comment=ok"),
            &bob,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.count_rows("decision").await,
        decisions,
        "nothing decided"
    );

    // Signed in again: the page no longer asks, and the decision goes through.
    let bob = session(&app, "bob").await;
    let (_, body) = app.call(load, format!("request_id={id}"), &bob).await;
    let detail: app::views::RequestDetail = serde_json::from_str(&body).unwrap();
    assert!(detail.may_decide && !detail.reauth_needed);
    let (status, body) = app
        .call(
            decide,
            format!("request_id={id}&verdict=approve&comment=ok"),
            &bob,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = app.call(load, format!("request_id={id}"), &alice).await;
    let detail: app::views::RequestDetail = serde_json::from_str(&body).unwrap();
    assert_eq!(detail.request.status, "approved");
    assert!(
        !detail.reauth_needed,
        "never asked of someone who may not decide"
    );
}
