//! Bundles (issue #12, item 10), on SQLite and PostgreSQL: several entitlements asked for
//! at once with one justification; one request each, tied by a bundle id, made together
//! or not at all, each decided by its own entitlement's approvers.

mod common;

use app::error::AppError;
use app::ssr::Portal;
use common::*;

both!(
    a_bundle_makes_one_request_each_decided_by_its_own_approvers,
    a_bundle_is_made_whole_or_not_at_all,
);

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn a_bundle_makes_one_request_each_decided_by_its_own_approvers(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, carol) = (person("alice"), person("bob"), person("carol"));
    let made = env
        .portal
        .create_bundle(
            &alice,
            &ids(&["sandbox-admin", "prod-readonly", "prod-admin"]),
            draft_with_ticket("1h", "CHG-1234"),
        )
        .await
        .unwrap();
    assert_eq!(made.len(), 3);
    let rows = [
        env.request(&made[0]).await,
        env.request(&made[1]).await,
        env.request(&made[2]).await,
    ];
    let bundle = rows[0].bundle_id.clone().expect("a bundle id");
    for r in &rows {
        assert_eq!(r.bundle_id.as_deref(), Some(bundle.as_str()));
        assert_eq!(r.justification, "Investigating INC-42");
        assert_eq!(r.duration_secs, 3600);
    }
    // Each part follows its own policy: sandbox approves itself, read-only waits for Bob,
    // admin for Carol, and each approver is asked only about their own part.
    assert_eq!(env.request_status(&made[0]).await, "approved");
    assert_eq!(env.request_status(&made[1]).await, "pending");
    assert_eq!(env.request_status(&made[2]).await, "pending");
    assert_eq!(env.queue_ids(&bob).await, &made[1..2]);
    assert_eq!(env.queue_ids(&carol).await, &made[2..3]);
    env.portal.decide(&bob, &made[1], true, "ok").await.unwrap();
    env.portal
        .decide(&carol, &made[2], false, "not today")
        .await
        .unwrap();
    assert_eq!(env.request_status(&made[1]).await, "approved");
    assert_eq!(env.request_status(&made[2]).await, "rejected");

    // The page of one part lists the others; the audit says what it was asked with.
    let detail = env.portal.request_detail(&alice, &made[1]).await.unwrap();
    let mut together: Vec<(String, String)> = detail
        .bundle
        .iter()
        .map(|p| (p.entitlement_name.clone(), p.status.clone()))
        .collect();
    together.sort();
    assert_eq!(
        together,
        [
            (
                "Production administrator".to_string(),
                "rejected".to_string()
            ),
            ("Sandbox administrator".to_string(), "approved".to_string()),
        ]
    );
    assert_eq!(detail.request.bundle.as_deref(), Some(bundle.as_str()));
    let created = env.audit_with("request.created").await;
    assert_eq!(created.len(), 3);
    assert!(
        created.iter().all(|e| e
            .detail
            .contains(&format!("one of 3 asked together, bundle {bundle}"))
            && !e.detail.contains("Production administrator")),
        "{created:?}"
    );
    // Bob sees his part's page, and the bundle only as far as he may: the other parts'
    // ids are for their own pages, which refuse him.
    assert!(env.portal.request_detail(&bob, &made[2]).await.is_err());
    assert_eq!(env.verify_chain().await, None);
}

async fn a_bundle_is_made_whole_or_not_at_all(b: Backend) {
    let env = TestEnv::new(b).await;
    let alice = person("alice");
    let count = || async { env.count("access_request").await };

    // One part's checks fail: nothing is made, and the message names the part.
    match env
        .portal
        .create_bundle(&alice, &ids(&["sandbox-admin", "prod-admin"]), draft("3h"))
        .await
    {
        Err(AppError::Invalid(fields)) => {
            let duration = fields.iter().find(|f| f.field == "duration").unwrap();
            assert!(
                duration
                    .message
                    .starts_with("Production administrator: the maximum"),
                "{fields:?}"
            );
            let ticket = fields.iter().find(|f| f.field == "ticket").unwrap();
            assert!(
                ticket.message.starts_with("Production administrator:"),
                "{fields:?}"
            );
            assert!(fields
                .iter()
                .any(|f| f.field == "for" && f.message == "bundle"));
        }
        other => panic!("accepted: {other:?}"),
    }
    assert_eq!(count().await, 0);

    // Not eligible for one part: refused and audited, nothing made.
    match env
        .portal
        .create_bundle(
            &alice,
            &ids(&["sandbox-admin", "security-audit"]),
            draft("1h"),
        )
        .await
    {
        Err(AppError::Forbidden(m)) => assert_eq!(m, "you are not eligible for security-audit"),
        other => panic!("accepted: {other:?}"),
    }
    assert_eq!(count().await, 0);
    assert_eq!(env.audit_with("denied.request").await.len(), 1);

    // Break-glass is asked for alone; one entitlement is not a bundle; nor is one twice.
    for (names, want) in [
        (vec!["sandbox-admin", "prod-breakglass"], "break-glass"),
        (vec!["sandbox-admin"], "at least two"),
        (vec!["sandbox-admin", "sandbox-admin"], "named twice"),
        (
            vec!["sandbox-admin", "no-such-thing"],
            "unknown entitlement",
        ),
    ] {
        match env
            .portal
            .create_bundle(&alice, &ids(&names), draft("1h"))
            .await
        {
            Err(AppError::Invalid(fields)) => {
                let m = fields.iter().find(|f| f.field == "entitlements").unwrap();
                assert!(m.message.contains(want), "{names:?}: {fields:?}");
            }
            other => panic!("{names:?} accepted: {other:?}"),
        }
    }
    assert_eq!(count().await, 0);
    // A start out of bounds is refused at its field, for the whole bundle.
    let mut later = draft("1h");
    later.starts = "30d".into();
    match env
        .portal
        .create_bundle(&alice, &ids(&["sandbox-admin", "prod-readonly"]), later)
        .await
    {
        Err(AppError::Invalid(fields)) => assert!(fields.iter().any(|f| f.field == "starts")),
        other => panic!("accepted: {other:?}"),
    }
    assert_eq!(count().await, 0);
}
