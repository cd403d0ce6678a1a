//! Who may do what: refusals audited, bad input changing nothing, decisions once, each
//! person's queue and pages. The audit trail itself is `audit_trail.rs`, sessions
//! `sessions.rs`. Every test runs on SQLite and on PostgreSQL.

mod common;

use app::domain::{ApproverRule, Policy, RequestDraft};
use app::error::AppError;
use app::ssr::Portal;
use app::views::AuditFilter;
use common::*;
use portcullis::seed::{PS_AUDIT, SANDBOX};

both!(
    self_approval_refused_and_audited,
    non_approvers_refused_and_audited,
    ineligible_requester_refused_and_audited,
    bad_input_changes_nothing,
    deciding_twice_is_a_conflict,
    approval_queue_shows_only_what_one_may_decide,
    admin_pages_are_for_admins,
    only_admins_run_catalog_sync_and_reconciliation,
);

/// Catalog sync and reconciliation on demand: admins only (others refused and audited,
/// nothing scheduled), a task name the portal does not know changes nothing, and an
/// admin's request is audited and puts the job in line now.
async fn only_admins_run_catalog_sync_and_reconciliation(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, dana) = (person("alice"), person("dana"));
    let before = snapshot(&env).await;
    let err = env
        .portal
        .run_upkeep(&alice, "reconcile")
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Forbidden(_)), "{err:?}");
    assert!(env.portal.aws_overview(&alice).await.is_err());
    assert_eq!(env.audit_with("denied.run_upkeep").await.len(), 1);
    assert_eq!(env.audit_with("denied.aws_overview").await.len(), 1);
    assert!(env.job("reconcile", "reconcile").await.is_none());
    let err = env
        .portal
        .run_upkeep(&dana, "everything")
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::NotFound(_)), "{err:?}");
    let after: Vec<_> = snapshot(&env)
        .await
        .into_iter()
        .map(|(t, n)| {
            if t == "audit_event" {
                (t, n - 2)
            } else {
                (t, n)
            }
        })
        .collect();
    assert_eq!(before, after, "only the two refusals were recorded");

    env.portal.run_upkeep(&dana, "reconcile").await.unwrap();
    env.portal.run_upkeep(&dana, "catalog").await.unwrap();
    let job = env.job("reconcile", "reconcile").await.expect("scheduled");
    assert!(job.run_at.millis() <= env.now().millis());
    assert!(env.job("sync_catalog", "sync_catalog").await.is_some());
    let requested = env.audit_with("reconcile.requested").await;
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0].actor_id, dana.user_id);
    // Asked twice: still one job.
    env.portal.run_upkeep(&dana, "reconcile").await.unwrap();
    assert_eq!(
        env.jobs("reconcile").await.len(),
        1,
        "one reconciliation job, brought forward"
    );
}

/// Snapshot of every table a refused or invalid action must leave alone.
async fn snapshot(env: &TestEnv) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for t in [
        "access_request",
        "decision",
        "access_grant",
        "job",
        "outbox",
        "audit_event",
        "alert",
    ] {
        out.push((t, env.count(t).await));
    }
    out
}

fn peer_reviewed() -> Policy {
    Policy {
        eligible_groups: vec!["cloud-approvers".into()],
        approvers: ApproverRule {
            groups: vec!["cloud-approvers".into()],
            ..Default::default()
        },
        ..policy()
    }
}

/// Invariant 5: nobody decides their own request, even as a member of the approver group.
async fn self_approval_refused_and_audited(b: Backend) {
    let env = TestEnv::new(b).await;
    env.add_entitlement(&entitlement(
        "peer-reviewed",
        SANDBOX,
        PS_AUDIT,
        peer_reviewed(),
    ))
    .await;
    let carol = person("carol");
    let rid = env.ask(&carol, "peer-reviewed", "1h").await;
    assert!(
        env.mail_subjects("carol@example.com").await.is_empty(),
        "the requester is not asked to approve her own request"
    );
    let queue = env.portal.approvals(&carol).await.unwrap();
    assert!(
        queue.pending.is_empty(),
        "own request in own queue: {queue:?}"
    );

    let err = env
        .portal
        .decide(&carol, &rid, true, "trust me")
        .await
        .unwrap_err();
    match &err {
        AppError::Forbidden(m) => assert!(m.contains("your own request"), "{m}"),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    let denied = env.audit_with("denied.decide").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor_id, carol.user_id);
    assert_eq!(denied[0].subject_id, rid);
    assert_eq!(env.request_status(&rid).await, "pending");
    assert_eq!(env.count("decision").await, 0);
    assert!(env.grants(&rid).await.is_empty());
    // Rejecting one's own request is deciding it too.
    let err = env
        .portal
        .decide(&carol, &rid, false, "")
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Forbidden(_)), "{err:?}");
    assert_eq!(env.audit_with("denied.decide").await.len(), 2);
    assert_eq!(env.request_status(&rid).await, "pending");

    // Another member of the group may.
    let gina = extra_person("gina", &["cloud-approvers"]);
    env.upsert_user(&gina).await;
    env.portal.decide(&gina, &rid, true, "").await.unwrap();
    assert_eq!(env.request_status(&rid).await, "approved");
    env.check_invariants().await;
}

