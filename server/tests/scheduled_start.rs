//! A scheduled start (issue #12, item 4): access asked for later is provisioned at its
//! start and not before, lasts its full duration from then (or from the approval, when
//! that comes later), can be cancelled before it starts with nothing left behind, and a
//! start beyond `[policy] start_horizon` or in the past is refused by field. Every test
//! runs on SQLite and on PostgreSQL.

mod common;

use app::domain::RequestDraft;
use app::error::AppError;
use app::ssr::Portal;
use common::*;
use std::time::Duration;

both!(
    access_asked_for_later_starts_then_and_not_before,
    cancelling_before_the_start_leaves_nothing,
    an_approval_after_the_start_gives_the_full_duration,
    a_start_out_of_bounds_is_refused_and_changes_nothing,
);

fn later(duration: &str, starts: &str) -> RequestDraft {
    RequestDraft {
        starts: starts.into(),
        ..draft(duration)
    }
}

/// Sandbox administrator approves itself: asked at T0 to start in 2h for 1h.
async fn access_asked_for_later_starts_then_and_not_before(b: Backend) {
    let env = TestEnv::new(b).await;
    let w = env.worker();
    let alice = person("alice");
    let rid = env
        .portal
        .create_request(&alice, "sandbox-admin", later("1h", "2h"))
        .await
        .unwrap();
    assert_eq!(env.request_status(&rid).await, "approved");
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "scheduled");
    assert_eq!(g.starts_at.millis(), T0.millis() + 2 * HOUR_MS);
    assert_eq!(g.ends_at.millis(), T0.millis() + 3 * HOUR_MS);

    let mine = env.portal.my_access(&alice).await.unwrap();
    assert_eq!(mine.grants[0].starts_in.as_deref(), Some("2h"));
    let r = mine.requests.iter().find(|r| r.id == rid).unwrap();
    assert!(
        r.starts.as_deref().unwrap().ends_with("(in 2h)"),
        "{:?}",
        r.starts
    );
    let created = env.audit_with("request.created").await;
    assert!(
        created
            .iter()
            .any(|a| a.subject_id == rid
                && a.detail.starts_with("from 2027-01-15 10:00:00 UTC, for 1h")),
        "{created:?}"
    );

    // Nothing in AWS before the start.
    env.run_until(
        &w,
        T0.millis() + 2 * HOUR_MS - 60_000,
        Duration::from_secs(600),
    )
    .await;
    let before = env.grant(&g.access_grant_id).await;
    assert_eq!(before.status.as_str(), "scheduled");
    assert!(!env.assignment_exists(&before).await);

    env.set_time(T0.millis() + 2 * HOUR_MS);
    env.settle(&w).await;
    let on = env.grant(&g.access_grant_id).await;
    assert_eq!(on.status.as_str(), "active");
    assert!(env.assignment_exists(&on).await);
    assert_eq!(
        env.portal.my_access(&alice).await.unwrap().grants[0].starts_in,
        None
    );

    env.set_time(T0.millis() + 3 * HOUR_MS);
    env.settle(&w).await;
    let off = env.grant(&g.access_grant_id).await;
    assert_eq!(off.status.as_str(), "revoked");
    assert!(!env.assignment_exists(&off).await);
}

async fn cancelling_before_the_start_leaves_nothing(b: Backend) {
    let env = TestEnv::new(b).await;
    let w = env.worker();
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env
        .portal
        .create_request(&alice, "prod-readonly", later("1h", "1d"))
        .await
        .unwrap();
    env.portal
        .decide(&bob, &rid, true, "tomorrow then")
        .await
        .unwrap();
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "scheduled");

    env.advance(Duration::from_secs(3600));
    env.portal.cancel_request(&alice, &rid).await.unwrap();
    assert_eq!(env.request_status(&rid).await, "cancelled");
    assert!(env.jobs(&g.access_grant_id).await.is_empty(), "no job left");
    env.run_until(&w, T0.millis() + 26 * HOUR_MS, Duration::from_secs(1800))
        .await;
    let g = env.grant(&g.access_grant_id).await;
    assert!(!g.status.is_live(), "{}", g.status);
    assert!(!env.assignment_exists(&g).await, "never created");
}

/// Asked to start in 1h, approved 2h later: it starts at the approval and still lasts
/// the hour asked for.
async fn an_approval_after_the_start_gives_the_full_duration(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env
        .portal
        .create_request(&alice, "prod-readonly", later("1h", "1h"))
        .await
        .unwrap();
    env.set_time(T0.millis() + 2 * HOUR_MS);
    env.portal.decide(&bob, &rid, true, "late").await.unwrap();
    let g = env.only_grant(&rid).await;
    assert_eq!(g.starts_at.millis(), T0.millis() + 2 * HOUR_MS);
    assert_eq!(g.ends_at.millis(), T0.millis() + 3 * HOUR_MS);
}

async fn a_start_out_of_bounds_is_refused_and_changes_nothing(b: Backend) {
    let env = TestEnv::new(b).await;
    let alice = person("alice");
    let requests = env.count("access_request").await;
    let audit = env.count("audit_event").await;
    // T0 is 2027-01-15 08:00 UTC.
    for (starts, message) in [
        ("15d", "access can start at most 14 days ahead"),
        (
            "2027-01-15 07:00",
            "2027-01-15 07:00 UTC has passed: choose a later start",
        ),
        (
            "next tuesday",
            "write when to start like 2h, 1d or 2026-12-03 09:00 (UTC), or leave it empty for now",
        ),
    ] {
        let err = env
            .portal
            .create_request(&alice, "prod-readonly", later("1h", starts))
            .await
            .unwrap_err();
        assert_eq!(err.field("starts").as_deref(), Some(message), "{starts}");
        assert_eq!(err.field("for").as_deref(), Some("prod-readonly"));
    }
    // Every field's problem at once.
    let both = RequestDraft {
        justification: String::new(),
        ..later("1h", "15d")
    };
    let err = env
        .portal
        .create_request(&alice, "prod-readonly", both)
        .await
        .unwrap_err();
    let AppError::Invalid(fields) = err else {
        panic!("{err:?}")
    };
    let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(names, ["justification", "starts", "for"]);
    assert_eq!(env.count("access_request").await, requests);
    assert_eq!(env.count("audit_event").await, audit);
}
