//! Break-glass with review (issue #12, item 6): a use is granted at once, alerts the
//! admins, and waits in a review queue until an admin who is not the user acknowledges it
//! with a comment; a use still unreviewed after `review_within_secs` is escalated to
//! every admin. Both run on SQLite and PostgreSQL.

mod common;

use app::domain::Policy;
use app::error::AppError;
use app::ssr::Portal;
use common::*;
use portcullis::seed::{PRODUCTION, PS_AUDIT};
use std::time::Duration;

both!(
    a_use_waits_for_a_review_by_another_admin,
    an_unreviewed_use_is_escalated_to_every_admin,
    a_use_cancelled_before_its_start_needs_no_review,
);

/// Break-glass asked to start later and cancelled before: nothing to review, nobody told
/// a day later.
async fn a_use_cancelled_before_its_start_needs_no_review(b: Backend) {
    let env = TestEnv::new(b).await;
    let w = env.worker();
    let (alice, dana) = (person("alice"), person("dana"));
    let later = app::domain::RequestDraft {
        starts: "2h".into(),
        ..draft("30m")
    };
    let rid = env
        .portal
        .create_request(&alice, "prod-breakglass", later)
        .await
        .unwrap();
    assert_eq!(
        env.portal
            .admin_overview(&dana, Default::default())
            .await
            .unwrap()
            .break_glass
            .len(),
        1
    );
    env.portal.cancel_request(&alice, &rid).await.unwrap();
    assert!(env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap()
        .break_glass
        .is_empty());
    env.run_until(&w, T0.millis() + 25 * HOUR_MS, Duration::from_secs(3600))
        .await;
    assert!(env
        .audit_with("break_glass.review_overdue")
        .await
        .is_empty());
}

async fn a_use_waits_for_a_review_by_another_admin(b: Backend) {
    let env = TestEnv::new(b).await;
    let w = env.worker();
    let (alice, carol, dana) = (person("alice"), person("carol"), person("dana"));
    let rid = env
        .portal
        .create_request(&alice, "prod-breakglass", draft("30m"))
        .await
        .unwrap();
    env.settle(&w).await;
    assert_eq!(env.request_status(&rid).await, "active", "granted at once");
    let overview = env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap();
    assert_eq!(overview.break_glass.len(), 1);
    let use_ = &overview.break_glass[0];
    assert_eq!(
        (
            use_.request_id.as_str(),
            use_.requester.as_str(),
            use_.overdue
        ),
        (rid.as_str(), "Alice Employee", false)
    );
    assert!(
        overview.alerts.iter().all(|a| a.kind != "break_glass"),
        "listed for review, not among the other alerts"
    );
    assert!(env
        .mail_subjects("dana@example.com")
        .await
        .iter()
        .any(|s| s.starts_with("Break-glass used")));

    // Not an admin: refused (audited). An empty comment: refused by field. Nothing changes.
    assert!(matches!(
        env.portal.review_break_glass(&carol, &rid, "fine").await,
        Err(AppError::Forbidden(_))
    ));
    let err = env
        .portal
        .review_break_glass(&dana, &rid, "  ")
        .await
        .unwrap_err();
    assert_eq!(
        err.field("comment").as_deref(),
        Some("say what you checked: a review needs a comment")
    );
    assert_eq!(err.field("for").as_deref(), Some(rid.as_str()));
    assert_eq!(
        env.portal
            .admin_overview(&dana, Default::default())
            .await
            .unwrap()
            .break_glass
            .len(),
        1
    );

    env.portal
        .review_break_glass(&dana, &rid, "INC-77 confirmed with the on-call lead")
        .await
        .unwrap();
    assert!(env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap()
        .break_glass
        .is_empty());
    let reviewed = env.audit_with("break_glass.reviewed").await;
    assert_eq!(reviewed.len(), 1);
    assert_eq!(reviewed[0].actor_id, dana.user_id);
    assert_eq!(
        reviewed[0].detail,
        "reviewed: INC-77 confirmed with the on-call lead"
    );
    assert_eq!(
        env.portal.review_break_glass(&dana, &rid, "again").await,
        Err(AppError::Conflict(
            "This break-glass use was already reviewed.".into()
        ))
    );
    // The request's page shows the review in its history.
    let page = env.portal.request_detail(&alice, &rid).await.unwrap();
    assert!(page
        .history
        .iter()
        .any(|a| a.action == "break_glass.reviewed"));
    // No escalation once reviewed.
    env.advance(Duration::from_secs(25 * 3600));
    env.settle(&w).await;
    assert!(env
        .audit_with("break_glass.review_overdue")
        .await
        .is_empty());

    // An admin's own use: another admin reviews it, never they themselves.
    let erin = common::extra_person("erin", &["portcullis-admins"]);
    let erin = app::domain::Principal {
        is_admin: true,
        ..erin
    };
    env.upsert_user(&erin).await;
    let admins_glass = Policy {
        eligible_groups: vec!["portcullis-admins".into()],
        break_glass: true,
        ..policy()
    };
    env.add_entitlement(&entitlement(
        "admin-glass",
        PRODUCTION,
        PS_AUDIT,
        admins_glass,
    ))
    .await;
    let own = env
        .portal
        .create_request(&dana, "admin-glass", draft("30m"))
        .await
        .unwrap();
    let err = env
        .portal
        .review_break_glass(&dana, &own, "looks fine to me")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AppError::Forbidden("you cannot review your own break-glass use".into())
    );
    env.portal
        .review_break_glass(&erin, &own, "checked with Dana")
        .await
        .unwrap();
}

async fn an_unreviewed_use_is_escalated_to_every_admin(b: Backend) {
    let env = TestEnv::new(b).await;
    let w = env.worker();
    let (alice, dana) = (person("alice"), person("dana"));
    let rid = env
        .portal
        .create_request(&alice, "prod-breakglass", draft("30m"))
        .await
        .unwrap();
    env.run_until(
        &w,
        T0.millis() + 24 * HOUR_MS - 60_000,
        Duration::from_secs(1800),
    )
    .await;
    let subject =
        "Break-glass use not reviewed: Break-glass production administrator by Alice Employee";
    assert!(!env
        .mail_subjects("dana@example.com")
        .await
        .iter()
        .any(|s| s == subject));
    assert!(
        !env.portal
            .admin_overview(&dana, Default::default())
            .await
            .unwrap()
            .break_glass[0]
            .overdue
    );

    env.set_time(T0.millis() + 24 * HOUR_MS);
    env.settle(&w).await;
    assert!(
        env.mail_subjects("dana@example.com")
            .await
            .iter()
            .any(|s| s == subject),
        "{:?}",
        env.mail_subjects("dana@example.com").await
    );
    assert_eq!(env.audit_with("break_glass.review_overdue").await.len(), 1);
    let overview = env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap();
    assert!(overview.break_glass[0].overdue, "still waiting, flagged");
    assert_eq!(overview.break_glass[0].request_id, rid);
}