async fn non_approvers_refused_and_audited(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, carol, dana) = (person("alice"), person("carol"), person("dana"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    let before = snapshot(&env).await;
    for who in [&dana, &carol, &alice] {
        for approve in [true, false] {
            let err = env.portal.decide(who, &rid, approve, "").await.unwrap_err();
            assert!(
                matches!(err, AppError::Forbidden(_)),
                "{}: {err:?}",
                who.user_id
            );
        }
    }
    let denied = env.audit_with("denied.decide").await;
    assert_eq!(denied.len(), 6);
    let actors: Vec<&str> = denied.iter().map(|a| a.actor_id.as_str()).collect();
    assert_eq!(
        actors,
        [
            "demo|dana",
            "demo|dana",
            "demo|carol",
            "demo|carol",
            "demo|alice",
            "demo|alice"
        ]
    );
    assert!(denied.iter().all(|a| a.subject_id == rid));
    let after = snapshot(&env).await;
    for ((t, n0), (_, n1)) in before.iter().zip(&after) {
        let expected = if *t == "audit_event" { n0 + 6 } else { *n0 };
        assert_eq!(*n1, expected, "{t}");
    }
    assert_eq!(env.request_status(&rid).await, "pending");
    env.check_invariants().await;
}

async fn ineligible_requester_refused_and_audited(b: Backend) {
    let env = TestEnv::new(b).await;
    let alice = person("alice");
    let before = env.count("access_request").await;
    let err = env
        .portal
        .create_request(&alice, "security-audit", draft("1h"))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Forbidden(_)), "{err:?}");
    assert_eq!(env.count("access_request").await, before);
    assert_eq!(env.count("job").await, 0);
    assert_eq!(env.count("outbox").await, 0);
    let denied = env.audit_with("denied.request").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor_id, alice.user_id);
    assert_eq!(denied[0].subject_id, "security-audit");
    // Not offered either.
    let cards = env.portal.eligible_entitlements(&alice).await.unwrap();
    let ids: Vec<&str> = cards.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "prod-breakglass",
            "prod-admin",
            "prod-readonly",
            "sandbox-admin",
            "staging-admin"
        ]
    );
    env.check_invariants().await;
}

fn expect_invalid(result: Result<impl std::fmt::Debug, AppError>, field: &str) {
    match result {
        Err(e @ AppError::Invalid(_)) => {
            assert!(
                e.field(field).is_some(),
                "expected an error on {field}, got {e:?}"
            )
        }
        other => panic!("expected Invalid({field}), got {other:?}"),
    }
}

fn expect_not_found(result: Result<(), AppError>) {
    assert!(matches!(result, Err(AppError::NotFound(_))), "{result:?}");
}

async fn bad_input_changes_nothing(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, dana) = (person("alice"), person("bob"), person("dana"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    let before = snapshot(&env).await;
    let p = &env.portal;
    let with = |justification: &str, duration: &str, ticket: &str| RequestDraft {
        justification: justification.into(),
        duration: duration.into(),
        ticket: ticket.into(),
        ..Default::default()
    };

    expect_invalid(
        p.create_request(&alice, "prod-readonly", with("  ", "1h", ""))
            .await,
        "justification",
    );
    expect_invalid(
        p.create_request(&alice, "prod-readonly", with(&"x".repeat(1001), "1h", ""))
            .await,
        "justification",
    );
    expect_invalid(
        p.create_request(&alice, "prod-readonly", with("bell \u{7}", "1h", ""))
            .await,
        "justification",
    );
    expect_invalid(
        p.create_request(&alice, "prod-admin", with("fix", "3h", "CHG-1"))
            .await,
        "duration",
    );
    expect_invalid(
        p.create_request(&alice, "prod-readonly", with("fix", "30s", ""))
            .await,
        "duration",
    );
    expect_invalid(
        p.create_request(&alice, "prod-readonly", with("fix", "soon", ""))
            .await,
        "duration",
    );
    expect_invalid(
        p.create_request(&alice, "prod-readonly", with("fix", "", ""))
            .await,
        "duration",
    );
    expect_invalid(
        p.create_request(&alice, "prod-readonly", with("fix", "-5m", ""))
            .await,
        "duration",
    );
    expect_invalid(
        p.create_request(&alice, "prod-admin", with("fix", "1h", ""))
            .await,
        "ticket",
    );
    expect_invalid(
        p.create_request(&alice, "prod-admin", with("fix", "1h", "<script>"))
            .await,
        "ticket",
    );
    expect_invalid(
        p.create_request(&alice, "no-such-thing", with("fix", "1h", ""))
            .await,
        "entitlement",
    );
    expect_invalid(
        p.create_request(&alice, "../../etc/passwd", with("fix", "1h", ""))
            .await,
        "entitlement",
    );
    expect_invalid(
        p.create_request(&alice, "PROD-READONLY", with("fix", "1h", ""))
            .await,
        "entitlement",
    );
    // Several errors at once, all reported.
    let err = p
        .create_request(&alice, "prod-admin", with("", "9h", ""))
        .await
        .unwrap_err();
    for field in ["justification", "duration", "ticket"] {
        assert!(err.field(field).is_some(), "{field} missing from {err:?}");
    }

    let unknown = "0123456789abcdef0123456789abcdef";
    for id in [
        "garbage",
        "",
        "../x",
        &rid.to_uppercase(),
        &format!("{rid}'--"),
        unknown,
    ] {
        expect_not_found(p.decide(&bob, id, true, "").await);
        expect_not_found(p.cancel_request(&alice, id).await);
        expect_not_found(p.end_grant(&alice, id).await);
        expect_not_found(p.revoke_grant(&dana, id).await);
    }
    expect_invalid(p.decide(&bob, &rid, true, "ok \u{0}").await, "comment");
    expect_invalid(
        p.decide(&bob, &rid, false, "\u{1b}[31mred").await,
        "comment",
    );
    expect_invalid(
        p.decide(&bob, &rid, true, &"c".repeat(1001)).await,
        "comment",
    );

    assert_eq!(
        snapshot(&env).await,
        before,
        "bad input must change nothing"
    );
    assert_eq!(env.request_status(&rid).await, "pending");
    // The request is still decidable after all that.
    p.decide(&bob, &rid, true, "line one\nline two")
        .await
        .unwrap();
    assert_eq!(env.request_status(&rid).await, "approved");
    env.check_invariants().await;
}

async fn deciding_twice_is_a_conflict(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, carol) = (person("alice"), person("bob"), person("carol"));
    let hank = extra_person("hank", &["cloud-approvers"]);
    env.upsert_user(&hank).await;

    // The same approver twice.
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    env.portal.decide(&bob, &rid, true, "ok").await.unwrap();
    let after_first = snapshot(&env).await;
    for approve in [true, false] {
        let err = env
            .portal
            .decide(&bob, &rid, approve, "again")
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Conflict(_)), "{err:?}");
    }
    assert_eq!(snapshot(&env).await, after_first);
    assert_eq!(env.request_status(&rid).await, "approved");
    assert_eq!(env.grants(&rid).await.len(), 1);

    // Another approver after an approval, then after a rejection.
    let rid2 = env.ask(&alice, "prod-admin", "1h").await;
    env.portal.decide(&carol, &rid2, true, "").await.unwrap();
    let after_approval = snapshot(&env).await;
    let err = env
        .portal
        .decide(&hank, &rid2, false, "no")
        .await
        .unwrap_err();
    match &err {
        AppError::Conflict(m) => assert!(m.contains("approved"), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(snapshot(&env).await, after_approval);
    assert_eq!(env.request_status(&rid2).await, "approved");

    let rid3 = env.ask(&alice, "prod-admin", "1h").await;
    env.portal
        .decide(&hank, &rid3, false, "not now")
        .await
        .unwrap();
    assert_eq!(env.request_status(&rid3).await, "rejected");
    let after_rejection = snapshot(&env).await;
    let err = env
        .portal
        .decide(&carol, &rid3, true, "")
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Conflict(_)), "{err:?}");
    assert_eq!(snapshot(&env).await, after_rejection);
    assert!(env.grants(&rid3).await.is_empty());
    // Cancelling a decided request is a conflict too.
    let err = env.portal.cancel_request(&alice, &rid3).await.unwrap_err();
    assert!(matches!(err, AppError::Conflict(_)), "{err:?}");
    assert_eq!(snapshot(&env).await, after_rejection);
    env.check_invariants().await;
}

async fn approval_queue_shows_only_what_one_may_decide(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, carol) = (person("alice"), person("bob"), person("carol"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    let bob_queue = env.portal.approvals(&bob).await.unwrap();
    let ids: Vec<&str> = bob_queue.pending.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [rid.as_str()]);
    assert!(env
        .portal
        .approvals(&carol)
        .await
        .unwrap()
        .pending
        .is_empty());
    assert!(env
        .portal
        .approvals(&alice)
        .await
        .unwrap()
        .pending
        .is_empty());
    env.portal.decide(&bob, &rid, true, "fine").await.unwrap();
    let bob_queue = env.portal.approvals(&bob).await.unwrap();
    assert!(bob_queue.pending.is_empty());
    assert_eq!(bob_queue.decided.len(), 1);
    assert_eq!(bob_queue.decided[0].verdict.as_str(), "approved");
    assert_eq!(bob_queue.decided[0].comment, "fine");
    let mine = env.portal.my_access(&alice).await.unwrap();
    assert_eq!(mine.requests.len(), 1);
    assert_eq!(mine.requests[0].status.as_str(), "approved");
    assert_eq!(mine.grants.len(), 1);
    assert!(env.portal.my_access(&bob).await.unwrap().grants.is_empty());
}

async fn admin_pages_are_for_admins(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, dana) = (person("alice"), person("bob"), person("dana"));
    let rid = env.ask(&alice, "sandbox-admin", "1h").await;
    let w = env.worker();
    env.settle(&w).await;

    for who in [&alice, &bob] {
        let before = env.count("audit_event").await;
        assert!(matches!(
            env.portal.admin_overview(who, Default::default()).await,
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            env.portal.audit_log(who, AuditFilter::default()).await,
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            env.portal.aws_assignments(who).await,
            Err(AppError::Forbidden(_))
        ));
        assert_eq!(env.count("audit_event").await, before + 3);
    }
    for action in [
        "denied.admin_overview",
        "denied.audit_log",
        "denied.aws_assignments",
    ] {
        let rows = env.audit_with(action).await;
        let actors: Vec<&str> = rows.iter().map(|a| a.actor_id.as_str()).collect();
        assert_eq!(actors, ["demo|alice", "demo|bob"], "{action}");
    }

    let overview = env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap();
    assert_eq!(overview.requests.len(), 1);
    assert_eq!(overview.requests[0].id, rid);
    assert_eq!(overview.grants.len(), 1);
    assert_eq!(overview.grants[0].status.as_str(), "active");
    assert_eq!(overview.worker.queued_jobs, env.count("job").await);
    assert!(
        overview.worker.queued_jobs >= 1,
        "at least the deprovision job"
    );
    assert_eq!(overview.worker.failing_jobs, 0);
    let assignments = env.portal.aws_assignments(&dana).await.unwrap();
    assert_eq!(assignments.len(), 1);
    assert_eq!(assignments[0].principal, "Alice Employee");
    assert_eq!(assignments[0].account_id, SANDBOX);
    assert_eq!(assignments[0].permission_set, "AdministratorAccess");
    let log = env
        .portal
        .audit_log(&dana, AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(log.events.len() as i64, env.count("audit_event").await);
    assert!(env
        .audit()
        .await
        .iter()
        .all(|a| !a.action.starts_with("denied.") || a.actor_id != dana.user_id));
    // Everyone sees only their own mail; admins see all.
    let alice_mail = env.portal.outbox(&alice).await.unwrap();
    assert!(!alice_mail.is_empty());
    assert!(alice_mail.iter().all(|m| m.to == "alice@example.com"));
    assert_eq!(
        env.portal.outbox(&dana).await.unwrap().len() as i64,
        env.count("outbox").await
    );
}
